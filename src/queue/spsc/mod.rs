//! [`SpscRing`]: a single-producer single-consumer ring of variable-length
//! byte frames in shared memory.
//!
//! One concept per file:
//!
//! * `ring.rs` (private) — the layout and the lock-free
//!   algorithm (Lamport's SPSC ring with cached indices and
//!   variable-length frames; the module docs there describe it);
//! * [`Producer`] / [`WriteGrant`] — the pushing end;
//! * [`Consumer`] / [`ReadGrant`] — the popping end;
//! * [`SpscRing`] — the public handle: create, open, attach, and take the
//!   two ends.
//!
//! # Blocking and disconnection
//!
//! Blocking is a short pure spin (32 probes one pause hint apart, then
//! doubling bursts whose length adapts per handle: it shrinks when
//! spinning never catches the peer, e.g. both processes on one CPU), two
//! `sched_yield`s, then the crate's one park loop on a
//! [`Notifier`](crate::sync::Notifier) ("data" for the consumer, "space"
//! for the producer) in slices of 1 ms doubling to 64 ms; after each slice
//! the waiter applies the endpoint registry's disconnection rule
//! ([`peers`](crate::queue::peers)) to the other side. The notifying side
//! makes no syscall while nobody sleeps, and no full barrier either: a
//! push or pop publishes with one `Release` store and a plain load of the
//! other side's waiter count, and the side about to sleep pays for the
//! handshake with a process-wide barrier (`membarrier(2)`; SAFETY.md,
//! "SPSC publish"), falling back to a `SeqCst` publish where that is not
//! available. An empty non-blocking `try_pop` looks at the producer's
//! registry in shared memory once a millisecond and asks the kernel about
//! its liveness about every 16 ms.
//!
//! Each side has one exclusive registry slot. An endpoint used in a forked
//! child takes its side over from the parent on first use; dropping an
//! endpoint gives the side up (and so signals `Disconnected` to the other
//! side) in the process that registered it, whatever processes it has
//! forked or spawned since.

mod consumer;
mod handle;
mod producer;
mod ring;
mod watch;

pub use consumer::{Consumer, ReadGrant, TryPopIntoError};
pub use handle::{EndpointError, SpscRing};
pub use producer::{Producer, WriteGrant};
pub use ring::{MAX_CAPACITY, MIN_CAPACITY, PAD, RING_HEADER_SIZE};
pub(crate) use watch::RingWatch;

use crate::primitives::{SpinBudget, Spinner};
use crate::sync::notifier::Phase;

/// What a wait teaches the adaptive spin: a wait that ended while
/// spinning keeps (or grows to) the spin it took; one that had to park
/// resets to the full spin; one that ended between the spin and the first
/// sleep leaves the budget as it was.
#[inline]
fn learn(budget: SpinBudget, phase: Phase, spinner: &Spinner) -> SpinBudget {
    match phase {
        Phase::Spin => budget.record(spinner),
        Phase::Registered => budget,
        Phase::Parked => budget.record_parked(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
