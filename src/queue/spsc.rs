//! [`SpscRing`]: a single-producer single-consumer ring of variable-length
//! byte frames in shared memory.
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
//! * Publishing is one `Release` store of `tail` after the frame's bytes are
//!   written; consuming is one `Release` store of `head` after the bytes
//!   are read. The other side `Acquire`s the index before touching bytes.
//! * Blocking is a short pure spin whose length adapts per handle (it
//!   shrinks when spinning never catches the peer, e.g. both processes on
//!   one CPU), two `sched_yield`s, then a park on a
//!   [`Notifier`] ("data" for the consumer, "space" for the producer) in
//!   slices of 1 ms doubling to 64 ms; after each slice the waiter checks
//!   whether the peer side closed or died ([`PeerTable::is_disconnected`]).
//!   The notifying side makes no syscall while nobody sleeps.
//!
//! Shared memory is untrusted: the consumer checks every index and length it
//! reads (`tail - head <= capacity`, 8-aligned indices, frame lengths within
//! the committed bytes and the buffer, valid markers) and reports
//! [`TryRecvError::Corrupt`] instead of reading out of bounds.
//!
//! # Layout (`LAYOUT_VERSION` 1, kind [`ObjectKind::SPSC_RING`])
//!
//! | offset | what |
//! |---|---|
//! | 0 | producer line: `tail: u64`, `pushed: u64` (frames ever pushed) |
//! | 128 | consumer line: `head: u64`, `popped: u64` (frames ever popped) |
//! | 256 | `data: Notifier`, `space: Notifier` |
//! | 384 | producer `PeerTable` (header + 1 slot), consumer `PeerTable` (header + 1 slot) |
//! | 512 | `capacity` bytes of frames |
//!
//! Header parameters: `[capacity, RING_HEADER_SIZE, FRAME_FORMAT]`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{AttachError, Error};
use crate::os::{self, Deadline};
use crate::primitives::{AtomicU64, Ordering, SpinBudget};
use crate::queue::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::queue::peers::{PeerSlot, PeerTable, PeerTableHeader};
use crate::segment::{
    attach_object, create_object, open_object, HeaderInfo, ObjectKind, OpenOptions, Region, Segment,
};
use crate::sync::Notifier;

/// Frame header value marking "skip to the end of the buffer".
pub const PAD: u32 = u32::MAX;
/// Bytes of control state before the frame buffer.
pub const RING_HEADER_SIZE: usize = 512;
/// Smallest accepted capacity in bytes.
pub const MIN_CAPACITY: usize = 16;
/// Largest accepted capacity in bytes (2 GiB).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Version of the frame format recorded in the segment header.
const FRAME_FORMAT: u64 = 1;
/// Bytes of the length header in front of each payload.
const LEN_BYTES: u64 = 4;
/// Consecutive empty `try_pop`s between two liveness checks of the producer
/// (each check costs a few syscalls).
const LIVENESS_EVERY: u32 = 1024;

#[repr(C, align(128))]
struct IndexLine {
    /// `tail` on the producer line, `head` on the consumer line.
    pos: AtomicU64,
    /// Frames ever pushed (producer line) / popped (consumer line).
    frames: AtomicU64,
}

#[repr(C, align(128))]
struct NotifyLine {
    data: Notifier,
    space: Notifier,
}

#[repr(C, align(128))]
struct PeerLine {
    prod_hdr: PeerTableHeader,
    prod_slot: [PeerSlot; 1],
    cons_hdr: PeerTableHeader,
    cons_slot: [PeerSlot; 1],
}

/// The control block at the start of a ring's body (512 bytes).
#[repr(C)]
struct RingHeader {
    prod: IndexLine,
    cons: IndexLine,
    notify: NotifyLine,
    peers: PeerLine,
}

impl RingHeader {
    fn new() -> Self {
        Self {
            prod: IndexLine {
                pos: AtomicU64::new(0),
                frames: AtomicU64::new(0),
            },
            cons: IndexLine {
                pos: AtomicU64::new(0),
                frames: AtomicU64::new(0),
            },
            notify: NotifyLine {
                data: Notifier::new(),
                space: Notifier::new(),
            },
            peers: PeerLine {
                prod_hdr: PeerTableHeader::default(),
                prod_slot: [PeerSlot::default()],
                cons_hdr: PeerTableHeader::default(),
                cons_slot: [PeerSlot::default()],
            },
        }
    }

    fn producers(&self) -> PeerTable<'_> {
        PeerTable::new(&self.peers.prod_hdr, &self.peers.prod_slot)
    }

    fn consumers(&self) -> PeerTable<'_> {
        PeerTable::new(&self.peers.cons_hdr, &self.peers.cons_slot)
    }
}

/// Size in bytes of a frame carrying `len` payload bytes, or `None` if it
/// overflows.
#[inline]
fn frame_size(len: usize) -> Option<u64> {
    let len = u64::try_from(len).ok()?;
    Some(len.checked_add(LEN_BYTES + 7)? & !7)
}

/// Largest payload a ring of `capacity` bytes can carry.
#[inline]
fn max_payload(capacity: usize) -> usize {
    capacity - LEN_BYTES as usize
}

/// Process-local fork generation: bumped in the parent after every
/// `fork()`, so a handle can tell whether a child may have inherited it
/// since it was last used.
mod fork_gen {
    use std::sync::atomic::{AtomicU64, Ordering};

    static FORKS: AtomicU64 = AtomicU64::new(0);

    #[cfg(not(any(miri, loom)))]
    extern "C" fn after_fork_in_parent() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }

    /// The current generation (registers the atfork hook on first use).
    #[inline]
    pub(super) fn current() -> u64 {
        #[cfg(not(any(miri, loom)))]
        {
            static HOOK: std::sync::Once = std::sync::Once::new();
            if !HOOK.is_completed() {
                HOOK.call_once(|| {
                    // SAFETY: registers a parent-side atfork handler that
                    // only increments an atomic; the handler is a plain
                    // `extern "C" fn` with static lifetime.
                    unsafe {
                        libc::pthread_atfork(None, Some(after_fork_in_parent), None);
                    }
                });
            }
        }
        FORKS.load(Ordering::Relaxed)
    }
}

