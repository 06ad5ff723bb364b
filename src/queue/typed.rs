//! [`Queue<T>`]: a typed queue of values over [`MpmcQueue`] slots, with
//! the Python `multiprocessing.Queue` vocabulary (`put`/`get`/
//! `put_nowait`/`get_nowait`/`qsize`/`empty`/`full`) next to the Rust one
//! (`send`/`recv`/`try_send`/`try_recv`).
//!
//! How values become bytes is the codec parameter `C`:
//!
//! * [`Postcard`] (the default) for `T: Serialize + DeserializeOwned`: each
//!   value is postcard-encoded straight into its slot (no intermediate
//!   buffer); the slot size is the largest encoding you allow, chosen at
//!   create. Byte payloads are copied with one `memcpy`, with nothing to
//!   opt into: `Vec<u8>` and `Box<[u8]>` values are recognised and written
//!   as a length and their bytes (postcard's own wire format for them, so
//!   either side may use plain postcard), and so is anything serde
//!   serialises as bytes (`serde_bytes::ByteBuf`, fields marked
//!   `#[serde(with = "serde_bytes")]`) or as a string. A value whose
//!   encoding does not fit its slot *spills*: the encoding goes into a
//!   shared segment of its own and the slot carries a small record naming
//!   it (see [`spill`]); it still takes one slot, in order
//!   with the others. Only a value over the queue's largest spill
//!   ([`QueueConfig::max_spill`], 1 GiB by default) is refused at send
//!   with `TooLarge(value)`. A message that does not decode (or whose
//!   spill segment is missing or malformed) is an error for that message
//!   only ([`GetError::Decode`]); the queue stays usable.
//! * [`PodCodec`] for `T: bytemuck::Pod`: the value's bytes are the
//!   message (slot size = `size_of::<T>()`), no serialisation at all.
//!   [`PodQueue<T>`] names this form.
//!
//! # Sizes
//!
//! [`Queue::new`] is Python's `Queue()`: nothing to choose —
//! [`DEFAULT_CAPACITY`] (1024) slots of [`DEFAULT_SLOT_SIZE`] (1 KiB),
//! larger values spilling. Unlike Python's unbounded queue, `put` blocks
//! once 1024 values wait. [`Queue::bounded(n)`](Queue::bounded) is
//! `Queue(maxsize=n)`: exactly `n` values. `create_default` and
//! `open_or_create_default` are the named forms. The memory is reserved
//! at create (about 1 MiB for the default queue, touched as slots are
//! used); spill segments are made per large value.
//!
//! A spilled value costs a segment of its own: about 35 system calls
//! between sender and receiver (create, size, map, name; open, map,
//! unlink, unmap), 140–270 µs per value on the 2-vCPU VM of
//! BENCHMARKS.md against 0.14 µs for one that fits its slot. Spilling is
//! for the occasional large value; where large values are the common
//! case, choose a slot size that holds them (`Queue::create(name,
//! max_encoded_size, capacity)`).
//!
//! The creator records `T`'s [`TypeTag`] in the segment header (the traced
//! serde shape for [`Postcard`], name, size and alignment for
//! [`PodCodec`]); opening the queue as another type is refused with
//! [`AttachError::TypeMismatch`] rather than decoding garbage. The same
//! type defined in two binaries matches; [`TypeTag::named`] with
//! [`TypeTag::scope`] or [`OpenOptions::type_tag`] sets an explicit tag.
//!
//! # Who keeps a queue connected
//!
//! Python's `get()` blocks while anyone could still `put()`. Here the
//! endpoint registry decides (see [`queue`](crate::queue)): a receive
//! returns `Disconnected` once the sending side was closed, or all its
//! registered processes are gone, or it never had one and the creator is
//! dead. So that a live process that could still send keeps the queue
//! connected, the handle made by `create`/`anonymous`/`in_process`, and
//! every clone of it, registers as a sender *and* a receiver right away:
//! the creating process, and every child that inherits such a handle over
//! `fork` (it counts as its parent until its first use), keeps both sides
//! connected while it lives. `get()` before the first `put()` therefore
//! blocks, and so does a `get()` between one producer's exit and the next
//! one's first `put()`. A handle made by `open`/`from_segment`/`from_mpmc`
//! (another process attaching) registers lazily, as a sender on its first
//! send and a receiver on its first receive, so a process that only reads
//! does not keep the queue connected for the readers, and sees
//! `Disconnected` once every writer and the creator are gone. `close()`
//! disconnects both sides for everyone.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use super::mpmc::{MpmcQueue, MpmcReceiver, MpmcSender, QueueConfig, MARKED};
use super::spill::{self, Spill, SpillRecord};
use super::DrainError;
use crate::error::{AttachError, Error};
use crate::os::Deadline;
use crate::segment::{type_tag, OpenOptions, Segment, SegmentObject, TypeTag};

/// A message could not be turned back into a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("could not decode a queued message: {0}")]
pub struct DecodeError(pub String);

/// How values of `T` are written into and read from slots.
pub trait Codec<T>: Send + Sync + 'static {
    /// The slot size to use when the caller does not choose one (`None`
    /// when the caller must).
    fn natural_slot_size() -> Option<usize>;
    /// Encodes `value` (at most `max` bytes) and passes the bytes to `f`;
    /// `None` when the encoding does not fit.
    fn with_encoded<R>(value: &T, max: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// The length of `value`'s encoding, if the codec can tell without
    /// writing it. A send checks it against the slot size before claiming
    /// a slot; with `None` (the default) a value found too large only while
    /// it is written into a claimed slot is refused all the same, but that
    /// position is given up as skipped (it counts in `len()` until a
    /// receiver passes it).
    fn encoded_len(value: &T) -> Option<usize> {
        let _ = value;
        None
    }
    /// Encodes `value` straight into `buf` (a claimed slot) and returns the
    /// bytes used; `None` when the encoding does not fit. The default goes
    /// through [`with_encoded`](Self::with_encoded) and copies.
    fn encode_into(value: &T, buf: &mut [u8]) -> Option<usize> {
        Self::with_encoded(value, buf.len(), |b| {
            buf[..b.len()].copy_from_slice(b);
            b.len()
        })
    }
    /// Decodes one message.
    fn decode(bytes: &[u8]) -> Result<T, DecodeError>;
    /// The fingerprint of `T` under this codec, recorded by a creator and
    /// checked by an opener (see [`type_tag`]).
    /// The default, [`TypeTag::ANY`], records and checks nothing.
    fn type_tag() -> TypeTag {
        TypeTag::ANY
    }
}

/// postcard encoding for `Serialize + DeserializeOwned` values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Postcard;

