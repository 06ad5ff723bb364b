//! [`MpmcQueue`], the public handle of a queue: its backing memory
//! (segment, heap block or loom objects) and the registration that every
//! sender and receiver holds ([`Endpoint`]).

use std::sync::atomic::{AtomicU64 as LocalU64, Ordering as LocalOrdering};
use std::sync::Arc;

#[cfg(not(loom))]
use super::raw::SlotMeta;
use super::raw::{check_params, lap_for, layout, Layout, QueueHeader, RawQueue};
use super::raw::{LAYOUT_TAG, MAX_PEERS};
use super::{MpmcReceiver, MpmcSender};
use crate::error::{AttachError, Error};
use crate::os;
use crate::primitives::AtomicU64;
use crate::queue::peers::{LivenessGate, PeerSlot, PeerTable, PeersFull, Registration};
use crate::segment::{
    attach_object, create_object, HeaderInfo, ObjectKind, OpenOptions, Region, Segment,
    SegmentObject,
};
use crate::sync::Notifier;

/// Alignment a body needs: that of its header (128-byte lines).
const BODY_ALIGN: usize = std::mem::align_of::<QueueHeader>();

/// Backing memory of a queue.
enum Storage {
    Segment(Segment),
    /// Memory another crate manages (`MpmcQueue::from_raw`).
    #[cfg(not(loom))]
    Borrowed,
    #[cfg(not(loom))]
    Heap(#[allow(dead_code)] HeapBlock),
    #[cfg(loom)]
    Loom {
        _hdr: Box<QueueHeader>,
        _senders: Vec<PeerSlot>,
        _receivers: Vec<PeerSlot>,
        _meta: Vec<super::raw::SlotMeta>,
        _payload: Vec<u64>,
    },
}

/// A zeroed, `BODY_ALIGN`-aligned heap block laid out exactly like a segment body.
#[cfg(not(loom))]
struct HeapBlock {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

// SAFETY: the block is plain memory owned by this value; all concurrent
// access to it goes through atomics or stamp-ordered payload copies.
#[cfg(not(loom))]
unsafe impl Send for HeapBlock {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl Sync for HeapBlock {}

#[cfg(not(loom))]
impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `in_process_kind` with exactly this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// The queue's algorithm view and the memory it points into.
pub(super) struct Shared {
    pub(super) raw: RawQueue,
    /// The typed queue's spill uid (0: none) and largest spill, from
    /// header parameters 4 and 5 (see `queue::spill`).
    spill: (u64, u64),
    // Declared last: dropped after `raw`, whose pointers point into it.
    storage: Storage,
}

impl Shared {
    /// Initialises a zeroed body laid out by `l`.
    ///
    /// # Safety
    /// `base` must be valid for `l.size` bytes, `BODY_ALIGN`-aligned, zeroed, and
    /// unused by anyone else until this returns.
    #[cfg(not(loom))]
    unsafe fn init_body(base: *mut u8, l: &Layout, capacity: usize) {
        // SAFETY: the caller guarantees the block; offsets come from the
        // layout, which keeps every object in bounds and aligned.
        unsafe {
            (base as *mut QueueHeader).write(QueueHeader::new());
            for i in 0..MAX_PEERS {
                (base.add(l.senders) as *mut PeerSlot)
                    .add(i)
                    .write(PeerSlot::default());
                (base.add(l.receivers) as *mut PeerSlot)
                    .add(i)
                    .write(PeerSlot::default());
            }
            for i in 0..capacity {
                (base.add(l.slots + i * l.stride) as *mut SlotMeta).write(SlotMeta::new(i));
            }
        }
    }

