//! Process identity and liveness.
//!
//! Locks store the owning process id in shared memory; a waiter that has
//! slept for a while asks [`process_alive`] whether that owner still exists.
//! A zombie (killed but not yet reaped) counts as dead: it will never run
//! again, and its parent may be the very process waiting for the lock.

#[cfg(not(miri))]
use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering as StdOrdering};

#[cfg(not(miri))]
static CACHED_PID: StdAtomicU32 = StdAtomicU32::new(0);

#[cfg(not(miri))]
extern "C" fn reset_cached_pid_in_child() {
    CACHED_PID.store(0, StdOrdering::Relaxed);
}

/// The calling process's id, cached (the lock fast path needs it without a
/// syscall) and reset in the child after `fork` by a `pthread_atfork` hook.
///
/// ```
/// assert_eq!(shmkit::os::current_pid(), std::process::id());
/// ```
#[inline]
pub fn current_pid() -> u32 {
    #[cfg(loom)]
    if let Some(pid) = loom_liveness::model_pid() {
        return pid;
    }
    #[cfg(not(miri))]
    {
        let pid = CACHED_PID.load(StdOrdering::Relaxed);
        if pid != 0 {
            return pid;
        }
        cache_pid_slow()
    }
    #[cfg(miri)]
    {
        std::process::id()
    }
}

#[cfg(not(miri))]
#[cold]
fn cache_pid_slow() -> u32 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // SAFETY: registering a child-side atfork handler that only stores
        // to an atomic, which is async-signal-safe. The handler is a plain
        // `extern "C" fn` with static lifetime.
        unsafe {
            libc::pthread_atfork(None, None, Some(reset_cached_pid_in_child));
        }
    });
    let pid = std::process::id();
    CACHED_PID.store(pid, StdOrdering::Relaxed);
    pid
}

/// Whether process `pid` exists and has not yet terminated.
///
/// Uses a pidfd (readable once the process has exited, zombie or not) and
/// falls back to `kill(pid, 0)` plus `/proc/<pid>/stat` where pidfds are
/// unavailable. A pid of 0 is "no process" and reported dead. The calling
/// process is always alive.
///
/// Pid reuse: if the dead owner's pid has already been given to a new,
/// running process, that process is reported alive; see SAFETY.md.
///
/// ```
/// use shmkit::os::{current_pid, process_alive};
/// assert!(process_alive(current_pid()));
/// assert!(!process_alive(0));
/// ```
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    #[cfg(loom)]
    if let Some(alive) = loom_liveness::alive(pid) {
        return alive;
    }
    if pid == current_pid() {
        return true;
    }
    #[cfg(not(miri))]
    {
        use rustix::event::{poll, PollFd, PollFlags};
        use rustix::process::{pidfd_open, Pid, PidfdFlags};
        let Some(rpid) = Pid::from_raw(pid as i32) else {
            return false;
        };
        match pidfd_open(rpid, PidfdFlags::empty()) {
            Ok(fd) => {
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                let zero = rustix::time::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                match poll(&mut fds, Some(&zero)) {
                    Ok(n) => n == 0,
                    Err(_) => true,
                }
            }
            Err(rustix::io::Errno::SRCH) => false,
            Err(_) => alive_by_kill(pid),
        }
    }
    #[cfg(miri)]
    {
        true
    }
}

#[cfg(not(miri))]
fn alive_by_kill(pid: u32) -> bool {
    // SAFETY: signal 0 performs only the existence/permission check.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // Exists (or belongs to another user): a zombie is still dead.
    !matches!(proc_stat_state(pid), Some('Z') | Some('X'))
}

/// The process state letter and start time (clock ticks after boot) from
/// `/proc/<pid>/stat`, if readable.
#[cfg(not(miri))]
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) comes field 4; start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(not(miri))]
fn proc_stat_state(pid: u32) -> Option<char> {
    proc_stat(pid).map(|(s, _)| s)
}

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field
/// 22), used with the pid to name a process unambiguously.
///
/// `None` when it cannot be read reliably, which includes a `/proc`
/// mounted for another pid namespace (a process that entered a new pid
/// namespace without remounting `/proc` would otherwise read the stat of
/// whatever process has that number in the mount's namespace). The
/// calling process's own start time is read through `/proc/self`, which
/// is right in either case.
///
/// ```
/// let t = shmkit::os::process::process_start_time(shmkit::os::current_pid());
/// assert!(t.is_some());
/// ```
pub fn process_start_time(pid: u32) -> Option<u64> {
    #[cfg(loom)]
    if loom_liveness::model_pid().is_some() {
        // Model pids have no /proc entry: unknown, as always under loom.
        return proc_stat(pid).map(|(_, t)| t);
    }
    #[cfg(not(miri))]
    {
        if pid != 0 && pid == current_pid() {
            return proc_self_stat().map(|(_, _, t)| t);
        }
        if !proc_is_ours() {
            return None;
        }
        proc_stat(pid).map(|(_, t)| t)
    }
    #[cfg(miri)]
    {
        let _ = pid;
        Some(0)
    }
}

