//! [`SpscRing`], the public handle of a ring, and how its two endpoints
//! own their side ([`Owner`]).

use std::fmt;
use std::sync::Arc;

use super::ring::{Cursor, RawRing, MAX_CAPACITY, MIN_CAPACITY, RING_HEADER_SIZE};
use super::{Consumer, Producer};
use crate::error::{AttachError, Error};
use crate::primitives::Ordering;
use crate::queue::peers::{PeerTable, Registration};
use crate::segment::{
    attach_object, create_object, ObjectKind, OpenOptions, Segment, SegmentObject,
};
use crate::sync::Notifier;

/// Why a producer or consumer handle could not be created.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Another live handle (in this or another process) holds this side.
    #[error("the {0} side of this ring is already held by a live process (pid {1}); an SPSC ring has one {0}")]
    AlreadyTaken(&'static str, u32),
    /// The side was closed for good with `close()`.
    #[error("the {0} side of this ring was closed")]
    Closed(&'static str),
    /// The shared indices are corrupt.
    #[error("ring is corrupt: {0}")]
    Corrupt(&'static str),
}

/// A single-producer single-consumer ring of byte frames in shared memory.
///
/// `SpscRing` is the shared object; take its one [`Producer`] with
/// [`producer`](SpscRing::producer) and its one [`Consumer`] with
/// [`consumer`](SpscRing::consumer) (usually in different processes).
///
/// ```
/// use shmkit::queue::SpscRing;
///
/// let ring = SpscRing::anonymous(4096)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// tx.try_push(b"hello").unwrap();
/// let mut buf = Vec::new();
/// rx.try_pop(&mut buf).unwrap();
/// assert_eq!(buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SpscRing {
    pub(super) ring: Arc<RawRing>,
}

impl fmt::Debug for SpscRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.ring.cap)
            .field("len", &self.len())
            .finish()
    }
}

fn check_capacity(capacity: usize) -> Result<(), Error> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::InvalidArgument(
            "ring capacity must be a power of two between 16 bytes and 2 GiB",
        ));
    }
    Ok(())
}

impl SegmentObject for SpscRing {
    /// The ring's capacity in bytes (a power of two, 16 B to 2 GiB).
    type Config = usize;

    fn create_in(name: Option<&str>, capacity: usize) -> Result<Self, Error> {
        check_capacity(capacity)?;
        let params = [
            capacity as u64,
            RING_HEADER_SIZE as u64,
            super::ring::FRAME_FORMAT,
        ];
        let (seg, body) = create_object(
            name,
            ObjectKind::SPSC_RING,
            &params,
            RING_HEADER_SIZE + capacity,
            |body| {
                let p = body.ptr_at::<super::ring::RingHeader>(0)?;
                // SAFETY: in bounds and aligned (ptr_at); the segment is
                // fresh and unpublished, so nobody else uses it.
                unsafe { p.write(super::ring::RingHeader::new()) };
                Ok(())
            },
        )?;
        Ok(Self {
            ring: Arc::new(RawRing::from_new_body(seg, body, capacity)?),
        })
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, ObjectKind::SPSC_RING, opts)?;
        Ok(Self {
            ring: Arc::new(RawRing::from_segment_parts(seg, &info, body)?),
        })
    }

    fn segment(&self) -> Option<&Segment> {
        match &self.ring.backing {
            super::ring::Backing::Segment(s) => Some(s),
            super::ring::Backing::Heap { .. } | super::ring::Backing::Borrowed => None,
        }
    }
}