    /// Views an initialised body.
    ///
    /// # Safety
    /// `base` must point at a body laid out by `l` (initialised, or valid
    /// for any bytes since everything but payload is atomics) that outlives
    /// the returned value.
    #[cfg(not(loom))]
    unsafe fn view(
        base: *mut u8,
        l: &Layout,
        slot_size: usize,
        capacity: usize,
        creator: u32,
    ) -> RawQueue {
        // SAFETY: offsets are within the body per the caller's contract.
        unsafe {
            RawQueue {
                hdr: base as *const QueueHeader,
                senders: base.add(l.senders) as *const PeerSlot,
                receivers: base.add(l.receivers) as *const PeerSlot,
                peers: MAX_PEERS,
                meta: base.add(l.slots),
                meta_stride: l.stride,
                payload: base.add(l.slots + super::raw::SLOT_META_SIZE),
                payload_stride: l.stride,
                lap: lap_for(capacity),
                capacity,
                slot_size,
                creator,
            }
        }
    }
}

impl Shared {
    /// The notifiers a receive / a send waits on.
    pub(super) fn notifiers(&self) -> (&Notifier, &Notifier) {
        let c = self.raw.ctl();
        (&c.not_empty, &c.not_full)
    }

    /// Select's readiness hook: `Some(true)` if a receive (`send` false)
    /// or a send (`send` true) would not find the queue empty / full,
    /// `Some(false)` if it would report `Disconnected` (either side closed;
    /// with `liveness`, the other side gone by the registry's rule, after
    /// recovering a dead peer's stuck slot), `None` if it would block.
    /// Loads only, unless `liveness`.
    pub(super) fn readiness(&self, send: bool, liveness: bool) -> Option<bool> {
        let raw = &self.raw;
        let ready = |raw: &RawQueue| {
            if send {
                raw.tail_free()
            } else {
                raw.head_ready()
            }
        };
        if ready(raw) {
            return Some(true);
        }
        if raw.senders().is_closed() || raw.receivers().is_closed() {
            return Some(false);
        }
        if liveness {
            let recovered = if send {
                raw.recover_tail()
            } else {
                raw.recover_head()
            };
            if recovered && ready(raw) {
                return Some(true);
            }
            let other = if send { raw.receivers() } else { raw.senders() };
            if other.is_disconnected() {
                return Some(ready(raw));
            }
        }
        None
    }
}

/// A bounded MPMC queue of byte messages (each at most `slot_size`
/// bytes) in a shared segment. Send and receive through endpoints:
/// [`sender`](Self::sender) and [`receiver`](Self::receiver). See the
/// [module docs](super) for the algorithm and what survives a `SIGKILL`.
///
/// Disconnection follows the endpoint registry's rule (see
/// [`queue`](crate::queue)): a side with registered members that all
/// closed, dropped or died reads as disconnected until some process
/// registers a new endpoint; a side that never had one reads as
/// disconnected once the creating process is dead. So that workers
/// starting late do not see a transient `Disconnected`, create the
/// endpoints in the parent before forking (children inherit them and
/// register on first use) and keep them until the workers are done.
///
/// ```
/// use shmkit::queue::MpmcQueue;
///
/// let q = MpmcQueue::anonymous(64, 5)?; // 5 slots of up to 64 bytes
/// let tx = q.sender()?;
/// let rx = q.receiver()?;
/// tx.try_send(b"hello").unwrap();
/// let mut buf = Vec::new();
/// rx.recv(&mut buf).unwrap();
/// assert_eq!(buf, b"hello");
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MpmcQueue {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for MpmcQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpmcQueue")
            .field("slot_size", &self.slot_size())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// What creating a queue of byte messages needs: how large a message may
/// be and how many the queue holds. Named fields, so the two numbers
/// cannot be swapped by accident.
///
/// ```
/// use shmkit::queue::{MpmcQueue, QueueConfig};
/// use shmkit::SegmentObject;
///
/// let cfg = QueueConfig::new(64, 3); // 3 messages of up to 64 bytes
/// assert_eq!((cfg.slot_size, cfg.capacity), (64, 3));
/// let q = <MpmcQueue as SegmentObject>::anonymous(cfg)?;
/// assert_eq!(q.capacity(), 3);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The largest message, in bytes (for a typed queue: the largest
    /// encoding of a value kept in the slot itself; larger ones spill).
    pub slot_size: usize,
    /// How many messages the queue holds (1 to 2^24).
    pub capacity: usize,
    /// The largest encoding a typed queue sends through a spill segment
    /// (see [`queue::spill`](crate::queue::spill)); larger values are
    /// refused with `TooLarge`. Default
    /// [`DEFAULT_MAX_SPILL`](crate::queue::spill::DEFAULT_MAX_SPILL); 0
    /// turns spilling off. Byte queues ignore it.
    pub max_spill: u64,
}

impl QueueConfig {
    /// `capacity` messages of up to `slot_size` bytes each (typed queues
    /// spill larger values, up to the default maximum).
    pub fn new(slot_size: usize, capacity: usize) -> Self {
        Self {
            slot_size,
            capacity,
            max_spill: crate::queue::spill::DEFAULT_MAX_SPILL,
        }
    }