/// `/proc/self/stat`: the pid as the `/proc` mount's namespace numbers it,
/// the state letter and the start time.
#[cfg(not(miri))]
fn proc_self_stat() -> Option<(u32, char, u64)> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let pid = text.split_ascii_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((pid, state, start))
}

/// What [`current_pid_namespace`] and [`proc_is_ours`] found, cached for
/// the pid they were found under (a forked child, whose pid differs,
/// looks again: it may be in a new namespace). Process-local bookkeeping,
/// never in shared memory: std atomics.
#[cfg(not(miri))]
static FACTS_PID: StdAtomicU32 = StdAtomicU32::new(0);
#[cfg(not(miri))]
static FACTS_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(not(miri))]
static FACTS_PROC_OURS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `(pid namespace inode or 0, whether /proc numbers pids as we do)`.
#[cfg(not(miri))]
fn process_facts() -> (u64, bool) {
    let pid = current_pid();
    if FACTS_PID.load(StdOrdering::Acquire) == pid {
        return (
            FACTS_NS.load(StdOrdering::Relaxed),
            FACTS_PROC_OURS.load(StdOrdering::Relaxed),
        );
    }
    let ns = pid_namespace().unwrap_or(0);
    // No readable /proc/self/stat: no start times either, so nothing is
    // misread.
    let ours = proc_self_stat().map_or(true, |(p, _, _)| p == pid);
    FACTS_NS.store(ns, StdOrdering::Relaxed);
    FACTS_PROC_OURS.store(ours, StdOrdering::Relaxed);
    FACTS_PID.store(pid, StdOrdering::Release);
    (ns, ours)
}

/// Whether `/proc` is mounted for this process's pid namespace, so that
/// `/proc/<pid>` describes the process this process calls `pid`.
#[cfg(not(miri))]
fn proc_is_ours() -> bool {
    process_facts().1
}

/// [`pid_namespace`] of the calling process, cached (looked up again in a
/// forked child); `0` when unknown (no `/proc`, or under Miri). Callers
/// treat an unknown namespace as the same as any other: without `/proc`
/// there is no way to tell, and refusing would make shmkit unusable there.
///
/// ```
/// use shmkit::os::process::{current_pid_namespace, pid_namespace};
/// assert_eq!(current_pid_namespace(), pid_namespace().unwrap_or(0));
/// ```
pub fn current_pid_namespace() -> u64 {
    #[cfg(not(miri))]
    {
        process_facts().0
    }
    #[cfg(miri)]
    {
        0
    }
}

/// Whether two pid-namespace inodes (as stored in a segment header and as
/// returned by [`current_pid_namespace`]) name the same namespace; `0`
/// (unknown) on either side counts as the same.
///
/// ```
/// use shmkit::os::process::same_pid_namespace;
/// assert!(same_pid_namespace(7, 7));
/// assert!(same_pid_namespace(0, 7));
/// assert!(!same_pid_namespace(7, 8));
/// ```
pub fn same_pid_namespace(a: u64, b: u64) -> bool {
    a == 0 || b == 0 || a == b
}

/// Inode of this process's pid namespace (`/proc/self/ns/pid`), which
/// names the namespace in which pids stored in a segment are meaningful.
/// `None` where `/proc` is not mounted (or under Miri).
///
/// ```
/// let ns = shmkit::os::process::pid_namespace();
/// assert_eq!(ns, shmkit::os::process::pid_namespace());
/// ```
pub fn pid_namespace() -> Option<u64> {
    #[cfg(not(miri))]
    {
        std::fs::metadata("/proc/self/ns/pid")
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    }
    #[cfg(miri)]
    {
        None
    }
}

