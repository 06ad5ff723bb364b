//! Processes: spawn (re-execute this binary with a registered entry),
//! fork, and the [`Process`] handle — Python's `multiprocessing.Process`.
//!
//! # Spawning
//!
//! [`Builder::spawn`] starts `/proc/self/exe` again with the name of an
//! entry (declared with [`entry!`](crate::entry)) and its arguments,
//! serialised with postcard into a memfd the child inherits. Every binary
//! that spawns calls [`init()`] first thing in `main`: in the parent it
//! returns at once; in the child it looks the entry up, decodes the
//! arguments, reports `Started` to the parent over a status pipe, runs the
//! entry and exits with its code. Problems the child detects before running
//! the entry come back as errors from `spawn` in the parent
//! ([`SpawnError::UnknownEntry`], [`SpawnError::BadArgs`],
//! [`SpawnError::VersionMismatch`]), and a panic in the entry comes back as
//! [`ExitStatus::Panicked`] with its message.
//!
//! Why a link-time registry (`inventory`) rather than a list passed to
//! `init`: entries can be declared next to the code they run (including by
//! layers inside shmkit, like a pool's worker loop) and `main` stays one
//! line; a missing registration still cannot fail silently, because the
//! child reports an unknown entry to the parent.
//!
//! Segments go to a spawned child inside its arguments as [`Shared<H>`]:
//! named ones by name, anonymous ones as inherited file descriptors.
//!
//! # Tests and examples
//!
//! Examples and `harness = false` test binaries work as they are: call
//! `shmkit::process::init()` at the top of `main`, then spawn (see
//! `tests/xproc_process.rs`). In a normal libtest binary `main` belongs to
//! the harness, so `init()` never runs and a spawn fails with
//! [`SpawnError::NotInitialized`] instead of re-running the whole test
//! suite in the child. There, either move the test into a
//! `harness = false` binary (the reliable choice), or use [`fork()`], which
//! needs no re-exec but refuses with [`SpawnError::MultiThreaded`] while
//! the harness has other threads alive.
//!
//! # Process objects
//!
//! [`Process::with_target`] (or [`Builder::target`]) makes an
//! [`Unstarted`] process — Python's `Process(target=f, args=...)` before
//! `start()`: printable (`<Process name='Process-1' parent=42 initial>`),
//! not alive, no pid, no exit code. [`Unstarted::start`] turns it into a
//! running [`Process`]. A type that implements [`Run`] (and is registered
//! with [`register_run!`](crate::register_run)) is Python's subclass of
//! `Process` with its own `run()`; its default name is `TypeName-N`.
//!
//! # Children at exit
//!
//! As in Python, a child does not depend on its handle: dropping a
//! [`Process`] neither kills nor orphans it. When the program ends (`main`
//! returns or panics, or `std::process::exit`), the exit hook that
//! [`init()`] installs logs `process shutting down`, terminates (SIGTERM)
//! every *daemon* child still running — SIGKILL after [`DAEMON_GRACE`] —
//! and joins every other child, however long it runs. A spawned or forked
//! child does the same for its own children when its entry returns.
//! [`active_children`] lists the children still running.
//!
//! A process killed by a signal runs no hook (neither does Python's): a
//! daemon child still dies with it (the kernel sends it SIGKILL,
//! `PR_SET_PDEATHSIG`), a non-daemon child is re-parented to init.
//!
//! ```no_run
//! use shmkit::process::{self, Process, Shared};
//! use shmkit::{Mutex, ShmBox};
//!
//! fn add_one(counter: Shared<ShmBox<Mutex<u64>>>) -> Result<(), shmkit::AttachError> {
//!     let counter = counter.attach()?;
//!     *counter.lock().unwrap() += 1;
//!     Ok(())
//! }
//! shmkit::entry! { static ADD_ONE: Entry<Shared<ShmBox<Mutex<u64>>>> = add_one; }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     process::init();
//!     let counter = ShmBox::<Mutex<u64>>::anonymous(0)?;
//!     let p = Process::builder().spawn(&ADD_ONE, &Shared::new(&counter)?)?;
//!     p.join()?;
//!     assert_eq!(*counter.lock().unwrap(), 1);
//!     Ok(())
//! }
//! ```

mod core;
mod entry;
mod error;
mod executor;
mod exit;
mod fork;
mod handle;
mod handoff;
mod imap;
mod log;
mod pool;
mod run;
mod spawn;
mod status;
mod task;
mod unstarted;

pub use entry::{entry_names, Entry, EntryResult};
pub use error::SpawnError;
pub use executor::{
    as_completed, as_completed_timeout, wait, AsCompleted, AsCompletedTimeout, Executor,
    ReturnWhen, TaskFuture, Waited, ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION,
};
pub use exit::{active_children, DAEMON_GRACE};
pub use fork::{fork, thread_count};
pub use handle::{ExitStatus, Process};
pub use handoff::{Handoff, Shared};
pub use imap::Imap;
pub use log::{log_to_stderr, ProcessNameFormat};
pub use pool::{cpu_count, AsyncResult, Pool, PoolBuilder, DEFAULT_MAX_MESSAGE};
pub use run::{class_name, Run, RunEntry};
pub use spawn::{
    current_process, init, is_initialized, parent_process, Builder, CurrentProcess, ParentProcess,
    EXIT_PARENT_GONE, EXIT_START_FAILED, PROTOCOL,
};
pub use task::{task_names, Task, TaskError};
pub use unstarted::Unstarted;

#[doc(hidden)]
pub use entry::{__prepare, EntryRegistration};
#[doc(hidden)]
pub use inventory as __inventory;
#[doc(hidden)]
pub use task::{__run_task, TaskRegistration};
