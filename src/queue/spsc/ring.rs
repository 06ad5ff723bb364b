//! The SPSC ring's layout and algorithm: a bounded single-producer
//! single-consumer ring of variable-length byte frames (Lamport's queue
//! with FastForward/MCRingBuffer-style index caching).
//!
//! # Algorithm
//!
//! A bounded circular byte buffer in the style of Lamport's single-producer
//! single-consumer queue (L. Lamport, "Specifying Concurrent Program
//! Modules", TOPLAS 1983), with the index caching of the FastForward /
//! MCRingBuffer line of work (each side keeps a *process-local* copy of the
//! other side's index and reloads the shared atomic only when that copy says
//! full or empty), and variable-length framing:
//!
//! * `tail` (written only by the producer) and `head` (written only by the
//!   consumer) are monotonically increasing `u64` byte counters, each on its
//!   own 128-byte line. `tail - head` is the number of committed bytes; a
//!   byte counter never wraps in practice (2^64 bytes).
//! * A frame is a `u32` length header followed by the payload, padded to a
//!   multiple of 8 bytes; frames start at 8-aligned offsets. A frame never
//!   wraps around the end of the buffer: if it does not fit before the end,
//!   the producer writes a [`PAD`] marker in the header position and
//!   continues at offset 0; the consumer skips the marker.
//! * Publishing is one `Release` store of `tail` after the frame's bytes
//!   are written, then a plain load of the consumer's waiter count;
//!   consuming is the same store of `head` after the bytes are read. The
//!   other side `Acquire`s the index before touching bytes.
//! * The wake-up handshake is *asymmetric*: the side about to sleep
//!   registers, issues a process-wide barrier (`membarrier(2)`
//!   `GLOBAL_EXPEDITED`, see [`os::membarrier`](crate::os::membarrier)),
//!   then re-checks; so the publisher needs no barrier of its own
//!   (SAFETY.md, "SPSC publish"). Every endpoint registers its process
//!   for the barrier when it takes its side; one that cannot sets the
//!   ring's sticky `full_fence` word, and from then on both sides publish
//!   with a `SeqCst` swap (the symmetric Dekker protocol, the one the loom
//!   models check).
//!
//! The process-local halves of the algorithm are [`ProducerCursor`] and
//! [`ConsumerCursor`]; blocking, ownership and the public API live in the
//! endpoint files next to this one.
//!
//! Shared memory is untrusted: the consumer checks every index and length it
//! reads (`tail - head <= capacity`, 8-aligned indices, frame lengths within
//! the committed bytes and the buffer, valid markers) and reports
//! [`TryRecvError::Corrupt`] instead of reading out of bounds.
//!
//! # Layout (kind [`ObjectKind::SPSC_RING`](crate::segment::ObjectKind::SPSC_RING))
//!
//! | offset | what |
//! |---|---|
//! | 0 | producer line: `tail: u64`, `pushed: u64` (frames ever pushed) |
//! | 128 | consumer line: `head: u64`, `popped: u64` (frames ever popped) |
//! | 256 | `data: Notifier`, `space: Notifier`, `full_fence: u32` (nonzero = symmetric handshake) |
//! | 384 | producer `PeerTable` (header + 1 slot), consumer `PeerTable` (header + 1 slot) |
//! | 512 | `capacity` bytes of frames |
//!
//! Header parameters: `[capacity, RING_HEADER_SIZE, FRAME_FORMAT]`.

use std::ptr::NonNull;