impl SpscRing {
    /// Creates a named ring of `capacity_bytes` (a power of two, 16 B to
    /// 2 GiB). This handle owns the name: dropping it in this process
    /// unlinks it (mappings elsewhere stay valid).
    pub fn create(name: &str, capacity_bytes: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, capacity_bytes)
    }

    /// Creates an anonymous ring (a memfd), shared with children forked
    /// afterwards.
    pub fn anonymous(capacity_bytes: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(capacity_bytes)
    }

    crate::segment::inherent_opens!("ring");

    /// Opens the named ring, or creates it with `capacity_bytes` if there
    /// is none (race-free between processes; see
    /// [`SegmentObject::open_or_create`]).
    pub fn open_or_create(name: &str, capacity_bytes: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, capacity_bytes)
    }

    /// A ring in this process's heap, for threads only (it cannot be
    /// shared with another process). This is the backing used by the Miri
    /// and loom tests; the algorithm is the same.
    pub fn in_process(capacity_bytes: usize) -> Result<Self, Error> {
        check_capacity(capacity_bytes)?;
        Ok(Self {
            ring: Arc::new(RawRing::on_heap(capacity_bytes)),
        })
    }

    /// Version of the ring's body layout and frame format. A crate that
    /// embeds rings ([`init_in`](Self::init_in)) records it in its own
    /// header and refuses memory written under another version.
    pub const LAYOUT_VERSION: u32 = super::ring::FRAME_FORMAT as u32;

    /// Alignment the memory for an embedded ring needs (its index lines
    /// are 128-byte cache-line pairs).
    pub const EMBED_ALIGN: usize = std::mem::align_of::<super::ring::RingHeader>();

    /// Bytes of caller-managed memory a ring of `capacity_bytes` needs
    /// ([`init_in`](Self::init_in)): a 512-byte control block, then the
    /// frame buffer. `capacity_bytes` follows the same rules as
    /// [`create`](Self::create) (a power of two, 16 B to 2 GiB).
    ///
    /// The control block (`#[repr(C)]`, little-endian, offsets from the
    /// start of the memory): 0 `tail: u64`, 8 `pushed: u64` (producer
    /// line, 128 bytes); 128 `head: u64`, 136 `popped: u64` (consumer
    /// line); 256 `data` and 264 `space` notifiers (8 bytes each: a `u32`
    /// futex sequence word, a `u32` waiter count), 272 `full_fence: u32`
    /// (sticky: nonzero once a process that cannot use `membarrier` took
    /// a side, so both sides publish with a full fence); 384 the producer's
    /// registry header (`ever: u32`, `closed: u32`) and 392 its one slot
    /// (`u64`: pid | handles << 32), 400 and 408 the consumer's; 512 the
    /// frames (a `u32` length, the payload, padding to 8 bytes). Which
    /// process may write which word, and what a reader checks, is in
    /// SAFETY.md.
    ///
    /// ```
    /// use shmkit::queue::SpscRing;
    /// assert_eq!(SpscRing::embedded_size(4096)?, 512 + 4096);
    /// assert!(SpscRing::embedded_size(1000).is_err()); // not a power of two
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn embedded_size(capacity_bytes: usize) -> Result<usize, Error> {
        check_capacity(capacity_bytes)?;
        Ok(RING_HEADER_SIZE + capacity_bytes)
    }

    /// Initialises an empty ring of `capacity_bytes` in memory another
    /// crate manages (a file mapping, its own shared segment), for
    /// [`from_raw`](Self::from_raw) to view from any process that maps it.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes and not in use by
    /// anyone (no other process has a ring view of it) during the call.
    /// Size and alignment are checked: `len` must be at least
    /// [`embedded_size`](Self::embedded_size) and `ptr` aligned to
    /// [`EMBED_ALIGN`](Self::EMBED_ALIGN).
    pub unsafe fn init_in(ptr: *mut u8, len: usize, capacity_bytes: usize) -> Result<(), Error> {
        let need = Self::embedded_size(capacity_bytes)?;
        if len < need || ptr.is_null() || ptr as usize % Self::EMBED_ALIGN != 0 {
            return Err(Error::InvalidArgument(
                "embedded ring memory too small or misaligned",
            ));
        }
        // SAFETY: the caller guarantees `ptr` is valid for `len >= need`
        // bytes and unused; it is aligned for a RingHeader (checked).
        unsafe { (ptr as *mut super::ring::RingHeader).write(super::ring::RingHeader::new()) };
        Ok(())
    }

    /// Views a ring that [`init_in`](Self::init_in) initialised (in this
    /// or any other process) in caller-managed memory. Take its
    /// [`producer`](Self::producer) in one process and its
    /// [`consumer`](Self::consumer) in another, as with a segment.
    ///
    /// Everything read from the memory is checked as on any attach: bad
    /// indices or registry words give [`AttachError::Corrupt`] here, or
    /// `Corrupt` from a later receive, never out-of-bounds access. The
    /// embedding crate owns the memory's lifetime, and the registry rule
    /// "nobody ever joined and the creator is dead" does not apply (no
    /// creator is recorded): a consumer waiting on a ring no producer ever
    /// took blocks until one does, or until its timeout.
    ///
    /// # Safety
    /// `ptr` must stay mapped, readable and writable for `len` bytes for
    /// as long as the returned ring and every endpoint taken from it are
    /// used, and must hold a ring of `capacity_bytes` made by `init_in`
    /// (any bytes are memory-safe to view; wrong ones give `Corrupt`).
    ///
    /// ```
    /// use shmkit::queue::SpscRing;
    ///
    /// #[repr(C, align(128))]
    /// struct Block([u8; 512 + 1024]);
    /// let mut mem = Box::new(Block([0; 512 + 1024]));
    /// let (ptr, len) = (mem.0.as_mut_ptr(), mem.0.len());
    /// // SAFETY: `mem` is ours, aligned, and outlives the ring below.
    /// unsafe { SpscRing::init_in(ptr, len, 1024)? };
    /// // SAFETY: as above; `init_in` made a 1024-byte ring there.
    /// let ring = unsafe { SpscRing::from_raw(ptr, len, 1024)? };
    /// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
    /// tx.push(b"embedded")?;
    /// let mut buf = Vec::new();
    /// rx.pop(&mut buf)?;
    /// assert_eq!(buf, b"embedded");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub unsafe fn from_raw(
        ptr: *mut u8,
        len: usize,
        capacity_bytes: usize,
    ) -> Result<Self, AttachError> {
        let need = Self::embedded_size(capacity_bytes)
            .map_err(|_| AttachError::Corrupt("embedded ring capacity out of range"))?;
        if len < need {
            return Err(AttachError::TooSmall {
                actual: len as u64,
                required: need as u64,
            });
        }
        if ptr.is_null() || ptr as usize % Self::EMBED_ALIGN != 0 {
            return Err(AttachError::Corrupt("embedded ring memory misaligned"));
        }
        Ok(Self {
            // SAFETY: the caller guarantees `ptr` is valid for `len >= need`
            // bytes for the ring's whole use.
            ring: Arc::new(unsafe { RawRing::from_raw(ptr, capacity_bytes) }?),
        })
    }

    /// The segment holding the ring (`None` for an in-process ring).
    pub fn segment(&self) -> Option<&Segment> {
        <Self as SegmentObject>::segment(self)
    }

    /// Takes the producer side. Fails if a live producer (in this or
    /// another process) holds it; a dead producer's slot is reclaimed, and
    /// the new producer continues after the last frame it committed.
    pub fn producer(&self) -> Result<Producer, EndpointError> {
        Producer::new(self.ring.clone())
    }

    /// Takes the consumer side. Fails if a live consumer holds it; a dead
    /// consumer's slot is reclaimed, and the new consumer starts at the
    /// first frame the old one had not released.
    pub fn consumer(&self) -> Result<Consumer, EndpointError> {
        Consumer::new(self.ring.clone())
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.cap
    }

    /// Largest payload a single frame can carry (`capacity - 4`).
    pub fn max_message_len(&self) -> usize {
        super::ring::max_payload(self.ring.cap)
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether a live process holds the producer side, and whether one
    /// holds the consumer side (a snapshot, for tools such as `shmkit stat`).
    ///
    /// ```
    /// let ring = shmkit::queue::SpscRing::anonymous(1024)?;
    /// assert_eq!(ring.endpoints_held(), (false, false));
    /// let _tx = ring.producer()?;
    /// assert_eq!(ring.endpoints_held(), (true, false));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn endpoints_held(&self) -> (bool, bool) {
        (
            self.ring.producers().live_count() > 0,
            self.ring.consumers().live_count() > 0,
        )
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        let h = self.ring.hdr();
        h.cons.pos.load(Ordering::Acquire) == h.prod.pos.load(Ordering::Acquire)
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&self) -> bool {
        let h = self.ring.hdr();
        let head = h.cons.pos.load(Ordering::Acquire);
        let tail = h.prod.pos.load(Ordering::Acquire);
        (self.ring.cap as u64).saturating_sub(tail.wrapping_sub(head)) < 8
    }
}

