//! [`Condvar`]: a process-shared condition variable for [`Mutex`].

use std::time::Duration;

use bytemuck::Pod;

use super::mutex::{owner_died, LockResult, Mutex, MutexGuard, TryLockError};
use super::notifier::Notifier;
use crate::os::Deadline;
use crate::segment::{ObjectKind, ShmObject};

/// What a bounded [`Condvar`] wait returns: the guard and whether the
/// deadline passed, or why the mutex is not held cleanly (see
/// [`Condvar::wait_timeout`]).
pub type TimedWaitResult<G> = Result<(G, bool), TryLockError<(G, bool)>>;

/// A condition variable usable across processes with a [`Mutex`](crate::Mutex).
///
/// Layout: `#[repr(C)]` [`Notifier`] (8 bytes); all-zero is valid.
/// Spurious wake-ups are possible: wait in a loop, or use
/// [`wait_while`](Condvar::wait_while).
///
/// ```
/// use shmkit::{Condvar, Mutex};
/// use std::time::Duration;
///
/// let m = Mutex::new(0u32);
/// let cv = Condvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *m.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
///     assert_eq!(*g, 1);
/// });
/// let (_g, timed_out) = cv.wait_timeout(m.lock().unwrap(), Duration::from_millis(1)).unwrap();
/// assert!(timed_out);
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Condvar {
    notifier: Notifier,
}

// SAFETY: a Notifier is two atomics: any bit pattern is valid, repr(C).
unsafe impl ShmObject for Condvar {
    const KIND: ObjectKind = ObjectKind::CONDVAR;
    type Init = ();
    unsafe fn init_in_place(ptr: *mut Self, _: ()) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(Condvar::new()) }
    }
}

impl Condvar {
    /// A condition variable with no waiters.
    pub fn new() -> Self {
        Self {
            notifier: Notifier::new(),
        }
    }

    /// Unlocks, sleeps until notified, relocks. If the mutex's owner died
    /// while we slept, returns `Err(OwnerDied(guard))` (the lock is held).
    ///
    /// Unbounded: the re-lock waits as long as a live process holds the
    /// mutex. Use [`wait_timeout`](Self::wait_timeout) to bound the whole
    /// call.
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        let (mutex, _) = self.sleep(guard, None);
        mutex.lock()
    }

    /// Like [`wait`](Self::wait), but the whole call — the sleep *and* the
    /// re-lock — ends by `timeout`.
    ///
    /// * `Ok((guard, timed_out))`: the lock is held again; `timed_out` says
    ///   whether the wait ended by the deadline rather than a notification.
    /// * `Err(TryLockError::TimedOut)`: the deadline passed before the
    ///   mutex could be re-acquired (a live process holds it). The lock is
    ///   **not** held; the guard is gone.
    /// * `Err(TryLockError::OwnerDied(e))`: re-acquired from a holder that
    ///   died; `e.into_inner()` is `(guard, timed_out)`.
    ///
    /// `WouldBlock` is never returned. A holder that died is recovered
    /// even at the deadline.
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> TimedWaitResult<MutexGuard<'a, T>> {
        self.wait_deadline(guard, Deadline::after(timeout))
    }

    /// [`wait_timeout`](Self::wait_timeout) with an absolute deadline.
    pub fn wait_deadline<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Deadline,
    ) -> TimedWaitResult<MutexGuard<'a, T>> {
        let (mutex, timed_out) = self.sleep(guard, Some(deadline));
        match mutex.lock_deadline(deadline) {
            Ok(g) => Ok((g, timed_out)),
            Err(TryLockError::OwnerDied(e)) => Err(TryLockError::OwnerDied(owner_died((
                e.into_inner(),
                timed_out,
            )))),
            Err(TryLockError::TimedOut | TryLockError::WouldBlock) => Err(TryLockError::TimedOut),
        }
    }

    /// Waits while `condition` holds (handles spurious wake-ups).
    /// Unbounded, like [`wait`](Self::wait); see
    /// [`wait_timeout_while`](Self::wait_timeout_while).
    ///
    /// If `condition` panics, the guard is dropped during the unwind and
    /// the mutex is released: nothing stays locked.
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits while `condition` holds, for at most `timeout` in all (sleeps
    /// and re-locks included). `Ok((guard, true))` means the time ran out
    /// with the condition still true; the errors are those of
    /// [`wait_timeout`](Self::wait_timeout).
    ///
    /// ```
    /// use shmkit::{Condvar, Mutex};
    /// use std::time::Duration;
    ///
    /// let m = Mutex::new(0u32);
    /// let cv = Condvar::new();
    /// let (g, timed_out) = cv
    ///     .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(2), |v| *v == 0)
    ///     .unwrap();
    /// assert!(timed_out);
    /// assert_eq!(*g, 0);
    /// ```
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> TimedWaitResult<MutexGuard<'a, T>> {
        let deadline = Deadline::after(timeout);
        loop {
            if !condition(&mut guard) {
                return Ok((guard, false));
            }
            if deadline.has_passed() {
                return Ok((guard, true));
            }
            guard = self.wait_deadline(guard, deadline)?.0;
        }
    }

    /// Registers as a waiter (with the lock still held: a notifier must
    /// take the lock to change the condition, so it sees us), unlocks,
    /// sleeps. Returns the mutex and whether the sleep ended by deadline.
    fn sleep<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Deadline>,
    ) -> (&'a Mutex<T>, bool) {
        guard.assert_owner();
        let mutex = guard.mutex();
        // Register while still holding the lock: a notifier must take the
        // lock to change the condition, so it sees us.
        let waiter = self.notifier.register();
        drop(guard);
        let woke = waiter.sleep(deadline);
        (mutex, !woke || deadline.is_some_and(|d| d.has_passed()))
    }

    /// Wakes one waiter (no syscall if none sleeps).
    pub fn notify_one(&self) {
        self.notifier.notify_one();
    }

    /// Wakes all waiters (no syscall if none sleeps).
    pub fn notify_all(&self) {
        self.notifier.notify_all();
    }
}