use crate::error::AttachError;
use crate::primitives::{AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::queue::error::TryRecvError;
use crate::queue::peers::{PeerSlot, PeerTable, PeerTableHeader};
use crate::segment::{HeaderInfo, Region, Segment};
use crate::sync::notifier::Handshake;
use crate::sync::Notifier;

/// Frame header value marking "skip to the end of the buffer".
pub const PAD: u32 = u32::MAX;
/// Bytes of control state before the frame buffer.
pub const RING_HEADER_SIZE: usize = 512;
/// Smallest accepted capacity in bytes.
pub const MIN_CAPACITY: usize = 16;
/// Largest accepted capacity in bytes (2 GiB).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Version of the frame format and wake-up protocol recorded in the
/// segment header. 1: `SeqCst` publish. 2: asymmetric handshake with the
/// `full_fence` fallback word (a version-1 peer would neither issue the
/// waiter's barrier nor honour the word, so the versions do not mix).
pub(super) const FRAME_FORMAT: u64 = 2;
/// Bytes of the length header in front of each payload.
pub(super) const LEN_BYTES: u64 = 4;

/// One side's index line.
#[repr(C)]
pub(super) struct IndexLine {
    /// `tail` on the producer line, `head` on the consumer line.
    pub(super) pos: AtomicU64,
    /// Frames ever pushed (producer line) / popped (consumer line).
    pub(super) frames: AtomicU64,
}

#[repr(C)]
pub(super) struct NotifyLine {
    /// The consumer sleeps here while the ring is empty.
    pub(super) data: Notifier,
    /// The producer sleeps here while the ring is full.
    pub(super) space: Notifier,
    /// Sticky: nonzero once an endpoint's process could not register for
    /// the asymmetric barrier; both sides then publish with `SeqCst`.
    pub(super) full_fence: AtomicU32,
}

#[repr(C)]
pub(super) struct PeerLine {
    prod_hdr: PeerTableHeader,
    prod_slot: [PeerSlot; 1],
    cons_hdr: PeerTableHeader,
    cons_slot: [PeerSlot; 1],
}

/// The control block at the start of a ring's body (512 bytes).
#[repr(C)]
pub(super) struct RingHeader {
    pub(super) prod: CachePadded<IndexLine>,
    pub(super) cons: CachePadded<IndexLine>,
    pub(super) notify: CachePadded<NotifyLine>,
    pub(super) peers: CachePadded<PeerLine>,
}

impl RingHeader {
    pub(super) fn new() -> Self {
        let line = || IndexLine {
            pos: AtomicU64::new(0),
            frames: AtomicU64::new(0),
        };
        Self {
            prod: CachePadded::new(line()),
            cons: CachePadded::new(line()),
            notify: CachePadded::new(NotifyLine {
                data: Notifier::new(),
                space: Notifier::new(),
                full_fence: AtomicU32::new(0),
            }),
            peers: CachePadded::new(PeerLine {
                prod_hdr: PeerTableHeader::default(),
                prod_slot: [PeerSlot::default()],
                cons_hdr: PeerTableHeader::default(),
                cons_slot: [PeerSlot::default()],
            }),
        }
    }
}

/// Size in bytes of a frame carrying `len` payload bytes, or `None` if it
/// overflows.
#[inline]
pub(super) fn frame_size(len: usize) -> Option<u64> {
    let len = u64::try_from(len).ok()?;
    Some(len.checked_add(LEN_BYTES + 7)? & !7)
}

/// Largest payload a ring of `capacity` bytes can carry.
#[inline]
pub(super) fn max_payload(capacity: usize) -> usize {
    capacity - LEN_BYTES as usize
}

/// Validates a (head, tail) pair read from shared memory.
#[inline]
pub(super) fn check_indices(head: u64, tail: u64, cap: usize) -> Result<(), &'static str> {
    if (head | tail) & 7 != 0 {
        return Err("ring index not 8-aligned");
    }
    if tail.wrapping_sub(head) > cap as u64 {
        return Err("ring indices out of range (tail - head > capacity)");
    }
    Ok(())
}

/// Where a ring's memory comes from.
pub(super) enum Backing {
    /// A mapped segment (named or anonymous); the header lives inside it.
    Segment(Segment),
    /// Memory another crate manages ([`SpscRing::from_raw`]); nothing to
    /// free here.
    ///
    /// [`SpscRing::from_raw`]: super::SpscRing::from_raw
    Borrowed,
    /// Process-local heap memory (threads only; used by Miri and loom).
    Heap {
        header: *mut RingHeader,
        data: *mut [u64],
    },
}

/// The process-local view of one ring: where its control block and frame
/// buffer are mapped, and who created it.
pub(super) struct RawRing {
    hdr: NonNull<RingHeader>,
    data: NonNull<u8>,
    pub(super) cap: usize,
    /// Pid of the creating process (the registry's rule 3).
    creator: u32,
    pub(super) backing: Backing,
}

