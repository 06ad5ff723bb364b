//! [`MpmcQueue`]: a bounded many-producer many-consumer queue of byte
//! messages in shared memory.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue",
//! 1024cores.net, 2010): a power-of-two array of slots, each with a
//! sequence stamp that says which lap of the ring it is ready for, plus a
//! `head` and a `tail` counter. It is adapted here for **peer death**.
//!
//! Plain Vyukov claims a position with a CAS on `tail` (or `head`) and then
//! publishes the slot's stamp. A producer SIGKILLed between the two leaves
//! a slot that is claimed but never published, and every consumer waits on
//! it forever; nobody can even tell *who* claimed it. Here the claim is
//! made on the *slot stamp itself* and names the claimer:
//!
//! * a stamp is 64 bits: `seq: u32` (low half) and `pid: u32` (high half,
//!   0 = nobody, [`SKIPPED`] = abandoned by a dead producer);
//! * producer at position `pos`: CAS the stamp `(pos, 0)` → `(pos, me)`,
//!   then CAS `tail` `pos` → `pos + 1` (anyone who sees a claimed stamp at
//!   `tail` helps advance it, so a producer dying here wedges nobody),
//!   write length and payload, publish `(pos + 1, 0)` with `Release`;
//! * consumer at `pos`: CAS `(pos + 1, 0)` → `(pos + 1, me)`, help `head`
//!   forward, check the length against the slot size, copy the payload,
//!   free the slot for the next lap with `(pos + cap, 0)`;
//! * a blocked waiter — only after a park slice, never on the hot path —
//!   looks at the slot it is stuck on. If the stamp names a claimer that
//!   [`process_alive`](crate::os::process_alive) reports dead, it CASes
//!   that exact stamp: a dead *producer's* claim `(pos, P)` becomes
//!   `(pos + 1, SKIPPED)`, which consumers free without returning anything
//!   (that message was never sent: its `send` never returned `Ok`); a dead
//!   *consumer's* claim `(pos + 1, C)` becomes `(pos + cap, 0)`, free for
//!   the next lap (its in-flight message is lost, as it would be had the
//!   consumer died just after `recv` returned).
//!
//! The recovery CAS compares the whole stamp, so exactly one survivor
//! recovers a slot, and only a claim whose holder is dead: a dead process
//! runs no more instructions, so its claim can never be completed behind
//! the recoverer's back.
//!
//! Guarantees: a producer killed mid-send loses at most its own message; a
//! consumer killed mid-receive loses at most the one message it claimed;
//! no survivor wedges; no message is delivered twice; a message whose
//! stored length exceeds the slot size is reported as
//! [`TryRecvError::Corrupt`] (and its slot freed) instead of being read.
//!
//! Sequence numbers are 32-bit and compared with wrapping arithmetic: an
//! ABA on a stamp needs a thread stalled between loading `tail` and its
//! CAS while 2^32 other messages pass through, which we accept (crossbeam's
//! `ArrayQueue` on 32-bit targets makes the same bet).
//!
//! # Memory layout (segment body, `LAYOUT_VERSION` 1)
//!
//! | offset | what |
//! |---|---|
//! | 0 | `tail: u64`, padded to 64 bytes |
//! | 64 | `head: u64`, padded to 64 bytes |
//! | 128 | `not_empty`, `not_full`, `all_done`: [`Notifier`] (8 bytes each), `unfinished: u64`, sender and receiver `PeerTableHeader`s; padded to 64 |
//! | 192 | `MAX_PEERS` sender [`PeerSlot`]s, then `MAX_PEERS` receiver slots (8 bytes each) |
//! | 64-aligned | `capacity` slots of `16 + round_up(slot_size, 8)` bytes: `stamp: u64`, `len: u32`, `pad: u32`, payload |
//!
//! Header params: `[slot_size, capacity, MAX_PEERS, 1]`, all validated on
//! attach against the body length.

use std::sync::atomic::{
    AtomicU32 as AtomicU32Local, AtomicU64 as LocalU64, Ordering as LocalOrdering,
};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{AttachError, Error};
use crate::os::{self, Deadline};
use crate::primitives::{spin_hint, AtomicU32, AtomicU64, Backoff, Ordering};
use crate::queue::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::queue::peers::{PeerSlot, PeerTable, PeerTableHeader, PeersFull};
use crate::segment::{
    attach_object, create_object, open_object, HeaderInfo, LayoutBuilder, ObjectKind, OpenOptions,
    Region, Segment,
};
use crate::sync::Notifier;

/// Claimer pid marking a slot abandoned by a dead producer: consumers free
/// it and move on. No real pid is this large (pids are < 2^22 on Linux).
pub const SKIPPED: u32 = u32::MAX;

/// Peer-table slots per side in a shared segment (processes holding a
/// sender, processes holding a receiver).
pub const MAX_PEERS: usize = 64;

/// Largest slot payload accepted (1 MiB).
pub const MAX_SLOT_SIZE: usize = 1 << 20;

/// Largest capacity accepted (2^24 slots).
pub const MAX_CAPACITY: usize = 1 << 24;

const LAYOUT_TAG: u64 = 1;
const SLOT_META: usize = 16;
const MAX_SLICE: Duration = Duration::from_millis(64);

#[inline]
fn pack(seq: u32, pid: u32) -> u64 {
    (seq as u64) | ((pid as u64) << 32)
}

#[inline]
fn unpack(stamp: u64) -> (u32, u32) {
    (stamp as u32, (stamp >> 32) as u32)
}

/// `a - b` as a signed lap distance.
#[inline]
fn diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Moves a head/tail index from `pos` to `pos + 1` unless another process
/// already moved it (the claimer, or a helper).
#[inline(always)]
fn advance_from(index: &AtomicU64, pos: u64) {
    let _ = index.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::SeqCst,
        Ordering::Relaxed,
    );
}

#[repr(C, align(64))]
struct CacheLine<T>(T);

/// Fields that are written rarely (waiter counts, peer headers).
#[repr(C)]
struct Control {
    not_empty: Notifier,
    not_full: Notifier,
    all_done: Notifier,
    /// Bumped whenever an endpoint leaves: a cue to re-check liveness now.
    departures: AtomicU32,
    unfinished: AtomicU64,
    senders: PeerTableHeader,
    receivers: PeerTableHeader,
}

/// The queue's header in the segment body (see the module docs).
#[repr(C)]
struct QueueHeader {
    tail: CacheLine<AtomicU64>,
    head: CacheLine<AtomicU64>,
    ctl: CacheLine<Control>,
}