enum Backing {
    /// A mapped segment (named or anonymous); the header lives inside it.
    Segment(#[allow(dead_code)] Segment),
    /// Process-local heap memory (threads only; used by Miri and loom).
    Heap {
        header: *mut RingHeader,
        data: *mut [u64],
    },
}

/// The process-local view of one ring: where its control block and frame
/// buffer are mapped.
struct Inner {
    hdr: NonNull<RingHeader>,
    data: NonNull<u8>,
    cap: usize,
    backing: Backing,
}

// SAFETY: the control block consists of atomics only; the frame buffer is
// accessed through raw pointers under the single-producer/single-consumer
// protocol (each byte range is owned by exactly one side at a time, handed
// over by Release/Acquire on `tail`/`head`). The heap backing is owned.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Backing::Heap { header, data } = self.backing {
            // SAFETY: both pointers came from `Box::into_raw` in
            // `SpscRing::in_process` and are freed exactly once, here, when
            // the last handle is gone.
            unsafe {
                drop(Box::from_raw(header));
                drop(Box::from_raw(data));
            }
        }
    }
}

impl Inner {
    #[inline]
    fn hdr(&self) -> &RingHeader {
        // SAFETY: `hdr` points at a RingHeader in the backing memory (bounds and
        // alignment checked at construction), alive as long as `self`; it is all
        // atomics, so any bytes another process writes are a valid value.
        unsafe { self.hdr.as_ref() }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.cap as u64 - 1
    }

    /// Pointer to byte `off` of the frame buffer.
    ///
    /// Callers pass `off < cap`; the pointer then stays in the buffer.
    #[inline]
    fn at(&self, off: u64) -> *mut u8 {
        debug_assert!(off < self.cap as u64);
        // SAFETY: `off & mask < cap`, and the buffer is `cap` bytes.
        unsafe { self.data.as_ptr().add((off & self.mask()) as usize) }
    }

    /// Reads the frame header at buffer offset `off` (8-aligned, `< cap`).
    #[inline]
    fn read_len(&self, off: u64) -> u32 {
        let p = self.at(off) as *const u32;
        // SAFETY: `off` is 8-aligned and `off + 4 <= cap` (cap a multiple of 8): in
        // bounds and aligned. One volatile read, then checked and used as a local,
        // so a peer rewriting it concurrently cannot make us use an unchecked value.
        unsafe { p.read_volatile() }
    }

    #[inline]
    fn write_len(&self, off: u64, len: u32) {
        let p = self.at(off) as *mut u32;
        // SAFETY: as for `read_len`; the producer owns bytes in
        // `[tail, head + cap)`, which include this header slot.
        unsafe { p.write_volatile(len) }
    }

    fn from_segment_parts(
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
        let hdr = body.ptr_at::<RingHeader>(0)?;
        let data = body.sub(RING_HEADER_SIZE, cap)?.as_ptr();
        let inner = Inner {
            hdr: NonNull::new(hdr).ok_or(AttachError::Corrupt("null mapping"))?,
            data: NonNull::new(data).ok_or(AttachError::Corrupt("null mapping"))?,
            cap,
            backing: Backing::Segment(seg),
        };
        inner.validate()?;
        Ok(inner)
    }

    /// Checks the shared state written by other processes.
    fn validate(&self) -> Result<(), AttachError> {
        let h = self.hdr();
        let tail = h.prod.pos.load(Ordering::Acquire);
        let head = h.cons.pos.load(Ordering::Acquire);
        check_indices(head, tail, self.cap).map_err(AttachError::Corrupt)?;
        h.producers().validate()?;
        h.consumers().validate()?;
        Ok(())
    }
}

/// Validates a (head, tail) pair read from shared memory.
#[inline]
fn check_indices(head: u64, tail: u64, cap: usize) -> Result<(), &'static str> {
    if (head | tail) & 7 != 0 {
        return Err("ring index not 8-aligned");
    }
    if tail.wrapping_sub(head) > cap as u64 {
        return Err("ring indices out of range (tail - head > capacity)");
    }
    Ok(())
}

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
    inner: Arc<Inner>,
}

impl fmt::Debug for SpscRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.inner.cap)
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

impl SpscRing {
    fn create_in(name: Option<&str>, capacity: usize) -> Result<Self, Error> {
        check_capacity(capacity)?;
        let params = [capacity as u64, RING_HEADER_SIZE as u64, FRAME_FORMAT];
        let (seg, body) = create_object(
            name,
            ObjectKind::SPSC_RING,
            &params,
            RING_HEADER_SIZE + capacity,
            |body| {
                let p = body.ptr_at::<RingHeader>(0)?;
                // SAFETY: in bounds and aligned (ptr_at); the segment is
                // fresh and unpublished, so nobody else uses it.
                unsafe { p.write(RingHeader::new()) };
                Ok(())
            },
        )?;
        let hdr = NonNull::new(body.ptr_at::<RingHeader>(0)?)
            .ok_or(Error::InvalidArgument("null mapping"))?;
        let data = NonNull::new(body.sub(RING_HEADER_SIZE, capacity)?.as_ptr())
            .ok_or(Error::InvalidArgument("null mapping"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                hdr,
                data,
                cap: capacity,
                backing: Backing::Segment(seg),
            }),
        })
    }

    /// Creates a named ring of `capacity_bytes` (a power of two, 16 B to
    /// 2 GiB). This handle owns the name: dropping it in this process
    /// unlinks it (mappings elsewhere stay valid).
    pub fn create(name: &str, capacity_bytes: usize) -> Result<Self, Error> {
        Self::create_in(Some(name), capacity_bytes)
    }

    /// Creates an anonymous ring (a memfd), shared with children forked
    /// afterwards.
    pub fn anonymous(capacity_bytes: usize) -> Result<Self, Error> {
        Self::create_in(None, capacity_bytes)
    }

    /// Attaches to the named ring created by another process; validates the
    /// header, the parameters and the shared indices.
    pub fn open(name: &str) -> Result<Self, AttachError> {
        Self::open_with(name, &OpenOptions::new())
    }

    /// [`open`](SpscRing::open) with explicit options.
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = open_object(name, ObjectKind::SPSC_RING, opts)?;
        Ok(Self {
            inner: Arc::new(Inner::from_segment_parts(seg, &info, body)?),
        })
    }

    /// Attaches to a ring in an already-mapped segment (e.g. an inherited
    /// memfd).
    pub fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, ObjectKind::SPSC_RING, opts)?;
        Ok(Self {
            inner: Arc::new(Inner::from_segment_parts(seg, &info, body)?),
        })
    }

    /// A ring in this process's heap, for threads only (it cannot be
    /// shared with another process). This is the backing used by the Miri
    /// and loom tests; the algorithm is the same.
    pub fn in_process(capacity_bytes: usize) -> Result<Self, Error> {
        check_capacity(capacity_bytes)?;
        let header = Box::into_raw(Box::new(RingHeader::new()));
        let words = vec![0u64; capacity_bytes / 8].into_boxed_slice();
        let data = Box::into_raw(words);
        Ok(Self {
            inner: Arc::new(Inner {
                // SAFETY: Box::into_raw never returns null.
                hdr: unsafe { NonNull::new_unchecked(header) },
                // SAFETY: as above; the slice has `capacity_bytes` bytes.
                data: unsafe { NonNull::new_unchecked(data as *mut u64 as *mut u8) },
                cap: capacity_bytes,
                backing: Backing::Heap { header, data },
            }),
        })
    }

    /// The segment holding the ring (`None` for an in-process ring).
    pub fn segment(&self) -> Option<&Segment> {
        match &self.inner.backing {
            Backing::Segment(s) => Some(s),
            Backing::Heap { .. } => None,
        }
    }

    /// Takes the producer side. Fails if a live producer (in this or
    /// another process) holds it; a dead producer's slot is reclaimed, and
    /// the new producer continues after the last frame it committed.
    pub fn producer(&self) -> Result<Producer, EndpointError> {
        Producer::new(self.inner.clone())
    }

    /// Takes the consumer side. Fails if a live consumer holds it; a dead
    /// consumer's slot is reclaimed, and the new consumer starts at the
    /// first frame the old one had not released.
    pub fn consumer(&self) -> Result<Consumer, EndpointError> {
        Consumer::new(self.inner.clone())
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.cap
    }

    /// Largest payload a single frame can carry (`capacity - 4`).
    pub fn max_message_len(&self) -> usize {
        max_payload(self.inner.cap)
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        ring_len(&self.inner)
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        let h = self.inner.hdr();
        h.cons.pos.load(Ordering::Acquire) == h.prod.pos.load(Ordering::Acquire)
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&self) -> bool {
        let h = self.inner.hdr();
        let head = h.cons.pos.load(Ordering::Acquire);
        let tail = h.prod.pos.load(Ordering::Acquire);
        (self.inner.cap as u64).saturating_sub(tail.wrapping_sub(head)) < 8
    }
}