    /// The same with the largest spilled encoding set to `max` bytes (0:
    /// no spilling, a value larger than a slot is `TooLarge`).
    ///
    /// ```
    /// use shmkit::queue::{Queue, QueueConfig, TrySendError};
    /// use shmkit::SegmentObject;
    ///
    /// let cfg = QueueConfig::new(64, 4).with_max_spill(1000);
    /// let q = <Queue<Vec<u8>> as SegmentObject>::anonymous(cfg)?;
    /// assert!(matches!(q.put_nowait(vec![0; 2000]), Err(TrySendError::TooLarge(_))));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn with_max_spill(mut self, max: u64) -> Self {
        self.max_spill = max;
        self
    }
}

impl SegmentObject for MpmcQueue {
    type Config = QueueConfig;

    fn create_in(name: Option<&str>, config: QueueConfig) -> Result<Self, Error> {
        Self::create_kind(name, ObjectKind::MPMC_QUEUE, config)
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        Self::attach_kind(seg, ObjectKind::MPMC_QUEUE, opts)
    }

    fn segment(&self) -> Option<&Segment> {
        match &self.shared.storage {
            Storage::Segment(s) => Some(s),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

#[cfg(not(loom))]
impl MpmcQueue {
    /// Version of the queue's body layout and position encoding. A crate
    /// that embeds queues ([`init_in`](Self::init_in)) records it in its
    /// own header and refuses memory written under another version.
    pub const LAYOUT_VERSION: u32 = LAYOUT_TAG as u32;

    /// Alignment the memory for an embedded queue needs.
    pub const EMBED_ALIGN: usize = BODY_ALIGN;

    /// Bytes of caller-managed memory a queue of `capacity` slots of
    /// `slot_size` bytes needs ([`init_in`](Self::init_in)); the same
    /// limits as [`create`](Self::create).
    ///
    /// The layout (`#[repr(C)]`, little-endian, offsets from the start of
    /// the memory): 0 `tail: u64` (a 128-byte line); 128 `head: u64` (a
    /// line); 256 the control line (`not_empty`, `not_full`, `all_done`
    /// notifiers of 8 bytes each, a departure counter, the sticky
    /// `full_fence` word, the unfinished-task counter, the sender and
    /// receiver registry headers); 384 64 sender
    /// registry slots of 8 bytes, then 64 receiver slots; then `capacity`
    /// slots of `16 + slot_size` rounded up to 8 bytes (`stamp: u64`,
    /// `len: u32`, padding, payload); the total is rounded up to
    /// [`EMBED_ALIGN`](Self::EMBED_ALIGN). The module docs describe the
    /// algorithm, SAFETY.md who writes what.
    ///
    /// ```
    /// use shmkit::queue::MpmcQueue;
    /// assert_eq!(MpmcQueue::embedded_size(10, 3)?, 1536);
    /// assert!(MpmcQueue::embedded_size(10, 0).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn embedded_size(slot_size: usize, capacity: usize) -> Result<usize, Error> {
        Ok(layout(slot_size, capacity, MAX_PEERS)?.size)
    }

    /// Initialises an empty queue in memory another crate manages, for
    /// [`from_raw`](Self::from_raw) to view from any process mapping it.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes and not in use by
    /// anyone (no process has a queue view of it) during the call. Size
    /// and alignment are checked: `len` at least
    /// [`embedded_size`](Self::embedded_size), `ptr` aligned to
    /// [`EMBED_ALIGN`](Self::EMBED_ALIGN).
    pub unsafe fn init_in(
        ptr: *mut u8,
        len: usize,
        slot_size: usize,
        capacity: usize,
    ) -> Result<(), Error> {
        let l = layout(slot_size, capacity, MAX_PEERS)?;
        if len < l.size || ptr.is_null() || ptr as usize % BODY_ALIGN != 0 {
            return Err(Error::InvalidArgument(
                "embedded queue memory too small or misaligned",
            ));
        }
        // SAFETY: the caller guarantees `ptr` is valid for `len >= l.size`
        // bytes and unused; it is BODY_ALIGN-aligned (checked). Zeroed
        // first, as `init_body` expects.
        unsafe {
            std::ptr::write_bytes(ptr, 0, l.size);
            Shared::init_body(ptr, &l, capacity);
        }
        Ok(())
    }

    /// Views a queue that [`init_in`](Self::init_in) initialised (in this
    /// or another process) in caller-managed memory; take senders and
    /// receivers from it as from a segment's queue.
    ///
    /// Everything read from the memory is checked as on any attach (bad
    /// registry words here, bad stamps or lengths as `Corrupt` from a
    /// receive), never out-of-bounds access. The embedding crate owns the
    /// memory's lifetime; no creator is recorded, so the registry rule
    /// "nobody ever joined and the creator is dead" does not apply.
    ///
    /// # Safety
    /// `ptr` must stay mapped, readable and writable for `len` bytes for
    /// as long as the returned queue and every endpoint taken from it are
    /// used, and hold a queue of these parameters made by `init_in` (any
    /// bytes are memory-safe to view; wrong ones give `Corrupt`).
    ///
    /// ```
    /// use shmkit::queue::MpmcQueue;
    ///
    /// let len = MpmcQueue::embedded_size(16, 4)?;
    /// let layout = std::alloc::Layout::from_size_align(len, MpmcQueue::EMBED_ALIGN)?;
    /// // SAFETY: a fresh allocation of `len` bytes, freed after the last use.
    /// let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    /// // SAFETY: `ptr` is ours, aligned and `len` bytes long.
    /// unsafe { MpmcQueue::init_in(ptr, len, 16, 4)? };
    /// {
    ///     // SAFETY: as above; the queue is dropped before the memory.
    ///     let q = unsafe { MpmcQueue::from_raw(ptr, len, 16, 4)? };
    ///     let (tx, rx) = (q.sender()?, q.receiver()?);
    ///     tx.send(b"embedded")?;
    ///     let mut buf = Vec::new();
    ///     rx.recv(&mut buf)?;
    ///     assert_eq!(buf, b"embedded");
    /// }
    /// // SAFETY: allocated above with this layout; no view is left.
    /// unsafe { std::alloc::dealloc(ptr, layout) };
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_raw(
        ptr: *mut u8,
        len: usize,
        slot_size: usize,
        capacity: usize,
    ) -> Result<Self, AttachError> {
        let l = layout(slot_size, capacity, MAX_PEERS)
            .map_err(|_| AttachError::Corrupt("embedded queue parameters out of range"))?;
        if len < l.size {
            return Err(AttachError::TooSmall {
                actual: len as u64,
                required: l.size as u64,
            });
        }
        if ptr.is_null() || ptr as usize % BODY_ALIGN != 0 {
            return Err(AttachError::Corrupt("embedded queue memory misaligned"));
        }
        // SAFETY: the caller guarantees a body laid out by `l` that
        // outlives the view; everything but payload is atomics.
        let raw = unsafe { Shared::view(ptr, &l, slot_size, capacity, 0) };
        let q = MpmcQueue {
            shared: Arc::new(Shared {
                raw,
                spill: (0, 0),
                storage: Storage::Borrowed,
            }),
        };
        q.shared.raw.senders().validate()?;
        q.shared.raw.receivers().validate()?;
        Ok(q)
    }
}

impl MpmcQueue {
    /// Creates a named queue of `capacity` slots (any number from 1 to
    /// 2^24; it holds exactly that many messages) of up to `slot_size`
    /// bytes each.
    pub fn create(name: &str, slot_size: usize, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, QueueConfig::new(slot_size, capacity))
    }

    /// Creates an anonymous queue, shared with children forked afterwards.
    pub fn anonymous(slot_size: usize, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(QueueConfig::new(slot_size, capacity))
    }

    /// Opens the named queue, or creates it if there is none (race-free
    /// between processes; see [`SegmentObject::open_or_create`]).
    pub fn open_or_create(name: &str, slot_size: usize, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, QueueConfig::new(slot_size, capacity))
    }