impl QueueHeader {
    fn new() -> Self {
        QueueHeader {
            tail: CacheLine(AtomicU64::new(0)),
            head: CacheLine(AtomicU64::new(0)),
            ctl: CacheLine(Control {
                not_empty: Notifier::new(),
                not_full: Notifier::new(),
                all_done: Notifier::new(),
                departures: AtomicU32::new(0),
                unfinished: AtomicU64::new(0),
                senders: PeerTableHeader::default(),
                receivers: PeerTableHeader::default(),
            }),
        }
    }
}

/// Per-slot metadata; the payload follows it (segment) or lives in a
/// separate array (loom builds).
#[repr(C)]
struct SlotMeta {
    stamp: AtomicU64,
    len: AtomicU32,
    _pad: AtomicU32,
}

/// Offsets of everything in a body, computed identically by the creator
/// and every attacher.
#[derive(Clone, Copy, Debug)]
struct Layout {
    senders: usize,
    receivers: usize,
    slots: usize,
    stride: usize,
    size: usize,
}

fn check_params(slot_size: usize, capacity: usize) -> Result<(), &'static str> {
    if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
        return Err("slot size must be between 1 and 1 MiB");
    }
    if !(2..=MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
        return Err("capacity must be a power of two between 2 and 2^24");
    }
    Ok(())
}

fn layout(slot_size: usize, capacity: usize, peers: usize) -> Result<Layout, Error> {
    check_params(slot_size, capacity).map_err(Error::InvalidArgument)?;
    let stride = SLOT_META + ((slot_size + 7) & !7);
    let mut l = LayoutBuilder::new();
    let hdr = l.add::<QueueHeader>();
    debug_assert_eq!(hdr, 0);
    let senders = l.add_array::<PeerSlot>(peers)?;
    let receivers = l.add_array::<PeerSlot>(peers)?;
    let bytes = stride
        .checked_mul(capacity)
        .ok_or(Error::InvalidArgument("queue size overflows"))?;
    let slots = l.add_bytes(bytes, 64)?;
    Ok(Layout {
        senders,
        receivers,
        slots,
        stride,
        size: l.size(),
    })
}

/// Why a raw push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushError {
    Full,
    TooLarge,
    Corrupt,
}

/// Why a raw pop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PopError {
    Empty,
    Corrupt(&'static str),
}

/// The lock-free algorithm over raw memory: a header, two peer tables and
/// `capacity` slots reached through base pointers and strides. The same
/// code runs over a segment, a heap block (unit tests, Miri) and boxed
/// loom objects.
struct RawQueue {
    hdr: *const QueueHeader,
    senders: *const PeerSlot,
    receivers: *const PeerSlot,
    peers: usize,
    meta: *const u8,
    meta_stride: usize,
    payload: *mut u8,
    payload_stride: usize,
    mask: u64,
    capacity: usize,
    slot_size: usize,
}

// SAFETY: every field reached through the pointers is an atomic, or payload
// bytes whose access is ordered by the slot stamps (a slot's payload is
// only touched by the process whose pid the stamp names).
unsafe impl Send for RawQueue {}
// SAFETY: as above.
unsafe impl Sync for RawQueue {}

impl RawQueue {
    #[inline]
    fn hdr(&self) -> &QueueHeader {
        // SAFETY: `hdr` points at an initialised header that lives as long
        // as the storage owned next to this struct (see `Shared`).
        unsafe { &*self.hdr }
    }

