//! [`Notifier`]: an event count — a futex word plus a waiter count — that
//! every blocking primitive in shmkit parks on.
//!
//! Waiters register (increment `waiters`), re-check their condition, and
//! sleep on `seq`; notifiers publish their change, then (after a `SeqCst`
//! fence) skip the syscall entirely when `waiters == 0`. The two fences
//! form a Dekker pair: either the notifier sees the waiter, or the waiter
//! sees the change, so no wake-up is lost; the `seq` bump makes a waiter
//! that registered but has not slept yet return from `futex_wait` at once.
//!
//! The queues use an asymmetric form of the same pair
//! ([`Handshake::Asymmetric`]): the waiter adds a process-wide barrier
//! (`membarrier`) after registering, and the notifier, which runs once per
//! message, drops its fence for a compiler barrier
//! ([`Notifier::notify_one_after_release`]).
//!
//! # The one park loop
//!
//! Every blocking call in the queues and the sync primitives waits through
//! [`wait`] (in the spirit of parking_lot_core's `park(validate,
//! before_sleep, timed_out)`): an optional spin phase ([`Spin`]), then
//! *register → re-check → sleep for a slice → probe*, repeated until the
//! caller's `poll` returns a value or the deadline passes. The
//! registration is a [`WaitGuard`] that deregisters when dropped, so no
//! exit path can leak a waiter count. Slices ([`Slices::LIVENESS`]: 1 ms
//! doubling to 64 ms) bound how long a waiter sleeps before it looks at
//! its peers' liveness again; primitives whose wake-ups cannot be lost to
//! a dead peer sleep straight to the deadline ([`Slices::NONE`]).

use std::mem::ManuallyDrop;
use std::time::Duration;

use crate::os::{futex, membarrier, Deadline};
use crate::primitives::{compiler_fence, fence, AtomicU32, Ordering, Spin};

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

    /// Registers the caller as a waiter; the guard sleeps
    /// ([`WaitGuard::sleep`]) or, dropped, deregisters. Re-check the
    /// condition while holding it.
    #[inline]
    pub(crate) fn register(&self) -> WaitGuard<'_> {
        self.register_with(Handshake::Symmetric)
    }

    /// [`register`](Self::register) for the given handshake: with
    /// [`Handshake::Asymmetric`] the registration is followed by a
    /// process-wide barrier ([`membarrier::heavy_barrier`]) so that
    /// notifiers may use [`notify_one_after_release`](Self::notify_one_after_release).
    #[inline]
    pub(crate) fn register_with(&self, handshake: Handshake) -> WaitGuard<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if handshake == Handshake::Asymmetric {
            // If the barrier cannot be issued (refused at run time after
            // the support query said yes), a release-only publisher may be
            // missed until this park slice ends; the callers that use this
            // handshake all sleep in bounded slices.
            let _ = membarrier::heavy_barrier();
        }
        WaitGuard {
            notifier: self,
            key: self.seq.load(Ordering::Acquire),
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
        if let Some(r) = ready() {
            return Some(r);
        }
        match wait(self, deadline, Slices::NONE, &mut NoSpin, |_| ready()) {
            Waited::Ready(value, _) => Some(value),
            Waited::TimedOut => None,
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

    /// [`notify_one`](Self::notify_one) for a caller that published its
    /// change with a plain `Release` store, when every waiter registers
    /// with [`Handshake::Asymmetric`] and the calling process is
    /// registered for the barrier ([`membarrier::register`]).
    ///
    /// Only a compiler barrier separates the caller's store from the load
    /// of the waiter count: a waiter's process-wide barrier, issued after
    /// it registered and before it re-checks, either finds this thread
    /// before the load (then the load sees the waiter) or after the store
    /// (then the store is visible to the re-check). SAFETY.md ("SPSC
    /// publish") gives the argument in full.
    #[inline]
    pub(crate) fn notify_one_after_release(&self) {
        compiler_fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
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

    /// The futex word waiters sleep on (the event count): what a waiter
    /// that sleeps on several notifiers at once (`futex::wait_any`, as
    /// [`select`](crate::select) does) passes with the key
    /// [`prepare_wait`](Self::prepare_wait) returned.
    pub fn word(&self) -> &AtomicU32 {
        &self.seq
    }

    /// Number of registered waiters (a snapshot).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}

/// A waiter's registration on a [`Notifier`] (between `prepare_wait` and
/// `commit_wait`/`cancel_wait`): [`sleep`](Self::sleep) consumes it, and
/// dropping it without sleeping deregisters, so every exit path of a wait
/// (ready, error, panic in the re-check) leaves the waiter count right.
#[must_use = "dropping the guard deregisters at once"]
pub(crate) struct WaitGuard<'a> {
    notifier: &'a Notifier,
    key: u32,
}

impl WaitGuard<'_> {
    /// Sleeps until notified after the registration, or `deadline`; then
    /// deregisters. Returns false if the deadline passed.
    pub(crate) fn sleep(self, deadline: Option<Deadline>) -> bool {
        let this = ManuallyDrop::new(self);
        this.notifier.commit_wait(this.key, deadline)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.notifier.cancel_wait();
    }
}

/// How a waiter's registration is ordered before its re-check (see
/// [`Notifier::register_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// A `SeqCst` fence: notifiers must fence too (or publish with a
    /// `SeqCst` read-modify-write).
    Symmetric,
    /// A `SeqCst` fence and a process-wide barrier: notifiers in
    /// registered processes may publish with a plain `Release` store.
    Asymmetric,
}

