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
            super::ring::Backing::Heap { .. } => None,
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
        if table.slot_pid(0) == me {
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