/// Raw bytes of a `bytemuck::Pod` value (zero-copy by value).
#[derive(Clone, Copy, Debug, Default)]
pub struct PodCodec;

/// What creating a typed queue with this codec needs, as the
/// [`SegmentObject::Config`] of [`Queue`] and
/// [`JoinableQueue`](super::JoinableQueue): a [`QueueConfig`] (largest
/// encoding, capacity) for [`Postcard`], a capacity for [`PodCodec`]
/// (slots are `size_of::<T>()` bytes).
///
/// ```
/// use shmkit::queue::{PodQueue, Queue, QueueConfig};
/// use shmkit::SegmentObject;
///
/// let words = <Queue<String> as SegmentObject>::anonymous(QueueConfig::new(32, 4))?;
/// let points = <PodQueue<[f32; 2]> as SegmentObject>::anonymous(4)?;
/// assert_eq!((words.capacity(), points.capacity()), (4, 4));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait Sizing<T>: Codec<T> {
    /// The creation parameters.
    type Config;
    /// The byte queue they make.
    fn queue_config(config: Self::Config) -> QueueConfig;
}

impl<T: Serialize + DeserializeOwned + 'static> Sizing<T> for Postcard {
    type Config = QueueConfig;
    fn queue_config(config: QueueConfig) -> QueueConfig {
        config
    }
}

impl<T: Pod + Send + Sync> Sizing<T> for PodCodec {
    type Config = usize;
    fn queue_config(capacity: usize) -> QueueConfig {
        QueueConfig::new(std::mem::size_of::<T>().max(1), capacity)
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for Postcard {
    fn natural_slot_size() -> Option<usize> {
        None
    }

    fn with_encoded<R>(value: &T, max: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        SCRATCH.with(|cell| {
            // A re-entrant call (an encoder sending on a queue) gets its
            // own buffer instead of panicking on the borrow.
            let mut owned;
            let mut guard = cell.try_borrow_mut();
            let buf: &mut Vec<u8> = match guard.as_deref_mut() {
                Ok(b) => b,
                Err(_) => {
                    owned = Vec::new();
                    &mut owned
                }
            };
            if buf.len() < max {
                buf.resize(max, 0);
            }
            let used = postcard::to_slice(value, &mut buf[..max]).ok()?;
            Some(f(used))
        })
    }

    #[inline]
    fn encoded_len(value: &T) -> Option<usize> {
        if let Some(bytes) = byte_payload(value) {
            return Some(varint_len(bytes.len()) + bytes.len());
        }
        postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
            value,
            postcard::ser_flavors::Size::default(),
        )
        .ok()
    }

    fn type_tag() -> TypeTag {
        TypeTag::of_serde::<T>()
    }

    #[inline]
    fn encode_into(value: &T, buf: &mut [u8]) -> Option<usize> {
        if let Some(bytes) = byte_payload(value) {
            return encode_bytes(bytes, buf);
        }
        postcard::to_slice(value, buf).ok().map(|used| used.len())
    }

    #[inline]
    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        let mut out: Option<T> = None;
        if let Some(v) = (&mut out as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
            *v = Some(decode_bytes(bytes)?.to_vec());
        } else if let Some(v) = (&mut out as &mut dyn Any).downcast_mut::<Option<Box<[u8]>>>() {
            *v = Some(decode_bytes(bytes)?.into());
        }
        match out {
            Some(value) => Ok(value),
            None => postcard::from_bytes(bytes).map_err(|e| DecodeError(e.to_string())),
        }
    }
}

/// The bytes of a value the postcard codec copies whole (postcard would
/// write a `Vec<u8>` element by element).
#[inline]
fn byte_payload<T: 'static>(value: &T) -> Option<&[u8]> {
    let any = value as &dyn Any;
    if let Some(v) = any.downcast_ref::<Vec<u8>>() {
        Some(v)
    } else {
        any.downcast_ref::<Box<[u8]>>().map(|b| &b[..])
    }
}

/// Largest LEB128 encoding of a `u64` (postcard's `usize` varint).
const VARINT_MAX: usize = 10;

/// Bytes of the LEB128 encoding of `n`.
#[inline]
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Writes `bytes` as postcard writes a byte sequence (a LEB128 length,
/// then the bytes) into `buf`; `None` if it does not fit.
#[inline]
fn encode_bytes(bytes: &[u8], buf: &mut [u8]) -> Option<usize> {
    let mut n = bytes.len() as u64;
    let mut at = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        *buf.get_mut(at)? = if n == 0 { byte } else { byte | 0x80 };
        at += 1;
        if n == 0 {
            break;
        }
    }
    let end = at.checked_add(bytes.len())?;
    buf.get_mut(at..end)?.copy_from_slice(bytes);
    Some(end)
}

/// Reads a byte sequence written by [`encode_bytes`] (or by postcard for a
/// `Vec<u8>`): the bytes after the length. Trailing bytes are ignored, as
/// `postcard::from_bytes` ignores them.
#[inline]
fn decode_bytes(msg: &[u8]) -> Result<&[u8], DecodeError> {
    let mut len: u64 = 0;
    for (i, &byte) in msg.iter().take(VARINT_MAX).enumerate() {
        let bits = u64::from(byte & 0x7f);
        // The tenth byte may only carry the top bit of a u64.
        if i == VARINT_MAX - 1 && bits > 1 {
            break;
        }
        len |= bits << (7 * i);
        if byte & 0x80 == 0 {
            let body = &msg[i + 1..];
            return usize::try_from(len)
                .ok()
                .and_then(|len| body.get(..len))
                .ok_or_else(|| DecodeError("byte message shorter than its length".into()));
        }
    }
    Err(DecodeError("bad length prefix in a byte message".into()))
}

impl<T: Pod + Send + Sync> Codec<T> for PodCodec {
    fn natural_slot_size() -> Option<usize> {
        Some(std::mem::size_of::<T>().max(1))
    }

    fn with_encoded<R>(value: &T, max: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let bytes = bytemuck::bytes_of(value);
        (bytes.len() <= max).then(|| f(bytes))
    }

    #[inline]
    fn encoded_len(_: &T) -> Option<usize> {
        Some(std::mem::size_of::<T>())
    }

    #[inline]
    fn encode_into(value: &T, buf: &mut [u8]) -> Option<usize> {
        let bytes = bytemuck::bytes_of(value);
        buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(bytes.len())
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        if bytes.len() != std::mem::size_of::<T>() {
            return Err(DecodeError(format!(
                "message is {} bytes, the type needs {}",
                bytes.len(),
                std::mem::size_of::<T>()
            )));
        }
        Ok(bytemuck::pod_read_unaligned(bytes))
    }