fn ring_len(inner: &Inner) -> usize {
    let h = inner.hdr();
    let popped = h.cons.frames.load(Ordering::Acquire);
    let pushed = h.prod.frames.load(Ordering::Acquire);
    usize::try_from(pushed.saturating_sub(popped)).unwrap_or(usize::MAX)
}

/// Registers this process as the one `side` ("producer"/"consumer") of a
/// ring, whose peer table is `table`.
fn claim_side(table: PeerTable<'_>, side: &'static str) -> Result<(), EndpointError> {
    if table.is_closed() {
        return Err(EndpointError::Closed(side));
    }
    if !table.claim_exclusive(0) {
        return Err(EndpointError::AlreadyTaken(side, table.slot_pid(0)));
    }
    Ok(())
}

/// Drop of an endpoint registered in `table` as `pid` at fork generation
/// `gen`: gives up the registration and wakes the other side (waiting on
/// `other_side`) — unless another process holds the side now.
fn release_side(table: PeerTable<'_>, pid: u32, gen: u64, other_side: &Notifier) {
    if pid != os::current_pid() || table.slot_pid(0) != pid {
        return;
    }
    // If this process forked since the handle was last used, a child may
    // have inherited it and not used it yet: keep the registration so the
    // other side does not see a spurious disconnect; the child takes it
    // over on first use (or it dies with this process).
    if fork_gen::current() != gen {
        return;
    }
    table.unregister(0);
    other_side.notify_all();
}

/// Whether the side registered in `table`/slot 0 belongs to `pid`; if not,
/// try to (re)claim it after a fork or a dead owner. Returns the new owner
/// pid, or the error for the caller to report.
#[cold]
fn reclaim(table: PeerTable<'_>, registered: u32) -> Result<u32, EndpointError> {
    let me = os::current_pid();
    let held = table.slot_pid(0);
    if held == me {
        return Ok(me);
    }
    if registered != me && table.take_over(0, registered) {
        return Ok(me);
    }
    if table.is_closed() {
        return Err(EndpointError::Closed("ring"));
    }
    if registered != me && table.claim_exclusive(0) {
        return Ok(me);
    }
    Err(EndpointError::AlreadyTaken("ring", table.slot_pid(0)))
}

/// Sleeps on `n` until `key` changes, the slice ends or `deadline` passes.
fn park_slice(n: &Notifier, key: u32, slice: &mut Duration, deadline: Option<Deadline>) {
    let until = Deadline::earliest(deadline, Deadline::after(*slice));
    n.commit_wait(key, Some(until));
    *slice = (*slice * 2).min(Duration::from_millis(64));
}

/// Outcome of the producer checking for room.
enum Room {
    Ok,
    Full,
    Corrupt,
}

/// The producing end of an [`SpscRing`]. Not `Sync`: one thread pushes.
///
/// ```
/// use shmkit::queue::SpscRing;
///
/// let ring = SpscRing::in_process(64)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// // Zero-copy: write into the ring, then publish.
/// let mut g = tx.reserve(5).unwrap();
/// g.copy_from_slice(b"12345");
/// g.commit(5);
/// assert_eq!(&*rx.read().unwrap(), b"12345");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer {
    inner: Arc<Inner>,
    /// Our committed tail (equal to the shared one while we own the side).
    tail: u64,
    /// Last head we loaded.
    head_cache: u64,
    /// Frames we committed (mirrors the shared counter).
    pushed: u64,
    /// Pid that holds the registration.
    pid: u32,
    /// Fork generation at the last use (see `Drop`).
    gen: u64,
    /// Adaptive spin before parking while full (process-local).
    spin: SpinBudget,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.tail)
            .field("pid", &self.pid)
            .finish()
    }
}

impl Producer {
    fn new(inner: Arc<Inner>) -> Result<Self, EndpointError> {
        claim_side(inner.hdr().producers(), "producer")?;
        let mut p = Producer {
            tail: 0,
            head_cache: 0,
            pushed: 0,
            pid: os::current_pid(),
            gen: fork_gen::current(),
            spin: SpinBudget::default(),
            inner,
            _not_sync: PhantomData,
        };
        if let Err(e) = p.load_shared() {
            p.inner.hdr().producers().unregister(0);
            p.pid = 0;
            return Err(e);
        }
        Ok(p)
    }

