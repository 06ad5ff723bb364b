//! Process-shared synchronisation: robust locks, condition variables,
//! semaphores, events, barriers and shared scalars/arrays.
//!
//! Every type here is `#[repr(C)]`, made of atomics (plus `Pod` data under
//! a lock), valid for any bit pattern, and can live in its own segment
//! ([`ShmBox`](crate::ShmBox)) or in memory the caller provides
//! (`init_in` / `from_raw`). Blocking goes through [`Notifier`]: a short
//! spin, then a shared futex park with a waiter count so wakers make no
//! syscall when nobody sleeps.

mod array;
mod barrier;
mod condvar;
mod event;
pub(crate) mod guard_count;
mod mutex;
pub(crate) mod notifier;
mod raw_mutex;
mod semaphore;
mod value;

pub use array::{ArrayGuard, LockTimedOut, ShmArray};
pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, TimedWaitResult};
pub use event::Event;
pub use mutex::{LockResult, Mutex, MutexGuard, OwnerDied, TryLockError};
pub use notifier::Notifier;
pub use raw_mutex::{Acquired, RawMutex};
pub use semaphore::{Semaphore, SemaphoreFull};
pub use value::{AtomicNumber, AtomicValue, ShmValue};
