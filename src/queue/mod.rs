//! Queues between processes: lock-free rings in shared segments.
//!
//! * `SpscRing`: variable-length byte frames, one producer, one consumer.
//! * `MpmcQueue`: fixed-size slots, many producers and consumers (Vyukov).
//! * `JoinableQueue`, `Pipe`, and typed wrappers on top.
//!
//! Shared pieces live here: the error types ([`error`]) and the endpoint
//! registry ([`peers`]) that turns a dead peer into `Disconnected`.

pub mod error;
pub mod joinable;
pub mod mpmc;
pub mod peers;
pub mod typed;

pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use joinable::{JoinableQueue, TaskDoneError};
pub use mpmc::{MpmcQueue, MpmcReceiver, MpmcSender};
pub use peers::{PeerSlot, PeerTable, PeerTableHeader, PeersFull};
pub use typed::{Codec, DecodeError, GetError, PodCodec, PodQueue, Postcard, Queue};
