//! # shmkit — shared-memory IPC primitives
//!
//! shmkit gives Rust programs what Python's `multiprocessing` gives Python
//! programs — locks, events, queues, a shared dictionary and process pools —
//! but with the data living directly in memory-mapped segments that forked or
//! spawned processes attach to by name. There is no server process and no
//! pickling.
//!
//! The death of any process is a value the survivors handle: a lock held by
//! a dead process is recovered by the next locker, never waited on. A process
//! that is alive but stuck can still make the plain blocking calls wait for
//! it; each has a bounded form (`try_*`, `*_timeout`, `*_deadline`,
//! `ShmDict::set_lock_timeout`) whose deadline covers the whole call. See
//! SAFETY.md, "Bounded waits".
//!
//! Layers (each depends only on the ones above it):
//!
//! | module | what it owns |
//! |---|---|
//! | [`os`] | the only code that calls the OS: shm/memfd/mmap, futex, pidfd, clocks |
//! | [`segment`] | named and anonymous segments, the header handshake, [`ShmBox`] |
//! | [`sync`] | robust [`Mutex`], [`Condvar`], [`Semaphore`], [`Event`], [`Barrier`], [`ShmValue`], [`ShmArray`] |
//! | [`queue`] | SPSC byte-frame ring, MPMC queue, `JoinableQueue`, `Pipe` |
//! | `dict` | `ShmDict`, a shared hash map |
//! | `process` | spawn, `Process`, `Pool`, `Executor` |
//!
//! ```
//! use shmkit::{ShmBox, Mutex};
//!
//! // An anonymous segment holding a robust, process-shared mutex; a forked
//! // child would share it.
//! let counter = ShmBox::<Mutex<u64>>::anonymous(0)?;
//! *counter.lock().unwrap() += 1;
//! assert_eq!(*counter.lock().unwrap(), 1);
//! # Ok::<(), shmkit::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod primitives;

pub mod dict;
pub mod error;
pub mod os;
pub mod process;
pub mod queue;
pub mod segment;
pub mod sync;

pub use dict::{DictConfig, DictError, ShmDict, ShmMap};
pub use error::{AttachError, Error};
pub use process::{current_process, ExitStatus, Process, SpawnError};
pub use segment::{gc, Segment, SegmentObject, ShmBox, ShmObject};
pub use sync::{
    Barrier, Condvar, Event, Mutex, MutexGuard, OwnerDied, RawMutex, Semaphore, ShmArray, ShmValue,
    TryLockError,
};