/// How long one park of [`wait`] may sleep before the waiter probes its
/// peers again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slices {
    first: Option<Duration>,
    max: Duration,
}

impl Slices {
    /// No slicing: sleep until notified or the deadline.
    pub(crate) const NONE: Slices = Slices {
        first: None,
        max: Duration::ZERO,
    };

    /// Slices of 1 ms doubling (after each slice that ran out) to 64 ms:
    /// for waits that must notice a dead peer, which sends no wake-up.
    pub(crate) const LIVENESS: Slices = Slices {
        first: Some(Duration::from_millis(1)),
        max: Duration::from_millis(64),
    };
}

/// Why [`wait`] calls its `poll` closure, so the caller can decide when to
/// pay for a liveness check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A plain re-check: in the spin phase, or registered before the
    /// first sleep.
    Quick,
    /// Registered again after a sleep that a notification ended.
    Woken,
    /// Registered again after a slice that ran out without a notification.
    Expired,
}

impl Probe {
    /// Whether a slice ended (woken or not) since the last poll.
    #[inline]
    pub(crate) fn after_park(self) -> bool {
        self != Probe::Quick
    }
}

/// What [`wait`] ended with.
#[derive(Debug)]
pub(crate) enum Waited<T> {
    /// `poll` returned this value, in this phase of the wait.
    Ready(T, Phase),
    /// The deadline passed first.
    TimedOut,
}

/// Where in [`wait`] the condition became true (adaptive spinners learn
/// from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// During the spin phase.
    Spin,
    /// Registered, before any sleep.
    Registered,
    /// After at least one sleep.
    Parked,
}

/// A spin phase of zero steps.
pub(crate) struct NoSpin;

impl Spin for NoSpin {
    #[inline]
    fn spin(&mut self) -> bool {
        false
    }
}

/// The one park loop: spins (`spin`) re-polling between steps, then
/// repeats *register on `notifier` → `poll` → sleep one slice* until `poll`
/// returns `Some` or `deadline` passes.
///
/// `poll` is the whole condition: the readiness check, and — when its
/// [`Probe`] says a slice ended — whatever liveness or disconnect check
/// the caller wants; it returns `Some` to end the wait with that value
/// (data, or an error such as `Disconnected`). It runs while registered,
/// so a notification that follows the change it looks for cannot be lost
/// (the `Notifier` Dekker pair). Callers try their fast path before
/// calling this.
pub(crate) fn wait<T>(
    notifier: &Notifier,
    deadline: Option<Deadline>,
    slices: Slices,
    spin: &mut impl Spin,
    poll: impl FnMut(Probe) -> Option<T>,
) -> Waited<T> {
    wait_with(notifier, Handshake::Symmetric, deadline, slices, spin, poll)
}

/// [`wait`] registering with the given [`Handshake`].
pub(crate) fn wait_with<T>(
    notifier: &Notifier,
    handshake: Handshake,
    deadline: Option<Deadline>,
    slices: Slices,
    spin: &mut impl Spin,
    mut poll: impl FnMut(Probe) -> Option<T>,
) -> Waited<T> {
    while spin.spin() {
        if let Some(value) = poll(Probe::Quick) {
            return Waited::Ready(value, Phase::Spin);
        }
    }
    let mut slice = slices.first;
    let mut probe = Probe::Quick;
    let mut phase = Phase::Registered;
    loop {
        let guard = notifier.register_with(handshake);
        if let Some(value) = poll(probe) {
            drop(guard);
            return Waited::Ready(value, phase);
        }
        // The deadline is checked after the poll, so a wait woken by the
        // change it waited for succeeds even if the deadline passed since.
        if deadline.is_some_and(|d| d.has_passed()) {
            return Waited::TimedOut;
        }
        let until = match slice {
            Some(s) => Some(Deadline::earliest(deadline, Deadline::after(s))),
            None => deadline,
        };
        let woken = guard.sleep(until);
        phase = Phase::Parked;
        probe = if woken {
            Probe::Woken
        } else {
            slice = slice.map(|s| (s * 2).min(slices.max));
            Probe::Expired
        };
    }
}
