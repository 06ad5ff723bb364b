//! Entry points: functions a spawned child can run, registered by name.
//!
//! Spawning re-executes the current binary, so the child cannot receive a
//! closure; it receives the *name* of an entry and its serialised
//! arguments. [`entry!`](crate::entry) declares a typed handle
//! ([`Entry<A>`]) and registers the function in a link-time registry
//! (`inventory`), so every binary that links the code knows every entry
//! without listing them in `main`. A pool built on this layer registers its
//! worker loop the same way.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

/// A typed name of a registered entry function taking arguments `A`.
///
/// Declare one with [`entry!`](crate::entry); spawn it with
/// [`Builder::spawn`](super::Builder::spawn). `A` is what the parent
/// serialises (with postcard) and the child decodes; it may contain
/// [`Shared`](super::Shared) handles to segments.
///
/// ```
/// fn greet((who, times): (String, u32)) -> i32 {
///     for _ in 0..times {
///         println!("hello {who}");
///     }
///     0
/// }
/// shmkit::entry! {
///     /// Prints a greeting.
///     static GREET: Entry<(String, u32)> = greet;
/// }
/// assert!(GREET.name().ends_with("::GREET"));
/// assert!(shmkit::process::entry_names().any(|n| n == GREET.name()));
/// ```
pub struct Entry<A> {
    name: &'static str,
    _args: PhantomData<fn(A)>,
}

impl<A> Entry<A> {
    #[doc(hidden)]
    pub const fn __new(name: &'static str) -> Self {
        Self {
            name,
            _args: PhantomData,
        }
    }

    /// The registered name (`module::path::STATIC_NAME`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A> fmt::Debug for Entry<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Entry").field(&self.name).finish()
    }
}

/// What an entry (or a forked closure) may return: it becomes the child's
/// exit code.
///
/// `()` → 0; an integer → itself; `Result<T, E>` → `T`'s code, or 1 after
/// printing `Error: {e:?}` to stderr (like `main`).
pub trait EntryResult {
    /// The exit code this value stands for.
    fn into_exit_code(self) -> i32;
}

impl EntryResult for () {
    fn into_exit_code(self) -> i32 {
        0
    }
}

impl EntryResult for i32 {
    fn into_exit_code(self) -> i32 {
        self
    }
}

impl EntryResult for u8 {
    fn into_exit_code(self) -> i32 {
        self.into()
    }
}

impl EntryResult for bool {
    /// `true` → 0 (success), `false` → 1.
    fn into_exit_code(self) -> i32 {
        i32::from(!self)
    }
}

impl<T: EntryResult, E: fmt::Debug> EntryResult for Result<T, E> {
    fn into_exit_code(self) -> i32 {
        match self {
            Ok(v) => v.into_exit_code(),
            Err(e) => {
                eprintln!("Error: {e:?}");
                1
            }
        }
    }
}

/// A prepared entry call: arguments decoded, ready to run.
pub(crate) type Prepared = Box<dyn FnOnce() -> i32>;

/// One registered entry (created by [`entry!`](crate::entry); collected
/// with `inventory`).
#[doc(hidden)]
pub struct EntryRegistration {
    name: &'static str,
    prepare: fn(&[u8]) -> Result<Prepared, String>,
}

impl EntryRegistration {
    #[doc(hidden)]
    pub const fn __new(name: &'static str, prepare: fn(&[u8]) -> Result<Prepared, String>) -> Self {
        Self { name, prepare }
    }
}

inventory::collect!(EntryRegistration);

/// Decodes `bytes` as `A` and binds them to `f` (used by the macro).
#[doc(hidden)]
pub fn __prepare<A, R, F>(bytes: &[u8], f: F) -> Result<Prepared, String>
where
    A: DeserializeOwned + 'static,
    R: EntryResult,
    F: FnOnce(A) -> R + 'static,
{
    let args: A = super::handoff::decode_args(bytes)?;
    Ok(Box::new(move || f(args).into_exit_code()))
}

/// Names of every entry registered in this binary.
///
/// ```
/// // Every binary linking shmkit can list its entries (maybe none).
/// let n = shmkit::process::entry_names().count();
/// assert!(n < 1_000_000);
/// ```
pub fn entry_names() -> impl Iterator<Item = &'static str> {
    inventory::iter::<EntryRegistration>
        .into_iter()
        .map(|r| r.name)
}

/// Why a lookup failed.
pub(crate) enum Lookup {
    Found(fn(&[u8]) -> Result<Prepared, String>),
    Unknown,
    Duplicate,
}

pub(crate) fn lookup(name: &str) -> Lookup {
    let mut found = None;
    for r in inventory::iter::<EntryRegistration> {
        if r.name == name {
            if found.is_some() {
                return Lookup::Duplicate;
            }
            found = Some(r.prepare);
        }
    }
    found.map_or(Lookup::Unknown, Lookup::Found)
}

/// Declares typed entry points that spawned children can run.
///
/// Each item `static NAME: Entry<Args> = function;` defines a static
/// [`Entry<Args>`](crate::process::Entry) named `module::path::NAME` and
/// registers `function` (any `FnOnce(Args) -> impl EntryResult`, a `fn`
/// item or a non-capturing closure) under that name. `Args` must be
/// `Serialize + DeserializeOwned`.
///
/// ```
/// fn add((a, b): (i32, i32)) -> i32 {
///     a + b
/// }
/// shmkit::entry! {
///     /// Exits with `a + b`.
///     pub static ADD: Entry<(i32, i32)> = add;
///     static NOP: Entry<()> = |()| ();
/// }
/// assert_ne!(ADD.name(), NOP.name());
/// ```
#[macro_export]
macro_rules! entry {
    ($($(#[$meta:meta])* $vis:vis static $name:ident : Entry<$args:ty> = $f:expr;)+) => {$(
        $(#[$meta])*
        $vis static $name: $crate::process::Entry<$args> =
            $crate::process::Entry::__new(::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)));

        const _: () = {
            fn __shmkit_prepare(
                bytes: &[u8],
            ) -> ::core::result::Result<::std::boxed::Box<dyn ::core::ops::FnOnce() -> i32>, ::std::string::String> {
                $crate::process::__prepare::<$args, _, _>(bytes, $f)
            }
            $crate::process::__inventory::submit! {
                $crate::process::EntryRegistration::__new(
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!($name)),
                    __shmkit_prepare,
                )
            }
        };
    )+};
}
