//! Spin policies: how a waiter spins before it parks on a futex.
//!
//! * [`Backoff`]: exponential spin then `sched_yield` (crossbeam's shape),
//!   for lock words and contended CAS loops;
//! * [`SpinBudget`] / [`Spinner`]: an adaptive per-handle spin for queue
//!   endpoints, shortened when spinning never catches the peer.
//!
//! Both implement [`Spin`], the spin phase the shared park loop
//! (`sync::notifier::wait`) runs in front of its futex slices.

/// The spin phase of a blocking wait: [`spin`](Spin::spin) spins or
/// yields once and returns true while the policy wants another try, then
/// false once it is time to park.
pub(crate) trait Spin {
    /// One spin step; false = stop spinning and park.
    fn spin(&mut self) -> bool;
}

/// Hint to the CPU that we are spinning (a `yield_now` under loom so models
/// make progress).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Exponential backoff for spin-then-park loops (crossbeam's `Backoff`
/// shape): `spin()` a bounded number of times, then report completion so
/// the caller parks on a futex.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    // Under loom every spin is a scheduling point; keep models small.
    #[cfg(not(loom))]
    const SPIN_LIMIT: u32 = 6;
    #[cfg(not(loom))]
    const YIELD_LIMIT: u32 = 8;
    #[cfg(loom)]
    const SPIN_LIMIT: u32 = 0;
    #[cfg(loom)]
    const YIELD_LIMIT: u32 = 0;

    pub(crate) fn new() -> Self {
        Self { step: 0 }
    }

    /// Spin for 2^step iterations (bounded), yielding the thread once past
    /// the spin limit.
    pub(crate) fn snooze(&mut self) {
        if self.step <= Self::SPIN_LIMIT {
            #[cfg(not(loom))]
            for _ in 0..(1u32 << self.step) {
                spin_hint();
            }
            #[cfg(loom)]
            spin_hint();
        } else {
            #[cfg(loom)]
            loom::thread::yield_now();
            #[cfg(not(loom))]
            std::thread::yield_now();
        }
        if self.step <= Self::YIELD_LIMIT {
            self.step += 1;
        }
    }

    /// Whether spinning has gone on long enough that the caller should park.
    pub(crate) fn is_completed(&self) -> bool {
        self.step > Self::YIELD_LIMIT
    }
}

/// Adaptive spin budget for waiters that can park on a futex (queue
/// endpoints): a pure spin of adaptive length, then at most `YIELDS`
/// `sched_yield`s, then the caller parks.
///
/// The spin length adapts per handle: a wait that ended during the spin
/// raises it to what that wait took (up to `MAX_STEPS`, i.e. 2^0 + … +
/// 2^MAX_STEPS pause hints); one that ended only in the yield phase (the
/// peer ran when we gave up the CPU: it shares our CPU) lowers it by one
/// step, down to a single pause; one that had to park resets it to the
/// full spin.
/// So a waiter whose peer cannot run while it spins (both processes pinned
/// to one CPU) stops burning its time slice and hands the CPU over with a
/// yield at once, while a peer on another CPU is still caught by spinning.
/// Every `PROBE_EVERY`-th wait spins the full budget, so a peer that
/// became fast again is noticed. The short yield phase is kept because on
/// an oversubscribed machine a yield lets a descheduled peer run for far
/// less than a futex park plus wake (which also makes every operation of
/// the peer pay a wake syscall until the sleeper is back on a CPU).
///
/// The state is a process-local `u32`, kept in the handle.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpinBudget(pub(crate) u32);

impl SpinBudget {
    #[cfg(not(loom))]
    const MAX_STEPS: u32 = 6;
    #[cfg(loom)]
    const MAX_STEPS: u32 = 0;
    #[cfg(not(loom))]
    const YIELDS: u32 = 2;
    #[cfg(loom)]
    const YIELDS: u32 = 0;
    const PROBE_EVERY: u32 = 64;

    fn steps(self) -> u32 {
        self.0 & 0xff
    }