    crate::segment::inherent_opens!("queue");

    /// A queue in ordinary heap memory, for threads of one process (no
    /// segment, no syscalls beyond futex; runs under Miri and loom).
    pub fn in_process(slot_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::in_process_kind(
            ObjectKind::MPMC_QUEUE,
            QueueConfig::new(slot_size, capacity),
        )
    }

    pub(crate) fn create_kind(
        name: Option<&str>,
        kind: ObjectKind,
        config: QueueConfig,
    ) -> Result<Self, Error> {
        let QueueConfig {
            slot_size,
            capacity,
            max_spill,
        } = config;
        let l = layout(slot_size, capacity, MAX_PEERS)?;
        let spill = (crate::queue::spill::new_uid(), max_spill);
        let params = [
            slot_size as u64,
            capacity as u64,
            MAX_PEERS as u64,
            LAYOUT_TAG,
            spill.0,
            spill.1,
        ];
        let (seg, body) = create_object(name, kind, &params, l.size, |body| {
            if body.len() < l.size || body.as_ptr() as usize % BODY_ALIGN != 0 {
                return Err(Error::InvalidArgument("segment body misaligned"));
            }
            #[cfg(not(loom))]
            // SAFETY: the fresh body is zeroed, aligned (checked),
            // l.size bytes long and unpublished.
            unsafe {
                Shared::init_body(body.as_ptr(), &l, capacity)
            };
            Ok(())
        })?;
        Ok(Self::from_parts(
            seg,
            body,
            l,
            slot_size,
            capacity,
            os::current_pid(),
            spill,
        ))
    }

