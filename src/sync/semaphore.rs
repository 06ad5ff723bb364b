//! [`Semaphore`]: a process-shared counting semaphore, optionally bounded.

use std::time::Duration;

use super::notifier::Notifier;
use crate::error::AttachError;
use crate::os::Deadline;
use crate::primitives::{AtomicU32, Ordering};
use crate::segment::{ObjectKind, ShmObject};

/// Returned by [`Semaphore::release`] on a bounded semaphore already at its
/// maximum (Python's `BoundedSemaphore` raises `ValueError` here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released more times than acquired (already at its bound of {0})")]
pub struct SemaphoreFull(pub u32);

/// A counting semaphore shared between processes.
///
/// Layout: `#[repr(C)]` `{ count: u32, max: u32 (0 = unbounded),
/// notifier: Notifier }`, 16 bytes.
///
/// Peer death: a process that dies between `acquire` and `release` keeps
/// its unit forever (as with POSIX and Python semaphores); use a
/// [`Mutex`](crate::Mutex) when the holder must be recoverable.
///
/// ```
/// use shmkit::Semaphore;
/// use std::time::Duration;
///
/// let s = Semaphore::new(1, Some(1));
/// s.acquire();
/// assert!(!s.try_acquire());
/// assert!(!s.acquire_timeout(Duration::from_millis(1)));
/// s.release().unwrap();
/// assert!(s.release().is_err()); // bounded at 1
/// assert_eq!(s.value(), 1);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Semaphore {
    count: AtomicU32,
    max: AtomicU32,
    notifier: Notifier,
}

// SAFETY: atomics only; every bit pattern is valid; repr(C).
unsafe impl ShmObject for Semaphore {
    const KIND: ObjectKind = ObjectKind::SEMAPHORE;
    /// `(initial count, optional bound)`.
    type Init = (u32, Option<u32>);
    unsafe fn init_in_place(ptr: *mut Self, (initial, max): Self::Init) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(Semaphore::new(initial, max)) }
    }
    fn validate(&self) -> Result<(), AttachError> {
        let max = self.max.load(Ordering::Relaxed);
        if max != 0 && self.count.load(Ordering::Relaxed) > max {
            return Err(AttachError::Corrupt("semaphore count above its bound"));
        }
        Ok(())
    }
}

impl Semaphore {
    /// A semaphore with `initial` units and an optional upper bound.
    ///
    /// # Panics
    /// If `max` is `Some(0)` or below `initial`.
    pub fn new(initial: u32, max: Option<u32>) -> Self {
        if let Some(m) = max {
            assert!(
                m > 0 && initial <= m,
                "semaphore bound must be >= initial and > 0"
            );
        }
        Self {
            count: AtomicU32::new(initial),
            max: AtomicU32::new(max.unwrap_or(0)),
            notifier: Notifier::new(),
        }
    }

    /// Takes a unit if one is available.
    pub fn try_acquire(&self) -> bool {
        let mut c = self.count.load(Ordering::Relaxed);
        while c > 0 {
            match self
                .count
                .compare_exchange_weak(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
        false
    }

    /// Blocks until a unit is available and takes it.
    pub fn acquire(&self) {
        let _ = self
            .notifier
            .wait_until(None, || self.try_acquire().then_some(()));
    }

    /// Blocks for at most `timeout`; returns whether a unit was taken.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        let d = Deadline::after(timeout);
        self.notifier
            .wait_until(Some(d), || self.try_acquire().then_some(()))
            .is_some()
    }

    /// Returns a unit, waking one waiter.
    pub fn release(&self) -> Result<(), SemaphoreFull> {
        let max = self.max.load(Ordering::Relaxed);
        let mut c = self.count.load(Ordering::Relaxed);
        loop {
            if (max != 0 && c >= max) || c == u32::MAX {
                return Err(SemaphoreFull(if max == 0 { u32::MAX } else { max }));
            }
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        self.notifier.notify_one();
        Ok(())
    }

    /// The notifier waiters sleep on (select's hook).
    pub(crate) fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Units currently available (a snapshot).
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Counts at the edges (issue #10, item 11): a count at `u32::MAX`, or
    /// one a peer scribbled above the bound after attach, refuses a
    /// release instead of wrapping; a zero count refuses an acquire.
    #[test]
    fn hostile_counts_refuse_instead_of_wrapping() {
        let s = Semaphore::new(u32::MAX, None);
        assert_eq!(s.release(), Err(SemaphoreFull(u32::MAX)));
        assert_eq!(s.value(), u32::MAX);
        assert!(s.try_acquire());
        assert_eq!(s.value(), u32::MAX - 1);
        let b = Semaphore::new(1, Some(2));
        b.count.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(b.release(), Err(SemaphoreFull(2)));
        assert!(b.try_acquire(), "units above the bound can still be taken");
        assert_eq!(b.value(), u32::MAX - 1);
        b.count.store(0, Ordering::Relaxed);
        assert!(!b.try_acquire());
        assert!(!b.acquire_timeout(Duration::ZERO));
        assert_eq!(b.value(), 0);
    }
}