    fn type_tag() -> TypeTag {
        TypeTag::of_pod::<T>()
    }
}

/// Why a typed receive failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// Nothing queued (non-blocking calls only).
    #[error("queue is empty")]
    Empty,
    /// Nothing arrived before the timeout.
    #[error("timed out waiting on an empty queue")]
    Timeout,
    /// Empty, and every sender has closed or died.
    #[error("queue is empty and every sender has closed or died")]
    Disconnected,
    /// The queue's shared state is corrupt.
    #[error("queue is corrupt: {0}")]
    Corrupt(&'static str),
    /// This one message did not decode; it was consumed, and the queue
    /// remains usable.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl From<TryRecvError> for GetError {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => GetError::Empty,
            TryRecvError::Disconnected => GetError::Disconnected,
            TryRecvError::Corrupt(c) => GetError::Corrupt(c),
        }
    }
}

impl From<RecvTimeoutError> for GetError {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => GetError::Timeout,
            RecvTimeoutError::Disconnected => GetError::Disconnected,
            RecvTimeoutError::Corrupt(c) => GetError::Corrupt(c),
        }
    }
}

/// A typed MPMC queue between processes (see the [module docs](self)).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shmkit::queue::{Queue, TrySendError};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Job { id: u32, name: String }
///
/// // 4 slots of 64 bytes; larger encodings spill into segments of their own.
/// let q = Queue::<Job>::anonymous(64, 4)?;
/// q.put(Job { id: 1, name: "one".into() }).unwrap();
/// assert_eq!(q.qsize(), 1);
/// assert_eq!(q.get().unwrap(), Job { id: 1, name: "one".into() });
/// let big = Job { id: 2, name: "x".repeat(100_000) };
/// q.put(big).unwrap(); // one slot, like any value
/// assert_eq!(q.get().unwrap().name.len(), 100_000);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Queue<T, C = Postcard> {
    queue: MpmcQueue,
    tx: OnceLock<Result<MpmcSender, ()>>,
    rx: OnceLock<Result<MpmcReceiver, ()>>,
    _t: PhantomData<fn(T) -> T>,
    _c: PhantomData<fn() -> C>,
    /// This process's hold on the spill anchor (`None`: the queue does
    /// not spill). Declared last: released after the queue's memory.
    spill: Option<Arc<Spill>>,
}

/// The zero-copy form: a queue of `bytemuck::Pod` values.
///
/// ```
/// use shmkit::queue::PodQueue;
///
/// let q = PodQueue::<[u64; 2]>::anonymous(8)?;
/// q.put([1, 2]).unwrap();
/// assert_eq!(q.get_nowait().unwrap(), [1, 2]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub type PodQueue<T> = Queue<T, PodCodec>;

impl<T, C> std::fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("queue", &self.queue).finish()
    }
}

impl<T, C> Clone for Queue<T, C> {
    /// Another handle to the same queue. It registers now on each side
    /// this handle is registered on (a new registration of the calling
    /// process), and lazily on the others.
    fn clone(&self) -> Self {
        fn again<E: Clone>(cell: &OnceLock<Result<E, ()>>) -> OnceLock<Result<E, ()>> {
            match cell.get() {
                Some(Ok(e)) => OnceLock::from(Ok(e.clone())),
                _ => OnceLock::new(),
            }
        }
        Queue {
            queue: self.queue.clone(),
            tx: again(&self.tx),
            rx: again(&self.rx),
            _t: PhantomData,
            _c: PhantomData,
            spill: self.spill.clone(),
        }
    }
}

impl<T, C: Sizing<T>> SegmentObject for Queue<T, C> {
    type Config = C::Config;

    fn create_in(name: Option<&str>, config: C::Config) -> Result<Self, Error> {
        let tag = type_tag::creation_tag(C::type_tag());
        type_tag::create_tagged(tag, || MpmcQueue::create_in(name, C::queue_config(config)))
            .map(Self::from_new_mpmc)
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        Self::from_mpmc_with(MpmcQueue::from_segment(seg, opts)?, opts)
    }

    fn segment(&self) -> Option<&Segment> {
        self.queue.segment()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T, Postcard> {
    /// Creates a named queue of `capacity` slots (any number from 1 to
    /// 2^24: it holds exactly that many values) holding encodings of at
    /// most `max_encoded_size` bytes.
    pub fn create(name: &str, max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, QueueConfig::new(max_encoded_size, capacity))
    }

    /// Creates an anonymous queue (shared with children forked or spawned
    /// with it afterwards).
    pub fn anonymous(max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(QueueConfig::new(max_encoded_size, capacity))
    }

    /// Opens the named queue, or creates it if there is none (race-free
    /// between processes; see [`SegmentObject::open_or_create`]).
    pub fn open_or_create(
        name: &str,
        max_encoded_size: usize,
        capacity: usize,
    ) -> Result<Self, Error> {
        let config = QueueConfig::new(max_encoded_size, capacity);
        <Self as SegmentObject>::open_or_create(name, config)
    }

    /// A queue for threads of one process (heap memory).
    pub fn in_process(max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        MpmcQueue::in_process(max_encoded_size, capacity).map(Self::from_new_mpmc)
    }

    /// Python's `Queue()`: an anonymous queue with no sizes to choose —
    /// [`DEFAULT_CAPACITY`] (1024) slots of [`DEFAULT_SLOT_SIZE`] (1 KiB);
    /// a value whose encoding is larger spills into a segment of
    /// its own (up to [`DEFAULT_MAX_SPILL`](super::spill::DEFAULT_MAX_SPILL), 1 GiB; see
    /// [`spill`]). Unlike Python's, `put` blocks once 1024
    /// values wait (use [`bounded`](Self::bounded) for another number).
    ///
    /// ```
    /// use shmkit::Queue;
    ///
    /// let q = Queue::<Vec<u8>>::new()?;
    /// q.put(vec![7; 3 << 20])?; // 3 MiB: no sizing needed
    /// q.put(vec![1, 2])?;
    /// assert_eq!(q.get()?.len(), 3 << 20);
    /// assert_eq!(q.get()?, [1, 2]);
    /// assert_eq!(q.capacity(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<Self, Error> {
        Self::bounded(DEFAULT_CAPACITY)
    }