// SAFETY: the control block consists of atomics only; the frame buffer is
// accessed through raw pointers under the single-producer/single-consumer
// protocol (each byte range is owned by exactly one side at a time, handed
// over by Release/Acquire on `tail`/`head`). The heap backing is owned.
unsafe impl Send for RawRing {}
// SAFETY: as above.
unsafe impl Sync for RawRing {}

impl Drop for RawRing {
    fn drop(&mut self) {
        if let Backing::Heap { header, data } = self.backing {
            // SAFETY: both pointers came from `Box::into_raw` in
            // `RawRing::on_heap` and are freed exactly once, here, when the
            // last handle is gone.
            unsafe {
                drop(Box::from_raw(header));
                drop(Box::from_raw(data));
            }
        }
    }
}

impl RawRing {
    /// Views a freshly initialised segment body (`RingHeader` written at 0,
    /// `cap` bytes of frames after it).
    pub(super) fn from_new_body(
        seg: Segment,
        body: Region,
        cap: usize,
    ) -> Result<Self, AttachError> {
        let hdr = body.ptr_at::<RingHeader>(0)?;
        let data = body.sub(RING_HEADER_SIZE, cap)?.as_ptr();
        Ok(RawRing {
            hdr: NonNull::new(hdr).ok_or(AttachError::Corrupt("null mapping"))?,
            data: NonNull::new(data).ok_or(AttachError::Corrupt("null mapping"))?,
            cap,
            creator: crate::os::current_pid(),
            backing: Backing::Segment(seg),
        })
    }

    /// A ring in this process's heap (threads only).
    pub(super) fn on_heap(cap: usize) -> Self {
        let header = Box::into_raw(Box::new(RingHeader::new()));
        let words = vec![0u64; cap / 8].into_boxed_slice();
        let data = Box::into_raw(words);
        RawRing {
            // SAFETY: Box::into_raw never returns null.
            hdr: unsafe { NonNull::new_unchecked(header) },
            // SAFETY: as above; the slice has `cap` bytes.
            data: unsafe { NonNull::new_unchecked(data as *mut u64 as *mut u8) },
            cap,
            creator: crate::os::current_pid(),
            backing: Backing::Heap { header, data },
        }
    }

    /// Views caller-managed memory holding a ring body (a `RingHeader`
    /// then `cap` frame bytes), after checking its shared state.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `RING_HEADER_SIZE + cap`
    /// bytes for as long as the returned ring (and every endpoint made
    /// from it) is used.
    pub(super) unsafe fn from_raw(ptr: *mut u8, cap: usize) -> Result<Self, AttachError> {
        // SAFETY: the caller guarantees the range; `Region` only bounds-
        // checks offsets inside it.
        let body = unsafe { Region::new(ptr, RING_HEADER_SIZE + cap) };
        let hdr = body.ptr_at::<RingHeader>(0)?;
        let data = body.sub(RING_HEADER_SIZE, cap)?.as_ptr();
        let ring = RawRing {
            hdr: NonNull::new(hdr).ok_or(AttachError::Corrupt("null pointer"))?,
            data: NonNull::new(data).ok_or(AttachError::Corrupt("null pointer"))?,
            cap,
            // No creator known: the registry's rule 3 (never had a member
            // and the creator is dead) is off for embedded rings.
            creator: 0,
            backing: Backing::Borrowed,
        };
        ring.validate()?;
        Ok(ring)
    }

    /// Views an attached segment body after checking its parameters and
    /// shared indices.
    pub(super) fn from_segment_parts(
        seg: Segment,
        info: &HeaderInfo,
        body: Region,
    ) -> Result<Self, AttachError> {
        let cap = info.params[0];
        if info.params[1] != RING_HEADER_SIZE as u64 {
            return Err(AttachError::ParamMismatch {
                what: "ring header size",
                found: info.params[1],
                expected: RING_HEADER_SIZE as u64,
            });
        }
        if info.params[2] != FRAME_FORMAT {
            return Err(AttachError::ParamMismatch {
                what: "ring frame format",
                found: info.params[2],
                expected: FRAME_FORMAT,
            });
        }
        if !cap.is_power_of_two() || cap < MIN_CAPACITY as u64 || cap > MAX_CAPACITY as u64 {
            return Err(AttachError::Corrupt(
                "ring capacity is not a power of two in range",
            ));
        }
        let cap = cap as usize;
        if body.len() != RING_HEADER_SIZE + cap {
            return Err(AttachError::Corrupt(
                "ring body length does not match its capacity",
            ));
        }
        let mut ring = Self::from_new_body(seg, body, cap)?;
        ring.creator = info.creator_pid;
        ring.validate()?;
        Ok(ring)
    }

