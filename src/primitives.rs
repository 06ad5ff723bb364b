//! The one atomics switch: every atomic and spin hint used by the shared-memory
//! algorithms comes from here, so `RUSTFLAGS="--cfg loom"` swaps in loom's
//! model-checked versions. Nothing else imports `std::sync::atomic` for data
//! that lives in a segment.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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