    fn senders(&self) -> PeerTable<'_> {
        // SAFETY: `peers` initialised PeerSlots live at `senders` for the
        // storage's lifetime; PeerSlot is atomics only.
        let slots = unsafe { std::slice::from_raw_parts(self.senders, self.peers) };
        PeerTable::new(&self.hdr().ctl.0.senders, slots)
    }

    fn receivers(&self) -> PeerTable<'_> {
        // SAFETY: as for `senders`.
        let slots = unsafe { std::slice::from_raw_parts(self.receivers, self.peers) };
        PeerTable::new(&self.hdr().ctl.0.receivers, slots)
    }

    fn ctl(&self) -> &Control {
        &self.hdr().ctl.0
    }

    #[inline]
    fn slot(&self, pos: u64) -> (&SlotMeta, *mut u8) {
        let i = (pos & self.mask) as usize;
        // SAFETY: i < capacity, and the storage holds `capacity` metas at
        // `meta_stride` and payloads of `slot_size` bytes at
        // `payload_stride`; metas are atomics only, valid for any bytes.
        unsafe {
            (
                &*(self.meta.add(i * self.meta_stride) as *const SlotMeta),
                self.payload.add(i * self.payload_stride),
            )
        }
    }

    /// One attempt to append `msg`, claiming as `me`.
    #[inline]
    fn try_push(&self, msg: &[u8], me: u32) -> Result<(), PushError> {
        if msg.len() > self.slot_size {
            return Err(PushError::TooLarge);
        }
        let tail = &self.hdr().tail.0;
        let mut pos = tail.load(Ordering::SeqCst);
        loop {
            let (meta, payload) = self.slot(pos);
            let stamp = meta.stamp.load(Ordering::Acquire);
            let (seq, pid) = unpack(stamp);
            let d = diff(seq, pos as u32);
            if d == 0 {
                if pid == 0 {
                    if meta
                        .stamp
                        .compare_exchange_weak(
                            stamp,
                            pack(seq, me),
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        advance_from(tail, pos);
                        // SAFETY: we own the slot (our pid is in its stamp);
                        // msg.len() <= slot_size, the payload's length.
                        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), payload, msg.len()) };
                        meta.len.store(msg.len() as u32, Ordering::Relaxed);
                        meta.stamp
                            .store(pack(seq.wrapping_add(1), 0), Ordering::Release);
                        return Ok(());
                    }
                } else {
                    // Claimed by another producer that has not moved
                    // `tail` yet (or died before it could): help.
                    advance_from(tail, pos);
                }
                spin_hint();
                pos = tail.load(Ordering::SeqCst);
            } else if d < 0 {
                // Still holds the previous lap: full, unless tail moved.
                let now = tail.load(Ordering::SeqCst);
                if now == pos {
                    let cap = self.capacity as i32;
                    return if d == -cap || d == -cap + 1 {
                        Err(PushError::Full)
                    } else {
                        Err(PushError::Corrupt)
                    };
                }
                pos = now;
            } else {
                let now = tail.load(Ordering::SeqCst);
                if now == pos {
                    if d != 1 {
                        return Err(PushError::Corrupt);
                    }
                    // `pos` was claimed and published (or skipped after its
                    // producer died) before anyone moved tail: help.
                    advance_from(tail, pos);
                    pos = tail.load(Ordering::SeqCst);
                } else {
                    pos = now;
                }
            }
        }
    }

    /// One attempt to take the oldest message, claiming as `me`; `f` sees
    /// the payload while the slot is held.
    #[inline]
    fn try_pop<R, F: FnOnce(&[u8]) -> R>(&self, me: u32, f: &mut Option<F>) -> Result<R, PopError> {
        let head = &self.hdr().head.0;
        let mut pos = head.load(Ordering::SeqCst);
        loop {
            let (meta, payload) = self.slot(pos);
            let stamp = meta.stamp.load(Ordering::Acquire);
            let (seq, pid) = unpack(stamp);
            let d = diff(seq, (pos as u32).wrapping_add(1));
            if d == 0 {
                if pid == 0 || pid == SKIPPED {
                    if meta
                        .stamp
                        .compare_exchange_weak(
                            stamp,
                            pack(seq, me),
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        advance_from(head, pos);
                        let free = pack((pos as u32).wrapping_add(self.capacity as u32), 0);
                        if pid == SKIPPED {
                            // A dead producer's slot: nothing was sent.
                            meta.stamp.store(free, Ordering::Release);
                            self.ctl().not_full.notify_one();
                            pos = head.load(Ordering::SeqCst);
                            continue;
                        }
                        let len = meta.len.load(Ordering::Relaxed) as usize;
                        if len > self.slot_size {
                            meta.stamp.store(free, Ordering::Release);
                            self.ctl().not_full.notify_one();
                            return Err(PopError::Corrupt("message length exceeds the slot size"));
                        }
                        // SAFETY: we own the slot; len <= slot_size bytes
                        // of payload are in bounds. The bytes were written
                        // before the Release publish our Acquire CAS saw.
                        let bytes = unsafe { std::slice::from_raw_parts(payload, len) };
                        let r = match f.take() {
                            Some(f) => f(bytes),
                            // Unreachable: `f` is only taken here, once.
                            None => return Err(PopError::Corrupt("receive callback reused")),
                        };
                        meta.stamp.store(free, Ordering::Release);
                        return Ok(r);
                    }
                } else {
                    advance_from(head, pos);
                }
                spin_hint();
                pos = head.load(Ordering::SeqCst);
            } else if d < 0 {
                let now = head.load(Ordering::SeqCst);
                if now == pos {
                    let cap = self.capacity as i32;
                    // seq == pos (free, or being written) or seq == pos -
                    // cap + 1 (the previous lap's consumer is still copying).
                    return if d == -1 || d == -cap {
                        Err(PopError::Empty)
                    } else {
                        Err(PopError::Corrupt("slot stamp inconsistent with head"))
                    };
                }
                pos = now;
            } else {
                let now = head.load(Ordering::SeqCst);
                if now == pos {
                    if d != self.capacity as i32 - 1 {
                        return Err(PopError::Corrupt("slot stamp ahead of head"));
                    }
                    // Freed for the next lap (a dead consumer's claim was
                    // recovered) before anyone moved head: help.
                    advance_from(head, pos);
                    pos = head.load(Ordering::SeqCst);
                } else {
                    pos = now;
                }
            }
        }
    }

    /// Releases a slot at `head` claimed by a dead producer (→ skipped) or
    /// a dead consumer (→ free). Returns whether anything was recovered.
    fn recover_head(&self) -> bool {
        let pos = self.hdr().head.0.load(Ordering::Acquire);
        self.recover_at(pos)
    }

    /// Same for the slot `tail` waits on (one lap behind it).
    fn recover_tail(&self) -> bool {
        let pos = self.hdr().tail.0.load(Ordering::Acquire);
        self.recover_at(pos)
    }

    /// Recovers the slot for position `pos` if its stamp names a dead
    /// claimer, whichever lap the claim is from.
    fn recover_at(&self, pos: u64) -> bool {
        let (meta, _) = self.slot(pos);
        let stamp = meta.stamp.load(Ordering::Acquire);
        let (seq, pid) = unpack(stamp);
        if pid == 0 || pid == SKIPPED || os::process_alive(pid) {
            return false;
        }
        let p = pos as u32;
        let cap = self.capacity as u32;
        // Which claim is it? A producer claim has seq == its position; a
        // consumer claim has seq == its position + 1. At `pos` (head) or
        // `pos - cap` (the lap tail waits on) those are distinguishable.
        let new = if seq == p || seq == p.wrapping_sub(cap) {
            pack(seq.wrapping_add(1), SKIPPED)
        } else if seq == p.wrapping_add(1) || seq == p.wrapping_sub(cap).wrapping_add(1) {
            pack(seq.wrapping_sub(1).wrapping_add(cap), 0)
        } else {
            return false;
        };
        let ok = meta
            .stamp
            .compare_exchange(stamp, new, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok {
            tracing::debug!(pid, seq, "mpmc: recovered a slot claimed by a dead process");
            // The helper rules advance head/tail past a claimed slot; make
            // sure tail is not left behind a now-skipped producer slot.
            self.ctl().not_empty.notify_all();
            self.ctl().not_full.notify_all();
        }
        ok
    }

    /// Messages in the queue (claimed-but-unpublished ones included).
    fn len(&self) -> usize {
        let h = self.hdr();
        loop {
            let tail = h.tail.0.load(Ordering::SeqCst);
            let head = h.head.0.load(Ordering::SeqCst);
            if h.tail.0.load(Ordering::SeqCst) == tail {
                return (tail.wrapping_sub(head) as usize).min(self.capacity);
            }
        }
    }
}

