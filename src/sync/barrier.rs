//! [`Barrier`]: a reusable process-shared barrier for `n` participants.

use std::time::Duration;

use super::notifier::Notifier;
use crate::error::AttachError;
use crate::os::Deadline;
use crate::primitives::{AtomicU32, Ordering};
use crate::segment::{ObjectKind, ShmObject};

/// Returned by [`Barrier::wait`]: exactly one waiter per round is the
/// leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    is_leader: bool,
}

impl BarrierWaitResult {
    /// Whether this waiter was the last to arrive in its round.
    pub fn is_leader(&self) -> bool {
        self.is_leader
    }
}

/// A barrier that releases its `n` participants together, reusable for any
/// number of rounds.
///
/// Layout: `#[repr(C)]` `{ n: u32, arrived: u32, generation: u32, pad: u32,
/// notifier: Notifier }`, 24 bytes.
///
/// Peer death: a participant that dies before arriving leaves the others
/// waiting; use [`wait_timeout`](Barrier::wait_timeout) when that matters.
///
/// ```
/// use shmkit::Barrier;
///
/// let b = Barrier::new(2);
/// let leaders = std::thread::scope(|s| {
///     let t = s.spawn(|| b.wait().is_leader() as u32);
///     b.wait().is_leader() as u32 + t.join().unwrap()
/// });
/// assert_eq!(leaders, 1);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Barrier {
    n: AtomicU32,
    arrived: AtomicU32,
    generation: AtomicU32,
    _pad: AtomicU32,
    notifier: Notifier,
}

// SAFETY: atomics only; every bit pattern is valid (n == 0 is rejected by
// validate, and an impossible count only ends a round early).
unsafe impl ShmObject for Barrier {
    const KIND: ObjectKind = ObjectKind::BARRIER;
    /// Number of participants.
    type Init = u32;
    unsafe fn init_in_place(ptr: *mut Self, n: u32) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(Barrier::new(n)) }
    }
    fn validate(&self) -> Result<(), AttachError> {
        if self.n.load(Ordering::Relaxed) == 0 {
            return Err(AttachError::Corrupt("barrier with zero participants"));
        }
        Ok(())
    }
}

impl Barrier {
    /// A barrier for `n` participants (`n` of 0 behaves like 1).
    pub fn new(n: u32) -> Self {
        Self {
            n: AtomicU32::new(n.max(1)),
            arrived: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            notifier: Notifier::new(),
        }
    }

    /// Blocks until all `n` participants have called `wait` this round.
    pub fn wait(&self) -> BarrierWaitResult {
        match self.wait_until(None) {
            Some(r) => r,
            None => unreachable!("an untimed barrier wait cannot time out"),
        }
    }

    /// Like [`wait`](Self::wait) but gives up after `timeout` (`None`).
    /// A participant that timed out has still been counted in its round.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<BarrierWaitResult> {
        self.wait_until(Some(Deadline::after(timeout)))
    }

    fn wait_until(&self, deadline: Option<Deadline>) -> Option<BarrierWaitResult> {
        let generation = self.generation.load(Ordering::Acquire);
        let n = self.n.load(Ordering::Relaxed).max(1);
        let arrived = self.arrived.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        // `>=` rather than `==`: a corrupted count must end the round, not
        // strand everyone.
        if arrived >= n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            self.notifier.notify_all();
            return Some(BarrierWaitResult { is_leader: true });
        }
        self.notifier
            .wait_until(deadline, || {
                (self.generation.load(Ordering::Acquire) != generation).then_some(())
            })
            .map(|()| BarrierWaitResult { is_leader: false })
    }

    /// Number of participants.
    pub fn parties(&self) -> u32 {
        self.n.load(Ordering::Relaxed)
    }
}
