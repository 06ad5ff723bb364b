//! [`RawMutex`]: a robust, process-shared futex mutex on one state word.
//!
//! State word: `0` = unlocked; otherwise the owner's pid, with bit 31 set
//! when someone may be sleeping (the std futex mutex's "contended" state,
//! with the owner identity folded in). Locking is one CAS `0 → pid`;
//! unlocking is one swap to `0`, plus a `FUTEX_WAKE` only if bit 31 was set.
//!
//! Robustness: the kernel's robust-futex list is per thread and owned by
//! glibc, so instead a waiter parks in bounded slices (1 ms doubling to
//! 64 ms) and, after each slice that ends with the same owner still in the
//! word, asks whether that process is alive (pidfd; a zombie counts as
//! dead). If it is dead, the waiter CASes the dead owner's word to its own
//! pid — only one waiter can win — marks the mutex *inconsistent*, and
//! reports `owner_died`. Recovery therefore takes at most one slice after
//! the death, and never depends on the dead process.
//!
//! Pids are judged only where the pid-namespace guard allows
//! ([`pid_scope`](mod@crate::segment::pid_scope)): in a segment shared with processes of
//! another pid namespace the owner counts as alive until it unlocks (no
//! recovery; timed and `try_` forms return), see SAFETY.md §3d.
//!
//! The *inconsistent* flag stays set (and every later acquisition reports
//! `owner_died`) until someone calls [`RawMutex::mark_consistent`], like a
//! poisoned std mutex.

use std::time::Duration;

use crate::os::{self, futex, Deadline};
use crate::primitives::{AtomicU32, Backoff, Ordering};

const CONTENDED: u32 = 1 << 31;
const PID_MASK: u32 = !CONTENDED;
const INCONSISTENT: u32 = 1;
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(64);

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Acquired {
    /// The previous owner died while holding the lock (now, or earlier
    /// without anyone marking the data consistent since).
    pub owner_died: bool,
}

