//! How many shmkit guards and grants this process holds, so that
//! [`process::fork`](crate::process::fork()) can refuse to copy one.
//!
//! A guard is a promise that *this process* has exclusive access to some
//! shared bytes. `fork` copies the whole address space, guards included: a
//! closure that borrows a live guard would hand the child a second `&mut`
//! to the same bytes. So every guard and grant that lends access to shared
//! memory holds a [`Held`] token for its lifetime, and `fork` refuses while
//! [`held`] is non-zero.
//!
//! Counting is per thread (a plain `Cell`, no atomic read-modify-write on
//! the lock fast path); a thread that exits adds its net count to one
//! process-wide total. A guard taken on one thread and dropped on another
//! makes one count +1 and the other -1, which still sums to zero. `fork`
//! only runs with a single thread alive, so then the sum of the total and
//! the calling thread's count is exact.
//!
//! A token also records the pid it was taken in: a guard copied into a
//! child by some fork that bypassed this check (an `unsafe` `libc::fork`)
//! can ask [`Held::in_owner_process`] and refuse to act.
//!
//! For other layers (`queue` grants, `try_recv_with`): create a `Held` with
//! [`Held::enter`] when the grant is handed out, keep it inside the grant,
//! and let it drop with the grant; check [`Held::in_owner_process`] before
//! releasing anything in `Drop`, and call [`Held::assert_owner`] before
//! lending bytes.

use std::cell::Cell;
// Process-local bookkeeping, never placed in shared memory and not part of
// any modelled algorithm: std atomics on purpose (loom's cannot be statics).
use std::sync::atomic::{AtomicIsize, Ordering};

use crate::os;

/// Net count of tokens created on threads that have since exited (or
/// whose thread-local storage was already torn down).
static EXITED_THREADS: AtomicIsize = AtomicIsize::new(0);

struct ThreadCount(Cell<isize>);

impl Drop for ThreadCount {
    fn drop(&mut self) {
        let n = self.0.get();
        if n != 0 {
            EXITED_THREADS.fetch_add(n, Ordering::SeqCst);
        }
    }
}

thread_local! {
    static COUNT: ThreadCount = const { ThreadCount(Cell::new(0)) };
}

fn add(delta: isize) {
    if COUNT
        .try_with(|c| c.0.set(c.0.get().wrapping_add(delta)))
        .is_err()
    {
        // This thread's storage is being destroyed: count process-wide.
        EXITED_THREADS.fetch_add(delta, Ordering::SeqCst);
    }
}

/// Guards and grants alive in this process, as seen from the calling
/// thread: exact when it is the only thread (as when `fork` asks).
pub(crate) fn held() -> usize {
    let mine = COUNT.try_with(|c| c.0.get()).unwrap_or(0);
    let total = EXITED_THREADS.load(Ordering::SeqCst).wrapping_add(mine);
    usize::try_from(total).unwrap_or(0)
}

/// One live guard or grant: counted from [`enter`](Held::enter) until
/// dropped, and stamped with the pid that took it.
#[derive(Debug)]
pub(crate) struct Held {
    pid: u32,
}

impl Held {
    /// Counts a new guard or grant taken by this process.
    #[inline]
    pub(crate) fn enter() -> Held {
        add(1);
        Held {
            pid: os::current_pid(),
        }
    }

    /// Whether the calling process is the one that took the guard (false
    /// in a child that got a copy of it through `fork`).
    #[inline]
    pub(crate) fn in_owner_process(&self) -> bool {
        // Under loom a simulated process that died (unwinding from a crash
        // point) releases nothing, like a killed one.
        #[cfg(loom)]
        if !os::process::loom_liveness::current_alive() {
            return false;
        }
        self.pid == os::current_pid()
    }

    /// Panics unless the calling process took the guard: a copy made by
    /// `fork` must not lend the shared bytes to a second process.
    #[inline]
    #[track_caller]
    pub(crate) fn assert_owner(&self, what: &'static str) {
        if !self.in_owner_process() {
            foreign_use(what, self.pid);
        }
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        add(-1);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn foreign_use(what: &'static str, pid: u32) -> ! {
    panic!(
        "shmkit: a {what} taken in process {pid} was used in process {}: it was copied by fork, \
         and only the process that took it may use it; take a new one in this process",
        os::current_pid()
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_enter_and_drop() {
        let before = held();
        let a = Held::enter();
        let b = Held::enter();
        assert_eq!(held(), before + 2);
        assert!(a.in_owner_process());
        a.assert_owner("test guard");
        drop(a);
        assert_eq!(held(), before + 1);
        drop(b);
        assert_eq!(held(), before);
    }

    #[test]
    fn a_token_moved_to_another_thread_balances_out() {
        let before = held();
        let t = std::thread::spawn(Held::enter).join().unwrap();
        // The spawning thread has exited: its +1 is in the process total.
        assert_eq!(held(), before + 1);
        drop(t);
        assert_eq!(held(), before);
    }

    #[test]
    fn a_foreign_token_refuses() {
        let t = Held { pid: 0 };
        assert!(!t.in_owner_process());
        let r = std::panic::catch_unwind(|| t.assert_owner("test guard"));
        let msg = r.expect_err("must panic");
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("copied by fork"), "{msg}");
        // `t` was built without `enter`: do not let its drop unbalance
        // the count.
        std::mem::forget(t);
    }
}