    /// Python's `Queue(maxsize)`: like [`new`](Self::new) with exactly
    /// `capacity` slots (1 to 2^24).
    ///
    /// ```
    /// use shmkit::queue::{Queue, TrySendError};
    ///
    /// let q = Queue::<String>::bounded(3)?;
    /// for word in ["a", "b", "c"] {
    ///     q.put_nowait(word.to_string()).unwrap();
    /// }
    /// assert!(matches!(q.put_nowait("d".into()), Err(TrySendError::Full(_))));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn bounded(capacity: usize) -> Result<Self, Error> {
        Self::anonymous(DEFAULT_SLOT_SIZE, capacity)
    }

    /// A named queue with the default sizes of [`new`](Self::new).
    ///
    /// ```
    /// use shmkit::Queue;
    ///
    /// let name = format!("doc-qdef-{}", std::process::id());
    /// let q = Queue::<String>::create_default(&name)?;
    /// let other = Queue::<String>::open(&name)?; // what another process does
    /// q.put("x".repeat(10_000))?;
    /// assert_eq!(other.get()?.len(), 10_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_default(name: &str) -> Result<Self, Error> {
        Self::create(name, DEFAULT_SLOT_SIZE, DEFAULT_CAPACITY)
    }

    /// Opens the named queue, or creates it with the default sizes of
    /// [`new`](Self::new) (see [`SegmentObject::open_or_create`]).
    pub fn open_or_create_default(name: &str) -> Result<Self, Error> {
        Self::open_or_create(name, DEFAULT_SLOT_SIZE, DEFAULT_CAPACITY)
    }
}

/// Slots of a queue made by [`Queue::new`] / [`Queue::bounded`] (and the
/// `JoinableQueue` equivalents): values whose encoding is larger spill.
pub const DEFAULT_SLOT_SIZE: usize = 1024;

/// Capacity of a queue made by [`Queue::new`] (Python's `Queue()`):
/// `put` blocks once this many values wait.
pub const DEFAULT_CAPACITY: usize = 1024;

impl<T: Pod + Send + Sync> Queue<T, PodCodec> {
    /// Creates a named queue of `capacity` slots (any number from 1 to
    /// 2^24) of `size_of::<T>()` bytes.
    pub fn create(name: &str, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, capacity)
    }

    /// Creates an anonymous queue (shared with children forked or spawned
    /// with it afterwards).
    pub fn anonymous(capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(capacity)
    }

    /// Opens the named queue, or creates it if there is none (race-free
    /// between processes; see [`SegmentObject::open_or_create`]).
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, capacity)
    }

    /// A queue for threads of one process (heap memory).
    pub fn in_process(capacity: usize) -> Result<Self, Error> {
        MpmcQueue::in_process(Self::pod_slot(), capacity).map(Self::from_new_mpmc)
    }

    fn pod_slot() -> usize {
        std::mem::size_of::<T>().max(1)
    }
}

impl<T, C: Sizing<T>> Queue<T, C> {
    crate::segment::inherent_opens!("queue");
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Wraps an existing byte queue. A queue in a segment must carry `T`'s
    /// type tag (or none; see [`type_tag`]).
    pub fn from_mpmc(queue: MpmcQueue) -> Result<Self, AttachError> {
        Self::from_mpmc_with(queue, &OpenOptions::new())
    }

    /// [`from_mpmc`](Self::from_mpmc), checking the type tag as `opts` say.
    pub(crate) fn from_mpmc_with(
        queue: MpmcQueue,
        opts: &OpenOptions,
    ) -> Result<Self, AttachError> {
        // Sizes first (the more specific error), then the element type.
        if let Some(n) = C::natural_slot_size() {
            if queue.slot_size() != n {
                return Err(AttachError::ParamMismatch {
                    what: "slot size (size_of::<T>())",
                    found: queue.slot_size() as u64,
                    expected: n as u64,
                });
            }
        }
        if let Some(h) = queue.segment().and_then(Segment::header_unchecked) {
            type_tag::check(
                h.type_tag(),
                C::type_tag(),
                opts,
                std::any::type_name::<T>(),
            )?;
        }
        Ok(Self::from_mpmc_unchecked(queue))
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Wraps a queue this process just created: registers on both sides
    /// now (see "Who keeps a queue connected" in the module docs).
    pub(crate) fn from_new_mpmc(queue: MpmcQueue) -> Self {
        let tx = OnceLock::from(queue.sender().map_err(|_| ()));
        let rx = OnceLock::from(queue.receiver().map_err(|_| ()));
        let spill = Self::hold_spill(&queue);
        Queue {
            queue,
            tx,
            rx,
            _t: PhantomData,
            _c: PhantomData,
            spill,
        }
    }

    /// Wraps an attached queue: registers on each side on first use.
    pub(crate) fn from_mpmc_unchecked(queue: MpmcQueue) -> Self {
        let spill = Self::hold_spill(&queue);
        Queue {
            queue,
            tx: OnceLock::new(),
            rx: OnceLock::new(),
            _t: PhantomData,
            _c: PhantomData,
            spill,
        }
    }

    /// Holds the queue's spill anchor, for codecs whose encodings vary in
    /// size and slots that fit a spill record.
    fn hold_spill(queue: &MpmcQueue) -> Option<Arc<Spill>> {
        if C::natural_slot_size().is_some() || queue.slot_size() < spill::RECORD_LEN {
            return None;
        }
        let named = queue
            .segment()
            .and_then(|s| s.name().map(|n| (n, s.file_id())));
        Spill::hold(queue.spill_params(), named).map(Arc::new)
    }

    /// Spills `value` (encoding `len` bytes, more than a slot holds):
    /// `Ok(None)` when it cannot (no spilling here, or over the largest
    /// spill): `TooLarge`.
    fn spill_out(&self, value: &T, len: usize) -> Result<Option<(&Spill, SpillRecord)>, ()> {
        let Some(spill) = self.spill.as_deref() else {
            return Ok(None);
        };
        if len as u64 > spill.max() {
            return Ok(None);
        }
        match spill.write(len, |buf| C::encode_into(value, buf)) {
            Ok(Some(rec)) => Ok(Some((spill, rec))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "queue: could not create a spill segment");
                Err(())
            }
        }
    }

    /// One received message: a value, or a spill record to take.
    #[inline]
    fn unspill(&self, r: Result<T, Unread>) -> Result<T, GetError> {
        match r {
            Ok(v) => Ok(v),
            Err(u) => self.take_unread(u),
        }
    }

    /// The rare half of [`unspill`](Self::unspill), out of the per-message
    /// path.
    #[cold]
    fn take_unread(&self, u: Unread) -> Result<T, GetError> {
        match u {
            Unread::Bad(e) => Err(GetError::Decode(e)),
            Unread::Spilled(rec) => {
                let (uid, max) = self.queue.spill_params();
                if uid == 0 {
                    return Err(GetError::Decode(DecodeError(
                        "spill record in a queue without spilling".into(),
                    )));
                }
                Ok(spill::take_from(uid, max, &rec, C::decode)?)
            }
        }
    }
}