/// Backing memory of a queue.
enum Storage {
    Segment(Segment),
    #[cfg(not(loom))]
    Heap(#[allow(dead_code)] HeapBlock),
    #[cfg(loom)]
    Loom {
        _hdr: Box<QueueHeader>,
        _senders: Vec<PeerSlot>,
        _receivers: Vec<PeerSlot>,
        _meta: Vec<SlotMeta>,
        _payload: Vec<u64>,
    },
}

/// A zeroed, 64-aligned heap block laid out exactly like a segment body.
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
        // SAFETY: allocated in `in_process` with exactly this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

pub(crate) struct Shared {
    raw: RawQueue,
    // Declared last: dropped after `raw`, whose pointers point into it.
    storage: Storage,
}

impl Shared {
    /// Initialises a zeroed body laid out by `l` and views it.
    ///
    /// # Safety
    /// `base` must be valid for `l.size` bytes, 64-aligned, zeroed, and
    /// unused by anyone else until this returns.
    #[cfg(not(loom))]
    unsafe fn init_body(base: *mut u8, l: &Layout, slot_size: usize, capacity: usize) {
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
                (base.add(l.slots + i * l.stride) as *mut SlotMeta).write(SlotMeta {
                    stamp: AtomicU64::new(pack(i as u32, 0)),
                    len: AtomicU32::new(0),
                    _pad: AtomicU32::new(0),
                });
            }
        }
        let _ = slot_size;
    }

    /// Views an initialised body.
    ///
    /// # Safety
    /// `base` must point at a body laid out by `l` (initialised, or valid
    /// for any bytes since everything but payload is atomics) that outlives
    /// the returned value.
    #[cfg(not(loom))]
    unsafe fn view(base: *mut u8, l: &Layout, slot_size: usize, capacity: usize) -> RawQueue {
        // SAFETY: offsets are within the body per the caller's contract.
        unsafe {
            RawQueue {
                hdr: base as *const QueueHeader,
                senders: base.add(l.senders) as *const PeerSlot,
                receivers: base.add(l.receivers) as *const PeerSlot,
                peers: MAX_PEERS,
                meta: base.add(l.slots),
                meta_stride: l.stride,
                payload: base.add(l.slots + SLOT_META),
                payload_stride: l.stride,
                mask: capacity as u64 - 1,
                capacity,
                slot_size,
            }
        }
    }
}

/// A bounded MPMC queue of byte messages (each at most `slot_size`
/// bytes) in a shared segment. Send and receive through endpoints:
/// [`sender`](Self::sender) and [`receiver`](Self::receiver). See the
/// [module docs](self) for the algorithm and what survives a `SIGKILL`.
///
/// Disconnection is about *registered* endpoints: a side with members
/// that all closed, dropped or died reads as disconnected until some
/// process registers a new endpoint. So that workers starting late do not
/// see a transient `Disconnected`, create the endpoints in the parent
/// before forking (children inherit them and register on first use) and
/// keep them until the workers are done.
///
/// ```
/// use shmkit::queue::MpmcQueue;
///
/// let q = MpmcQueue::anonymous(64, 8)?; // 8 slots of up to 64 bytes
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
    shared: Arc<Shared>,
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

impl MpmcQueue {
    /// Creates a named queue of `capacity` slots (a power of two, ≥ 2) of
    /// up to `slot_size` bytes each.
    pub fn create(name: &str, slot_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::create_kind(Some(name), ObjectKind::MPMC_QUEUE, slot_size, capacity)
    }

    /// Creates an anonymous queue, shared with children forked afterwards.
    pub fn anonymous(slot_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::create_kind(None, ObjectKind::MPMC_QUEUE, slot_size, capacity)
    }

    /// Attaches to a named queue created by another process.
    pub fn open(name: &str) -> Result<Self, AttachError> {
        Self::open_kind(name, ObjectKind::MPMC_QUEUE, &OpenOptions::new())
    }