    #[cfg_attr(loom, allow(unused_variables, unreachable_code))]
    fn from_parts(
        seg: Segment,
        body: Region,
        l: Layout,
        slot_size: usize,
        capacity: usize,
        creator: u32,
        spill: (u64, u64),
    ) -> Self {
        #[cfg(loom)]
        unimplemented!("segments are not available under loom; use in_process");
        #[cfg(not(loom))]
        {
            // SAFETY: the body was laid out by `l` (checked by the caller)
            // and `seg`, stored next to the view, keeps it mapped.
            let raw = unsafe { Shared::view(body.as_ptr(), &l, slot_size, capacity, creator) };
            MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
                    spill,
                    storage: Storage::Segment(seg),
                }),
            }
        }
    }

    pub(crate) fn attach_kind(
        seg: Segment,
        kind: ObjectKind,
        opts: &OpenOptions,
    ) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, kind, opts)?;
        Self::finish_attach(seg, info, body)
    }

    fn finish_attach(seg: Segment, info: HeaderInfo, body: Region) -> Result<Self, AttachError> {
        let [slot_size, capacity, peers, tag, uid, max_spill, ..] = info.params;
        if tag != LAYOUT_TAG {
            return Err(AttachError::ParamMismatch {
                what: "mpmc layout tag",
                found: tag,
                expected: LAYOUT_TAG,
            });
        }
        if peers != MAX_PEERS as u64 {
            return Err(AttachError::ParamMismatch {
                what: "peer slots per side",
                found: peers,
                expected: MAX_PEERS as u64,
            });
        }
        let slot_size = usize::try_from(slot_size)
            .map_err(|_| AttachError::Corrupt("slot size out of range"))?;
        let capacity =
            usize::try_from(capacity).map_err(|_| AttachError::Corrupt("capacity out of range"))?;
        check_params(slot_size, capacity).map_err(AttachError::Corrupt)?;
        let l = layout(slot_size, capacity, MAX_PEERS)
            .map_err(|_| AttachError::Corrupt("queue layout overflows"))?;
        if body.len() != l.size {
            return Err(AttachError::TooSmall {
                actual: body.len() as u64,
                required: l.size as u64,
            });
        }
        if body.as_ptr() as usize % BODY_ALIGN != 0 {
            return Err(AttachError::Corrupt("queue body misaligned"));
        }
        let spill = (uid, max_spill);
        let q = Self::from_parts(seg, body, l, slot_size, capacity, info.creator_pid, spill);
        q.shared.raw.senders().validate()?;
        q.shared.raw.receivers().validate()?;
        Ok(q)
    }

    pub(crate) fn in_process_kind(_kind: ObjectKind, config: QueueConfig) -> Result<Self, Error> {
        let QueueConfig {
            slot_size,
            capacity,
            max_spill,
        } = config;
        let spill = (crate::queue::spill::new_uid(), max_spill);
        #[cfg(not(loom))]
        {
            let l = layout(slot_size, capacity, MAX_PEERS)?;
            let al = std::alloc::Layout::from_size_align(l.size.max(BODY_ALIGN), BODY_ALIGN)
                .map_err(|_| Error::InvalidArgument("queue size overflows"))?;
            // SAFETY: the layout has a nonzero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(al) };
            if ptr.is_null() {
                return Err(Error::NoSpace(al.size() as u64));
            }
            let block = HeapBlock { ptr, layout: al };
            // SAFETY: fresh zeroed BODY_ALIGN-aligned block of l.size bytes.
            unsafe { Shared::init_body(ptr, &l, capacity) };
            // SAFETY: initialised above; the block is stored next to the view.
            let raw = unsafe { Shared::view(ptr, &l, slot_size, capacity, os::current_pid()) };
            Ok(MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
                    spill,
                    storage: Storage::Heap(block),
                }),
            })
        }
        #[cfg(loom)]
        {
            check_params(slot_size, capacity).map_err(Error::InvalidArgument)?;
            // In one process every thread shares a pid: two peer slots
            // suffice.
            let peers = 2;
            let hdr = Box::new(QueueHeader::new());
            let senders: Vec<PeerSlot> = (0..peers).map(|_| PeerSlot::default()).collect();
            let receivers: Vec<PeerSlot> = (0..peers).map(|_| PeerSlot::default()).collect();
            let meta: Vec<super::raw::SlotMeta> =
                (0..capacity).map(super::raw::SlotMeta::new).collect();
            let words = slot_size.div_ceil(8);
            let mut payload = vec![0u64; words * capacity];
            let raw = RawQueue {
                hdr: &*hdr,
                senders: senders.as_ptr(),
                receivers: receivers.as_ptr(),
                peers,
                meta: meta.as_ptr() as *const u8,
                meta_stride: std::mem::size_of::<super::raw::SlotMeta>(),
                payload: payload.as_mut_ptr() as *mut u8,
                payload_stride: words * 8,
                lap: lap_for(capacity),
                capacity,
                slot_size,
                creator: os::current_pid(),
            };
            Ok(MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
                    spill,
                    storage: Storage::Loom {
                        _hdr: hdr,
                        _senders: senders,
                        _receivers: receivers,
                        _meta: meta,
                        _payload: payload,
                    },
                }),
            })
        }
    }

    /// A new sending endpoint, registered for this process.
    pub fn sender(&self) -> Result<MpmcSender, PeersFull> {
        Ok(MpmcSender {
            ep: Endpoint::new(self.shared.clone(), Side::Send)?,
        })
    }

    /// A new receiving endpoint, registered for this process.
    pub fn receiver(&self) -> Result<MpmcReceiver, PeersFull> {
        Ok(MpmcReceiver {
            ep: Endpoint::new(self.shared.clone(), Side::Recv)?,
        })
    }

    /// Waits until receivers have taken every queued message (the queue is
    /// empty), for a producer that must not exit before its messages are
    /// delivered — e.g. with a [`Lifetime::Creator`](crate::segment::Lifetime)
    /// name, whose creator's exit unlinks it. `None` waits without a
    /// limit. Returns [`DrainError::Disconnected`](crate::queue::DrainError)
    /// if messages remain and every receiver closed or died, and
    /// [`DrainError::Timeout`](crate::queue::DrainError) at the timeout.
    /// It polls with a sleep of 50 µs growing to 5 ms and adds nothing to
    /// the send or receive path.
    ///
    /// ```
    /// use shmkit::queue::{DrainError, MpmcQueue};
    /// use std::time::Duration;
    ///
    /// let q = MpmcQueue::anonymous(16, 4)?;
    /// let (tx, rx) = (q.sender()?, q.receiver()?);
    /// tx.send(b"job")?;
    /// assert_eq!(q.wait_drained(Some(Duration::from_millis(1))), Err(DrainError::Timeout));
    /// let consumer = std::thread::spawn(move || {
    ///     let mut buf = Vec::new();
    ///     rx.recv_timeout(&mut buf, Duration::from_secs(5)).map(|_| buf)
    /// });
    /// q.wait_drained(Some(Duration::from_secs(5)))?;
    /// assert_eq!(consumer.join().unwrap()?, b"job");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_drained(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), crate::queue::DrainError> {
        crate::queue::drain::wait_drained(
            timeout,
            || self.is_empty(),
            || self.shared.raw.receivers().is_disconnected(),
        )
    }

    /// Messages currently queued (exact when no operation is in flight;
    /// a message being written or read counts as queued).
    pub fn len(&self) -> usize {
        self.shared.raw.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Number of slots: how many messages the queue holds.
    pub fn capacity(&self) -> usize {
        self.shared.raw.capacity
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.shared.raw.slot_size
    }

    /// The typed queue's spill uid (0: spilling unsupported, e.g. an
    /// embedded queue) and largest spilled encoding, as the creator
    /// recorded them.
    pub(crate) fn spill_params(&self) -> (u64, u64) {
        self.shared.spill
    }

    /// How many live processes hold a sender, and how many a receiver (a
    /// snapshot, for tools such as `shmkit stat`; a process counts once
    /// however many endpoints it holds).
    ///
    /// ```
    /// let q = shmkit::queue::MpmcQueue::anonymous(64, 8)?;
    /// assert_eq!(q.endpoints_held(), (0, 0));
    /// let _tx = q.sender()?;
    /// let _rx = q.receiver()?;
    /// assert_eq!(q.endpoints_held(), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoints_held(&self) -> (usize, usize) {
        (
            self.shared.raw.senders().live_count(),
            self.shared.raw.receivers().live_count(),
        )
    }

    /// The segment backing the queue (`None` for [`in_process`](Self::in_process)).
    pub fn segment(&self) -> Option<&Segment> {
        <Self as SegmentObject>::segment(self)
    }

    /// Closes both sides for good: blocked and future senders get
    /// `Disconnected`; receivers drain what is queued, then get
    /// `Disconnected`.
    pub fn close(&self) {
        close_side(&self.shared, Side::Send);
        close_side(&self.shared, Side::Recv);
    }

    /// Select's hooks (crate-internal): the notifiers a receive / a send
    /// waits on.
    pub(crate) fn notifiers(&self) -> (&Notifier, &Notifier) {
        self.shared.notifiers()
    }

    /// Select's readiness hook; see `Shared::readiness`.
    pub(crate) fn readiness(&self, send: bool, liveness: bool) -> Option<bool> {
        self.shared.readiness(send, liveness)
    }

    /// The unfinished-task counter and its notifier (JoinableQueue).
    pub(crate) fn joinable(&self) -> (&AtomicU64, &Notifier) {
        let c = self.shared.raw.ctl();
        (&c.unfinished, &c.all_done)
    }
}