    /// Loads the committed position from shared memory (on taking over).
    fn load_shared(&mut self) -> Result<(), EndpointError> {
        let h = self.inner.hdr();
        let tail = h.prod.pos.load(Ordering::Acquire);
        let head = h.cons.pos.load(Ordering::Acquire);
        check_indices(head, tail, self.inner.cap).map_err(EndpointError::Corrupt)?;
        self.tail = tail;
        self.head_cache = head;
        self.pushed = h.prod.frames.load(Ordering::Acquire);
        Ok(())
    }

    /// Checks that this process still owns the producer side (re-registers
    /// lazily in a forked child). `Err` = not usable.
    #[inline]
    fn ensure_owner(&mut self) -> bool {
        let h = self.inner.hdr();
        let me = os::current_pid();
        if me == self.pid && h.producers().slot_pid(0) == me {
            self.gen = fork_gen::current();
            return true;
        }
        self.ensure_owner_slow()
    }

    #[cold]
    fn ensure_owner_slow(&mut self) -> bool {
        match reclaim(self.inner.hdr().producers(), self.pid) {
            Ok(me) => {
                if me != self.pid {
                    self.pid = me;
                    if self.load_shared().is_err() {
                        return false;
                    }
                }
                self.gen = fork_gen::current();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether `need` bytes are free after `self.tail`.
    #[inline]
    fn room(&mut self, need: u64) -> Room {
        let cap = self.inner.cap as u64;
        if cap - (self.tail - self.head_cache) >= need {
            return Room::Ok;
        }
        let head = self.inner.hdr().cons.pos.load(Ordering::Acquire);
        // The consumer is untrusted too: head must lie in [tail - cap, tail].
        if check_indices(head, self.tail, self.inner.cap).is_err() {
            return Room::Corrupt;
        }
        self.head_cache = head;
        if cap - (self.tail - head) >= need {
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
    fn place(&mut self, fsize: u64) -> Result<u64, Room> {
        let cap = self.inner.cap as u64;
        let off = self.tail & (cap - 1);
        let to_end = cap - off;
        if fsize <= to_end {
            return match self.room(fsize) {
                Room::Ok => Ok(self.tail),
                r => Err(r),
            };
        }
        match self.room(to_end + fsize) {
            Room::Ok => {
                self.inner.write_len(off, PAD);
                Ok(self.tail + to_end)
            }
            Room::Corrupt => Err(Room::Corrupt),
            Room::Full => {
                if let Room::Ok = self.room(to_end) {
                    self.inner.write_len(off, PAD);
                    self.tail += to_end;
                    self.publish(self.tail, self.pushed);
                }
                Err(Room::Full)
            }
        }
    }

    /// Stores the frame count and the tail (Release) and wakes a sleeping
    /// consumer (no syscall when none sleeps).
    #[inline]
    fn publish(&mut self, tail: u64, pushed: u64) {
        let h = self.inner.hdr();
        self.tail = tail;
        self.pushed = pushed;
        h.prod.frames.store(pushed, Ordering::Release);
        // Publish with a SeqCst RMW: Release for the frame bytes, and the
        // StoreLoad half of the Dekker pair with a parking consumer, so the
        // waiter check below needs no separate fence (one locked
        // instruction per publish; see `Notifier::notify_one_after_rmw`).
        h.prod.pos.swap(tail, Ordering::SeqCst);
        h.notify.data.notify_one_after_rmw();
    }

    /// Writes one frame at counter position `at` (room already checked).
    #[inline]
    fn write_frame(&self, at: u64, msg: &[u8]) {
        let off = at & self.inner.mask();
        self.inner.write_len(off, msg.len() as u32);
        // SAFETY: `place` checked that the frame (4 + len bytes, rounded to
        // 8) fits between `off` and the end of the buffer and is free (the
        // consumer has released it); the source is a distinct local slice.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.inner.at(off + LEN_BYTES), msg.len())
        };
    }

    #[inline]
    fn consumer_closed(&self) -> bool {
        self.inner.hdr().consumers().is_closed()
    }

    /// Pushes one frame if there is room right now.
    pub fn try_push<'a>(&mut self, msg: &'a [u8]) -> Result<(), TrySendError<&'a [u8]>> {
        if !self.ensure_owner() || self.consumer_closed() {
            return Err(TrySendError::Disconnected(msg));
        }
        let fsize = match frame_size(msg.len()) {
            Some(f) if msg.len() <= max_payload(self.inner.cap) => f,
            _ => return Err(TrySendError::TooLarge(msg)),
        };
        match self.place(fsize) {
            Ok(at) => {
                self.write_frame(at, msg);
                self.publish(at + fsize, self.pushed + 1);
                Ok(())
            }
            Err(Room::Full) => Err(TrySendError::Full(msg)),
            Err(_) => Err(TrySendError::Disconnected(msg)),
        }
    }

    /// Pushes one frame, blocking while the ring is full. Fails if the
    /// consumer closed or died (`Disconnected`) or the frame can never fit.
    pub fn push<'a>(&mut self, msg: &'a [u8]) -> Result<(), SendError<&'a [u8]>> {
        self.push_until(msg, None).map_err(|e| match e {
            SendTimeoutError::TooLarge(m) => SendError::TooLarge(m),
            SendTimeoutError::Disconnected(m) | SendTimeoutError::Timeout(m) => {
                SendError::Disconnected(m)
            }
        })
    }