    /// Attaches to a queue in an already-mapped segment (e.g. inherited).
    pub fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        Self::attach_kind(seg, ObjectKind::MPMC_QUEUE, opts)
    }

    /// A queue in ordinary heap memory, for threads of one process (no
    /// segment, no syscalls beyond futex; runs under Miri and loom).
    pub fn in_process(slot_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::in_process_kind(ObjectKind::MPMC_QUEUE, slot_size, capacity)
    }

    pub(crate) fn create_kind(
        name: Option<&str>,
        kind: ObjectKind,
        slot_size: usize,
        capacity: usize,
    ) -> Result<Self, Error> {
        let l = layout(slot_size, capacity, MAX_PEERS)?;
        let params = [
            slot_size as u64,
            capacity as u64,
            MAX_PEERS as u64,
            LAYOUT_TAG,
        ];
        let (seg, body) = create_object(name, kind, &params, l.size, |body| {
            if body.len() < l.size || body.as_ptr() as usize % 64 != 0 {
                return Err(Error::InvalidArgument("segment body misaligned"));
            }
            #[cfg(not(loom))]
            // SAFETY: the fresh body is zeroed, 64-aligned (checked),
            // l.size bytes long and unpublished.
            unsafe {
                Shared::init_body(body.as_ptr(), &l, slot_size, capacity)
            };
            Ok(())
        })?;
        Ok(Self::from_parts(seg, body, l, slot_size, capacity))
    }

    #[cfg_attr(loom, allow(unused_variables, unreachable_code))]
    fn from_parts(
        seg: Segment,
        body: Region,
        l: Layout,
        slot_size: usize,
        capacity: usize,
    ) -> Self {
        #[cfg(loom)]
        unimplemented!("segments are not available under loom; use in_process");
        #[cfg(not(loom))]
        {
            // SAFETY: the body was laid out by `l` (checked by the caller)
            // and `seg`, stored next to the view, keeps it mapped.
            let raw = unsafe { Shared::view(body.as_ptr(), &l, slot_size, capacity) };
            MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
                    storage: Storage::Segment(seg),
                }),
            }
        }
    }

    pub(crate) fn open_kind(
        name: &str,
        kind: ObjectKind,
        opts: &OpenOptions,
    ) -> Result<Self, AttachError> {
        let (seg, info, body) = open_object(name, kind, opts)?;
        Self::finish_attach(seg, info, body)
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
        let [slot_size, capacity, peers, tag, ..] = info.params;
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
        if body.as_ptr() as usize % 64 != 0 {
            return Err(AttachError::Corrupt("queue body misaligned"));
        }
        let q = Self::from_parts(seg, body, l, slot_size, capacity);
        q.shared.raw.senders().validate()?;
        q.shared.raw.receivers().validate()?;
        Ok(q)
    }

    pub(crate) fn in_process_kind(
        _kind: ObjectKind,
        slot_size: usize,
        capacity: usize,
    ) -> Result<Self, Error> {
        // In one process every thread shares a pid: two peer slots suffice.
        #[cfg(not(loom))]
        {
            let l = layout(slot_size, capacity, MAX_PEERS)?;
            let al = std::alloc::Layout::from_size_align(l.size.max(64), 64)
                .map_err(|_| Error::InvalidArgument("queue size overflows"))?;
            // SAFETY: the layout has a nonzero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(al) };
            if ptr.is_null() {
                return Err(Error::NoSpace(al.size() as u64));
            }
            let block = HeapBlock { ptr, layout: al };
            // SAFETY: fresh zeroed 64-aligned block of l.size bytes.
            unsafe { Shared::init_body(ptr, &l, slot_size, capacity) };
            // SAFETY: initialised above; the block is stored next to the view.
            let raw = unsafe { Shared::view(ptr, &l, slot_size, capacity) };
            Ok(MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
                    storage: Storage::Heap(block),
                }),
            })
        }
        #[cfg(loom)]
        {
            check_params(slot_size, capacity).map_err(Error::InvalidArgument)?;
            let peers = 2;
            let hdr = Box::new(QueueHeader::new());
            let senders: Vec<PeerSlot> = (0..peers).map(|_| PeerSlot::default()).collect();
            let receivers: Vec<PeerSlot> = (0..peers).map(|_| PeerSlot::default()).collect();
            let meta: Vec<SlotMeta> = (0..capacity)
                .map(|i| SlotMeta {
                    stamp: AtomicU64::new(pack(i as u32, 0)),
                    len: AtomicU32::new(0),
                    _pad: AtomicU32::new(0),
                })
                .collect();
            let words = (slot_size + 7) / 8;
            let mut payload = vec![0u64; words * capacity];
            let raw = RawQueue {
                hdr: &*hdr,
                senders: senders.as_ptr(),
                receivers: receivers.as_ptr(),
                peers,
                meta: meta.as_ptr() as *const u8,
                meta_stride: std::mem::size_of::<SlotMeta>(),
                payload: payload.as_mut_ptr() as *mut u8,
                payload_stride: words * 8,
                mask: capacity as u64 - 1,
                capacity,
                slot_size,
            };
            Ok(MpmcQueue {
                shared: Arc::new(Shared {
                    raw,
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

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.raw.capacity
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.shared.raw.slot_size
    }

    /// The segment backing the queue (`None` for [`in_process`](Self::in_process)).
    pub fn segment(&self) -> Option<&Segment> {
        match &self.shared.storage {
            Storage::Segment(s) => Some(s),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Closes both sides for good: blocked and future senders get
    /// `Disconnected`; receivers drain what is queued, then get
    /// `Disconnected`.
    pub fn close(&self) {
        close_side(&self.shared, Side::Send);
        close_side(&self.shared, Side::Recv);
    }

    /// The unfinished-task counter and its notifier (JoinableQueue).
    pub(crate) fn joinable(&self) -> (&AtomicU64, &Notifier) {
        let c = self.shared.raw.ctl();
        (&c.unfinished, &c.all_done)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Send,
    Recv,
}

fn close_side(shared: &Shared, side: Side) {
    let raw = &shared.raw;
    match side {
        Side::Send => raw.senders().close(),
        Side::Recv => raw.receivers().close(),
    }
    raw.ctl().not_empty.notify_all();
    raw.ctl().not_full.notify_all();
}

/// Registration of one endpoint: `(pid << 32) | slot` in the table of its
/// side, re-done lazily when the handle is used in a forked child.
struct Endpoint {
    shared: Arc<Shared>,
    side: Side,
    reg: LocalU64,
    /// Monotonic nanoseconds of the last liveness check (rate limit for
    /// the non-blocking calls).
    last_check: LocalU64,
    seen_departures: AtomicU32Local,
}

const CHECK_EVERY_NS: u64 = 1_000_000;

impl Endpoint {
    fn new(shared: Arc<Shared>, side: Side) -> Result<Self, PeersFull> {
        let ep = Endpoint {
            shared,
            side,
            reg: LocalU64::new(0),
            last_check: LocalU64::new(0),
            seen_departures: AtomicU32Local::new(0),
        };
        ep.register(os::current_pid())?;
        Ok(ep)
    }

    fn table(&self) -> PeerTable<'_> {
        match self.side {
            Side::Send => self.shared.raw.senders(),
            Side::Recv => self.shared.raw.receivers(),
        }
    }

    fn other(&self) -> PeerTable<'_> {
        match self.side {
            Side::Send => self.shared.raw.receivers(),
            Side::Recv => self.shared.raw.senders(),
        }
    }

    fn register(&self, pid: u32) -> Result<u32, PeersFull> {
        let slot = self.table().register()?;
        self.reg
            .store(((pid as u64) << 32) | slot as u64, LocalOrdering::Relaxed);
        Ok(pid)
    }

    /// The calling process's pid, registering it first if this handle was
    /// inherited over `fork`.
    #[inline]
    fn me(&self) -> Result<u32, PeersFull> {
        let pid = os::current_pid();
        if (self.reg.load(LocalOrdering::Relaxed) >> 32) as u32 == pid {
            Ok(pid)
        } else {
            self.register(pid)
        }
    }

    /// Whether a rate-limited liveness check is due now (at once when an
    /// endpoint left since the last check).
    fn check_due(&self) -> bool {
        let dep = self.shared.raw.ctl().departures.load(Ordering::Acquire);
        if dep != self.seen_departures.swap(dep, LocalOrdering::Relaxed) {
            return true;
        }
        let now = Deadline::now().as_nanos();
        let last = self.last_check.load(LocalOrdering::Relaxed);
        if now.wrapping_sub(last) >= CHECK_EVERY_NS || last == 0 {
            self.last_check.store(now.max(1), LocalOrdering::Relaxed);
            true
        } else {
            false
        }
    }
}

impl Clone for Endpoint {
    fn clone(&self) -> Self {
        let pid = os::current_pid();
        let ep = Endpoint {
            shared: self.shared.clone(),
            side: self.side,
            reg: LocalU64::new(0),
            last_check: LocalU64::new(0),
            seen_departures: AtomicU32Local::new(0),
        };
        if ep.register(pid).is_err() {
            tracing::warn!("mpmc: peer table full; the cloned endpoint registers on first use");
        }
        ep
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let reg = self.reg.load(LocalOrdering::Relaxed);
        if (reg >> 32) as u32 == os::current_pid() {
            self.table().unregister(reg as u32 as usize);
            self.shared
                .raw
                .ctl()
                .departures
                .fetch_add(1, Ordering::SeqCst);
            // Wake the other side so it notices if we were the last.
            self.shared.raw.ctl().not_empty.notify_all();
            self.shared.raw.ctl().not_full.notify_all();
        }
    }
}

/// The sending end of an [`MpmcQueue`]. Clone it for more senders in the
/// same process; a handle inherited over `fork` registers the child on
/// first use. The receivers see `Disconnected` once every sender has
/// closed, dropped its handles or died.
///
/// ```
/// use shmkit::queue::{MpmcQueue, TrySendError};
///
/// let q = MpmcQueue::anonymous(8, 2)?;
/// let tx = q.sender()?;
/// let _rx = q.receiver()?;
/// tx.try_send(b"a").unwrap();
/// tx.try_send(b"b").unwrap();
/// assert!(matches!(tx.try_send(b"c"), Err(TrySendError::Full(b"c"))));
/// assert!(matches!(tx.try_send(&[0; 9]), Err(TrySendError::TooLarge(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MpmcSender {
    ep: Endpoint,
}

impl std::fmt::Debug for MpmcSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpmcSender").finish_non_exhaustive()
    }
}

impl MpmcSender {
    fn raw(&self) -> &RawQueue {
        &self.ep.shared.raw
    }

    /// Sends `msg` if a slot is free right now.
    ///
    /// `Disconnected` is reported when the receiving side was closed, or
    /// when the queue is full and no receiver process is alive (checked at
    /// most once a millisecond per handle).
    #[inline]
    pub fn try_send<'a>(&self, msg: &'a [u8]) -> Result<(), TrySendError<&'a [u8]>> {
        let Ok(me) = self.ep.me() else {
            return Err(TrySendError::Disconnected(msg));
        };
        if self.closed() {
            return Err(TrySendError::Disconnected(msg));
        }
        match self.raw().try_push(msg, me) {
            Ok(()) => {
                self.raw().ctl().not_empty.notify_one();
                Ok(())
            }
            Err(PushError::TooLarge) => Err(TrySendError::TooLarge(msg)),
            Err(PushError::Corrupt) => Err(TrySendError::Disconnected(msg)),
            Err(PushError::Full) => {
                if self.ep.check_due() {
                    if self.ep.other().is_disconnected() {
                        return Err(TrySendError::Disconnected(msg));
                    }
                    if self.raw().recover_tail() {
                        return self.try_send(msg);
                    }
                }
                Err(TrySendError::Full(msg))
            }
        }
    }

    fn closed(&self) -> bool {
        self.ep.table().is_closed() || self.ep.other().is_closed()
    }

    /// Sends `msg`, waiting while the queue is full.
    pub fn send<'a>(&self, msg: &'a [u8]) -> Result<(), SendError<&'a [u8]>> {
        match self.send_deadline(msg, None) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Disconnected(m)) | Err(SendTimeoutError::Timeout(m)) => {
                Err(SendError::Disconnected(m))
            }
            Err(SendTimeoutError::TooLarge(m)) => Err(SendError::TooLarge(m)),
        }
    }

    /// Sends `msg`, waiting at most `timeout` for a free slot.
    pub fn send_timeout<'a>(
        &self,
        msg: &'a [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.send_deadline(msg, Some(Deadline::after(timeout)))
    }

    /// Sends `msg`, waiting until `deadline` (`None` = forever).
    pub fn send_deadline<'a>(
        &self,
        msg: &'a [u8],
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        let Ok(me) = self.ep.me() else {
            return Err(SendTimeoutError::Disconnected(msg));
        };
        let raw = self.raw();
        let not_full = &raw.ctl().not_full;
        let mut backoff = Backoff::new();
        let mut slice = Duration::from_millis(1);
        // Baseline: what this handle last checked the peers against.
        let mut departures = self.ep.seen_departures.load(LocalOrdering::Relaxed);
        loop {
            if self.closed() {
                return Err(SendTimeoutError::Disconnected(msg));
            }
            match raw.try_push(msg, me) {
                Ok(()) => {
                    raw.ctl().not_empty.notify_one();
                    return Ok(());
                }
                Err(PushError::TooLarge) => return Err(SendTimeoutError::TooLarge(msg)),
                Err(PushError::Corrupt) => return Err(SendTimeoutError::Disconnected(msg)),
                Err(PushError::Full) => {}
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(SendTimeoutError::Timeout(msg));
            }
            let key = not_full.prepare_wait();
            match raw.try_push(msg, me) {
                Ok(()) => {
                    not_full.cancel_wait();
                    raw.ctl().not_empty.notify_one();
                    return Ok(());
                }
                Err(PushError::Full) => {}
                Err(_) => {
                    not_full.cancel_wait();
                    continue;
                }
            }
            if self.closed() {
                not_full.cancel_wait();
                return Err(SendTimeoutError::Disconnected(msg));
            }
            // An endpoint left since we last looked (its drop bumps the
            // counter before notifying): check the peers instead of sleeping.
            let left = raw.ctl().departures.load(Ordering::SeqCst) != departures;
            let woken = if left {
                not_full.cancel_wait();
                false
            } else {
                let until = Deadline::earliest(deadline, Deadline::after(slice));
                not_full.commit_wait(key, Some(until))
            };
            if !woken {
                if !left {
                    slice = (slice * 2).min(MAX_SLICE);
                }
                // No progress: look for the dead.
                departures = raw.ctl().departures.load(Ordering::SeqCst);
                self.ep
                    .seen_departures
                    .store(departures, LocalOrdering::Relaxed);
                if self.ep.other().is_disconnected() {
                    return Err(SendTimeoutError::Disconnected(msg));
                }
                raw.recover_tail();
            }
        }
    }

    /// Closes the sending side for every process: receivers drain what is
    /// queued, then get `Disconnected`; later sends fail.
    pub fn close(&self) {
        close_side(&self.ep.shared, Side::Send);
    }

    /// The queue this endpoint sends into.
    pub fn queue(&self) -> MpmcQueue {
        MpmcQueue {
            shared: self.ep.shared.clone(),
        }
    }
}

