//! Queues between processes: lock-free rings in shared segments.
//!
//! * `SpscRing`: variable-length byte frames, one producer, one consumer.
//! * `MpmcQueue`: fixed-size slots, many producers and consumers (Vyukov).
//! * `JoinableQueue`, `Pipe`, and typed wrappers on top.
//!
//! Typed queues ([`Queue`], [`JoinableQueue`]) take values of any size:
//! one whose encoding is larger than a slot *spills* into a shared segment
//! of its own, named from the queue's uid ([`spill`] has the record
//! format and the lifetime rules: a spilled value survives its sender
//! until received or until the queue is destroyed; the last holder of a
//! destroyed queue, or [`gc()`](crate::gc()), removes what is left).
//! `Queue::new()` / `Queue::bounded(n)` need no sizes (Python's `Queue()`
//! and `Queue(n)`).
//!
//! Shared pieces live here: the error types ([`error`]) and the endpoint
//! registry (`peers`, internal) that turns a closed or dead peer into
//! `Disconnected` by one rule for every queue: a blocked receive returns
//! `Disconnected` (after draining) when the sending side was explicitly
//! closed, or has had registered senders and none is alive now, or never
//! had one and the process that created the queue is dead; the same with
//! the sides swapped for a blocked send.

mod drain;
pub mod error;
pub mod joinable;
pub mod mpmc;
#[doc(hidden)]
pub mod peers;
pub mod pipe;
pub mod spill;
pub mod spsc;
pub mod typed;

pub use drain::DrainError;
pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use joinable::{JoinableQueue, TaskDoneError};
pub use mpmc::{MpmcQueue, MpmcReceiver, MpmcSender, QueueConfig};
pub use peers::PeersFull;
pub use pipe::{Connection, Pipe, PipeError, DEFAULT_PIPE_CAPACITY};
pub use spill::DEFAULT_MAX_SPILL;
pub use spsc::{
    Consumer, EndpointError, Producer, ReadGrant, SpscRing, TryPopIntoError, WriteGrant,
};
pub use typed::{
    Codec, DecodeError, GetError, Iter, PodCodec, PodQueue, Postcard, Queue, Sizing, TryIter,
    DEFAULT_CAPACITY, DEFAULT_SLOT_SIZE,
};