    /// Checks the shared state written by other processes.
    fn validate(&self) -> Result<(), AttachError> {
        let h = self.hdr();
        let tail = h.prod.pos.load(Ordering::Acquire);
        let head = h.cons.pos.load(Ordering::Acquire);
        check_indices(head, tail, self.cap).map_err(AttachError::Corrupt)?;
        self.producers().validate()?;
        self.consumers().validate()?;
        Ok(())
    }

    #[inline]
    pub(super) fn hdr(&self) -> &RingHeader {
        // SAFETY: `hdr` points at a RingHeader in the backing memory (bounds and
        // alignment checked at construction), alive as long as `self`; it is all
        // atomics, so any bytes another process writes are a valid value.
        unsafe { self.hdr.as_ref() }
    }

    /// The producer side's registry.
    #[inline]
    pub(super) fn producers(&self) -> PeerTable<'_> {
        let p = &self.hdr().peers;
        PeerTable::new(&p.prod_hdr, &p.prod_slot).with_creator(self.creator)
    }

    /// The consumer side's registry.
    #[inline]
    pub(super) fn consumers(&self) -> PeerTable<'_> {
        let p = &self.hdr().peers;
        PeerTable::new(&p.cons_hdr, &p.cons_slot).with_creator(self.creator)
    }

    #[inline]
    pub(super) fn mask(&self) -> u64 {
        self.cap as u64 - 1
    }

    /// Pointer to byte `off` of the frame buffer.
    ///
    /// Callers pass `off < cap`; the pointer then stays in the buffer.
    #[inline]
    pub(super) fn at(&self, off: u64) -> *mut u8 {
        debug_assert!(off < self.cap as u64);
        // SAFETY: `off & mask < cap`, and the buffer is `cap` bytes.
        unsafe { self.data.as_ptr().add((off & self.mask()) as usize) }
    }

    /// Reads the frame header at buffer offset `off` (8-aligned, `< cap`).
    #[inline]
    pub(super) fn read_len(&self, off: u64) -> u32 {
        let p = self.at(off) as *const u32;
        // SAFETY: `off` is 8-aligned and `off + 4 <= cap` (cap a multiple of 8): in
        // bounds and aligned. One volatile read, then checked and used as a local,
        // so a peer rewriting it concurrently cannot make us use an unchecked value.
        unsafe { p.read_volatile() }
    }

    #[inline]
    pub(super) fn write_len(&self, off: u64, len: u32) {
        let p = self.at(off) as *mut u32;
        // SAFETY: as for `read_len`; the producer owns bytes in
        // `[tail, head + cap)`, which include this header slot.
        unsafe { p.write_volatile(len) }
    }

    /// Sets up the calling process for the asymmetric handshake (once per
    /// process); if it cannot take part, switches the ring to the
    /// symmetric one for good. Called whenever an endpoint takes its side.
    pub(super) fn join_handshake(&self) {
        if !crate::os::membarrier::register() {
            self.hdr().notify.full_fence.store(1, Ordering::SeqCst);
        }
    }

    /// How a waiter on this ring registers: asymmetric unless the ring
    /// fell back, or this process cannot issue the barrier.
    #[inline]
    pub(super) fn handshake(&self) -> Handshake {
        if crate::os::membarrier::supported() {
            Handshake::Asymmetric
        } else {
            Handshake::Symmetric
        }
    }

    /// Publishes `value` into a side's index (`Release` for the bytes it
    /// hands over) and wakes a waiter on `notifier` if one may sleep.
    #[inline]
    pub(super) fn publish_index(&self, index: &AtomicU64, value: u64, notifier: &Notifier) {
        if self.hdr().notify.full_fence.load(Ordering::Relaxed) == 0 {
            // Asymmetric: a waiter's process-wide barrier orders this store
            // before the waiter-count load (SAFETY.md, "SPSC publish").
            index.store(value, Ordering::Release);
            notifier.notify_one_after_release();
        } else {
            // Symmetric: a SeqCst RMW is Release for the bytes and the
            // StoreLoad half of the Dekker pair (`notify_one_after_rmw`).
            index.swap(value, Ordering::SeqCst);
            notifier.notify_one_after_rmw();
        }
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub(super) fn len(&self) -> usize {
        let h = self.hdr();
        let popped = h.cons.frames.load(Ordering::Acquire);
        let pushed = h.prod.frames.load(Ordering::Acquire);
        // Frame counters wrap like the positions; a frame takes at least 8
        // bytes, so more than `cap / 8` queued is a torn or hostile
        // snapshot, reported as the most the ring can hold.
        let n = pushed.wrapping_sub(popped).min(self.cap as u64 / 8);
        n as usize
    }
}

