//! The MPMC queue's layout and algorithm: Dmitry Vyukov's bounded
//! many-producer many-consumer queue, with claims that name their process
//! so survivors can recover the slots of the dead, for any capacity.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue",
//! 1024cores.net, 2010): an array of slots, each with a sequence stamp that
//! says which lap of the ring it is ready for, plus a `head` and a `tail`
//! position. It is adapted here for **peer death** and for **any
//! capacity**.
//!
//! *Positions.* A position is `lap_base + index` with `index < capacity`
//! and `lap_base` a multiple of `LAP`, the smallest power of two greater
//! than the capacity; the position after `lap_base + capacity - 1` is
//! `lap_base + LAP` (the indices `capacity..LAP` are never used, the
//! layout of crossbeam's `ArrayQueue`). A slot's index is `pos & (LAP - 1)`,
//! a mask instead of a division, and the next lap of the slot at `pos` is
//! `pos + LAP`. So with `Δ` the signed (wrapping) distance of a stamp from
//! the position being looked at, the states of a slot are told apart by
//! `Δ ∈ {0, ±1, -LAP, -LAP + 1, LAP - 1}`, which are distinct because
//! `LAP ≥ 2`; and since `LAP` divides 2^32, the 32-bit sequence numbers
//! keep the same arithmetic as the 64-bit positions. A queue of capacity 3
//! therefore holds exactly 3 messages (`LAP` = 4, positions 0, 1, 2, 4, 5,
//! 6, 8, …).
//!
//! *Peer death.* Plain Vyukov claims a position with a CAS on `tail` (or
//! `head`) and then publishes the slot's stamp. A producer SIGKILLed
//! between the two leaves a slot that is claimed but never published, and
//! every consumer waits on it forever; nobody can even tell *who* claimed
//! it. Here the claim is made on the *slot stamp itself* and names the
//! claimer:
//!
//! * a stamp is 64 bits: `seq: u32` (low half) and `pid: u32` (high half,
//!   0 = nobody, [`SKIPPED`] = abandoned by a dead producer);
//! * producer at position `pos`: CAS the stamp `(pos, 0)` → `(pos, me)`,
//!   then CAS `tail` `pos` → `next(pos)` (anyone who sees a claimed stamp
//!   at `tail` helps advance it, so a producer dying here wedges nobody),
//!   write length and payload, publish `(pos + 1, 0)` with `Release`;
//! * consumer at `pos`: CAS `(pos + 1, 0)` → `(pos + 1, me)`, help `head`
//!   forward, check the length against the slot size, copy the payload,
//!   free the slot for the next lap with `(pos + LAP, 0)`;
//! * a blocked waiter — only after a park slice, never on the hot path —
//!   looks at the slot it is stuck on. If the stamp names a claimer that
//!   [`process_alive`](crate::os::process_alive) reports dead, it CASes
//!   that exact stamp: a dead *producer's* claim `(pos, P)` becomes
//!   `(pos + 1, SKIPPED)`, which consumers free without returning anything
//!   (that message was never sent: its `send` never returned `Ok`); a dead
//!   *consumer's* claim `(pos + 1, C)` becomes `(pos + LAP, 0)`, free for
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
//! stored length exceeds the slot size, or a position whose index is past
//! the capacity, is reported as corrupt instead of being read.
//!
//! *Wake-ups.* Blocked senders and receivers park on the `not_full` /
//! `not_empty` notifiers. The handshake is asymmetric, as in the SPSC
//! ring (SAFETY.md, "SPSC publish"): a waiter registers, issues a
//! process-wide barrier (`membarrier`), then re-checks; a publisher follows
//! its `Release` stamp store with a compiler barrier and a plain load of
//! the waiter count, instead of a `SeqCst` fence, and calls `futex_wake`
//! only when someone may sleep. A process that cannot register for the
//! barrier sets the sticky `full_fence` word when its endpoint registers,
//! and from then on every publisher fences (the symmetric protocol that
//! `tests/loom_mpmc.rs` model-checks).
//!
//! Sequence numbers are 32-bit and compared with wrapping arithmetic: an
//! ABA on a stamp needs a thread stalled between loading `tail` and its
//! CAS while 2^32 other positions pass, which we accept (crossbeam's
//! `ArrayQueue` on 32-bit targets makes the same bet).
//!
//! # Memory layout (segment body, layout tag [`LAYOUT_TAG`])
//!
//! | offset | what |
//! |---|---|
//! | 0 | `tail: u64`, padded to 128 bytes |
//! | 128 | `head: u64`, padded to 128 bytes |
//! | 256 | `not_empty`, `not_full`, `all_done`: `Notifier` (8 bytes each), `departures: u32`, `full_fence: u32`, `unfinished: u64`, sender and receiver `PeerTableHeader`s; padded to 128 |
//! | 384 | `MAX_PEERS` sender `PeerSlot`s, then `MAX_PEERS` receiver slots (8 bytes each) |
//! | 64-aligned | `capacity` slots of `16 + round_up(slot_size, 8)` bytes: `stamp: u64`, `len: u32` (bit 31: the message is marked), `pad: u32`, payload |
//!
//! Header params: `[slot_size, capacity, MAX_PEERS, LAYOUT_TAG, spill uid,
//! largest spill]`, the first four validated on attach against the body
//! length (the last two belong to the typed queue; see `queue::spill`).