    fn waits(self) -> u32 {
        self.0 >> 8
    }

    /// A spinner for one wait.
    #[inline]
    pub(crate) fn start(self) -> Spinner {
        let limit = if self.waits() % Self::PROBE_EVERY == 0 {
            Self::MAX_STEPS
        } else {
            self.steps().min(Self::MAX_STEPS)
        };
        Spinner {
            // The tight phase only while spinning pays (a budget shrunk to
            // nothing means the peer is not caught spinning, e.g. it shares
            // this CPU, where every probe only delays the yield).
            tight: 0,
            tight_limit: if limit > 0 { Spinner::TIGHT } else { 0 },
            step: 0,
            limit,
            yields: 0,
        }
    }

    /// The budget after a wait that ended during `spinner`'s spin or
    /// yield phase: if it ended in the tight phase, at least one step (so
    /// the tight phase stays on); if it ended after `k` doubling spins, at
    /// least `k - 1` (what it took); if it needed the yields, one step
    /// less.
    #[inline]
    pub(crate) fn record(self, spinner: &Spinner) -> SpinBudget {
        if spinner.step == 0 && spinner.tight > 0 {
            // Ended in the tight phase: spinning catches the peer; keep at
            // least one step so the next wait spins (tightly) again.
            return self.with_steps(self.steps().max(1.min(Self::MAX_STEPS)));
        }
        let steps = if spinner.yields == 0 && spinner.step > 0 {
            self.steps().max(spinner.step - 1).min(Self::MAX_STEPS)
        } else {
            self.steps().saturating_sub(1)
        };
        self.with_steps(steps)
    }

    /// The budget after a wait that had to park: the full spin again.
    /// Parking says nothing against spinning (the peer may simply have
    /// been idle), and a short spin would make two processes that both
    /// park once stay in a park/wake cycle, each waiting out the other's
    /// futex wake-up latency on every message.
    #[inline]
    pub(crate) fn record_parked(self) -> SpinBudget {
        self.with_steps(Self::MAX_STEPS)
    }

    fn with_steps(self, steps: u32) -> SpinBudget {
        let waits = self.waits().wrapping_add(1) & 0x00ff_ffff;
        SpinBudget((waits << 8) | steps)
    }
}

impl Spin for Backoff {
    #[inline]
    fn spin(&mut self) -> bool {
        if self.is_completed() {
            return false;
        }
        self.snooze();
        true
    }
}

/// One wait's spin phase; see [`SpinBudget`].
#[derive(Debug)]
pub(crate) struct Spinner {
    /// Probes done in the tight phase (one pause hint each)…
    tight: u32,
    /// …of this many.
    tight_limit: u32,
    step: u32,
    limit: u32,
    yields: u32,
}

impl Spinner {
    /// Probes with a single pause hint between them before the doubling
    /// starts: an answer that comes within about a microsecond is seen
    /// as soon as a busy-polling caller would see it, instead of at the
    /// end of a burst of up to 64 hints. Skipped while the budget is
    /// spent (see [`SpinBudget::start`]).
    #[cfg(not(loom))]
    const TIGHT: u32 = 32;
    #[cfg(loom)]
    const TIGHT: u32 = 0;
}

impl Spin for Spinner {
    /// Spins (one pause hint per probe for the first [`Spinner::TIGHT`]
    /// probes, then 2^step hints) or, once the spin budget is spent,
    /// yields the CPU, and returns true; returns false when it is time to
    /// park.
    #[inline]
    fn spin(&mut self) -> bool {
        if self.tight < self.tight_limit {
            self.tight += 1;
            spin_hint();
            return true;
        }
        if self.step <= self.limit {
            #[cfg(not(loom))]
            for _ in 0..(1u32 << self.step) {
                spin_hint();
            }
            #[cfg(loom)]
            spin_hint();
            self.step += 1;
            return true;
        }
        if self.yields < SpinBudget::YIELDS {
            self.yields += 1;
            #[cfg(not(loom))]
            std::thread::yield_now();
            return true;
        }
        false
    }
}