/// Outcome of the producer checking for room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Room {
    Ok,
    Full,
    Corrupt,
}

/// Why a frame could not be pushed right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PushError {
    Full,
    TooLarge,
    /// The consumer side is gone (or this endpoint lost its side, or the
    /// consumer's index is corrupt): reported as `Disconnected`.
    Disconnected,
}

/// A side's process-local position, (re)loaded from shared memory when an
/// endpoint takes its side over.
pub(super) trait Cursor: Sized {
    /// The committed position in shared memory, validated.
    fn load(ring: &RawRing) -> Result<Self, &'static str>;
}

/// `(head, tail)` from shared memory, validated.
fn shared_indices(ring: &RawRing) -> Result<(u64, u64), &'static str> {
    let h = ring.hdr();
    let tail = h.prod.pos.load(Ordering::Acquire);
    let head = h.cons.pos.load(Ordering::Acquire);
    check_indices(head, tail, ring.cap)?;
    Ok((head, tail))
}

/// The producer's process-local half of the algorithm: its committed tail
/// and frame count (equal to the shared ones while it owns the side) and
/// its cached copy of the consumer's head.
#[derive(Debug, Default)]
pub(super) struct ProducerCursor {
    pub(super) tail: u64,
    head_cache: u64,
    pub(super) pushed: u64,
}

impl Cursor for ProducerCursor {
    fn load(ring: &RawRing) -> Result<Self, &'static str> {
        let (head, tail) = shared_indices(ring)?;
        Ok(ProducerCursor {
            tail,
            head_cache: head,
            pushed: ring.hdr().prod.frames.load(Ordering::Acquire),
        })
    }
}

impl ProducerCursor {
    /// Whether `need` bytes are free after `self.tail`.
    #[inline]
    pub(super) fn room(&mut self, ring: &RawRing, need: u64) -> Room {
        let cap = ring.cap as u64;
        // Positions are counters modulo 2^64 (hostile or long-lived ones
        // may wrap): differences are wrapping, and `check_indices` bounds
        // them by `cap` before they are used.
        if cap - self.tail.wrapping_sub(self.head_cache) >= need {
            return Room::Ok;
        }
        let head = ring.hdr().cons.pos.load(Ordering::Acquire);
        // The consumer is untrusted too: head must lie in [tail - cap, tail].
        if check_indices(head, self.tail, ring.cap).is_err() {
            return Room::Corrupt;
        }
        self.head_cache = head;
        if cap - self.tail.wrapping_sub(head) >= need {
            Room::Ok
        } else {
            Room::Full
        }
    }

    /// Makes room for a frame of `fsize` bytes: returns the offset (in
    /// counter space) where it starts, after writing a pad marker if the
    /// frame does not fit before the end of the buffer. On `Full`, a pad
    /// that fits is published so the consumer can skip it and free the
    /// buffer's start.
    #[inline]
    pub(super) fn place(&mut self, ring: &RawRing, fsize: u64) -> Result<u64, Room> {
        let cap = ring.cap as u64;
        let off = self.tail & (cap - 1);
        let to_end = cap - off;
        if fsize <= to_end {
            return match self.room(ring, fsize) {
                Room::Ok => Ok(self.tail),
                r => Err(r),
            };
        }
        match self.room(ring, to_end + fsize) {
            Room::Ok => {
                ring.write_len(off, PAD);
                Ok(self.tail.wrapping_add(to_end))
            }
            Room::Corrupt => Err(Room::Corrupt),
            Room::Full => {
                if let Room::Ok = self.room(ring, to_end) {
                    ring.write_len(off, PAD);
                    let tail = self.tail.wrapping_add(to_end);
                    self.publish(ring, tail, self.pushed);
                }
                Err(Room::Full)
            }
        }
    }