/// Which end of a ring an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Producer,
    Consumer,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Producer => "producer",
            Side::Consumer => "consumer",
        }
    }

    /// This side's registry.
    pub(super) fn table(self, ring: &RawRing) -> PeerTable<'_> {
        match self {
            Side::Producer => ring.producers(),
            Side::Consumer => ring.consumers(),
        }
    }

    /// The other side's registry.
    pub(super) fn peer(self, ring: &RawRing) -> PeerTable<'_> {
        match self {
            Side::Producer => ring.consumers(),
            Side::Consumer => ring.producers(),
        }
    }

    /// The notifier the other side sleeps on.
    fn peer_notifier(self, ring: &RawRing) -> &Notifier {
        let n = &ring.hdr().notify;
        match self {
            Side::Producer => &n.data,
            Side::Consumer => &n.space,
        }
    }
}

/// How an endpoint owns its side: its registration in the side's one
/// exclusive registry slot. The per-operation check is
/// [`ensure`](Owner::ensure) (a pid comparison, no shared access); a
/// forked child's first use takes the side over from its parent.
#[derive(Debug)]
pub(super) struct Owner {
    reg: Registration,
    side: Side,
}

/// The outcome of [`Owner::reclaim`].
enum Reclaimed {
    /// Still (or again) ours, at the same position.
    Same,
    /// Newly ours (taken over after a fork or from a dead holder): reload
    /// the position from shared memory.
    Moved,
}

