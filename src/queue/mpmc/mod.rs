//! [`MpmcQueue`]: a bounded many-producer many-consumer queue of byte
//! messages in shared memory, with survivable peer death.
//!
//! One concept per file:
//!
//! * `raw.rs` (private) — the layout and the lock-free algorithm
//!   (Vyukov's bounded MPMC queue with claims that name their process, for
//!   any capacity; the module docs there describe it and what survives a
//!   `SIGKILL`);
//! * [`MpmcSender`] — the sending end;
//! * [`MpmcReceiver`] — the receiving end;
//! * [`MpmcQueue`] — the public handle: create, open, attach, and make
//!   endpoints; each endpoint's registration in the endpoint registry.
//!
//! # Blocking
//!
//! A bounded exponential spin (crossbeam-style backoff), then the
//! crate's one park loop on the `not_full` / `not_empty` notifier, in
//! slices of 1 ms doubling to 64 ms. A blocked receiver looks for dead
//! producers (whose claimed slot it skips) and applies the registry's
//! disconnection rule after every park, and at once when an endpoint
//! left; a blocked sender does so when a slice passed without a wake-up,
//! and at once when an endpoint left.

mod handle;
mod raw;
mod receiver;
mod sender;

pub use handle::{MpmcQueue, QueueConfig};
pub(crate) use raw::MARKED;
pub use raw::{LAYOUT_TAG, MAX_CAPACITY, MAX_PEERS, MAX_SLOT_SIZE, SKIPPED};
pub use receiver::MpmcReceiver;
pub use sender::MpmcSender;

#[cfg(all(test, not(loom)))]
mod tests;