/// A received message that is not (yet) a value.
enum Unread {
    /// The record of a spilled value (a marked slot).
    Spilled(SpillRecord),
    /// A message (or record) that does not decode.
    Bad(DecodeError),
}

/// A message as the receive callback sees it: a decoded value, or the
/// record of a spilled one (marked).
#[inline]
fn read_message<T, C: Codec<T>>(bytes: &[u8], marked: bool) -> Result<T, Unread> {
    if marked {
        Err(SpillRecord::decode(bytes).map_or_else(Unread::Bad, Unread::Spilled))
    } else {
        C::decode(bytes).map_err(Unread::Bad)
    }
}

impl<T, C> Queue<T, C> {
    /// Waits until receivers have taken every queued value, or `timeout`
    /// passes (`None`: no limit), or every receiver is gone with values
    /// still queued: the sending half of a rendezvous, see
    /// [`MpmcQueue::wait_drained`]. (The process that created the queue
    /// counts as a receiver while it holds a handle; see "Who keeps a
    /// queue connected" in the module docs.)
    ///
    /// ```
    /// use shmkit::Queue;
    /// use std::time::Duration;
    ///
    /// let q = Queue::<String>::anonymous(64, 8)?;
    /// q.put("done".to_string())?;
    /// let rx = q.clone();
    /// let consumer = std::thread::spawn(move || rx.get());
    /// q.wait_drained(Some(Duration::from_secs(5)))?;
    /// assert_eq!(consumer.join().unwrap()?, "done");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_drained(&self, timeout: Option<std::time::Duration>) -> Result<(), DrainError> {
        self.queue.wait_drained(timeout)
    }

    /// The underlying byte queue.
    pub fn as_mpmc(&self) -> &MpmcQueue {
        &self.queue
    }

    /// Values queued now (exact when no operation is in flight).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Python's `qsize()`: an alias of [`len`](Self::len).
    pub fn qsize(&self) -> usize {
        self.len()
    }

    /// Python's `empty()`: an alias of [`is_empty`](Self::is_empty).
    pub fn empty(&self) -> bool {
        self.is_empty()
    }

    /// Python's `full()`: an alias of [`is_full`](Self::is_full).
    pub fn full(&self) -> bool {
        self.is_full()
    }

    /// Closes the queue for every process: sends fail, receivers drain
    /// what is queued and then get `Disconnected`.
    pub fn close(&self) {
        self.queue.close();
    }

    pub(crate) fn tx(&self) -> Option<&MpmcSender> {
        self.tx
            .get_or_init(|| self.queue.sender().map_err(|_| ()))
            .as_ref()
            .ok()
    }

    pub(crate) fn rx(&self) -> Option<&MpmcReceiver> {
        self.rx
            .get_or_init(|| self.queue.receiver().map_err(|_| ()))
            .as_ref()
            .ok()
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Sends `value` if a slot is free now. A value whose encoding is
    /// larger than a slot spills (see [`spill`]) and still
    /// takes one slot.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let Some(tx) = self.tx() else {
            return Err(TrySendError::Disconnected(value));
        };
        match C::encoded_len(&value) {
            Some(n) if n > self.queue.slot_size() => {
                let Some(spill) = self.spill.as_deref().filter(|s| n as u64 <= s.max()) else {
                    return Err(TrySendError::TooLarge(value));
                };
                // The spill segment is made once a slot is claimed, so a
                // full (or disconnected) queue costs nothing. Should making
                // it fail, the claimed position is given up as skipped.
                tx.try_send_with(|slot| match spill.write(n, |b| C::encode_into(&value, b)) {
                    Ok(Some(rec)) => Some(rec.encode(slot)? | MARKED),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(error = %e, "queue: could not create a spill segment");
                        None
                    }
                })
                .map_err(|e| restore_try(e, value))
            }
            _ => tx
                .try_send_with(|slot| C::encode_into(&value, slot))
                .map_err(|e| restore_try(e, value)),
        }
    }

    /// Sends `value`, waiting at most until `deadline` (`None` = forever).
    pub fn send_deadline(
        &self,
        value: T,
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<T>> {
        let Some(tx) = self.tx() else {
            return Err(SendTimeoutError::Disconnected(value));
        };
        match C::encoded_len(&value) {
            Some(n) if n > self.queue.slot_size() => {
                let Ok(Some((spill, rec))) = self.spill_out(&value, n) else {
                    return Err(SendTimeoutError::TooLarge(value));
                };
                tx.send_deadline_with(deadline, |slot| Some(rec.encode(slot)? | MARKED))
                    .map_err(|e| {
                        spill.discard(&rec);
                        restore_timeout(e, value)
                    })
            }
            _ => tx
                .send_deadline_with(deadline, |slot| C::encode_into(&value, slot))
                .map_err(|e| restore_timeout(e, value)),
        }
    }

    /// Sends `value`, waiting while the queue is full.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_deadline(value, None).map_err(|e| match e {
            SendTimeoutError::TooLarge(v) => SendError::TooLarge(v),
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => {
                SendError::Disconnected(v)
            }
        })
    }

    /// Sends `value`, waiting at most `timeout` for a free slot.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, Some(Deadline::after(timeout)))
    }

    /// Takes a value if one is queued now.
    pub fn try_recv(&self) -> Result<T, GetError> {
        let Some(rx) = self.rx() else {
            return Err(GetError::Disconnected);
        };
        let r = rx.try_recv_marked_with(read_message::<T, C>)?;
        self.unspill(r)
    }

    /// Takes a value, waiting until `deadline` (`None` = forever).
    pub fn recv_deadline(&self, deadline: Option<Deadline>) -> Result<T, GetError> {
        let Some(rx) = self.rx() else {
            return Err(GetError::Disconnected);
        };
        let r = rx.recv_deadline_marked_with(deadline, read_message::<T, C>)?;
        self.unspill(r)
    }

    /// Takes a value, waiting while the queue is empty (never
    /// [`GetError::Timeout`] or [`GetError::Empty`]).
    pub fn recv(&self) -> Result<T, GetError> {
        self.recv_deadline(None)
    }

    /// Takes a value, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.recv_deadline(Some(Deadline::after(timeout)))
    }

    /// Python's `put(value)`: an alias of [`send`](Self::send).
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.send(value)
    }

    /// Python's `put(value, timeout=…)`: an alias of
    /// [`send_timeout`](Self::send_timeout).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_timeout(value, timeout)
    }

    /// Python's `put_nowait(value)`: an alias of [`try_send`](Self::try_send)
    /// (`Full` is Python's `queue.Full`).
    pub fn put_nowait(&self, value: T) -> Result<(), TrySendError<T>> {
        self.try_send(value)
    }

    /// Python's `get()`: an alias of [`recv`](Self::recv).
    pub fn get(&self) -> Result<T, GetError> {
        self.recv()
    }

    /// Python's `get(timeout=…)`: an alias of
    /// [`recv_timeout`](Self::recv_timeout).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.recv_timeout(timeout)
    }

    /// Python's `get_nowait()`: an alias of [`try_recv`](Self::try_recv)
    /// (`Empty` is Python's `queue.Empty`).
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.try_recv()
    }

    /// A blocking iterator over received values, like std's and
    /// crossbeam's `Receiver::iter`: each `next` waits for a value and the
    /// iteration ends once the queue is disconnected (every sender closed
    /// or died, see the module docs) and drained. It also ends at the first
    /// other error (a corrupt queue, a message that did not decode): use
    /// [`get`](Self::get) where those must be told apart.
    ///
    /// ```
    /// use shmkit::queue::Queue;
    ///
    /// let q = Queue::<u32>::anonymous(16, 4)?;
    /// let tx = q.clone();
    /// tx.put(1).unwrap();
    /// tx.put(2).unwrap();
    /// tx.close(); // no more senders: the iteration ends after the drain
    /// assert_eq!(q.iter().collect::<Vec<_>>(), vec![1, 2]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T, C> {
        Iter { queue: self }
    }

    /// A non-blocking iterator: yields what is queued now and ends at the
    /// first empty poll (or any error, as [`iter`](Self::iter) does).
    ///
    /// ```
    /// use shmkit::queue::Queue;
    ///
    /// let q = Queue::<u32>::anonymous(16, 4)?;
    /// q.put(7).unwrap();
    /// q.put(8).unwrap();
    /// assert_eq!(q.try_iter().collect::<Vec<_>>(), vec![7, 8]);
    /// assert_eq!(q.try_iter().next(), None); // empty now, but still open
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T, C> {
        TryIter { queue: self }
    }
}