    /// [`push`](Producer::push) with a timeout.
    pub fn push_timeout<'a>(
        &mut self,
        msg: &'a [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.push_until(msg, Some(Deadline::after(timeout)))
    }

    /// [`push`](Producer::push) with an absolute deadline.
    pub fn push_deadline<'a>(
        &mut self,
        msg: &'a [u8],
        deadline: Deadline,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.push_until(msg, Some(deadline))
    }

    fn push_until<'a>(
        &mut self,
        msg: &'a [u8],
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        // Fast path: room right now, no spin state touched.
        match self.try_push(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(m)) => return Err(SendTimeoutError::Disconnected(m)),
            Err(TrySendError::TooLarge(m)) => return Err(SendTimeoutError::TooLarge(m)),
        }
        let mut spinner = self.spin.start();
        let mut parked = false;
        let mut slice = Duration::from_millis(1);
        let mut check_peer = false;
        loop {
            // A short pure spin (no sched_yield), then park: see SpinBudget.
            if !parked && spinner.spin() {
                match self.try_push(msg) {
                    Ok(()) => {
                        self.spin = self.spin.record(&spinner);
                        return Ok(());
                    }
                    Err(TrySendError::Full(_)) => continue,
                    Err(TrySendError::Disconnected(m)) => {
                        return Err(SendTimeoutError::Disconnected(m))
                    }
                    Err(TrySendError::TooLarge(m)) => return Err(SendTimeoutError::TooLarge(m)),
                }
            }
            // The liveness check costs syscalls: not before the first park,
            // only once a park ended and there is still no room.
            if check_peer && self.inner.hdr().consumers().is_disconnected() {
                return Err(SendTimeoutError::Disconnected(msg));
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(SendTimeoutError::Timeout(msg));
            }
            let inner = self.inner.clone();
            let space = &inner.hdr().notify.space;
            let key = space.prepare_wait();
            match self.try_push(msg) {
                Err(TrySendError::Full(_)) => {
                    park_slice(space, key, &mut slice, deadline);
                    if !parked {
                        parked = true;
                        self.spin = self.spin.record_parked();
                    }
                    check_peer = true;
                }
                other => {
                    space.cancel_wait();
                    match other {
                        Ok(()) => return Ok(()),
                        Err(TrySendError::Disconnected(m)) => {
                            return Err(SendTimeoutError::Disconnected(m))
                        }
                        Err(TrySendError::TooLarge(m)) | Err(TrySendError::Full(m)) => {
                            return Err(SendTimeoutError::TooLarge(m))
                        }
                    }
                }
            }
        }
    }

    /// Pushes as many of `msgs` (in order) as fit right now and publishes
    /// them with one index store and at most one wake-up. Returns how many
    /// were pushed; stops at the first that does not fit (or can never
    /// fit, or when the consumer is gone).
    pub fn push_batch(&mut self, msgs: &[&[u8]]) -> usize {
        if !self.ensure_owner() || self.consumer_closed() {
            return 0;
        }
        let start_tail = self.tail;
        let start_pushed = self.pushed;
        let mut n = 0;
        for msg in msgs {
            let fsize = match frame_size(msg.len()) {
                Some(f) if msg.len() <= max_payload(self.inner.cap) => f,
                _ => break,
            };
            // `place` works on `self.tail`; advance it locally, publish once.
            match self.place(fsize) {
                Ok(at) => {
                    self.write_frame(at, msg);
                    self.tail = at + fsize;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if n > 0 || self.tail != start_tail {
            let tail = self.tail;
            self.publish(tail, start_pushed + n as u64);
        }
        n
    }

    /// Reserves room for a frame of up to `len` bytes and returns a grant
    /// to write it in place. Nothing is visible to the consumer until
    /// [`WriteGrant::commit`]; dropping the grant publishes nothing.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, TrySendError<usize>> {
        if !self.ensure_owner() || self.consumer_closed() {
            return Err(TrySendError::Disconnected(len));
        }
        let fsize = match frame_size(len) {
            Some(f) if len <= max_payload(self.inner.cap) => f,
            _ => return Err(TrySendError::TooLarge(len)),
        };
        match self.place(fsize) {
            Ok(at) => Ok(WriteGrant {
                producer: self,
                at,
                len,
            }),
            Err(Room::Full) => Err(TrySendError::Full(len)),
            Err(_) => Err(TrySendError::Disconnected(len)),
        }
    }

    /// Makes sure this process owns the producer side (taking it over from
    /// the parent after a fork). Returns false if another live process
    /// holds it.
    pub fn claim(&mut self) -> bool {
        self.ensure_owner()
    }

    /// Closes the producer side for good: the consumer drains what was
    /// committed, then gets `Disconnected`. No producer can attach again.
    pub fn close(&mut self) {
        let h = self.inner.hdr();
        h.producers().close();
        h.notify.data.notify_all();
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        ring_len(&self.inner)
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.hdr().cons.pos.load(Ordering::Acquire) == self.tail
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&mut self) -> bool {
        !matches!(self.room(8), Room::Ok)
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.cap
    }

    /// Whether the consumer side has closed, or had a consumer and none is
    /// alive (a liveness check: a few syscalls).
    pub fn is_disconnected(&self) -> bool {
        self.inner.hdr().consumers().is_disconnected()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.inner.hdr();
        release_side(h.producers(), self.pid, self.gen, &h.notify.data);
    }
}

/// Room for one frame, written in place; see [`Producer::reserve`].
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    at: u64,
    len: usize,
}

impl WriteGrant<'_> {
    /// Publishes the first `len` bytes of the grant as one frame.
    ///
    /// # Panics
    /// If `len` exceeds the reserved length.
    pub fn commit(self, len: usize) {
        assert!(
            len <= self.len,
            "commit({len}) exceeds the reserved {} bytes",
            self.len
        );
        let at = self.at;
        let p = self.producer;
        p.inner.write_len(at & p.inner.mask(), len as u32);
        // frame_size cannot fail: len <= reserved len, which fit.
        let fsize = frame_size(len).unwrap_or(0);
        let pushed = p.pushed + 1;
        p.publish(at + fsize, pushed);
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = self
            .producer
            .inner
            .at((self.at & self.producer.inner.mask()) + LEN_BYTES);
        // SAFETY: `place` reserved `len` payload bytes at this offset, inside
        // the buffer and owned by the producer until published; `&self`
        // borrows the producer, so nothing else writes them in this process.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self
            .producer
            .inner
            .at((self.at & self.producer.inner.mask()) + LEN_BYTES);
        // SAFETY: as for `deref`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}

impl fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.len)
            .finish()
    }
}

/// `try_pop_into` could not deliver a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryPopIntoError {
    /// Nothing queued (or the queue is disconnected/corrupt).
    #[error(transparent)]
    Recv(#[from] TryRecvError),
    /// The next frame is `needed` bytes, larger than the buffer; it was not
    /// consumed.
    #[error("buffer too small: the next frame is {needed} bytes")]
    BufferTooSmall {
        /// Length of the waiting frame.
        needed: usize,
    },
}

/// The consuming end of an [`SpscRing`]. Not `Sync`: one thread pops.
///
/// ```
/// use shmkit::queue::SpscRing;
///
/// let ring = SpscRing::in_process(64)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_push(b"ab").unwrap();
/// let mut buf = [0u8; 8];
/// assert_eq!(rx.try_pop_into(&mut buf), Ok(2));
/// assert_eq!(&buf[..2], b"ab");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    inner: Arc<Inner>,
    head: u64,
    tail_cache: u64,
    popped: u64,
    pid: u32,
    gen: u64,
    empty_polls: u32,
    /// Adaptive spin before parking while empty (process-local).
    spin: SpinBudget,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("pid", &self.pid)
            .finish()
    }
}