    /// Stores the frame count and the tail and wakes a sleeping consumer
    /// (no syscall when none sleeps).
    #[inline]
    pub(super) fn publish(&mut self, ring: &RawRing, tail: u64, pushed: u64) {
        let h = ring.hdr();
        self.tail = tail;
        self.pushed = pushed;
        h.prod.frames.store(pushed, Ordering::Release);
        ring.publish_index(&h.prod.pos, tail, &h.notify.data);
    }

    /// Writes one frame at counter position `at` (room already checked).
    #[inline]
    pub(super) fn write_frame(ring: &RawRing, at: u64, msg: &[u8]) {
        let off = at & ring.mask();
        ring.write_len(off, msg.len() as u32);
        // SAFETY: `place` checked that the frame (4 + len bytes, rounded to
        // 8) fits between `off` and the end of the buffer and is free (the
        // consumer has released it); the source is a distinct local slice.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), ring.at(off + LEN_BYTES), msg.len()) };
    }

    /// Pushes one frame if there is room now (ownership already checked).
    #[inline(always)]
    pub(super) fn try_push(&mut self, ring: &RawRing, msg: &[u8]) -> Result<(), PushError> {
        let fsize = match frame_size(msg.len()) {
            Some(f) if msg.len() <= max_payload(ring.cap) => f,
            _ => return Err(PushError::TooLarge),
        };
        let cap = ring.cap as u64;
        // The per-message case inline: the frame fits before the end of
        // the buffer and the cached head already shows room (the same
        // test `room` starts with); anything else goes through `place`.
        let at = if fsize <= cap - (self.tail & (cap - 1))
            && cap - self.tail.wrapping_sub(self.head_cache) >= fsize
        {
            self.tail
        } else {
            match self.place_slow(ring, fsize) {
                Ok(at) => at,
                Err(Room::Full) => return Err(PushError::Full),
                Err(_) => return Err(PushError::Disconnected),
            }
        };
        Self::write_frame(ring, at, msg);
        self.publish(ring, at.wrapping_add(fsize), self.pushed.wrapping_add(1));
        Ok(())
    }

    /// [`place`](Self::place), kept out of line for [`try_push`](Self::try_push).
    #[inline(never)]
    fn place_slow(&mut self, ring: &RawRing, fsize: u64) -> Result<u64, Room> {
        self.place(ring, fsize)
    }
}

/// What [`ConsumerCursor::peek_ready`] found.
pub(super) enum Peeked {
    Frame(Frame),
    Empty,
    Other,
}

/// A frame found at the head: where its payload is and how long it is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub(super) off: u64,
    pub(super) len: usize,
    pub(super) size: u64,
}

/// The consumer's process-local half of the algorithm: its head and frame
/// count and its cached copy of the producer's tail.
#[derive(Debug, Default)]
pub(super) struct ConsumerCursor {
    pub(super) head: u64,
    pub(super) tail_cache: u64,
    popped: u64,
}

impl Cursor for ConsumerCursor {
    fn load(ring: &RawRing) -> Result<Self, &'static str> {
        let (head, tail) = shared_indices(ring)?;
        Ok(ConsumerCursor {
            head,
            tail_cache: tail,
            popped: ring.hdr().cons.frames.load(Ordering::Acquire),
        })
    }
}

impl ConsumerCursor {
    /// Reloads the shared tail (Acquire) and validates it.
    #[inline]
    fn reload_tail(&mut self, ring: &RawRing) -> Result<(), TryRecvError> {
        let tail = ring.hdr().prod.pos.load(Ordering::Acquire);
        check_indices(self.head, tail, ring.cap).map_err(TryRecvError::Corrupt)?;
        self.tail_cache = tail;
        Ok(())
    }

