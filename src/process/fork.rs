//! [`fork()`]: run a closure in a forked child.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use super::entry::EntryResult;
use super::error::SpawnError;
use super::handle::Process;
use super::spawn::{run_guarded, set_current_name, Builder, EXIT_PARENT_GONE};
use crate::os;
use crate::os::fork::Forked;

/// Number of threads in this process (`/proc/self/task`).
///
/// ```
/// assert!(shmkit::process::thread_count()? >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn thread_count() -> std::io::Result<usize> {
    os::fork::thread_count()
}

/// Forks; the child runs `f` and exits with its result (see
/// [`EntryResult`]); a panic is reported as
/// [`ExitStatus::Panicked`](super::ExitStatus::Panicked).
///
/// Refuses with [`SpawnError::MultiThreaded`] when the process has more
/// than one thread: a forked child gets only the calling thread, and any
/// lock another thread held (the allocator's, stdout's, a `Mutex`) would
/// stay locked forever in the child. The check is race-free: with one
/// thread alive, no other thread can start one concurrently. This makes
/// `fork` a safe function; use [`Builder::spawn`] from multi-threaded
/// programs (and from libtest's threaded harness).
///
/// Refuses with [`SpawnError::GuardHeld`] while this process holds any
/// shmkit guard or grant (a `MutexGuard`, an `ArrayGuard`, a dict value
/// lent to a `get_with` closure...): the child would get a copy of it, and
/// two processes would then write through one lock.
///
/// The child shares every segment the parent had mapped (anonymous ones
/// included) and a copy of everything else. When `f` returns, the child
/// runs the exit steps for its own children (terminate daemons, join the
/// others; see the [module docs](super)) and ends with `_exit`, so the
/// parent's destructors and `atexit` handlers do not run twice; stdout is
/// flushed first.
///
/// ```no_run
/// use shmkit::{process, ShmValue, ShmBox};
///
/// let hits = ShmBox::<ShmValue<u64>>::anonymous(0)?;
/// let child = process::fork(|| {
///     hits.fetch_add(1);
///     7
/// })?;
/// assert_eq!(child.join()?.exitcode(), 7);
/// assert_eq!(hits.load(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fork<F, R>(f: F) -> Result<Process, SpawnError>
where
    F: FnOnce() -> R,
    R: EntryResult,
{
    Builder::new().fork(f)
}

impl Builder {
    /// Forks a child with this builder's name and daemon flag; see
    /// [`fork()`].
    pub fn fork<F, R>(&self, f: F) -> Result<Process, SpawnError>
    where
        F: FnOnce() -> R,
        R: EntryResult,
    {
        let threads = thread_count()?;
        if threads > 1 {
            return Err(SpawnError::MultiThreaded(threads));
        }
        // After the thread check: with one thread alive the count is exact.
        let guards = crate::sync::guard_count::held();
        if guards > 0 {
            return Err(SpawnError::GuardHeld(guards));
        }
        if super::exit::is_exiting() {
            return Err(SpawnError::Exiting);
        }
        super::exit::install();
        let name = self.child_name();
        let daemon = self.is_daemon();
        let (status_r, status_w) = os::fd::pipe_cloexec()?;
        let parent = os::current_pid();
        let parent_name = super::spawn::current_name();
        // Buffered output would otherwise be written by both processes.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: the process has exactly one thread (checked above; only
        // this thread could start another), so the child inherits no lock
        // held by a thread that does not exist in it.
        let pid = match unsafe { os::fork::fork() }? {
            Forked::Parent(pid) => pid,
            Forked::Child => {
                drop(status_r);
                super::spawn::set_parent(parent, parent_name);
                child_after_fork(f, &name, daemon.then_some(parent), status_w)
            }
        };
        drop(status_w);
        tracing::debug!(pid, %name, "forked child process");
        Ok(Process::new(
            pid,
            name,
            "Process".into(),
            daemon,
            File::from(status_r),
        ))
    }
}

/// The forked child's life: die with `parent` (daemons), run `f` with panic
/// reporting over `status_w`, run the exit steps for its own children, and
/// `_exit` with `f`'s code.
fn child_after_fork<F, R>(f: F, name: &str, parent: Option<u32>, status_w: OwnedFd) -> !
where
    F: FnOnce() -> R,
    R: EntryResult,
{
    if let Some(parent) = parent {
        os::fork::die_with_parent(parent, EXIT_PARENT_GONE);
    }
    set_current_name(name);
    super::exit::forget_inherited();
    let code = run_guarded(move || f().into_exit_code(), File::from(status_w));
    // As in a spawned child: the exit steps for this child's own children,
    // then the exit line.
    super::exit::shutdown();
    tracing::info!("process exiting with exitcode {code}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Ends the child without running the parent's destructors or atexit
    // handlers (which could unlink segments or flush shared state twice).
    os::exit::exit_immediately(code)
}