impl Owner {
    /// Registers the calling process as the one `side` of `ring` and loads
    /// that side's position.
    pub(super) fn claim<C: Cursor>(ring: &RawRing, side: Side) -> Result<(Self, C), EndpointError> {
        let table = side.table(ring);
        if table.is_closed() {
            return Err(EndpointError::Closed(side.name()));
        }
        table
            .claim_exclusive(0)
            .map_err(|holder| EndpointError::AlreadyTaken(side.name(), holder))?;
        let mut owner = Owner {
            reg: Registration::current(0),
            side,
        };
        ring.join_handshake();
        match C::load(ring) {
            Ok(cur) => Ok((owner, cur)),
            Err(e) => {
                owner.release(ring);
                Err(EndpointError::Corrupt(e))
            }
        }
    }

    /// Whether this process still owns the side (no fork or takeover
    /// since it was claimed): the check [`ensure`](Self::ensure) starts with.
    #[inline(always)]
    pub(super) fn is_current(&self) -> bool {
        self.reg.is_current()
    }

    /// Checks that this process owns the side: a pid comparison, the one
    /// ownership check per endpoint operation. In a forked child's first
    /// use it takes the side over from the parent (reloading `cur`). False
    /// = not usable (another live process holds the side, or it closed).
    #[inline]
    pub(super) fn ensure<C: Cursor>(&mut self, ring: &RawRing, cur: &mut C) -> bool {
        self.reg.is_current() || self.ensure_slow(ring, cur)
    }

    #[cold]
    fn ensure_slow<C: Cursor>(&mut self, ring: &RawRing, cur: &mut C) -> bool {
        match self.reclaim(ring) {
            Ok(Reclaimed::Same) => true,
            Ok(Reclaimed::Moved) => match C::load(ring) {
                Ok(c) => {
                    ring.join_handshake();
                    *cur = c;
                    true
                }
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    /// Makes the calling process the owner again after a fork (taking the
    /// side over from the parent whose handle it inherited) or after its
    /// registration was lost; `Err` if another live process holds it or
    /// the side was closed.
    fn reclaim(&mut self, ring: &RawRing) -> Result<Reclaimed, EndpointError> {
        let table = self.side.table(ring);
        let me = crate::os::current_pid();
        // Across pid namespaces our pid may be someone else's: then only
        // `claim_exclusive` below (which refuses a slot holding it) decides.
        if table.slot_pid(0) == me && table.judges_pids() {
            let moved = self.reg.pid() != me;
            self.reg = Registration::current(0);
            return Ok(if moved {
                Reclaimed::Moved
            } else {
                Reclaimed::Same
            });
        }
        if self.reg.pid() != me && table.take_over(0, self.reg.pid()) {
            self.reg = Registration::current(0);
            return Ok(Reclaimed::Moved);
        }
        if table.is_closed() {
            return Err(EndpointError::Closed(self.side.name()));
        }
        match table.claim_exclusive(0) {
            Ok(()) => {
                self.reg = Registration::current(0);
                Ok(Reclaimed::Moved)
            }
            Err(holder) => Err(EndpointError::AlreadyTaken(self.side.name(), holder)),
        }
    }

    /// Gives the side up (drop of the endpoint): only in the process that
    /// registered it, and wakes the other side so a waiter there notices.
    pub(super) fn release(&mut self, ring: &RawRing) {
        if self.reg.release(self.side.table(ring)) {
            self.side.peer_notifier(ring).notify_all();
        }
        self.reg = Registration::NONE;
    }
}