/// A frame found at the head: where its payload is and how long it is.
#[derive(Clone, Copy)]
struct Frame {
    off: u64,
    len: usize,
    size: u64,
}

impl Consumer {
    fn new(inner: Arc<Inner>) -> Result<Self, EndpointError> {
        claim_side(inner.hdr().consumers(), "consumer")?;
        let mut c = Consumer {
            head: 0,
            tail_cache: 0,
            popped: 0,
            pid: os::current_pid(),
            gen: fork_gen::current(),
            empty_polls: 0,
            spin: SpinBudget::default(),
            inner,
            _not_sync: PhantomData,
        };
        if let Err(e) = c.load_shared() {
            c.inner.hdr().consumers().unregister(0);
            c.pid = 0;
            return Err(e);
        }
        Ok(c)
    }

    fn load_shared(&mut self) -> Result<(), EndpointError> {
        let h = self.inner.hdr();
        let head = h.cons.pos.load(Ordering::Acquire);
        let tail = h.prod.pos.load(Ordering::Acquire);
        check_indices(head, tail, self.inner.cap).map_err(EndpointError::Corrupt)?;
        self.head = head;
        self.tail_cache = tail;
        self.popped = h.cons.frames.load(Ordering::Acquire);
        Ok(())
    }

    #[inline]
    fn ensure_owner(&mut self) -> bool {
        let me = os::current_pid();
        if me == self.pid && self.inner.hdr().consumers().slot_pid(0) == me {
            self.gen = fork_gen::current();
            return true;
        }
        self.ensure_owner_slow()
    }

    #[cold]
    fn ensure_owner_slow(&mut self) -> bool {
        match reclaim(self.inner.hdr().consumers(), self.pid) {
            Ok(me) => {
                if me != self.pid {
                    self.pid = me;
                    if self.load_shared().is_err() {
                        return false;
                    }
                }
                self.gen = fork_gen::current();
                true
            }
            Err(_) => false,
        }
    }

    /// Reloads the shared tail (Acquire) and validates it.
    #[inline]
    fn reload_tail(&mut self) -> Result<(), TryRecvError> {
        let tail = self.inner.hdr().prod.pos.load(Ordering::Acquire);
        check_indices(self.head, tail, self.inner.cap).map_err(TryRecvError::Corrupt)?;
        self.tail_cache = tail;
        Ok(())
    }

    /// Publishes `head` (Release) and wakes a sleeping producer.
    #[inline]
    fn publish_head(&mut self) {
        let h = self.inner.hdr();
        h.cons.frames.store(self.popped, Ordering::Release);
        // SeqCst RMW publish, as in `Producer::publish`: Release for the
        // freed bytes, and the StoreLoad barrier for the waiter check.
        h.cons.pos.swap(self.head, Ordering::SeqCst);
        h.notify.space.notify_one_after_rmw();
    }