/// Blocking iterator over a [`Queue`]'s values; see [`Queue::iter`].
#[derive(Debug)]
pub struct Iter<'a, T, C> {
    queue: &'a Queue<T, C>,
}

impl<T, C: Codec<T>> Iterator for Iter<'_, T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.queue.recv().ok()
    }
}

/// Non-blocking iterator over a [`Queue`]'s values; see
/// [`Queue::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T, C> {
    queue: &'a Queue<T, C>,
}

impl<T, C: Codec<T>> Iterator for TryIter<'_, T, C> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.queue.try_recv().ok()
    }
}

impl<'a, T, C: Codec<T>> IntoIterator for &'a Queue<T, C> {
    type Item = T;
    type IntoIter = Iter<'a, T, C>;
    fn into_iter(self) -> Iter<'a, T, C> {
        self.iter()
    }
}

fn restore_try<T>(e: TrySendError<()>, v: T) -> TrySendError<T> {
    match e {
        TrySendError::Full(()) => TrySendError::Full(v),
        TrySendError::Disconnected(()) => TrySendError::Disconnected(v),
        TrySendError::TooLarge(()) => TrySendError::TooLarge(v),
    }
}

fn restore_timeout<T>(e: SendTimeoutError<()>, v: T) -> SendTimeoutError<T> {
    match e {
        SendTimeoutError::Timeout(()) => SendTimeoutError::Timeout(v),
        SendTimeoutError::Disconnected(()) => SendTimeoutError::Disconnected(v),
        SendTimeoutError::TooLarge(()) => SendTimeoutError::TooLarge(v),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn decode_failure_is_per_message() {
        let q = Queue::<(u32, String)>::in_process(32, 4).unwrap();
        let raw = q.as_mpmc().sender().unwrap();
        raw.send(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(); // not a valid encoding
        q.put((7, "ok".into())).unwrap();
        assert!(matches!(q.get_nowait(), Err(GetError::Decode(_))));
        assert_eq!(q.get_nowait(), Ok((7, "ok".into())));
        assert!(q.empty());
    }

    #[test]
    fn too_large_returns_the_value() {
        let q = Queue::<Vec<u8>>::in_process(8, 2).unwrap();
        match q.put_nowait(vec![1; 20]) {
            Err(TrySendError::TooLarge(v)) => assert_eq!(v, vec![1; 20]),
            other => panic!("{other:?}"),
        }
        q.put_nowait(vec![1, 2]).unwrap();
        q.put_nowait(vec![3]).unwrap();
        assert!(q.full());
        assert!(matches!(q.put_nowait(vec![4]), Err(TrySendError::Full(v)) if v == [4]));
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get().unwrap(), vec![1, 2]);
    }

    /// The byte fast path writes exactly what postcard writes for a
    /// `Vec<u8>`, and reads what postcard wrote.
    #[test]
    fn byte_payloads_match_postcard_wire_format() {
        let mut ours = vec![0u8; 70_100];
        let mut theirs = vec![0u8; 70_100];
        let lens: &[usize] = if cfg!(miri) {
            &[0, 1, 127, 128, 300]
        } else {
            &[0, 1, 127, 128, 300, 16_383, 16_384, 70_000]
        };
        for &len in lens {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let n = <Postcard as Codec<Vec<u8>>>::encode_into(&v, &mut ours).unwrap();
            let want = postcard::to_slice(&v, &mut theirs).unwrap();
            assert_eq!(&ours[..n], want, "len {len}");
            assert_eq!(<Postcard as Codec<Vec<u8>>>::encoded_len(&v), Some(n));
            assert_eq!(<Postcard as Codec<Vec<u8>>>::decode(want), Ok(v.clone()));
            let boxed: Box<[u8]> = v.clone().into();
            let n = <Postcard as Codec<Box<[u8]>>>::encode_into(&boxed, &mut ours).unwrap();
            assert_eq!(&ours[..n], want, "boxed len {len}");
            assert_eq!(<Postcard as Codec<Box<[u8]>>>::decode(want), Ok(boxed));
            // One byte short of room: refused, not truncated.
            assert_eq!(
                <Postcard as Codec<Vec<u8>>>::encode_into(&v, &mut ours[..want.len() - 1]),
                None
            );
        }
    }

    /// Hostile byte messages are a decode error for that message: a length
    /// past the end, an unterminated or overlong length prefix.
    #[test]
    fn malformed_byte_messages_are_decode_errors() {
        let q = Queue::<Vec<u8>>::in_process(16, 8).unwrap();
        let raw = q.as_mpmc().sender().unwrap();
        for bad in [
            &[5u8, 1, 2][..],
            &[0x80][..],
            &[],
            &[0xff; 10][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
        ] {
            raw.send(bad).unwrap();
            assert!(
                matches!(q.get_nowait(), Err(GetError::Decode(_))),
                "{bad:?}"
            );
        }
        q.put(vec![9; 3]).unwrap();
        assert_eq!(q.get_nowait(), Ok(vec![9; 3]));
    }

    /// A too-large value is refused before it claims a slot (capacity
    /// stays exact). With a codec that cannot size values up front, a value
    /// found too large while written into its slot, or whose encoder
    /// panics, gives that one position up as skipped: the value comes back
    /// (or the panic propagates), the receiver passes the position, and
    /// nothing wedges.
    #[test]
    fn failed_encode_in_the_slot_skips_it() {
        let q = Queue::<String>::in_process(8, 2).unwrap();
        let long = "x".repeat(20);
        assert!(matches!(q.put_nowait(long.clone()), Err(TrySendError::TooLarge(v)) if v == long));
        assert!(matches!(
            q.send_timeout(long.clone(), Duration::from_secs(5)),
            Err(SendTimeoutError::TooLarge(v)) if v == long
        ));
        q.put_nowait("a".into()).unwrap();
        q.put_nowait("b".into()).unwrap();
        assert!(q.full());
        assert_eq!(q.get_nowait(), Ok("a".into()));
        assert_eq!(q.get_nowait(), Ok("b".into()));

        /// 0 panics mid-encode, 1 does not fit, others are one byte.
        struct Flaky;
        impl Codec<u8> for Flaky {
            fn natural_slot_size() -> Option<usize> {
                Some(1)
            }
            fn with_encoded<R>(v: &u8, _: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
                Some(f(&[*v]))
            }
            fn encode_into(v: &u8, buf: &mut [u8]) -> Option<usize> {
                buf[0] = 0xee; // a partial write the receiver must never see
                match v {
                    0 => panic!("encoder panicked"),
                    1 => None,
                    _ => {
                        buf[0] = *v;
                        Some(1)
                    }
                }
            }
            fn decode(b: &[u8]) -> Result<u8, DecodeError> {
                Ok(b[0])
            }
        }
        let f = Queue::<u8, Flaky>::from_mpmc(MpmcQueue::in_process(1, 2).unwrap()).unwrap();
        f.put_nowait(5).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.put_nowait(0)));
        assert!(r.is_err(), "the encoder's panic propagates");
        assert_eq!(f.get_nowait(), Ok(5));
        assert!(matches!(f.put_nowait(1), Err(TrySendError::TooLarge(1))));
        // Both refused positions hold a slot until a receiver passes them.
        assert_eq!(f.len(), 2);
        assert!(matches!(f.get_nowait(), Err(GetError::Empty)));
        assert_eq!(f.len(), 0);
        for v in 2..40u8 {
            f.put_nowait(v).unwrap();
            assert_eq!(f.get_nowait(), Ok(v));
        }
        assert!(matches!(f.get_nowait(), Err(GetError::Empty)));
        assert!(f.is_empty());
    }

    #[test]
    fn pod_values_round_trip_between_threads() {
        let q = PodQueue::<[u32; 3]>::in_process(4).unwrap();
        assert_eq!(q.as_mpmc().slot_size(), 12);
        let n = if cfg!(miri) { 20 } else { 5_000 };
        std::thread::scope(|s| {
            let q2 = q.clone();
            s.spawn(move || {
                for i in 0..n {
                    q2.put([i, i + 1, i + 2]).unwrap();
                }
            });
            for i in 0..n {
                assert_eq!(q.get().unwrap(), [i, i + 1, i + 2]);
            }
        });
        assert!(matches!(
            Queue::<u64, PodCodec>::from_mpmc(MpmcQueue::in_process(4, 2).unwrap()),
            Err(AttachError::ParamMismatch { .. })
        ));
    }

    /// `Queue(3)` holds exactly 3 values: the 4th `put_nowait` is `Full`.
    #[test]
    fn capacity_is_exact() {
        let q = Queue::<u32>::in_process(8, 3).unwrap();
        for i in 0..3 {
            q.put_nowait(i).unwrap();
        }
        assert!(q.full());
        assert!(matches!(q.put_nowait(3), Err(TrySendError::Full(3))));
        assert_eq!(q.qsize(), 3);
        assert_eq!(q.get_nowait(), Ok(0));
        q.put_nowait(3).unwrap();
        assert_eq!(
            (1..4).map(|_| q.get().unwrap()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    /// Regression (issue 14): a writer that attached by itself, sent and
    /// left must not make the queue read as disconnected while the
    /// creating handle, which could still send, is alive. Returned
    /// `Disconnected` before the creator handle registered eagerly.
    #[test]
    fn creator_handle_keeps_the_queue_connected() {
        let q = Queue::<u32>::in_process(8, 4).unwrap();
        {
            let writer = Queue::<u32>::from_mpmc(q.as_mpmc().clone()).unwrap();
            writer.put(7).unwrap();
        }
        assert_eq!(q.get(), Ok(7));
        assert_eq!(
            q.get_timeout(Duration::from_millis(20)),
            Err(GetError::Timeout)
        );
        assert_eq!(q.get_nowait(), Err(GetError::Empty));
        // A clone is the creator's too; close() still disconnects everyone.
        let q2 = q.clone();
        drop(q);
        assert_eq!(q2.get_nowait(), Err(GetError::Empty));
        q2.close();
        assert_eq!(q2.get_nowait(), Err(GetError::Disconnected));
    }

    /// An attached handle that only reads does not keep the queue
    /// connected: once the creator's handles are gone, it drains and then
    /// sees `Disconnected`.
    #[test]
    fn attached_reader_sees_disconnect_when_writers_are_gone() {
        let q = Queue::<u32>::in_process(8, 4).unwrap();
        let reader = Queue::<u32>::from_mpmc(q.as_mpmc().clone()).unwrap();
        q.put(1).unwrap();
        drop(q);
        assert_eq!(reader.get(), Ok(1));
        assert_eq!(reader.get(), Err(GetError::Disconnected));
    }

    /// Values larger than a slot spill: they arrive intact, in order with
    /// small ones, each taking one slot; their segments are gone once
    /// received.
    #[cfg(not(miri))]
    #[test]
    fn large_values_spill_in_order() {
        let q = Queue::<Vec<u8>>::in_process(64, 3).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31) as u8).collect();
        q.put(vec![1]).unwrap();
        q.put(big.clone()).unwrap();
        q.put_nowait(vec![2; 10]).unwrap();
        assert_eq!(q.qsize(), 3);
        // Full: a spilling send waits and times out like any other, and
        // leaves no segment behind.
        assert!(matches!(
            q.put_timeout(big.clone(), Duration::from_millis(10)),
            Err(SendTimeoutError::Timeout(v)) if v == big
        ));
        assert!(matches!(
            q.put_nowait(big.clone()),
            Err(TrySendError::Full(_))
        ));
        let uid = q.as_mpmc().spill_params().0;
        assert_eq!(spill_files(uid).len(), 1);
        assert_eq!(q.get(), Ok(vec![1]));
        assert_eq!(q.get(), Ok(big));
        assert_eq!(q.get(), Ok(vec![2; 10]));
        assert!(spill_files(uid).is_empty());
        // Non-blocking spills: one slot each; closed is Disconnected, and
        // neither a full nor a closed queue leaves a segment.
        q.put_nowait(vec![8; 5000]).unwrap();
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get_nowait(), Ok(vec![8; 5000]));
        q.close();
        assert!(
            matches!(q.put_nowait(vec![8; 5000]), Err(TrySendError::Disconnected(v)) if v.len() == 5000)
        );
        assert!(spill_files(uid).is_empty());
        let s = "é".repeat(40_000);
        let strings = Queue::<(u32, String)>::in_process(32, 2).unwrap();
        strings.put((9, s.clone())).unwrap();
        assert_eq!(strings.get(), Ok((9, s)));
    }

    #[cfg(not(miri))]
    fn spill_files(uid: u64) -> Vec<String> {
        crate::os::shm_names::list_names()
            .unwrap()
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| n.starts_with(&format!("{}-", crate::segment::gc::spill_anchor_name(uid))))
            .collect()
    }

    /// The largest spill is refused with `TooLarge` before anything is
    /// created (tested with a small configured maximum).
    #[cfg(not(miri))]
    #[test]
    fn over_the_largest_spill_is_too_large() {
        let cfg = QueueConfig::new(32, 4).with_max_spill(1000);
        let q = <Queue<Vec<u8>> as SegmentObject>::anonymous(cfg).unwrap();
        let uid = q.as_mpmc().spill_params().0;
        assert!(
            matches!(q.put_nowait(vec![5; 2000]), Err(TrySendError::TooLarge(v)) if v.len() == 2000)
        );
        assert!(matches!(q.put(vec![5; 2000]), Err(SendError::TooLarge(_))));
        assert!(spill_files(uid).is_empty());
        q.put(vec![5; 900]).unwrap(); // spills: 902 bytes <= 1000
        assert_eq!(q.get().unwrap().len(), 900);
        // No spilling at all: the old behaviour.
        let off = QueueConfig::new(32, 4).with_max_spill(0);
        let q = <Queue<Vec<u8>> as SegmentObject>::anonymous(off).unwrap();
        assert!(matches!(
            q.put_nowait(vec![5; 40]),
            Err(TrySendError::TooLarge(_))
        ));
    }

    /// A corrupt spill record, a record naming a missing segment, or a
    /// truncated segment is `Decode` for that message; the next arrives.
    #[cfg(not(miri))]
    #[test]
    fn bad_spills_are_decode_errors_for_one_message() {
        let q = Queue::<Vec<u8>>::in_process(64, 8).unwrap();
        let (uid, _) = q.as_mpmc().spill_params();
        let tx = q.as_mpmc().sender().unwrap();
        // A marked message that is not a record.
        tx.try_send_with(|slot| {
            slot[..3].copy_from_slice(b"abc");
            Some(3 | MARKED)
        })
        .unwrap();
        q.put(vec![1]).unwrap();
        assert!(matches!(q.get_nowait(), Err(GetError::Decode(_))));
        assert_eq!(q.get_nowait(), Ok(vec![1]));
        // A record whose segment was deleted.
        q.put(vec![3; 1000]).unwrap();
        for name in spill_files(uid) {
            crate::Segment::unlink(&name).unwrap();
        }
        q.put(vec![4]).unwrap();
        assert!(matches!(q.get_nowait(), Err(GetError::Decode(_))));
        assert_eq!(q.get_nowait(), Ok(vec![4]));
        // A record that claims more than its segment holds, or more than
        // the largest spill.
        for len in [5_000u64, u64::MAX] {
            q.put(vec![6; 1000]).unwrap();
            let [name] = &spill_files(uid)[..] else {
                panic!("one spill")
            };
            let (_, Some((pid, seq))) = crate::segment::gc::parse_spill_name(name).unwrap() else {
                panic!("{name}")
            };
            // Take the real record out and put a lying one in its place.
            let rx = q.as_mpmc().receiver().unwrap();
            rx.try_recv_marked_with(|_, marked| assert!(marked))
                .unwrap();
            tx.try_send_with(|slot| {
                SpillRecord { pid, seq, len }
                    .encode(slot)
                    .map(|n| n | MARKED)
            })
            .unwrap();
            q.put(vec![7]).unwrap();
            assert!(matches!(q.get_nowait(), Err(GetError::Decode(_))));
            assert_eq!(q.get_nowait(), Ok(vec![7]));
            let _ = crate::Segment::unlink(name);
        }
        assert!(spill_files(uid).is_empty());
    }

    /// Dropping the last handle of a queue removes spills nobody took.
    #[cfg(not(miri))]
    #[test]
    fn dropping_the_queue_removes_its_spills() {
        let q = Queue::<String>::new().unwrap();
        let uid = q.as_mpmc().spill_params().0;
        q.put("z".repeat(5000)).unwrap();
        q.put("z".repeat(6000)).unwrap();
        let q2 = q.clone();
        drop(q);
        assert_eq!(spill_files(uid).len(), 2);
        assert_eq!(q2.get().unwrap().len(), 5000);
        drop(q2);
        assert!(spill_files(uid).is_empty());
        let anchor = crate::segment::gc::spill_anchor_name(uid);
        assert_eq!(crate::os::shm_names::name_id(&anchor).unwrap(), None);
    }

    #[test]
    fn iterators_drain_then_stop() {
        let q = Queue::<u64>::in_process(16, 8).unwrap();
        for i in 0..5 {
            q.put(i).unwrap();
        }
        let first_two: Vec<u64> = q.try_iter().take(2).collect();
        assert_eq!(first_two, vec![0, 1]);
        q.close();
        let mut rest = Vec::new();
        for v in &q {
            rest.push(v);
        }
        assert_eq!(rest, vec![2, 3, 4]);
        assert_eq!(q.try_iter().next(), None);
    }
}
