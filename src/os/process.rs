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
/// ```
/// let t = shmkit::os::process::process_start_time(shmkit::os::current_pid());
/// assert!(t.is_some());
/// ```
pub fn process_start_time(pid: u32) -> Option<u64> {
    #[cfg(not(miri))]
    {
        proc_stat(pid).map(|(_, t)| t)
    }
    #[cfg(miri)]
    {
        let _ = pid;
        Some(0)
    }
}