    /// Finds the next frame (skipping pad markers), validating everything
    /// it reads. `Ok(None)` = nothing committed.
    #[inline]
    fn peek(&mut self) -> Result<Option<Frame>, TryRecvError> {
        let cap = self.inner.cap as u64;
        // At most two pad markers can precede a frame that was committed
        // when we loaded the tail; a bound keeps a hostile producer from
        // looping us.
        for _ in 0..3 {
            if self.tail_cache == self.head {
                self.reload_tail()?;
                if self.tail_cache == self.head {
                    return Ok(None);
                }
            }
            let avail = self.tail_cache - self.head;
            let off = self.head & (cap - 1);
            let to_end = cap - off;
            let raw = self.inner.read_len(off);
            if raw == PAD {
                if to_end > avail {
                    return Err(TryRecvError::Corrupt(
                        "pad marker runs past the committed bytes",
                    ));
                }
                self.head += to_end;
                self.publish_head();
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

    /// Why nothing was found: `Disconnected` if the producer side is gone
    /// (checked cheaply every time, with a liveness check every
    /// `LIVENESS_EVERY` empty polls or when `force`), else `Empty`.
    fn empty_reason(&mut self, force: bool) -> Result<Option<Frame>, TryRecvError> {
        let table = self.inner.hdr().producers();
        self.empty_polls = self.empty_polls.wrapping_add(1);
        let gone = table.is_closed()
            || ((force || self.empty_polls % LIVENESS_EVERY == 0) && table.is_disconnected());
        if !gone {
            return Err(TryRecvError::Empty);
        }
        // Drain: everything committed before the close/death is delivered.
        match self.peek()? {
            Some(f) => Ok(Some(f)),
            None => Err(TryRecvError::Disconnected),
        }
    }

    #[inline]
    fn next(&mut self, force_check: bool) -> Result<Frame, TryRecvError> {
        if !self.ensure_owner() {
            return Err(TryRecvError::Disconnected);
        }
        match self.peek()? {
            Some(f) => {
                self.empty_polls = 0;
                Ok(f)
            }
            None => match self.empty_reason(force_check)? {
                Some(f) => Ok(f),
                None => Err(TryRecvError::Empty),
            },
        }
    }

    #[inline]
    fn consume(&mut self, f: Frame) {
        self.head += f.size;
        self.popped += 1;
        self.publish_head();
    }

    #[inline]
    fn payload(&self, f: Frame) -> &[u8] {
        // SAFETY: `peek` checked `off + 4 + len <= cap` and that the bytes
        // are committed (below the Acquire-loaded tail), so they are in
        // bounds and the producer does not write them until we publish a
        // head past them. A hostile process could still write them; that
        // changes the bytes we see, never where we read (SAFETY.md §7).
        unsafe { std::slice::from_raw_parts(self.inner.at(f.off + LEN_BYTES), f.len) }
    }

    /// Pops one frame into `buf` (cleared first) if one is committed.
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<(), TryRecvError> {
        let f = self.next(false)?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// Pops one frame into `buf`, returning its length. If the frame is
    /// longer than `buf`, it stays queued and `BufferTooSmall` says how
    /// long it is.
    pub fn try_pop_into(&mut self, buf: &mut [u8]) -> Result<usize, TryPopIntoError> {
        let f = self.next(false)?;
        if f.len > buf.len() {
            return Err(TryPopIntoError::BufferTooSmall { needed: f.len });
        }
        buf[..f.len].copy_from_slice(self.payload(f));
        self.consume(f);
        Ok(f.len)
    }

    /// Borrows the next frame in place (zero-copy). The frame is consumed
    /// when the grant is released or dropped.
    pub fn read(&mut self) -> Result<ReadGrant<'_>, TryRecvError> {
        let f = self.next(false)?;
        Ok(ReadGrant { consumer: self, f })
    }

    /// Calls `f` on up to `max` committed frames in order, then publishes
    /// the new head once. Returns how many were handed to `f`; `Empty` /
    /// `Disconnected` only when there was none.
    pub fn try_pop_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        let first = self.next(false)?;
        let mut frame = first;
        let mut n = 0;
        loop {
            f(self.payload(frame));
            self.head += frame.size;
            self.popped += 1;
            n += 1;
            if n >= max || self.head == self.tail_cache {
                break;
            }
            // Only frames below the cached tail: no reload mid-batch.
            match self.peek() {
                Ok(Some(fr)) => frame = fr,
                _ => break,
            }
        }
        self.publish_head();
        Ok(n)
    }

    /// Pops one frame into `buf`, blocking while the ring is empty.
    /// Returns `Disconnected` once the producer closed or died and every
    /// committed frame has been popped.
    pub fn pop(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let f = self.wait_frame(None).map_err(|e| match e {
            RecvTimeoutError::Corrupt(c) => RecvError::Corrupt(c),
            _ => RecvError::Disconnected,
        })?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// [`pop`](Consumer::pop) with a timeout.
    pub fn pop_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), RecvTimeoutError> {
        self.pop_deadline(buf, Deadline::after(timeout))
    }

    /// [`pop`](Consumer::pop) with an absolute deadline.
    pub fn pop_deadline(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Deadline,
    ) -> Result<(), RecvTimeoutError> {
        let f = self.wait_frame(Some(deadline))?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// Blocking [`read`](Consumer::read): waits for a frame (or `deadline`).
    pub fn read_blocking(
        &mut self,
        deadline: Option<Deadline>,
    ) -> Result<ReadGrant<'_>, RecvTimeoutError> {
        let f = self.wait_frame(deadline)?;
        Ok(ReadGrant { consumer: self, f })
    }

    /// Waits until a frame is committed, without consuming it (`Ok`), or
    /// until the producer is gone and everything was drained
    /// (`Disconnected`), or `deadline` passes.
    pub fn wait_ready(&mut self, deadline: Option<Deadline>) -> Result<(), RecvTimeoutError> {
        self.wait_frame(deadline).map(|_| ())
    }

    /// Makes sure this process owns the consumer side (taking it over from
    /// the parent after a fork). Returns false if another live process
    /// holds it.
    pub fn claim(&mut self) -> bool {
        self.ensure_owner()
    }

    /// Waits until a frame is committed (it is not consumed).
    fn wait_frame(&mut self, deadline: Option<Deadline>) -> Result<Frame, RecvTimeoutError> {
        let map = |e: TryRecvError| match e {
            TryRecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
            _ => RecvTimeoutError::Disconnected,
        };
        // Fast path: a frame is already committed, no spin state touched.
        match self.next(false) {
            Ok(f) => return Ok(f),
            Err(TryRecvError::Empty) => {}
            Err(e) => return Err(map(e)),
        }
        let mut spinner = self.spin.start();
        let mut parked = false;
        let mut slice = Duration::from_millis(1);
        let mut check_peer = false;
        loop {
            // A short pure spin (no sched_yield), then park: see SpinBudget.
            if !parked && spinner.spin() {
                match self.next(false) {
                    Ok(f) => {
                        self.spin = self.spin.record(&spinner);
                        return Ok(f);
                    }
                    Err(TryRecvError::Empty) => continue,
                    Err(e) => return Err(map(e)),
                }
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(RecvTimeoutError::Timeout);
            }
            let inner = self.inner.clone();
            let data = &inner.hdr().notify.data;
            let key = data.prepare_wait();
            // Re-check after registering (no lost wake-up); the liveness
            // check (syscalls) not before the first park.
            match self.next(check_peer) {
                Err(TryRecvError::Empty) => {
                    park_slice(data, key, &mut slice, deadline);
                    if !parked {
                        parked = true;
                        self.spin = self.spin.record_parked();
                    }
                    check_peer = true;
                }
                other => {
                    data.cancel_wait();
                    return other.map_err(map);
                }
            }
        }
    }

    /// Closes the consumer side for good: the producer's pushes fail with
    /// `Disconnected`. No consumer can attach again.
    pub fn close(&mut self) {
        let h = self.inner.hdr();
        h.consumers().close();
        h.notify.space.notify_all();
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        ring_len(&self.inner)
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.inner.hdr().prod.pos.load(Ordering::Acquire) == self.head
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&self) -> bool {
        let tail = self.inner.hdr().prod.pos.load(Ordering::Acquire);
        (self.inner.cap as u64).saturating_sub(tail.wrapping_sub(self.head)) < 8
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.inner.cap
    }

    /// Whether the producer side has closed, or had a producer and none is
    /// alive (a liveness check: a few syscalls).
    pub fn is_disconnected(&self) -> bool {
        self.inner.hdr().producers().is_disconnected()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let h = self.inner.hdr();
        release_side(h.consumers(), self.pid, self.gen, &h.notify.space);
    }
}

/// One frame borrowed in place; see [`Consumer::read`]. Dereferences to the
/// payload. Releasing (or dropping) it consumes the frame.
///
/// The bytes live in shared memory: a misbehaving process with write
/// access could change them while they are borrowed (never their location
/// or length).
pub struct ReadGrant<'a> {
    consumer: &'a mut Consumer,
    f: Frame,
}

impl ReadGrant<'_> {
    /// Consumes the frame (same as dropping the grant).
    pub fn release(self) {}
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.payload(self.f)
    }
}

impl Drop for ReadGrant<'_> {
    fn drop(&mut self) {
        let f = self.f;
        self.consumer.consume(f);
    }
}