/// Which end an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Send,
    Recv,
}

pub(super) fn close_side(shared: &Shared, side: Side) {
    let raw = &shared.raw;
    match side {
        Side::Send => raw.senders().close(),
        Side::Recv => raw.receivers().close(),
    }
    raw.ctl().not_empty.notify_all();
    raw.ctl().not_full.notify_all();
}

/// One sender's or receiver's registration in the table of its side,
/// re-made lazily when the handle is used in a forked child, and the gate
/// for its rate-limited liveness checks.
pub(super) struct Endpoint {
    pub(super) shared: Arc<Shared>,
    side: Side,
    /// A [`Registration`] in bits (shared by the handle's threads).
    reg: LocalU64,
    pub(super) gate: LivenessGate,
}

impl Endpoint {
    fn new(shared: Arc<Shared>, side: Side) -> Result<Self, PeersFull> {
        let ep = Endpoint {
            shared,
            side,
            reg: LocalU64::new(0),
            gate: LivenessGate::default(),
        };
        ep.register()?;
        Ok(ep)
    }

    /// This endpoint's side's registry.
    pub(super) fn table(&self) -> PeerTable<'_> {
        match self.side {
            Side::Send => self.shared.raw.senders(),
            Side::Recv => self.shared.raw.receivers(),
        }
    }

    /// The other side's registry.
    pub(super) fn other(&self) -> PeerTable<'_> {
        match self.side {
            Side::Send => self.shared.raw.receivers(),
            Side::Recv => self.shared.raw.senders(),
        }
    }

    fn register(&self) -> Result<u32, PeersFull> {
        let reg = Registration::current(self.table().register()?);
        self.shared.raw.join_handshake();
        self.reg.store(reg.to_bits(), LocalOrdering::Relaxed);
        Ok(reg.pid())
    }

    /// The calling process's pid (the claimer id in slot stamps),
    /// registering it first if this handle was inherited over `fork`.
    #[inline]
    pub(super) fn me(&self) -> Result<u32, PeersFull> {
        let reg = Registration::from_bits(self.reg.load(LocalOrdering::Relaxed));
        if reg.is_current() {
            Ok(reg.pid())
        } else {
            self.register()
        }
    }

    /// Whether either side was closed for good.
    #[inline]
    pub(super) fn closed(&self) -> bool {
        self.table().is_closed() || self.other().is_closed()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reg = Registration::from_bits(self.reg.load(LocalOrdering::Relaxed));
        f.debug_struct("Endpoint")
            .field("side", &self.side)
            .field("pid", &reg.pid())
            .field("slot", &reg.slot())
            .finish()
    }
}

impl Clone for Endpoint {
    fn clone(&self) -> Self {
        let ep = Endpoint {
            shared: self.shared.clone(),
            side: self.side,
            reg: LocalU64::new(0),
            gate: LivenessGate::default(),
        };
        if ep.register().is_err() {
            tracing::warn!("mpmc: peer table full; the cloned endpoint registers on first use");
        }
        ep
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let reg = Registration::from_bits(self.reg.load(LocalOrdering::Relaxed));
        if reg.release(self.table()) {
            // Wake the other side so it notices if we were the last (the
            // release bumped the departure counter first).
            self.shared.raw.ctl().not_empty.notify_all();
            self.shared.raw.ctl().not_full.notify_all();
        }
    }
}
