//! [`Condvar`]: a process-shared condition variable for [`Mutex`].

use std::time::Duration;

use bytemuck::Pod;

use super::mutex::{owner_died, LockResult, MutexGuard};
use super::notifier::Notifier;
use crate::os::Deadline;
use crate::segment::{ObjectKind, ShmObject};

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
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> LockResult<MutexGuard<'a, T>> {
        self.wait_until(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| owner_died(e.into_inner().0))
    }

    /// Like [`wait`](Self::wait) but gives up after `timeout`; the flag is
    /// true if the timeout elapsed.
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// Waits while `condition` holds (handles spurious wake-ups).
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

    fn wait_until<'a, T: Pod>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Deadline>,
    ) -> LockResult<(MutexGuard<'a, T>, bool)> {
        let mutex = guard.mutex();
        // Register while still holding the lock: a notifier must take the
        // lock to change the condition, so it sees us.
        let waiter = self.notifier.register();
        drop(guard);
        let woke = waiter.sleep(deadline);
        let timed_out = !woke || deadline.is_some_and(|d| d.has_passed());
        match mutex.lock() {
            Ok(g) => Ok((g, timed_out)),
            Err(e) => Err(owner_died((e.into_inner(), timed_out))),
        }
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
