//! Starting a child: `fork`, the thread count that decides whether forking
//! is sound, and the die-with-parent set-up a daemon child runs first.

use std::io;

/// Which side of a [`fork`] the caller is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forked {
    /// In the new child.
    Child,
    /// In the parent; the child has this pid.
    Parent(u32),
}

/// Forks the calling process.
///
/// # Safety
///
/// The process must have exactly one thread (see [`thread_count`]): the
/// child gets only the calling thread, and a lock another thread held (the
/// allocator's, stdout's, a `Mutex`) would stay locked forever in it.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees that this is the only thread, so the
    // child inherits no lock held by a thread that does not exist in it.
    let pid = unsafe { libc::fork() };
    match pid {
        p if p < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(p as u32)),
    }
}

/// Number of threads in this process (`/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Makes the calling process die (SIGKILL) when the thread that started it
/// exits, and closes the start race: if the parent `parent` is already
/// gone (the caller was re-parented before the death signal was set), the
/// caller exits at once with `exit_code`, without running destructors or
/// `atexit` handlers.
///
/// For a child between `fork` and `exec` or the start of its work:
/// async-signal-safe and allocation-free (`prctl`, `getppid`, `_exit`), so
/// it may run in `Command::pre_exec`. The death signal survives `exec`.
pub(crate) fn die_with_parent(parent: u32, exit_code: i32) {
    use rustix::process::{getppid, set_parent_process_death_signal, Pid, Signal};
    // It cannot fail for a valid signal; if it ever did, the child would
    // only outlive a parent that dies without its exit hook.
    let _ = set_parent_process_death_signal(Some(Signal::KILL));
    // The parent may have died before the line above.
    if Pid::as_raw(getppid()) as u32 != parent {
        super::exit::exit_immediately(exit_code);
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn thread_count_sees_a_new_thread() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        assert!(thread_count().unwrap() >= 1);
        let t = std::thread::spawn(move || rx.recv());
        // Other tests may start and end threads meanwhile; ours is alive
        // until it is joined, so the count includes it.
        assert!(thread_count().unwrap() >= 2);
        drop(tx);
        let _ = t.join();
    }

    /// Runs `true` in a child that first calls `die_with_parent(parent, 71)`
    /// between fork and exec; returns the child's exit code.
    fn exit_code_with_parent(parent: u32) -> Option<i32> {
        let mut cmd = Command::new("true");
        // SAFETY: the hook only calls `die_with_parent`, which is
        // async-signal-safe and allocation-free.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent(parent, 71);
                Ok(())
            });
        }
        cmd.status().unwrap().code()
    }

    #[test]
    fn die_with_parent_exits_at_once_when_the_parent_is_not_the_one_named() {
        // The child's parent is this process: it runs on to exec `true`.
        assert_eq!(exit_code_with_parent(std::process::id()), Some(0));
        // A parent pid that is not its parent is what a child sees when its
        // parent died before the death signal was set: it exits with the
        // code given, without running `true`.
        assert_eq!(exit_code_with_parent(1), Some(71));
    }
}
