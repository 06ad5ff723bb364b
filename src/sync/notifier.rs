//! [`Notifier`]: an event count — a futex word plus a waiter count — that
//! every blocking primitive in shmkit parks on.
//!
//! Waiters register (increment `waiters`), re-check their condition, and
//! sleep on `seq`; notifiers publish their change, then (after a `SeqCst`
//! fence) skip the syscall entirely when `waiters == 0`. The two fences
//! form a Dekker pair: either the notifier sees the waiter, or the waiter
//! sees the change, so no wake-up is lost; the `seq` bump makes a waiter
//! that registered but has not slept yet return from `futex_wait` at once.

use crate::os::{futex, Deadline};
use crate::primitives::{fence, AtomicU32, Ordering};

/// A process-shared event count (8 bytes, `#[repr(C)]`: `seq: u32`,
/// `waiters: u32`; all-zero is a valid initial state).
///
/// ```
/// use shmkit::sync::Notifier;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// let n = Notifier::new();
/// let flag = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         flag.store(true, Ordering::Release);
///         n.notify_all();
///     });
///     let got = n.wait_until(None, || flag.load(Ordering::Acquire).then_some(()));
///     assert_eq!(got, Some(()));
/// });
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct Notifier {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier {
    /// A notifier with no waiters.
    pub fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Registers the caller as a waiter and returns the key to sleep on.
    /// Must be followed by [`commit_wait`](Self::commit_wait) or
    /// [`cancel_wait`](Self::cancel_wait). Re-check the condition between
    /// the two.
    pub fn prepare_wait(&self) -> u32 {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::Acquire)
    }

    /// Sleeps until notified after `key` was taken, or `deadline`; then
    /// deregisters. Returns false if the deadline passed.
    pub fn commit_wait(&self, key: u32, deadline: Option<Deadline>) -> bool {
        let outcome = futex::wait(&self.seq, key, deadline);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        outcome != futex::WaitOutcome::TimedOut
    }

    /// Deregisters without sleeping (the condition became true).
    pub fn cancel_wait(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Blocks until `ready` returns `Some`, re-evaluating it after every
    /// wake-up; returns `None` once `deadline` passes (`None` = no deadline).
    pub fn wait_until<R>(
        &self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        loop {
            if let Some(r) = ready() {
                return Some(r);
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return None;
            }
            let key = self.prepare_wait();
            if let Some(r) = ready() {
                self.cancel_wait();
                return Some(r);
            }
            self.commit_wait(key, deadline);
        }
    }

    /// Wakes one waiter, if any is registered (no syscall otherwise).
    /// Call *after* publishing the change the waiter waits for.
    #[inline]
    pub fn notify_one(&self) {
        self.notify(1)
    }

    /// Wakes every registered waiter (no syscall if there are none).
    #[inline]
    pub fn notify_all(&self) {
        self.notify(u32::MAX)
    }

    /// [`notify_one`](Self::notify_one) for a caller that published its
    /// change with a `SeqCst` read-modify-write (e.g. `swap(_, SeqCst)` or
    /// a `SeqCst` compare-exchange, successful or failed) on the very
    /// variable the waiter re-checks, with nothing between that RMW and
    /// this call that the waiter's condition depends on.
    ///
    /// No fence is issued: the RMW and the `SeqCst` load of the waiter
    /// count are both in the single total order S, and the waiter's
    /// `fetch_add` is followed by a `SeqCst` fence before its re-check. So
    /// if this load misses the waiter, the RMW precedes the waiter's fence
    /// in S and the waiter's re-check sees the change (C++20
    /// `[atomics.order]`/4). On x86 the RMW is the one locked instruction and
    /// the load is a plain `mov`, instead of a store plus `mfence`.
    ///
    /// Loom models `SeqCst` accesses as `AcqRel` (it would report a false
    /// lost wake-up), so under `cfg(loom)` the fence is kept: the models
    /// check the same Dekker protocol in its fence form.
    #[inline]
    pub fn notify_one_after_rmw(&self) {
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.notify_slow(1);
        }
    }

    #[inline]
    fn notify(&self, count: u32) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify_slow(count);
        }
    }

    #[cold]
    fn notify_slow(&self, count: u32) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, count);
    }

    /// Number of registered waiters (a snapshot).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}