/// The receiving end of an [`MpmcQueue`]. Clone it for more receivers in
/// the same process; a handle inherited over `fork` registers the child on
/// first use. Senders see `Disconnected` once every receiver has closed,
/// dropped its handles or died.
///
/// ```
/// use shmkit::queue::{MpmcQueue, TryRecvError};
///
/// let q = MpmcQueue::anonymous(16, 4)?;
/// let tx = q.sender()?;
/// let rx = q.receiver()?;
/// tx.send(b"abc").unwrap();
/// assert_eq!(rx.try_recv_with(|m| m.len()), Ok(3));
/// assert_eq!(rx.try_recv_with(|m| m.len()), Err(TryRecvError::Empty));
/// drop(tx); // the only sender is gone
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MpmcReceiver {
    ep: Endpoint,
}

impl std::fmt::Debug for MpmcReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpmcReceiver").finish_non_exhaustive()
    }
}

impl MpmcReceiver {
    fn raw(&self) -> &RawQueue {
        &self.ep.shared.raw
    }

    /// Takes the oldest message into `buf` (cleared first); returns its
    /// length.
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.try_recv_with(|m| {
            buf.clear();
            buf.extend_from_slice(m);
            m.len()
        })
    }

    /// Takes the oldest message and passes it to `f` while the slot is
    /// still held (zero-copy: `f` reads shared memory directly).
    ///
    /// `Disconnected` is reported when the queue is empty and the sending
    /// side was closed or (checked at most once a millisecond per handle)
    /// has no live process. A stuck slot of a dead producer is skipped as
    /// part of the same check.
    #[inline]
    pub fn try_recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        let Ok(me) = self.ep.me() else {
            return Err(TryRecvError::Disconnected);
        };
        let raw = self.raw();
        let mut f = Some(f);
        loop {
            match raw.try_pop(me, &mut f) {
                Ok(r) => {
                    raw.ctl().not_full.notify_one();
                    return Ok(r);
                }
                Err(PopError::Corrupt(c)) => return Err(TryRecvError::Corrupt(c)),
                Err(PopError::Empty) => {}
            }
            let closed = self.closed();
            if !closed && !self.ep.check_due() {
                return Err(TryRecvError::Empty);
            }
            if raw.recover_head() {
                continue;
            }
            if closed || self.ep.other().is_disconnected() {
                // Drain: one more look now that no sender remains.
                return match raw.try_pop(me, &mut f) {
                    Ok(r) => {
                        raw.ctl().not_full.notify_one();
                        Ok(r)
                    }
                    Err(PopError::Corrupt(c)) => Err(TryRecvError::Corrupt(c)),
                    Err(PopError::Empty) => Err(TryRecvError::Disconnected),
                };
            }
            return Err(TryRecvError::Empty);
        }
    }

    fn closed(&self) -> bool {
        self.ep.other().is_closed() || self.ep.table().is_closed()
    }

    /// Waits for a message and copies it into `buf`; returns its length.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.recv_with(|m| {
            buf.clear();
            buf.extend_from_slice(m);
            m.len()
        })
    }

    /// Waits at most `timeout` for a message and copies it into `buf`.
    pub fn recv_timeout(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_deadline_with(Some(Deadline::after(timeout)), |m| {
            buf.clear();
            buf.extend_from_slice(m);
            m.len()
        })
    }

    /// Waits for a message and passes it to `f` (zero-copy).
    pub fn recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        match self.recv_deadline_with(None, f) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Corrupt(c)) => Err(RecvError::Corrupt(c)),
            Err(_) => Err(RecvError::Disconnected),
        }
    }

    /// Waits until `deadline` (`None` = forever) for a message and passes
    /// it to `f`.
    pub fn recv_deadline_with<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        let Ok(me) = self.ep.me() else {
            return Err(RecvTimeoutError::Disconnected);
        };
        let raw = self.raw();
        let not_empty = &raw.ctl().not_empty;
        let mut f = Some(f);
        let mut backoff = Backoff::new();
        let mut slice = Duration::from_millis(1);
        let attempt = |f: &mut Option<_>| -> Result<R, PopError> {
            let r = raw.try_pop(me, f);
            if r.is_ok() {
                raw.ctl().not_full.notify_one();
            }
            r
        };
        let mut check_dead = false;
        // Baseline: what this handle last checked the peers against.
        let mut departures = self.ep.seen_departures.load(LocalOrdering::Relaxed);
        loop {
            match attempt(&mut f) {
                Ok(r) => return Ok(r),
                Err(PopError::Corrupt(c)) => return Err(RecvTimeoutError::Corrupt(c)),
                Err(PopError::Empty) => {}
            }
            let closed = self.closed();
            if check_dead || closed {
                check_dead = false;
                departures = raw.ctl().departures.load(Ordering::SeqCst);
                self.ep
                    .seen_departures
                    .store(departures, LocalOrdering::Relaxed);
                if raw.recover_head() {
                    continue;
                }
                if closed || self.ep.other().is_disconnected() {
                    return match attempt(&mut f) {
                        Ok(r) => Ok(r),
                        Err(PopError::Corrupt(c)) => Err(RecvTimeoutError::Corrupt(c)),
                        Err(PopError::Empty) => Err(RecvTimeoutError::Disconnected),
                    };
                }
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(RecvTimeoutError::Timeout);
            }
            let key = not_empty.prepare_wait();
            match attempt(&mut f) {
                Ok(r) => {
                    not_empty.cancel_wait();
                    return Ok(r);
                }
                Err(PopError::Corrupt(c)) => {
                    not_empty.cancel_wait();
                    return Err(RecvTimeoutError::Corrupt(c));
                }
                Err(PopError::Empty) => {}
            }
            // An endpoint left since we last looked: check, don't sleep.
            if self.closed() || raw.ctl().departures.load(Ordering::SeqCst) != departures {
                not_empty.cancel_wait();
                check_dead = true;
                continue;
            }
            let until = Deadline::earliest(deadline, Deadline::after(slice));
            if !not_empty.commit_wait(key, Some(until)) {
                slice = (slice * 2).min(MAX_SLICE);
            }
            // Woken without a message (a sender leaving?) or a slice passed
            // without progress: look for dead peers on the next empty round.
            check_dead = true;
        }
    }

    /// Closes the receiving side for every process: senders get
    /// `Disconnected` (blocked ones too).
    pub fn close(&self) {
        close_side(&self.ep.shared, Side::Recv);
    }

    /// The queue this endpoint receives from.
    pub fn queue(&self) -> MpmcQueue {
        MpmcQueue {
            shared: self.ep.shared.clone(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[cfg(miri)]
    const N: u64 = 60;
    #[cfg(not(miri))]
    const N: u64 = 20_000;

    fn mk(slot: usize, cap: usize) -> (MpmcQueue, MpmcSender, MpmcReceiver) {
        let q = MpmcQueue::in_process(slot, cap).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        (q, tx, rx)
    }

    #[test]
    fn fifo_full_empty_too_large() {
        let (q, tx, rx) = mk(4, 4);
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
        for i in 0..4u8 {
            tx.try_send(&[i; 3][..=(i as usize % 3)]).unwrap();
        }
        assert_eq!(q.len(), 4);
        assert!(q.is_full());
        assert!(matches!(tx.try_send(b"x"), Err(TrySendError::Full(b"x"))));
        assert!(matches!(
            tx.try_send(b"12345"),
            Err(TrySendError::TooLarge(_))
        ));
        for i in 0..4u8 {
            rx.try_recv(&mut buf).unwrap();
            assert_eq!(buf, &[i; 3][..=(i as usize % 3)]);
        }
        assert!(q.is_empty());
        // Many laps.
        for i in 0..100u32 {
            tx.send(&i.to_le_bytes()).unwrap();
            assert_eq!(rx.recv_with(|m| m.to_vec()).unwrap(), i.to_le_bytes());
        }
    }

    #[test]
    fn bad_params_refused() {
        assert!(MpmcQueue::in_process(8, 3).is_err());
        assert!(MpmcQueue::in_process(8, 1).is_err());
        assert!(MpmcQueue::in_process(0, 4).is_err());
        assert!(MpmcQueue::in_process(MAX_SLOT_SIZE + 1, 4).is_err());
    }

    #[test]
    fn disconnect_after_drain_both_ways() {
        let (_q, tx, rx) = mk(8, 4);
        tx.send(b"last").unwrap();
        drop(tx);
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf), Ok(4));
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));

        let (_q, tx, rx) = mk(8, 2);
        rx.close();
        assert!(matches!(
            tx.try_send(b"a"),
            Err(TrySendError::Disconnected(_))
        ));
        assert!(matches!(tx.send(b"a"), Err(SendError::Disconnected(_))));
    }

    #[test]
    fn timeouts() {
        let (_q, tx, rx) = mk(8, 2);
        let mut buf = Vec::new();
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_millis(2)),
            Err(RecvTimeoutError::Timeout)
        );
        tx.send(b"1").unwrap();
        tx.send(b"2").unwrap();
        assert!(matches!(
            tx.send_timeout(b"3", Duration::from_millis(2)),
            Err(SendTimeoutError::Timeout(b"3"))
        ));
    }

    #[test]
    fn corrupt_length_is_an_error_not_a_read() {
        let (q, tx, rx) = mk(8, 4);
        tx.send(b"good").unwrap();
        tx.send(b"next").unwrap();
        let (meta, _) = q.shared.raw.slot(0);
        meta.len.store(9999, Ordering::Relaxed);
        let mut buf = Vec::new();
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(TryRecvError::Corrupt(_))
        ));
        assert_eq!(rx.try_recv(&mut buf), Ok(4));
        assert_eq!(buf, b"next");
    }

    #[test]
    fn threads_every_message_exactly_once() {
        let q = MpmcQueue::in_process(8, 8).unwrap();
        let producers = 2u64;
        let consumers = 2;
        let got = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for p in 0..producers {
                let tx = q.sender().unwrap();
                s.spawn(move || {
                    for i in 0..N {
                        tx.send(&(p * N + i).to_le_bytes()).unwrap();
                    }
                });
            }
            for _ in 0..consumers {
                let rx = q.receiver().unwrap();
                let got = &got;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut last = [None; 2];
                    let mut b = Vec::new();
                    loop {
                        match rx.recv(&mut b) {
                            Ok(8) => {
                                let v = u64::from_le_bytes(b[..8].try_into().unwrap());
                                // Per-producer order as seen by one consumer.
                                let p = (v / N) as usize;
                                if let Some(prev) = last[p] {
                                    assert!(v > prev, "out of order: {v} after {prev}");
                                }
                                last[p] = Some(v);
                                mine.push(v);
                            }
                            Ok(n) => panic!("bad length {n}"),
                            Err(_) => break,
                        }
                    }
                    got.lock().unwrap().extend(mine);
                });
            }
        });
        let mut all = got.into_inner().unwrap();
        all.sort_unstable();
        let want: Vec<u64> = (0..producers * N).collect();
        assert_eq!(all.len(), want.len());
        assert_eq!(all, want);
    }

    #[test]
    #[cfg_attr(miri, ignore = "spawns a process to get a dead pid")]
    fn dead_claimers_are_recovered() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!os::process_alive(dead));

        // A producer died holding position 0; position 1 was published.
        let (q, tx, rx) = mk(8, 4);
        let raw = &q.shared.raw;
        raw.try_push(b"lost", dead).unwrap();
        raw.slot(0).0.stamp.store(pack(0, dead), Ordering::Release); // unpublish
        tx.send(b"kept").unwrap();
        let mut buf = Vec::new();
        // Seen as in flight until the liveness check runs.
        assert!(raw.recover_head());
        assert_eq!(rx.recv(&mut buf), Ok(4));
        assert_eq!(buf, b"kept");
        assert!(q.is_empty());

        // A consumer died holding a message; producers fill the ring and
        // recover its slot when they reach it.
        let (q, tx, rx) = mk(8, 2);
        let raw = &q.shared.raw;
        tx.send(b"a").unwrap();
        let pos = raw.hdr().head.0.load(Ordering::Relaxed);
        raw.slot(pos)
            .0
            .stamp
            .store(pack(pos as u32 + 1, dead), Ordering::Release);
        raw.hdr().head.0.store(pos + 1, Ordering::Relaxed);
        tx.send(b"b").unwrap();
        // Full: slot 0 is held by the dead consumer. send() recovers it.
        tx.send_timeout(b"c", Duration::from_secs(10)).unwrap();
        assert_eq!(rx.recv(&mut buf), Ok(1));
        assert_eq!(buf, b"b");
        assert_eq!(rx.recv(&mut buf), Ok(1));
        assert_eq!(buf, b"c");

        // A consumer died after claiming, before moving head.
        let (q, tx, rx) = mk(8, 2);
        let raw = &q.shared.raw;
        tx.send(b"x").unwrap();
        tx.send(b"y").unwrap();
        raw.slot(0).0.stamp.store(pack(1, dead), Ordering::Release);
        assert_eq!(rx.recv(&mut buf), Ok(1)); // helps head past it
        assert_eq!(buf, b"y");
        tx.send_timeout(b"z", Duration::from_secs(10)).unwrap();
        assert_eq!(rx.recv(&mut buf), Ok(1));
        assert_eq!(buf, b"z");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(Vec<u8>),
        Recv,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Op::Send),
            Just(Op::Recv),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: if cfg!(miri) { 4 } else { 256 },
            // No regression files: Miri isolates the file system.
            failure_persistence: None,
            ..Default::default()
        })]
        #[test]
        fn matches_vecdeque_model(ops in proptest::collection::vec(op(), 0..200), cap_log in 1u32..4) {
            let cap = 1usize << cap_log;
            let (q, tx, rx) = mk(10, cap);
            let mut model = VecDeque::new();
            let mut buf = Vec::new();
            for op in ops {
                match op {
                    Op::Send(m) => {
                        let r = tx.try_send(&m);
                        if m.len() > 10 {
                            proptest::prop_assert!(matches!(r, Err(TrySendError::TooLarge(_))));
                        } else if model.len() == cap {
                            proptest::prop_assert!(matches!(r, Err(TrySendError::Full(_))));
                        } else {
                            proptest::prop_assert!(r.is_ok());
                            model.push_back(m);
                        }
                    }
                    Op::Recv => match model.pop_front() {
                        Some(m) => {
                            proptest::prop_assert_eq!(rx.try_recv(&mut buf), Ok(m.len()));
                            proptest::prop_assert_eq!(&buf, &m);
                        }
                        None => proptest::prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty)),
                    },
                }
                proptest::prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
