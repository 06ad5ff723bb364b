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
//! # Python `multiprocessing` → shmkit
//!
//! | Python | shmkit |
//! |---|---|
//! | `Process(target=f, args=(a,))`, `start`, `join`, `daemon` | [`Process::with_target`] / [`process::Builder`] (spawn: re-executes this binary, call [`init`] first in `main`), or [`fork`] with a closure |
//! | a `Process` subclass overriding `run()` | `impl` [`process::Run`] + [`register_run!`] |
//! | `Queue(n)`, `JoinableQueue(n)`, `Pipe()` | [`Queue<T>`], [`JoinableQueue<T>`], [`Pipe::duplex`] |
//! | `Lock()`, `RLock()`, `Event()`, `Semaphore()`, `Barrier()` | [`Lock`], [`RLock`], [`Event`], [`Semaphore`], [`Barrier`] (in a [`ShmBox`] where they need a segment) |
//! | `Value`, `Array` | [`ShmValue<T>`], [`ShmArray<T>`] |
//! | `Manager().dict()` | [`ShmDict`] (bytes) / [`ShmMap<K, V>`] (serde), no server process |
//! | `Pool`, `ProcessPoolExecutor` | [`Pool`], [`Executor`] (tasks registered with [`task!`]) |
//! | `pool.apply_async(f, args, callback=, error_callback=)`, `map_async`, `starmap_async` | [`Pool::apply_async_with`], [`Pool::map_async`], [`Pool::starmap_async`] (an [`AsyncResult<Vec<R>>`](process::AsyncResult)) |
//! | `executor.map(f, items, timeout=, chunksize=)`, `as_completed(fs, timeout=)`, `Future.add_done_callback` | [`Executor::map`], [`process::as_completed_timeout`], [`TaskFuture::add_done_callback`](process::TaskFuture::add_done_callback) |
//! | `parent_process()` | [`process::parent_process`] |
//! | `multiprocessing.connection.wait(objects, timeout)` | [`wait()`](fn@wait) / [`WaitSet`] over queues, pipes, events, semaphores, processes, pool results; [`ReadyFd`] for epoll; `async` in [`aio`] |
//!
//! Everything above is in the [`prelude`]: `use shmkit::prelude::*;`.
//!
//! # A tour, top down
//!
//! ```
//! use shmkit::prelude::*;
//!
//! // A typed queue of any capacity, exactly as asked (Python's Queue(3)).
//! let q = Queue::<String>::anonymous(64, 3)?;
//! q.put("a".to_string()).unwrap();
//! assert_eq!(q.get().unwrap(), "a");
//!
//! // A plain lock; a holder that dies is recovered by the next acquirer.
//! let lock = Lock::anonymous()?;
//! drop(lock.acquire());
//!
//! // A shared dictionary, no manager process.
//! let d = ShmMap::<String, u64>::anonymous(DictConfig::for_entries(16, 32, 8)?)?;
//! d.insert(&"k".to_string(), &7)?;
//! assert_eq!(d.get("k")?, Some(7));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Cross-process programs (a forked or spawned child, a pool) are in
//! `examples/`; `cargo run --release --example tour` runs the main demo.
//!
//! # Layers
//!
//! Each depends only on the ones above it:
//!
//! | module | what it owns |
//! |---|---|
//! | [`os`] | the only code that calls the OS: shm/memfd/mmap, futex, pidfd, clocks |
//! | [`segment`] | named and anonymous segments, the header handshake, names and lifetimes, [`ShmBox`], [`gc()`](fn@gc) |
//! | [`sync`] | robust [`Mutex`], [`Lock`], [`RLock`], [`Condvar`], [`Semaphore`], [`Event`], [`Barrier`], [`ShmValue`], [`ShmArray`] |
//! | [`queue`] | SPSC byte-frame ring, MPMC queue, typed [`Queue`], [`JoinableQueue`], [`Pipe`] |
//! | [`dict`] | [`ShmDict`], a shared hash map, and its typed [`ShmMap`] |
//! | [`process`] | spawn, fork, [`Process`], [`Pool`], [`Executor`] |
//! | [`select`] | waiting on many of the above at once ([`WaitSet`], [`wait()`](fn@wait)), [`ReadyFd`] for event loops |
//! | [`aio`] | futures for send, receive, join and pool results, on any executor (`tokio` feature: `aio::AsyncReadyFd`) |
//!
//! The promise, precisely: see the top of this page and SAFETY.md.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]
// Under `--cfg loom` the segment-backed and OS-facing paths (watchers,
// select on segments, fd readiness) are compiled out of use; only the
// models' in-process code runs.
#![cfg_attr(loom, allow(dead_code))]

mod primitives;

#[cfg(not(loom))]
pub mod aio;
pub mod dict;
pub mod error;
pub mod os;
pub mod process;
pub mod queue;
pub mod segment;
pub mod select;
pub mod sync;

pub use dict::{DictConfig, DictError, ShmDict, ShmMap};
pub use error::{AttachError, Error, UntrustedSegment};
pub use process::{current_process, fork, init, Executor, ExitStatus, Pool, Process, SpawnError};
pub use queue::{JoinableQueue, Pipe, Queue};
pub use segment::{gc, OpenOptions, Segment, SegmentObject, ShmBox, ShmObject, TypeTag};
#[cfg(not(loom))]
pub use select::ReadyFd;
pub use select::{wait, Selectable, WaitSet};
pub use sync::{
    Barrier, BarrierWaitError, BrokenBarrierError, Condvar, Event, Lock, LockGuard, LockTimedOut,
    Mutex, MutexGuard, OwnerDied, RLock, RLockGuard, RawMutex, Semaphore, ShmArray, ShmValue,
    TimedWaitResult, TryLockError,
};

/// What a program reaches for first: `use shmkit::prelude::*;`.
///
/// ```
/// use shmkit::prelude::*;
///
/// let ev = ShmBox::<Event>::anonymous(())?;
/// ev.set();
/// assert!(ev.is_set());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub mod prelude {
    pub use crate::dict::{DictConfig, ShmDict, ShmMap};
    pub use crate::process::{
        self, current_process, fork, init, Executor, Pool, Process, Run, Shared,
    };
    pub use crate::queue::{JoinableQueue, Pipe, Queue, QueueConfig};
    pub use crate::segment::{OpenOptions, SegmentObject, ShmBox, TypeTag};
    #[cfg(not(loom))]
    pub use crate::select::ReadyFd;
    pub use crate::select::{Ready, Selectable, Selected, WaitSet};
    pub use crate::sync::{
        Barrier, Condvar, Event, Lock, Mutex, OwnerDied, RLock, Semaphore, ShmArray, ShmValue,
    };
    pub use crate::{AttachError, Error};
}