    /// Publishes `head` and wakes a sleeping producer.
    #[inline]
    pub(super) fn publish_head(&mut self, ring: &RawRing) {
        let h = ring.hdr();
        h.cons.frames.store(self.popped, Ordering::Release);
        ring.publish_index(&h.cons.pos, self.head, &h.notify.space);
    }

    /// The common cases of [`peek`](Self::peek), small enough to inline
    /// into every receive: a committed frame (no pad marker) that passes
    /// the same checks, or nothing committed. [`Peeked::Other`] says "ask
    /// `peek`": a pad marker, or something `peek` will report as corrupt.
    #[inline(always)]
    pub(super) fn peek_ready(&mut self, ring: &RawRing) -> Peeked {
        let cap = ring.cap as u64;
        if self.tail_cache == self.head {
            let tail = ring.hdr().prod.pos.load(Ordering::Acquire);
            if tail == self.head {
                return Peeked::Empty;
            }
            if check_indices(self.head, tail, ring.cap).is_err() {
                return Peeked::Other;
            }
            self.tail_cache = tail;
        }
        let avail = self.tail_cache.wrapping_sub(self.head);
        let off = self.head & (cap - 1);
        let raw = ring.read_len(off);
        let size = (raw as u64 + LEN_BYTES + 7) & !7;
        // A pad marker's size overflows past `avail` (it is u32::MAX), so
        // it takes the slow path with everything else unusual.
        if raw == PAD || size > avail || size > cap - off {
            return Peeked::Other;
        }
        Peeked::Frame(Frame {
            off,
            len: raw as usize,
            size,
        })
    }

    /// Finds the next frame (skipping pad markers), validating everything
    /// it reads. `Ok(None)` = nothing committed.
    #[inline]
    pub(super) fn peek(&mut self, ring: &RawRing) -> Result<Option<Frame>, TryRecvError> {
        let cap = ring.cap as u64;
        // At most two pad markers can precede a frame that was committed
        // when we loaded the tail; a bound keeps a hostile producer from
        // looping us.
        for _ in 0..3 {
            if self.tail_cache == self.head {
                self.reload_tail(ring)?;
                if self.tail_cache == self.head {
                    return Ok(None);
                }
            }
            let avail = self.tail_cache.wrapping_sub(self.head);
            let off = self.head & (cap - 1);
            let to_end = cap - off;
            let raw = ring.read_len(off);
            if raw == PAD {
                if to_end > avail {
                    return Err(TryRecvError::Corrupt(
                        "pad marker runs past the committed bytes",
                    ));
                }
                self.head = self.head.wrapping_add(to_end);
                self.publish_head(ring);
                continue;
            }
            let len = raw as u64;
            let size = (len + LEN_BYTES + 7) & !7;
            if size > avail {
                return Err(TryRecvError::Corrupt(
                    "frame length exceeds the committed bytes",
                ));
            }
            if size > to_end {
                return Err(TryRecvError::Corrupt(
                    "frame runs past the end of the buffer",
                ));
            }
            return Ok(Some(Frame {
                off,
                len: len as usize,
                size,
            }));
        }
        Err(TryRecvError::Corrupt("too many consecutive pad markers"))
    }

    /// Steps past `f` without publishing (batches publish once).
    #[inline]
    pub(super) fn advance(&mut self, f: Frame) {
        self.head = self.head.wrapping_add(f.size);
        self.popped = self.popped.wrapping_add(1);
    }

    /// Steps past `f` and publishes the new head.
    #[inline]
    pub(super) fn consume(&mut self, ring: &RawRing, f: Frame) {
        self.advance(f);
        self.publish_head(ring);
    }

    /// The payload of a frame found by [`peek`](Self::peek).
    #[inline]
    pub(super) fn payload(ring: &RawRing, f: Frame) -> &[u8] {
        // A hostile process could still write these bytes; that changes
        // the bytes we see, never where we read (SAFETY.md §7).
        // SAFETY: `peek` checked `off + 4 + len <= cap` and that the bytes
        // are committed (below the Acquire-loaded tail): in bounds, and
        // not rewritten by the producer until we publish a head past them.
        unsafe { std::slice::from_raw_parts(ring.at(f.off + LEN_BYTES), f.len) }
    }
}