/// A robust process-shared mutex without data (the raw core under
/// [`Mutex`](crate::Mutex)).
///
/// Layout: `#[repr(C)]`, 8 bytes, align 4: `state: u32` (0 or owner pid |
/// bit 31 contended), `flags: u32` (bit 0 inconsistent). All-zero is an
/// unlocked, consistent mutex.
///
/// ```
/// use shmkit::RawMutex;
///
/// let m = RawMutex::new();
/// assert!(!m.lock().owner_died);
/// assert!(m.try_lock().is_none());
/// // SAFETY: this thread holds the lock.
/// unsafe { m.unlock() };
/// assert!(m.try_lock().is_some());
/// # unsafe { m.unlock() };
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawMutex {
    state: AtomicU32,
    flags: AtomicU32,
}

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl RawMutex {
    /// An unlocked mutex (for process-local use, or to copy into place).
    pub fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            flags: AtomicU32::new(0),
        }
    }

    /// Initialises an unlocked mutex in caller-provided memory (e.g. a
    /// segment another crate manages).
    ///
    /// # Safety
    /// `ptr` must be valid for writes of 8 bytes, 4-aligned, and not in use
    /// by anyone else during the call.
    pub unsafe fn init_in(ptr: *mut RawMutex) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr.write(RawMutex::new()) }
    }

    /// Views caller-provided memory as a mutex.
    ///
    /// # Safety
    /// `ptr` must be 4-aligned and valid for 8 bytes for `'a`, initialised
    /// by [`init_in`](Self::init_in) (or zeroed) in some process. Any bit
    /// pattern is memory-safe; garbage only means a confused lock.
    pub unsafe fn from_raw<'a>(ptr: *const RawMutex) -> &'a RawMutex {
        // SAFETY: guaranteed by the caller; every field is an atomic.
        unsafe { &*ptr }
    }

    /// Acquires the lock, blocking as long as needed (a dead owner is
    /// detected within one park slice).
    #[inline]
    pub fn lock(&self) -> Acquired {
        match self.lock_until(None) {
            Some(a) => a,
            None => unreachable!("an untimed lock cannot time out"),
        }
    }

    /// Acquires the lock if it is free (or held by a dead process).
    #[inline]
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = os::current_pid();
        if self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(self.acquired());
        }
        self.try_recover(me)
    }

    /// Acquires the lock, giving up at `deadline` (`None` = never). A lock
    /// held by a dead process is recovered whether or not the deadline has
    /// passed; one held by a live process past the deadline gives `None`.
    #[inline]
    pub fn lock_until(&self, deadline: Option<Deadline>) -> Option<Acquired> {
        let me = os::current_pid();
        if self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(self.acquired());
        }
        self.lock_slow(me, deadline)
    }

    #[inline]
    fn acquired(&self) -> Acquired {
        Acquired {
            owner_died: self.flags.load(Ordering::Relaxed) & INCONSISTENT != 0,
        }
    }

    #[cold]
    fn try_recover(&self, me: u32) -> Option<Acquired> {
        let s = self.state.load(Ordering::Relaxed);
        if s == 0 {
            return self
                .state
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| self.acquired());
        }
        if self.holder_alive(s & PID_MASK) {
            return None;
        }
        self.steal(s, me | (s & CONTENDED))
    }

    /// Whether the owner `pid` in the word must be treated as alive: asks
    /// the kernel only where this process may judge the segment's pids
    /// (the pid-namespace guard, [`pid_scope`](mod@crate::segment::pid_scope)); elsewhere
    /// the owner is alive until it unlocks. Slow path only.
    fn holder_alive(&self, pid: u32) -> bool {
        crate::segment::holder_alive(self as *const RawMutex as *const u8, pid)
    }

    /// Takes the lock from a dead owner: CAS its exact word to ours (only
    /// one survivor can win), then flag the data as inconsistent.
    fn steal(&self, dead_word: u32, new_word: u32) -> Option<Acquired> {
        self.state
            .compare_exchange(dead_word, new_word, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        self.flags.fetch_or(INCONSISTENT, Ordering::Relaxed);
        Some(Acquired { owner_died: true })
    }

    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Deadline>) -> Option<Acquired> {
        // Spin briefly while the lock is held but nobody sleeps yet.
        let mut backoff = Backoff::new();
        while !backoff.is_completed() {
            let s = self.state.load(Ordering::Relaxed);
            if s == 0 {
                if self
                    .state
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(self.acquired());
                }
                continue;
            }
            if s & CONTENDED != 0 {
                break;
            }
            backoff.snooze();
        }

        let mut slice = FIRST_SLICE;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s == 0 {
                // We may have been woken as one of several waiters: keep the
                // contended bit so our unlock wakes the next one.
                if self
                    .state
                    .compare_exchange(0, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(self.acquired());
                }
                continue;
            }
            if s & CONTENDED == 0
                && self
                    .state
                    .compare_exchange(s, s | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let word = s | CONTENDED;
            if deadline.is_some_and(|d| d.has_passed()) {
                // One last look: a dead owner is recovered even at the
                // deadline (so a zero timeout behaves like `try_lock`).
                return self.try_recover(me);
            }
            let wake_at = Deadline::earliest(deadline, Deadline::after(slice));
            let outcome = futex::wait(&self.state, word, Some(wake_at));
            if outcome == futex::WaitOutcome::TimedOut
                && self.state.load(Ordering::Relaxed) == word
                && !self.holder_alive(word & PID_MASK)
            {
                if let Some(a) = self.steal(word, me | CONTENDED) {
                    return Some(a);
                }
            }
            slice = (slice * 2).min(MAX_SLICE);
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling process must hold the lock (acquired through this
    /// mutex and not yet released).
    #[inline]
    pub unsafe fn unlock(&self) {
        let s = self.state.swap(0, Ordering::Release);
        if s & CONTENDED != 0 {
            self.wake_one();
        }
    }

    #[cold]
    fn wake_one(&self) {
        futex::wake(&self.state, 1);
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }

    /// Pid of the current owner, if locked (a snapshot).
    pub fn owner(&self) -> Option<u32> {
        match self.state.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether the data is marked consistent (no unrepaired owner death).
    pub fn is_consistent(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & INCONSISTENT == 0
    }

    /// Overwrites the state word (tests that fake a dead owner).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn force_state_for_test(&self, word: u32) {
        self.state.store(word, Ordering::Relaxed);
    }

    /// Clears the inconsistent mark after the owner-died recovery has
    /// repaired the protected data. Call while holding the lock.
    pub fn mark_consistent(&self) {
        self.flags.fetch_and(!INCONSISTENT, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(std::mem::size_of::<RawMutex>(), 8);
        assert_eq!(std::mem::align_of::<RawMutex>(), 4);
        assert_eq!(std::mem::offset_of!(RawMutex, state), 0);
        assert_eq!(std::mem::offset_of!(RawMutex, flags), 4);
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri cannot query process liveness")]
    fn dead_owner_is_recovered_by_try_lock_and_lock() {
        // A word naming a pid that cannot exist (above pid_max's limit).
        let m = RawMutex::new();
        m.state.store(0x3FFF_FFFF, Ordering::Relaxed);
        let a = m.try_lock().expect("dead owner recovered");
        assert!(a.owner_died);
        assert!(!m.is_consistent());
        m.mark_consistent();
        // SAFETY: we hold it.
        unsafe { m.unlock() };

        m.state.store(0x3FFF_FFFF | CONTENDED, Ordering::Relaxed);
        let a = m.lock();
        assert!(a.owner_died);
        m.mark_consistent();
        // SAFETY: we hold it.
        unsafe { m.unlock() };
        assert!(!m.lock().owner_died);
        // SAFETY: we hold it.
        unsafe { m.unlock() };
    }

    #[test]
    fn lock_until_times_out_while_held() {
        let m = RawMutex::new();
        let _ = m.lock();
        std::thread::scope(|s| {
            s.spawn(|| {
                // Same pid, so the owner is alive: must time out.
                let d = Deadline::after(Duration::from_millis(20));
                assert!(m.lock_until(Some(d)).is_none());
            });
        });
        // SAFETY: we hold it.
        unsafe { m.unlock() };
    }
}
