//! The one atomics switch: every atomic, `UnsafeCell` and spin hint used by
//! the shared-memory algorithms comes from here, so `RUSTFLAGS="--cfg loom"`
//! swaps in loom's model-checked atomics. Nothing else imports
//! `std::sync::atomic` for data that lives in a segment.
//!
//! * this file: the switch itself (atomics, fences, `UnsafeCell`);
//! * [`spin`]: how waiters spin before they park ([`Backoff`] for locks,
//!   [`SpinBudget`] for queue endpoints);
//! * [`cache_padded`]: [`CachePadded`], one cache-line pair per hot field.

mod cache_padded;
mod spin;

pub(crate) use cache_padded::CachePadded;
pub(crate) use spin::{spin_hint, Backoff, Spin, SpinBudget, Spinner};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// A compiler-only barrier (no instruction): keeps the compiler from
/// moving memory accesses across it. The asymmetric wake-up handshake
/// (`os::membarrier`) relies on it between a publisher's store and its
/// load; loom never takes that path, so std's is used in every build.
pub(crate) use std::sync::atomic::compiler_fence;

/// The cell for data guarded by a shmkit lock (e.g. `Mutex<T>`'s value).
///
/// It is std's `UnsafeCell` under loom too: that data lives in shared
/// memory as plain `Pod` bytes and its guards hand out ordinary references
/// for as long as they live, which loom's access-tracking cell (closure
/// scoped) cannot express. What loom checks for it is the lock protocol
/// around it (`tests/loom_sync.rs`).
pub(crate) use std::cell::UnsafeCell;