impl fmt::Debug for ReadGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGrant")
            .field("len", &self.f.len)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn pair(cap: usize) -> (SpscRing, Producer, Consumer) {
        let r = SpscRing::in_process(cap).unwrap();
        let p = r.producer().unwrap();
        let c = r.consumer().unwrap();
        (r, p, c)
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(std::mem::size_of::<RingHeader>(), RING_HEADER_SIZE);
        assert_eq!(std::mem::offset_of!(RingHeader, cons), 128);
        assert_eq!(std::mem::offset_of!(RingHeader, notify), 256);
        assert_eq!(std::mem::offset_of!(RingHeader, peers), 384);
    }

    #[test]
    fn push_pop_in_order_with_wrap() {
        let (_r, mut p, mut c) = pair(64);
        let mut buf = Vec::new();
        for i in 0..500u32 {
            let len = (i % 23) as usize;
            let msg: Vec<u8> = (0..len).map(|k| (i as u8).wrapping_add(k as u8)).collect();
            p.try_push(&msg).unwrap();
            assert_eq!(p.len(), 1);
            c.try_pop(&mut buf).unwrap();
            assert_eq!(buf, msg);
        }
        assert_eq!(c.try_pop(&mut buf), Err(TryRecvError::Empty));
    }

    #[test]
    fn exact_fit_and_too_large() {
        let (r, mut p, mut c) = pair(16);
        assert_eq!(r.max_message_len(), 12);
        assert!(matches!(
            p.try_push(&[0; 13]),
            Err(TrySendError::TooLarge(_))
        ));
        p.try_push(&[7; 12]).unwrap();
        assert!(p.is_full());
        assert!(matches!(p.try_push(&[]), Err(TrySendError::Full(_))));
        let mut b = Vec::new();
        c.try_pop(&mut b).unwrap();
        assert_eq!(b, [7; 12]);
        // Now at offset 0 again (16 % 16): another exact fit.
        p.try_push(&[8; 12]).unwrap();
        c.try_pop(&mut b).unwrap();
        assert_eq!(b, [8; 12]);
    }

    #[test]
    fn pad_published_when_frame_needs_start() {
        let (_r, mut p, mut c) = pair(32);
        let mut b = Vec::new();
        p.try_push(&[1; 12]).unwrap(); // 16 bytes at 0
        c.try_pop(&mut b).unwrap(); // head = 16
        p.try_push(&[2; 4]).unwrap(); // 8 bytes at 16; tail = 24
                                      // A 24-byte frame does not fit in the 8 bytes before the end, and
                                      // pad + frame (32) exceeds the free 24: the pad alone is published.
        assert!(matches!(p.try_push(&[3; 20]), Err(TrySendError::Full(_))));
        c.try_pop(&mut b).unwrap();
        assert_eq!(b, [2; 4]);
        // The consumer skipped the pad on its way: the frame now fits at 0.
        assert_eq!(c.try_pop(&mut b), Err(TryRecvError::Empty));
        p.try_push(&[3; 20]).unwrap();
        c.try_pop(&mut b).unwrap();
        assert_eq!(b, [3; 20]);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn try_pop_into_too_small_keeps_frame() {
        let (_r, mut p, mut c) = pair(64);
        p.try_push(b"hello").unwrap();
        let mut small = [0u8; 2];
        assert_eq!(
            c.try_pop_into(&mut small),
            Err(TryPopIntoError::BufferTooSmall { needed: 5 })
        );
        let mut big = [0u8; 8];
        assert_eq!(c.try_pop_into(&mut big), Ok(5));
        assert_eq!(&big[..5], b"hello");
    }

    #[test]
    fn grants_and_batches() {
        let (_r, mut p, mut c) = pair(128);
        {
            // Dropped at the end of this block without commit: nothing is
            // published.
            let _g = p.reserve(10).unwrap();
        }
        assert!(c.is_empty());
        let mut g = p.reserve(10).unwrap();
        g[..3].copy_from_slice(b"abc");
        g.commit(3);
        assert_eq!(p.push_batch(&[b"x", b"yy", b"zzz"]), 3);
        assert_eq!(c.len(), 4);
        let g = c.read().unwrap();
        assert_eq!(&*g, b"abc");
        g.release();
        let mut seen = Vec::new();
        assert_eq!(c.try_pop_batch(10, |f| seen.push(f.to_vec())), Ok(3));
        assert_eq!(seen, vec![b"x".to_vec(), b"yy".to_vec(), b"zzz".to_vec()]);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn one_producer_one_consumer() {
        let r = SpscRing::in_process(64).unwrap();
        let p = r.producer().unwrap();
        assert!(matches!(r.producer(), Err(EndpointError::AlreadyTaken(..))));
        drop(p);
        let _p2 = r.producer().unwrap();
        let _c = r.consumer().unwrap();
        assert!(matches!(r.consumer(), Err(EndpointError::AlreadyTaken(..))));
    }

    #[test]
    fn close_then_drain_then_disconnected() {
        let (_r, mut p, mut c) = pair(64);
        p.try_push(b"last").unwrap();
        p.close();
        let mut b = Vec::new();
        c.pop(&mut b).unwrap();
        assert_eq!(b, b"last");
        assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
        c.close();
        assert!(matches!(
            p.try_push(b"x"),
            Err(TrySendError::Disconnected(_))
        ));
    }

    #[test]
    fn dropped_producer_disconnects_blocked_consumer() {
        let (_r, p, mut c) = pair(64);
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut p = p;
                p.push(b"one").unwrap();
                drop(p);
            });
            let mut b = Vec::new();
            c.pop(&mut b).unwrap();
            assert_eq!(b, b"one");
            assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
        });
    }

    #[test]
    fn threads_blocking_transfer() {
        let n: u32 = if cfg!(miri) { 200 } else { 100_000 };
        let (_r, mut p, mut c) = pair(256);
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..n {
                    let len = (i % 37) as usize + 4;
                    let mut m = vec![(i % 251) as u8; len];
                    m[..4].copy_from_slice(&i.to_le_bytes());
                    p.push(&m).unwrap();
                }
            });
            let mut b = Vec::new();
            for i in 0..n {
                c.pop(&mut b).unwrap();
                assert_eq!(b.len(), (i % 37) as usize + 4);
                assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), i);
                assert!(b[4..].iter().all(|&x| x == (i % 251) as u8));
            }
            assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
        });
    }

    #[test]
    fn timeouts() {
        let (_r, mut p, mut c) = pair(16);
        let mut b = Vec::new();
        assert_eq!(
            c.pop_timeout(&mut b, Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        p.try_push(&[1; 12]).unwrap();
        assert!(matches!(
            p.push_timeout(&[1; 4], Duration::from_millis(5)),
            Err(SendTimeoutError::Timeout(_))
        ));
    }

    #[test]
    fn corrupt_indices_and_lengths_are_errors() {
        let (r, mut p, mut c) = pair(64);
        p.try_push(b"abcdef").unwrap();
        let h = r.inner.hdr();
        // A length past the committed bytes.
        r.inner.write_len(0, 1000);
        let mut b = Vec::new();
        assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
        // tail - head > capacity.
        h.prod.pos.store(1 << 20, Ordering::Release);
        c.tail_cache = c.head;
        assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
        // misaligned tail
        h.prod.pos.store(12, Ordering::Release);
        assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
    }
}