use crate::error::Error;
use crate::primitives::{spin_hint, AtomicU32, AtomicU64, CachePadded, Ordering};
use crate::queue::peers::{PeerSlot, PeerTable, PeerTableHeader};
use crate::segment::LayoutBuilder;
use crate::sync::notifier::Handshake;
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

/// Version of the body layout, position encoding and wake-up protocol,
/// recorded in the segment header. 1: power-of-two capacities, 64-byte
/// lines. 2: any capacity (lap positions), 128-byte lines. 3: the
/// asymmetric wake-up handshake (a `full_fence` word in the control line;
/// see "Wake-ups" above). 4: bit 31 of a slot's length word marks a
/// message (`MARKED`), and header parameters 4 and 5 hold the typed
/// queue's spill uid and largest spill.
pub const LAYOUT_TAG: u64 = 4;

/// Bit of a slot's length word that marks a message for the layer above
/// (the typed queue's spill records; see `queue::spill`): a writer returns
/// its length with this bit set, and the receiver's callback is told. The
/// length itself is the word without it (slot sizes stay below 2^20).
pub(crate) const MARKED: usize = 1 << 31;

/// Bytes of slot metadata in front of each payload.
pub(super) const SLOT_META_SIZE: usize = 16;

#[inline]
pub(super) fn pack(seq: u32, pid: u32) -> u64 {
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

/// Fields that are written rarely (waiter counts, peer headers).
#[repr(C)]
pub(super) struct Control {
    pub(super) not_empty: Notifier,
    pub(super) not_full: Notifier,
    pub(super) all_done: Notifier,
    /// Bumped whenever an endpoint leaves: a cue to re-check liveness now.
    pub(super) departures: AtomicU32,
    /// Sticky: nonzero once a process that cannot take part in the
    /// asymmetric handshake registered; publishers then fence.
    pub(super) full_fence: AtomicU32,
    pub(super) unfinished: AtomicU64,
    pub(super) senders: PeerTableHeader,
    pub(super) receivers: PeerTableHeader,
}

/// The queue's header in the segment body (see the module docs).
#[repr(C)]
pub(super) struct QueueHeader {
    pub(super) tail: CachePadded<AtomicU64>,
    pub(super) head: CachePadded<AtomicU64>,
    pub(super) ctl: CachePadded<Control>,
}

impl QueueHeader {
    pub(super) fn new() -> Self {
        QueueHeader {
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            ctl: CachePadded::new(Control {
                not_empty: Notifier::new(),
                not_full: Notifier::new(),
                all_done: Notifier::new(),
                departures: AtomicU32::new(0),
                full_fence: AtomicU32::new(0),
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
pub(super) struct SlotMeta {
    pub(super) stamp: AtomicU64,
    pub(super) len: AtomicU32,
    _pad: AtomicU32,
}

impl SlotMeta {
    /// The initial state of slot `index`: free for position `index`.
    pub(super) fn new(index: usize) -> Self {
        SlotMeta {
            stamp: AtomicU64::new(pack(index as u32, 0)),
            len: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
        }
    }
}

/// Offsets of everything in a body, computed identically by the creator
/// and every attacher.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub(super) senders: usize,
    pub(super) receivers: usize,
    pub(super) slots: usize,
    pub(super) stride: usize,
    pub(super) size: usize,
}

pub(super) fn check_params(slot_size: usize, capacity: usize) -> Result<(), &'static str> {
    if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
        return Err("slot size must be between 1 and 1 MiB");
    }
    if !(1..=MAX_CAPACITY).contains(&capacity) {
        return Err("capacity must be between 1 and 2^24 slots");
    }
    Ok(())
}

pub(super) fn layout(slot_size: usize, capacity: usize, peers: usize) -> Result<Layout, Error> {
    check_params(slot_size, capacity).map_err(Error::InvalidArgument)?;
    let stride = SLOT_META_SIZE + ((slot_size + 7) & !7);
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

/// Publishes a claimed producer slot as skipped (`(pos + 1, SKIPPED)`)
/// when dropped, and wakes a receiver to pass it (so the slot it holds is
/// freed without waiting for the next message): consumers free it and move
/// on, as for a dead producer's claim.
struct SkipOnDrop<'a> {
    stamp: &'a AtomicU64,
    skipped: u64,
    not_empty: &'a Notifier,
}

impl Drop for SkipOnDrop<'_> {
    fn drop(&mut self) {
        self.stamp.store(self.skipped, Ordering::Release);
        self.not_empty.notify_one();
    }
}

/// Why a raw push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PushError {
    Full,
    TooLarge,
    Corrupt,
}

/// Why a raw pop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PopError {
    Empty,
    Corrupt(&'static str),
}

/// The lock-free algorithm over raw memory: a header, two peer tables and
/// `capacity` slots reached through base pointers and strides. The same
/// code runs over a segment, a heap block (unit tests, Miri) and boxed
/// loom objects.
pub(super) struct RawQueue {
    pub(super) hdr: *const QueueHeader,
    pub(super) senders: *const PeerSlot,
    pub(super) receivers: *const PeerSlot,
    pub(super) peers: usize,
    pub(super) meta: *const u8,
    pub(super) meta_stride: usize,
    pub(super) payload: *mut u8,
    pub(super) payload_stride: usize,
    /// `LAP`: the smallest power of two greater than `capacity`.
    pub(super) lap: u64,
    pub(super) capacity: usize,
    pub(super) slot_size: usize,
    /// Pid of the creating process (the registry's rule 3).
    pub(super) creator: u32,
}

// SAFETY: every field reached through the pointers is an atomic, or payload
// bytes whose access is ordered by the slot stamps (a slot's payload is
// only touched by the process whose pid the stamp names).
unsafe impl Send for RawQueue {}
// SAFETY: as above.
unsafe impl Sync for RawQueue {}

/// `LAP` for `capacity` slots.
#[inline]
pub(super) fn lap_for(capacity: usize) -> u64 {
    (capacity as u64 + 1).next_power_of_two()
}

impl RawQueue {
    #[inline]
    pub(super) fn hdr(&self) -> &QueueHeader {
        // SAFETY: `hdr` points at an initialised header that lives as long
        // as the storage owned next to this struct (see `Shared`).
        unsafe { &*self.hdr }
    }

    pub(super) fn ctl(&self) -> &Control {
        &self.hdr().ctl
    }

    /// The senders' registry.
    pub(super) fn senders(&self) -> PeerTable<'_> {
        // SAFETY: `peers` initialised PeerSlots live at `senders` for the
        // storage's lifetime; PeerSlot is atomics only.
        let slots = unsafe { std::slice::from_raw_parts(self.senders, self.peers) };
        PeerTable::new(&self.ctl().senders, slots)
            .with_creator(self.creator)
            .with_departures(&self.ctl().departures)
    }

    /// The receivers' registry.
    pub(super) fn receivers(&self) -> PeerTable<'_> {
        // SAFETY: as for `senders`.
        let slots = unsafe { std::slice::from_raw_parts(self.receivers, self.peers) };
        PeerTable::new(&self.ctl().receivers, slots)
            .with_creator(self.creator)
            .with_departures(&self.ctl().departures)
    }

    /// The position after `pos`.
    #[inline]
    fn next(&self, pos: u64) -> u64 {
        if (pos & (self.lap - 1)) + 1 < self.capacity as u64 {
            pos.wrapping_add(1)
        } else {
            (pos & !(self.lap - 1)).wrapping_add(self.lap)
        }
    }

    /// Moves a head/tail index from `pos` to the next position unless
    /// another process already moved it (the claimer, or a helper).
    #[inline(always)]
    fn advance_from(&self, index: &AtomicU64, pos: u64) {
        let _ = index.compare_exchange(pos, self.next(pos), Ordering::SeqCst, Ordering::Relaxed);
    }

    /// The slot of position `pos`; `None` if its index is past the
    /// capacity (a head or tail no correct process writes).
    #[inline]
    pub(super) fn slot(&self, pos: u64) -> Option<(&SlotMeta, *mut u8)> {
        let i = (pos & (self.lap - 1)) as usize;
        if i >= self.capacity {
            return None;
        }
        // SAFETY: i < capacity, and the storage holds `capacity` metas at
        // `meta_stride` and payloads of `slot_size` bytes at
        // `payload_stride`; metas are atomics only, valid for any bytes.
        unsafe {
            Some((
                &*(self.meta.add(i * self.meta_stride) as *const SlotMeta),
                self.payload.add(i * self.payload_stride),
            ))
        }
    }

    /// One attempt to append `msg`, claiming as `me` (the unit tests'
    /// entry; endpoints go through [`try_push_with`](Self::try_push_with)).
    #[cfg(test)]
    pub(super) fn try_push(&self, msg: &[u8], me: u32) -> Result<(), PushError> {
        if msg.len() > self.slot_size {
            return Err(PushError::TooLarge);
        }
        let mut copy = Some(|dst: &mut [u8]| {
            dst[..msg.len()].copy_from_slice(msg);
            Some(msg.len())
        });
        self.try_push_with(me, &mut copy)
    }

    /// One attempt to append a message that `write` puts straight into the
    /// claimed slot (all `slot_size` bytes of it), returning its length;
    /// `None` (or a length past the slot) means it does not fit, and the
    /// slot is given up as skipped (`TooLarge`). `write` is called at most
    /// once, and only once a slot is claimed; if it panics, the slot is
    /// skipped too, so no position stays claimed by a live process.
    #[inline]
    pub(super) fn try_push_with<W: FnOnce(&mut [u8]) -> Option<usize>>(
        &self,
        me: u32,
        write: &mut Option<W>,
    ) -> Result<(), PushError> {
        let lap = self.lap as i32;
        let tail = &*self.hdr().tail;
        let mut pos = tail.load(Ordering::SeqCst);
        loop {
            let Some((meta, payload)) = self.slot(pos) else {
                return Err(PushError::Corrupt);
            };
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
                        // A loom model may kill the producer here.
                        #[cfg(loom)]
                        crate::os::process::loom_liveness::crash_point();
                        self.advance_from(tail, pos);
                        // Skips the slot if `write` unwinds or refuses.
                        let skip = SkipOnDrop {
                            stamp: &meta.stamp,
                            skipped: pack(seq.wrapping_add(1), SKIPPED),
                            not_empty: &self.ctl().not_empty,
                        };
                        // SAFETY: we own the slot (our pid is in its stamp);
                        // its `slot_size` payload bytes are in bounds.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(payload, self.slot_size) };
                        let len = match write.take().and_then(|w| w(dst)) {
                            Some(n) if (n & !MARKED) <= self.slot_size => n,
                            _ => return Err(PushError::TooLarge),
                        };
                        std::mem::forget(skip);
                        meta.len.store(len as u32, Ordering::Relaxed);
                        meta.stamp
                            .store(pack(seq.wrapping_add(1), 0), Ordering::Release);
                        return Ok(());
                    }
                } else {
                    // Claimed by another producer that has not moved
                    // `tail` yet (or died before it could): help.
                    self.advance_from(tail, pos);
                }
                spin_hint();
                pos = tail.load(Ordering::SeqCst);
            } else if d < 0 {
                // Still holds the previous lap: full, unless tail moved.
                let now = tail.load(Ordering::SeqCst);
                if now == pos {
                    // seq == pos - LAP (that lap's producer is writing) or
                    // pos - LAP + 1 (published, or its consumer is copying).
                    return if d == -lap || d == -lap + 1 {
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
                    self.advance_from(tail, pos);
                    pos = tail.load(Ordering::SeqCst);
                } else {
                    pos = now;
                }
            }
        }
    }

    /// One attempt to take the oldest message, claiming as `me`; `f` sees
    /// the payload while the slot is held, and whether it was `MARKED`.
    #[inline]
    pub(super) fn try_pop<R, F: FnOnce(&[u8], bool) -> R>(
        &self,
        me: u32,
        f: &mut Option<F>,
    ) -> Result<R, PopError> {
        let lap = self.lap as i32;
        let head = &*self.hdr().head;
        let mut pos = head.load(Ordering::SeqCst);
        loop {
            let Some((meta, payload)) = self.slot(pos) else {
                return Err(PopError::Corrupt("head index past the capacity"));
            };
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
                        self.advance_from(head, pos);
                        let free = pack((pos as u32).wrapping_add(self.lap as u32), 0);
                        if pid == SKIPPED {
                            // A dead producer's slot: nothing was sent.
                            meta.stamp.store(free, Ordering::Release);
                            self.ctl().not_full.notify_one();
                            pos = head.load(Ordering::SeqCst);
                            continue;
                        }
                        let word = meta.len.load(Ordering::Relaxed) as usize;
                        let (len, marked) = (word & !MARKED, word & MARKED != 0);
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
                            Some(f) => f(bytes, marked),
                            // Unreachable: `f` is only taken here, once.
                            None => return Err(PopError::Corrupt("receive callback reused")),
                        };
                        meta.stamp.store(free, Ordering::Release);
                        return Ok(r);
                    }
                } else {
                    self.advance_from(head, pos);
                }
                spin_hint();
                pos = head.load(Ordering::SeqCst);
            } else if d < 0 {
                let now = head.load(Ordering::SeqCst);
                if now == pos {
                    // seq == pos (free, or being written) or seq == pos -
                    // LAP + 1 (the previous lap's consumer is still copying).
                    return if d == -1 || d == -lap {
                        Err(PopError::Empty)
                    } else {
                        Err(PopError::Corrupt("slot stamp inconsistent with head"))
                    };
                }
                pos = now;
            } else {
                let now = head.load(Ordering::SeqCst);
                if now == pos {
                    if d != lap - 1 {
                        return Err(PopError::Corrupt("slot stamp ahead of head"));
                    }
                    // Freed for the next lap (a dead consumer's claim was
                    // recovered) before anyone moved head: help.
                    self.advance_from(head, pos);
                    pos = head.load(Ordering::SeqCst);
                } else {
                    pos = now;
                }
            }
        }
    }

    /// Releases a slot at `head` claimed by a dead producer (→ skipped) or
    /// a dead consumer (→ free). Returns whether anything was recovered.
    pub(super) fn recover_head(&self) -> bool {
        let pos = self.hdr().head.load(Ordering::Acquire);
        self.recover_at(pos)
    }

    /// Same for the slot `tail` waits on (one lap behind it).
    pub(super) fn recover_tail(&self) -> bool {
        let pos = self.hdr().tail.load(Ordering::Acquire);
        self.recover_at(pos)
    }

    /// Recovers the slot for position `pos` if its stamp names a dead
    /// claimer, whichever lap the claim is from.
    pub(super) fn recover_at(&self, pos: u64) -> bool {
        let Some((meta, _)) = self.slot(pos) else {
            return false;
        };
        let stamp = meta.stamp.load(Ordering::Acquire);
        let (seq, pid) = unpack(stamp);
        let at = meta as *const _ as *const u8;
        if pid == 0 || pid == SKIPPED || crate::segment::holder_alive(at, pid) {
            return false;
        }
        let p = pos as u32;
        let lap = self.lap as u32;
        // Which claim is it? A producer claim has seq == its position; a
        // consumer claim has seq == its position + 1. At `pos` (head) or
        // `pos - LAP` (the lap tail waits on) those are distinguishable.
        let new = if seq == p || seq == p.wrapping_sub(lap) {
            pack(seq.wrapping_add(1), SKIPPED)
        } else if seq == p.wrapping_add(1) || seq == p.wrapping_sub(lap).wrapping_add(1) {
            pack(seq.wrapping_sub(1).wrapping_add(lap), 0)
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

    /// Whether the slot at the head holds a published message (or a dead
    /// producer's skipped slot): a pop would not find the queue empty.
    /// Loads only (select's readiness check).
    pub(super) fn head_ready(&self) -> bool {
        let pos = self.hdr().head.load(Ordering::SeqCst);
        self.slot(pos).is_some_and(|(meta, _)| {
            let (seq, pid) = unpack(meta.stamp.load(Ordering::Acquire));
            diff(seq, (pos as u32).wrapping_add(1)) == 0 && (pid == 0 || pid == SKIPPED)
        })
    }

    /// Whether the slot at the tail is free for this lap: a push would
    /// not find the queue full. Loads only.
    pub(super) fn tail_free(&self) -> bool {
        let pos = self.hdr().tail.load(Ordering::SeqCst);
        self.slot(pos).is_some_and(|(meta, _)| {
            let (seq, pid) = unpack(meta.stamp.load(Ordering::Acquire));
            diff(seq, pos as u32) == 0 && pid == 0
        })
    }

    /// Sets up the calling process for the asymmetric handshake (once per
    /// process); if it cannot take part, switches the queue to the
    /// symmetric one for good. Called whenever an endpoint registers.
    pub(super) fn join_handshake(&self) {
        if !crate::os::membarrier::register() {
            self.ctl().full_fence.store(1, Ordering::SeqCst);
        }
    }

    /// How a waiter on this queue registers.
    #[inline]
    pub(super) fn handshake(&self) -> Handshake {
        if crate::os::membarrier::supported() {
            Handshake::Asymmetric
        } else {
            Handshake::Symmetric
        }
    }

    /// Wakes one waiter on `notifier` after a message was published or a
    /// slot freed with a `Release` stamp store (no syscall and, unless the
    /// queue fell back to the symmetric handshake, no fence when nobody
    /// sleeps).
    #[inline]
    pub(super) fn notify_published(&self, notifier: &Notifier) {
        if self.ctl().full_fence.load(Ordering::Relaxed) == 0 {
            notifier.notify_one_after_release();
        } else {
            notifier.notify_one();
        }
    }

    /// Messages in the queue (claimed-but-unpublished ones included).
    pub(super) fn len(&self) -> usize {
        let h = self.hdr();
        loop {
            let tail = h.tail.load(Ordering::SeqCst);
            let head = h.head.load(Ordering::SeqCst);
            if h.tail.load(Ordering::SeqCst) == tail {
                return self.distance(head, tail);
            }
        }
    }

    /// Messages between positions `head` and `tail` (at most `capacity`,
    /// whatever the shared indices say).
    fn distance(&self, head: u64, tail: u64) -> usize {
        let cap = self.capacity as u64;
        let (hi, ti) = (head & (self.lap - 1), tail & (self.lap - 1));
        let n = if tail == head {
            0
        } else if hi < ti {
            ti - hi
        } else if hi > ti {
            (cap - hi.min(cap)) + ti
        } else {
            cap
        };
        n.min(cap) as usize
    }
}
