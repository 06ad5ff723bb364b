//! [`Run`]: Python's `class Worker(multiprocessing.Process): def run(self)`.
//!
//! A spawned child cannot receive a closure or a vtable, only bytes: a
//! type that implements [`Run`] is serialised (postcard, with
//! [`Shared`](super::Shared) handles allowed inside) and the child
//! rebuilds it and calls [`Run::run`]. [`register_run!`](crate::register_run)
//! registers the type as an entry, exactly as [`entry!`](crate::entry)
//! does for a function, and marks it [`RunEntry`] so that forgetting the
//! registration is a compile error rather than a child that cannot start.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SpawnError;
use super::unstarted::Unstarted;

/// A type whose values can run as a child process: the equivalent of
/// overriding `run()` in a subclass of Python's `multiprocessing.Process`.
///
/// The default name of such a process is the type's short name and the
/// process counter, like Python's `Worker-1` (see [`class_name`]).
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use shmkit::process::{current_process, Run};
///
/// #[derive(Serialize, Deserialize)]
/// struct Worker {
///     jobs: u32,
/// }
///
/// impl Run for Worker {
///     fn run(self) {
///         println!("In {} with {} jobs", current_process().name(), self.jobs);
///     }
/// }
/// shmkit::register_run!(Worker);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     shmkit::process::init();
///     let p = Worker { jobs: 3 }.into_process()?;
///     assert_eq!(p.name(), "Worker-1");
///     let p = p.start()?; // the child prints "In Worker-1 with 3 jobs"
///     assert!(p.join()?.success());
///     Ok(())
/// }
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// The child's work. Returning ends the child with exit code 0; a
    /// panic ends it with [`ExitStatus::Panicked`](super::ExitStatus::Panicked).
    fn run(self);

    /// This value as an unstarted process (Python's `Worker()`), with the
    /// default name `TypeName-N`; call [`Unstarted::start`] to start it.
    /// Use [`Builder::runnable`](super::Builder::runnable) to set a name,
    /// the daemon flag or the start timeout first.
    fn into_process(self) -> Result<Unstarted, SpawnError>
    where
        Self: RunEntry + Sized,
    {
        super::Builder::new().runnable(&self)
    }
}

/// Marks a [`Run`] type as registered with
/// [`register_run!`](crate::register_run); only that macro implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not registered as a process type",
    label = "register it with `shmkit::register_run!({Self});`"
)]
pub trait RunEntry: Run {
    /// The name the type is registered under (see
    /// [`entry_names`](super::entry_names)).
    const ENTRY: &'static str;
}

/// The short name of `T` (no module path, no generic arguments): the
/// `Worker` in Python's default name `Worker-1`.
///
/// ```
/// struct Worker;
/// assert_eq!(shmkit::process::class_name::<Worker>(), "Worker");
/// assert_eq!(shmkit::process::class_name::<Vec<u8>>(), "Vec");
/// ```
pub fn class_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Registers [`Run`] types so that spawned children can run them.
///
/// Write it once per type, next to the `impl Run`; every binary that links
/// the code can then start values of the type with
/// [`Run::into_process`] or [`Builder::runnable`](crate::process::Builder::runnable).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shmkit::process::{Run, RunEntry};
///
/// #[derive(Serialize, Deserialize)]
/// struct Nop;
/// impl Run for Nop {
///     fn run(self) {}
/// }
/// shmkit::register_run!(Nop);
/// assert!(shmkit::process::entry_names().any(|n| n == <Nop as RunEntry>::ENTRY));
/// ```
#[macro_export]
macro_rules! register_run {
    ($($t:ty),+ $(,)?) => {$(
        const _: () = {
            const NAME: &str =
                ::core::concat!(::core::module_path!(), "::<", ::core::stringify!($t), " as Run>");

            fn __shmkit_prepare(
                bytes: &[u8],
            ) -> ::core::result::Result<::std::boxed::Box<dyn ::core::ops::FnOnce() -> i32>, ::std::string::String> {
                $crate::process::__prepare::<$t, _, _>(bytes, |value: $t| {
                    $crate::process::Run::run(value)
                })
            }

            $crate::process::__inventory::submit! {
                $crate::process::EntryRegistration::__new(NAME, __shmkit_prepare)
            }

            impl $crate::process::RunEntry for $t {
                const ENTRY: &'static str = NAME;
            }
        };
    )+};
}