/// Simulated processes for loom models (`cfg(loom)` only).
///
/// Under loom every participant is a thread of one real process, so
/// [`process_alive`] would always answer "alive" and no recovery path
/// (stealing a dead owner's lock, repairing a dict stripe) would ever be
/// model-checked. A loom thread that calls [`become_process`] gets its own
/// pid from a small model range (above any real pid), which
/// [`current_pid`](super::current_pid) returns from then on; [`die`] marks that pid dead.
///
/// * [`process_alive`](super::process_alive) answers from this table for model pids, with an
///   `Acquire` load of the death flag that [`die`] stores with `Release`:
///   a survivor that sees a process dead also sees everything it did before
///   dying, as a real survivor does (the kernel orders a process's exit
///   after its last store, and the liveness syscall after the exit).
/// * A timed futex wait stands for a park slice: from the first death on it
///   ends with `TimedOut` after yielding to the other threads (see
///   `os::futex`), and [`die`] wakes every sleeper so that the slices in
///   progress "run out". A slice that ran out after a death also orders
///   the dead process's stores before the waiter's next loads (a real
///   slice ends later in time than the death; the model records deaths
///   under the futex model's lock). Untimed waits never time out.
/// * [`arm_crash`] makes the calling thread die at its n-th
///   [`crash_point`] (placed between the shared stores of a multi-step
///   update, e.g. a dict insert): the thread is marked dead and unwinds with
///   a [`Crashed`] panic; guards it held see [`current_alive`] false and
///   release nothing, so the state is exactly what the dead process left.
///
/// Threads that never call [`become_process`] keep the real pid and the
/// old behaviour (always alive). Call [`become_process`] on the model's
/// main thread first (it initialises the table there, before any thread
/// is spawned).
#[cfg(loom)]
pub mod loom_liveness {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32 as StdAtomicU32, Ordering as StdOrdering};

    use loom::sync::atomic::{AtomicBool, Ordering};

    /// The first model pid (above `pid_max`'s limit, 2^22, so it never
    /// equals a real pid).
    pub const FIRST_PID: u32 = 0x4000_0000;
    /// How many simulated processes one model may create.
    pub const MAX_PROCESSES: usize = 8;

    struct Table {
        // Bookkeeping of the model itself, not modelled state: std atomics.
        next: StdAtomicU32,
        deaths: StdAtomicU32,
        dead: [AtomicBool; MAX_PROCESSES],
    }

    loom::lazy_static! {
        static ref TABLE: Table = Table {
            next: StdAtomicU32::new(0),
            deaths: StdAtomicU32::new(0),
            dead: std::array::from_fn(|_| AtomicBool::new(false)),
        };
    }

    loom::thread_local! {
        static PID: Cell<u32> = Cell::new(0);
        static CRASH_IN: Cell<Option<u32>> = Cell::new(None);
    }

    /// The panic payload of a thread that died at a [`crash_point`].
    #[derive(Debug)]
    pub struct Crashed;

    /// Makes the calling loom thread a simulated process with a fresh pid
    /// (returned), alive until it calls [`die`].
    ///
    /// # Panics
    /// If more than [`MAX_PROCESSES`] were created in this execution.
    pub fn become_process() -> u32 {
        let n = TABLE.next.fetch_add(1, StdOrdering::Relaxed);
        assert!(
            (n as usize) < MAX_PROCESSES,
            "a loom model may create at most {MAX_PROCESSES} simulated processes"
        );
        let pid = FIRST_PID + n;
        PID.with(|p| p.set(pid));
        pid
    }

    /// The calling thread's model pid, if it became a process.
    pub(crate) fn model_pid() -> Option<u32> {
        PID.with(|p| match p.get() {
            0 => None,
            pid => Some(pid),
        })
    }

    fn index(pid: u32) -> Option<usize> {
        let i = pid.checked_sub(FIRST_PID)? as usize;
        (i < MAX_PROCESSES).then_some(i)
    }

    /// Whether model process `pid` is alive (`None`: not a model pid).
    pub(crate) fn alive(pid: u32) -> Option<bool> {
        let i = index(pid)?;
        if i >= TABLE.next.load(StdOrdering::Relaxed) as usize {
            // Never created: no such process.
            return Some(false);
        }
        Some(!TABLE.dead[i].load(Ordering::Acquire))
    }

    /// Whether the calling thread is alive (false once it called [`die`]).
    pub fn current_alive() -> bool {
        match model_pid() {
            None => true,
            Some(pid) => alive(pid).unwrap_or(true),
        }
    }

    /// Marks the calling thread's process dead (it must do nothing more
    /// with shared state: return or unwind), and lets every timed wait in
    /// progress run out.
    ///
    /// # Panics
    /// If the calling thread never called [`become_process`].
    pub fn die() {
        let pid = model_pid().expect("die() needs become_process() first");
        let i = index(pid).expect("model pids are in range");
        TABLE.dead[i].store(true, Ordering::Release);
        crate::os::futex::model_time_passes(|| {
            TABLE.deaths.fetch_add(1, StdOrdering::Relaxed);
        });
    }

    /// Called by the futex model with its lock held: whether some
    /// simulated process has died (from then on, timed waits run out). A
    /// caller that sees it took the lock after the death was recorded, so
    /// it also sees everything the dead process did.
    pub(crate) fn any_death() -> bool {
        TABLE.deaths.load(StdOrdering::Relaxed) != 0
    }

    /// Makes the calling thread die at its `n`-th [`crash_point`] from now
    /// (`0`: the next one).
    pub fn arm_crash(n: u32) {
        CRASH_IN.with(|c| c.set(Some(n)));
    }

    /// Whether an armed crash is still pending (the thread passed fewer
    /// crash points than [`arm_crash`] asked for).
    pub fn crash_pending() -> bool {
        CRASH_IN.with(|c| c.get().is_some())
    }

    /// A point where a process may be killed between two shared stores.
    /// Dies here (marks the process dead and unwinds with [`Crashed`]) if
    /// [`arm_crash`] counted down to it.
    pub fn crash_point() {
        let fire = CRASH_IN.with(|c| match c.get() {
            Some(0) => {
                c.set(None);
                true
            }
            Some(n) => {
                c.set(Some(n - 1));
                false
            }
            None => false,
        });
        if fire {
            die();
            std::panic::panic_any(Crashed);
        }
    }
}
