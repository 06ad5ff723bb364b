//! What happens to children when their parent's program ends: Python's
//! `multiprocessing` exit function, done by an `atexit` hook.
//!
//! Every child this process starts (spawned or forked) is recorded in a
//! registry that outlives its [`Process`](super::Process) handle. When the
//! program ends — `main` returns, `std::process::exit` is called, or `main`
//! panics — the hook installed by [`init()`](super::init) (and by the first
//! [`fork()`](super::fork())):
//!
//! 1. logs `process shutting down` (at `INFO`; see
//!    [`log_to_stderr`](super::log_to_stderr));
//! 2. sends SIGTERM to every *daemon* child still running (`calling
//!    terminate() for daemon NAME`), then SIGKILL to any that is still
//!    there after [`DAEMON_GRACE`];
//! 3. waits for every child still running (`calling join() for process
//!    NAME`): a non-daemon child is joined however long it takes, as in
//!    Python.
//!
//! A spawned or forked child runs the same steps when its entry returns,
//! before it logs `process exiting with exitcode N` — so its own children
//! are handled the same way. A process killed by a signal runs no hook (as
//! in Python); its daemon children still die (`PR_SET_PDEATHSIG`) and its
//! non-daemon children are re-parented to init.
//!
//! Once the hook has started, starting a new child fails with
//! [`SpawnError::Exiting`](super::SpawnError::Exiting).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, Once};
use std::time::Duration;

use super::handle::Child;

/// How long the exit hook waits for a SIGTERMed daemon child before it
/// sends SIGKILL (Python waits forever; a child that ignores SIGTERM must
/// not hang its parent's exit).
pub const DAEMON_GRACE: Duration = Duration::from_secs(5);

static CHILDREN: StdMutex<Vec<Arc<Child>>> = StdMutex::new(Vec::new());
static EXITING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

fn children() -> MutexGuard<'static, Vec<Arc<Child>>> {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a new child. Also forgets reaped children and reaps (without
/// blocking) exited ones whose handles were dropped, so a long-running
/// program that drops handles accumulates neither entries nor zombies.
pub(crate) fn register(child: &Arc<Child>) {
    let orphans: Vec<Arc<Child>> = {
        let mut list = children();
        list.retain(|c| !c.is_reaped() && c.is_ours());
        let orphans = list
            .iter()
            .filter(|c| Arc::strong_count(c) == 1)
            .cloned()
            .collect();
        list.push(child.clone());
        orphans
    };
    // Outside the registry lock: reaping takes the child's own lock.
    for c in orphans {
        let _ = c.poll_exit();
    }
}

/// The children of this process that have not been reaped yet.
pub(crate) fn live_children() -> Vec<Arc<Child>> {
    let list: Vec<Arc<Child>> = children().iter().filter(|c| c.is_ours()).cloned().collect();
    list.into_iter()
        .filter(|c| matches!(c.poll_exit(), Ok(None)))
        .collect()
}

/// Whether the exit steps have started in this process.
pub(crate) fn is_exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// Forgets the parent's children in a freshly forked child (they are not
/// its children; it may neither wait for nor signal them).
pub(crate) fn forget_inherited() {
    children().clear();
}

/// Installs the `atexit` hook (once per process; inherited over fork).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // `at_exit` catches every panic, so nothing unwinds into libc.
        if crate::os::exit::at_exit(at_exit).is_err() {
            tracing::warn!("could not install the exit hook: children are not joined at exit");
        }
    });
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(shutdown);
}

/// Runs the exit steps (once; later calls return at once).
pub(crate) fn shutdown() {
    if EXITING.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::info!("process shutting down");
    let live = live_children();
    let daemons: Vec<&Arc<Child>> = live.iter().filter(|c| c.daemon()).collect();
    for c in &daemons {
        tracing::info!("calling terminate() for daemon {}", c.name());
        let _ = c.terminate();
    }
    for c in &daemons {
        if let Ok(None) = c.join_timeout(DAEMON_GRACE) {
            tracing::info!("calling kill() for daemon {}", c.name());
            let _ = c.kill();
        }
    }
    for c in live_children() {
        tracing::info!("calling join() for process {}", c.name());
        let _ = c.join();
    }
}

/// The children of this process that are still running (Python's
/// `multiprocessing.active_children()`); finished ones are reaped on the
/// way, whether or not their handles still exist. Each returned handle
/// shares its state with the original one.
///
/// ```
/// // A process that started no child has none.
/// assert!(shmkit::process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<super::Process> {
    live_children()
        .into_iter()
        .map(super::Process::from_child)
        .collect()
}
