//! [`RawDict`]: the hash-map algorithm over three base pointers (stripe
//! headers, tables, arenas), independent of where that memory comes from
//! (a segment, caller-provided memory, or the heap for Miri and loom).
//!
//! Everything read from the shared memory is checked before use; see the
//! module docs of [`dict`](super) for the layout and crash protocol.

use std::time::Duration;

use super::config::{Geometry, CLASSES, MAX_CLASS, UNIT};
use super::error::DictError;
use super::hash::hash_bytes;
use crate::os::Deadline;
use crate::primitives::{AtomicU32, AtomicU64, Ordering};
use crate::sync::guard_count::Held;
use crate::sync::RawMutex;

/// Slot word of a never-used slot.
pub(crate) const EMPTY: u64 = 0;
/// Slot word of a removed entry (low half 0, high half nonzero).
pub(crate) const TOMBSTONE: u64 = 0xFFFF_FFFF_0000_0000;
/// Bytes of a block header: class, key length (or free-list link), value
/// length, reserved.
const BLOCK_HEADER: usize = 16;

const CORRUPT_BUMP: DictError = DictError::Corrupt("arena bump pointer beyond the arena");
const CORRUPT_BLOCK: DictError = DictError::Corrupt("entry offset or block header out of bounds");

/// One stripe's control block. `#[repr(C)]`, 192 bytes, all-zero = an
/// empty stripe (unlocked, no entries, empty arena).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock: RawMutex` | robust lock guarding the whole stripe |
/// | 8 | `count: u64` | full slots in the active table |
/// | 16 | `tombstones: u64` | tombstone slots in the active table |
/// | 24 | `bump: u64` | arena units handed out so far |
/// | 32 | `active: u64` | which of the two tables is live (bit 0) |
/// | 40 | `free: [u32; 28]` | per size class: first free block + 1, 0 = none |
/// | 152 | `repairs: u64` | how many times a dead holder's stripe was repaired |
#[repr(C, align(64))]
pub(crate) struct StripeHeader {
    lock: RawMutex,
    count: AtomicU64,
    tombstones: AtomicU64,
    bump: AtomicU64,
    active: AtomicU64,
    free: [AtomicU32; CLASSES],
    repairs: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<StripeHeader>() == super::config::STRIPE_HEADER_SIZE);

impl StripeHeader {
    /// An empty stripe (for heap-backed dicts; segments start zeroed).
    pub(crate) fn new() -> Self {
        Self {
            lock: RawMutex::new(),
            count: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
            bump: AtomicU64::new(0),
            active: AtomicU64::new(0),
            free: std::array::from_fn(|_| AtomicU32::new(0)),
            repairs: AtomicU64::new(0),
        }
    }
}

/// Where a loom model may kill the writer: between two shared stores of
/// a multi-step update (a no-op outside loom).
#[inline(always)]
fn crash_point() {
    #[cfg(loom)]
    crate::os::process::loom_liveness::crash_point();
}

#[inline]
fn make_word(tag: u32, off: usize) -> u64 {
    ((tag as u64) << 32) | (off as u64 + 1)
}

#[inline]
fn word_off(w: u64) -> Option<usize> {
    match w as u32 {
        0 => None,
        low => Some(low as usize - 1),
    }
}

#[inline]
fn tag_of(h: u64) -> u32 {
    (h >> 32) as u32
}

/// `n` rounded up to a multiple of 8. Only for lengths already known to
/// be small (a caller's key, or a key length `units_for` accepted).
#[inline]
fn round8(n: usize) -> usize {
    (n + 7) & !7
}

/// Units a block for this key and value needs, or `None` if the sizes
/// overflow. Lengths may come from a block header in shared memory, so
/// every step is checked.
pub(crate) fn units_for(key_len: usize, val_len: usize) -> Option<usize> {
    let key_padded = key_len.checked_add(7)? & !7;
    let bytes = BLOCK_HEADER.checked_add(key_padded)?.checked_add(val_len)?;
    Some(bytes.div_ceil(UNIT))
}

/// Smallest class whose blocks hold `units` (at least class 1).
pub(crate) fn class_for(units: usize) -> u32 {
    units.max(2).next_power_of_two().trailing_zeros()
}

/// A validated block: in bounds, its class sane, key and value inside it.
#[derive(Clone, Copy, Debug)]
struct Block {
    off: usize,
    class: u32,
    key_len: usize,
    val_len: usize,
}

enum Probe {
    Found { slot: usize, block: Block },
    Vacant { slot: Option<usize> },
}

/// The dict algorithm over raw memory. See the module docs.
pub(crate) struct RawDict {
    stripes: *const StripeHeader,
    slots: *const AtomicU64,
    arena: *mut u8,
    geo: Geometry,
    lock_timeout: Option<Duration>,
}

// SAFETY: all shared state is atomics or arena bytes accessed only under
// the owning stripe's lock; the pointers stay valid as long as the owner
// (ShmDict) keeps the backing memory alive.
unsafe impl Send for RawDict {}
// SAFETY: as above.
unsafe impl Sync for RawDict {}

impl RawDict {
    /// # Safety
    /// `stripes` must point to `geo.stripes` headers, `slots` to
    /// `geo.stripes * 2 * geo.slots` atomics, `arena` to
    /// `geo.stripes * geo.arena_units * UNIT` bytes, 8-aligned; all valid
    /// for as long as the returned value is used.
    pub(crate) unsafe fn new(
        stripes: *const StripeHeader,
        slots: *const AtomicU64,
        arena: *mut u8,
        geo: Geometry,
    ) -> Self {
        Self {
            stripes,
            slots,
            arena,
            geo,
            lock_timeout: None,
        }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub(crate) fn set_lock_timeout(&mut self, t: Option<Duration>) {
        self.lock_timeout = t;
    }

    fn header(&self, s: usize) -> &StripeHeader {
        debug_assert!(s < self.geo.stripes);
        // SAFETY: s < stripes (callers derive s from stripe_of or a range
        // over stripes); the headers are valid for the dict's lifetime.
        unsafe { &*self.stripes.add(s) }
    }

    #[inline]
    fn stripe_of(&self, h: u64) -> usize {
        (((h >> 32) * self.geo.stripes as u64) >> 32) as usize
    }

    /// The deadline for one whole operation under this handle's lock
    /// timeout (`None`: wait as long as a live holder holds on).
    fn deadline(&self) -> Option<Deadline> {
        self.lock_timeout.map(Deadline::after)
    }

    /// Locks stripe `s` within this handle's lock timeout, repairing it
    /// first if its previous holder died.
    fn lock(&self, s: usize) -> Result<Locked<'_>, DictError> {
        self.lock_until(s, self.deadline())
    }

    /// Locks stripe `s` by `deadline` (operations over several stripes
    /// share one deadline, so the timeout bounds the whole call).
    fn lock_until(&self, s: usize, deadline: Option<Deadline>) -> Result<Locked<'_>, DictError> {
        let hdr = self.header(s);
        let acq = match deadline {
            None => hdr.lock.lock(),
            Some(d) => hdr.lock.lock_until(Some(d)).ok_or(DictError::LockTimeout)?,
        };
        let g = Locked {
            d: self,
            s,
            hdr,
            held: Held::enter(),
        };
        if acq.owner_died {
            g.repair()?;
            hdr.repairs.fetch_add(1, Ordering::Relaxed);
            hdr.lock.mark_consistent();
        }
        Ok(g)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), DictError> {
        let max = super::config::MAX_KEY_LEN.min(self.geo.max_block_units() * UNIT - BLOCK_HEADER);
        if key.len() > max {
            return Err(DictError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<usize, DictError> {
        let max =
            (self.geo.max_block_units() * UNIT - BLOCK_HEADER).saturating_sub(round8(key.len()));
        match units_for(key.len(), value.len()) {
            Some(u) if value.len() <= max => Ok(u),
            _ => Err(DictError::ValueTooLarge {
                len: value.len(),
                max,
            }),
        }
    }

    pub(crate) fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, DictError> {
        self.check_key(key)?;
        let h = hash_bytes(key);
        let g = self.lock(self.stripe_of(h))?;
        let bump = g.bump()?;
        match g.find(key, h, bump)? {
            Probe::Found { block, .. } => Ok(Some(f(g.value(&block)))),
            Probe::Vacant { .. } => Ok(None),
        }
    }

    /// Stores `value` for `key`; `old` sees the previous value (under the
    /// lock, before it is replaced) and its result is returned.
    pub(crate) fn insert_with<R>(
        &self,
        key: &[u8],
        value: &[u8],
        old: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, DictError> {
        self.check_key(key)?;
        let units = self.check_value(key, value)?;
        let h = hash_bytes(key);
        let g = self.lock(self.stripe_of(h))?;
        let bump = g.bump()?;
        let probe = g.find(key, h, bump)?;
        let prev = match &probe {
            Probe::Found { block, .. } => Some(old(g.value(block))),
            Probe::Vacant { .. } => None,
        };
        g.put(key, h, probe, value, units, bump)?;
        Ok(prev)
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DictError> {
        self.check_key(key)?;
        let h = hash_bytes(key);
        let g = self.lock(self.stripe_of(h))?;
        let bump = g.bump()?;
        match g.find(key, h, bump)? {
            Probe::Found { slot, block } => {
                let old = g.value(&block).to_vec();
                g.delete(slot, block);
                Ok(Some(old))
            }
            Probe::Vacant { .. } => Ok(None),
        }
    }

    /// Atomic read-modify-write: `f` sees the current value (borrowed from
    /// the arena) and returns the new one (`None` removes the key).
    pub(crate) fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, DictError> {
        self.check_key(key)?;
        let h = hash_bytes(key);
        let g = self.lock(self.stripe_of(h))?;
        let bump = g.bump()?;
        let probe = g.find(key, h, bump)?;
        let new = match &probe {
            Probe::Found { block, .. } => f(Some(g.value(block))),
            Probe::Vacant { .. } => f(None),
        };
        match (new, probe) {
            (Some(v), probe) => {
                let units = self.check_value(key, &v)?;
                g.put(key, h, probe, &v, units, bump)?;
                Ok(Some(v))
            }
            (None, Probe::Found { slot, block }) => {
                g.delete(slot, block);
                Ok(None)
            }
            (None, Probe::Vacant { .. }) => Ok(None),
        }
    }

    /// Adds `delta` (wrapping) to the little-endian `i64` stored at `key`
    /// (absent = 0); returns the previous value.
    pub(crate) fn fetch_add_i64(&self, key: &[u8], delta: i64) -> Result<i64, DictError> {
        self.check_key(key)?;
        let units = self.check_value(key, &[0; 8])?;
        let h = hash_bytes(key);
        let g = self.lock(self.stripe_of(h))?;
        let bump = g.bump()?;
        let probe = g.find(key, h, bump)?;
        let old = match &probe {
            Probe::Found { block, .. } => {
                let v = g.value(block);
                let bytes: [u8; 8] = v.try_into().map_err(|_| {
                    DictError::Decode(format!("value is {} bytes, not an 8-byte i64", v.len()))
                })?;
                i64::from_le_bytes(bytes)
            }
            Probe::Vacant { .. } => 0,
        };
        let new = old.wrapping_add(delta).to_le_bytes();
        g.put(key, h, probe, &new, units, bump)?;
        Ok(old)
    }

    pub(crate) fn len(&self) -> usize {
        (0..self.geo.stripes)
            .map(|s| {
                usize::try_from(self.header(s).count.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
            })
            .fold(0usize, usize::saturating_add)
    }

    pub(crate) fn repairs(&self) -> u64 {
        (0..self.geo.stripes)
            .map(|s| self.header(s).repairs.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    /// Empties every stripe, one after another (each stripe atomically).
    pub(crate) fn clear(&self) -> Result<(), DictError> {
        let deadline = self.deadline();
        for s in 0..self.geo.stripes {
            self.lock_until(s, deadline)?.clear();
        }
        Ok(())
    }

    /// Calls `f(key, value)` for every entry of stripe `s`, under its lock.
    pub(crate) fn for_each_in_stripe(
        &self,
        s: usize,
        deadline: Option<Deadline>,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DictError> {
        let g = self.lock_until(s, deadline)?;
        g.for_each(f)
    }

    /// The deadline a multi-stripe operation starting now must meet.
    pub(crate) fn call_deadline(&self) -> Option<Deadline> {
        self.deadline()
    }

    /// Calls `f` for every entry with every stripe locked (in index order,
    /// the one lock order every multi-stripe operation uses).
    pub(crate) fn for_each_consistent(
        &self,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), DictError> {
        let deadline = self.deadline();
        let mut guards = Vec::with_capacity(self.geo.stripes);
        for s in 0..self.geo.stripes {
            guards.push(self.lock_until(s, deadline)?);
        }
        for g in &guards {
            g.for_each(f)?;
        }
        Ok(())
    }

    /// Checks every stripe's invariants (for tests and tooling): counters
    /// match the table, every entry's block is valid, no block is both live
    /// and free. Returns the number of entries.
    pub(crate) fn check_consistency(&self) -> Result<usize, DictError> {
        let deadline = self.deadline();
        let mut n = 0usize;
        for s in 0..self.geo.stripes {
            let g = self.lock_until(s, deadline)?;
            n = n.saturating_add(g.check()?);
        }
        Ok(n)
    }
}

/// A locked stripe; unlocks on drop (also when a user closure run under
/// it panics: the stripe is only ever changed after the closure returned,
/// so unwinding leaves it intact and unlocked). Counted as a live guard,
/// so `fork` refuses while a closure runs under it.
struct Locked<'a> {
    d: &'a RawDict,
    s: usize,
    hdr: &'a StripeHeader,
    held: Held,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // A copy in a forked child never releases the parent's lock.
        if self.held.in_owner_process() {
            // SAFETY: a `Locked` exists only while the process that took it
            // holds the lock, and we are that process.
            unsafe { self.hdr.lock.unlock() };
        }
    }
}

impl Locked<'_> {
    fn geo(&self) -> &Geometry {
        &self.d.geo
    }

    fn table(&self, which: usize) -> &[AtomicU64] {
        let n = self.geo().slots;
        // SAFETY: (s * 2 + which) * slots + slots <= stripes * 2 * slots,
        // the number of slot atomics RawDict::new was given.
        unsafe { std::slice::from_raw_parts(self.d.slots.add((self.s * 2 + which) * n), n) }
    }

    fn active_index(&self) -> usize {
        (self.hdr.active.load(Ordering::Relaxed) & 1) as usize
    }

    fn active(&self) -> &[AtomicU64] {
        self.table(self.active_index())
    }

    fn bump(&self) -> Result<usize, DictError> {
        let b = self.hdr.bump.load(Ordering::Relaxed);
        if b > self.geo().arena_units as u64 {
            return Err(CORRUPT_BUMP);
        }
        Ok(b as usize)
    }

    /// Pointer to unit `off` of this stripe's arena.
    ///
    /// Callers keep `off` (plus what they access) within `arena_units`.
    fn unit_ptr(&self, off: usize) -> *mut u8 {
        debug_assert!(off < self.geo().arena_units);
        let base = (self.s * self.geo().arena_units + off) * UNIT;
        // SAFETY: off < arena_units, so the result is inside this stripe's
        // arena, which RawDict::new was given.
        unsafe { self.d.arena.add(base) }
    }

    /// Word `i` (0..4) of the header of the block at `off` (< arena_units).
    fn rd(&self, off: usize, i: usize) -> u32 {
        // SAFETY: off < arena_units (callers check against bump, which is
        // <= arena_units) and the header's 16 bytes lie inside unit `off`;
        // arena bytes are only accessed under the stripe lock; 4-aligned.
        unsafe { self.unit_ptr(off).add(i * 4).cast::<u32>().read() }
    }

    fn wr(&self, off: usize, i: usize, v: u32) {
        // SAFETY: as for `rd`; we hold the stripe lock.
        unsafe { self.unit_ptr(off).add(i * 4).cast::<u32>().write(v) }
    }

    /// Validates the block at `off` against the bump pointer.
    fn block(&self, off: usize, bump: usize) -> Result<Block, DictError> {
        if off >= bump {
            return Err(CORRUPT_BLOCK);
        }
        let class = self.rd(off, 0);
        if class == 0 || class > MAX_CLASS {
            return Err(CORRUPT_BLOCK);
        }
        let size = 1usize << class;
        if off + size > bump {
            return Err(CORRUPT_BLOCK);
        }
        let key_len = self.rd(off, 1) as usize;
        let val_len = self.rd(off, 2) as usize;
        match units_for(key_len, val_len) {
            Some(u) if u <= size => Ok(Block {
                off,
                class,
                key_len,
                val_len,
            }),
            _ => Err(CORRUPT_BLOCK),
        }
    }

    fn key(&self, b: &Block) -> &[u8] {
        // SAFETY: `b` was validated by `block`: key and value lie inside
        // the block, which lies inside the arena; bytes are only written
        // under the stripe lock, which we hold for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.unit_ptr(b.off).add(BLOCK_HEADER), b.key_len) }
    }

    /// Raw pointer to the value of a validated block (for in-place writes;
    /// never derived from a shared slice).
    fn value_ptr(&self, b: &Block) -> *mut u8 {
        // SAFETY: `b` was validated: the value lies inside the block.
        unsafe { self.unit_ptr(b.off).add(BLOCK_HEADER + round8(b.key_len)) }
    }

    fn value(&self, b: &Block) -> &[u8] {
        // SAFETY: as for `key`.
        unsafe {
            std::slice::from_raw_parts(
                self.unit_ptr(b.off).add(BLOCK_HEADER + round8(b.key_len)),
                b.val_len,
            )
        }
    }

    /// Linear probe for `key` in the active table, bounded by the table
    /// size (a table with no empty slot cannot make it loop).
    fn find(&self, key: &[u8], h: u64, bump: usize) -> Result<Probe, DictError> {
        let t = self.active();
        let mask = t.len() - 1;
        let tag = tag_of(h);
        let mut i = h as usize & mask;
        let mut first_free = None;
        for _ in 0..t.len() {
            let w = t[i].load(Ordering::Relaxed);
            match word_off(w) {
                None if w == EMPTY => {
                    return Ok(Probe::Vacant {
                        slot: Some(first_free.unwrap_or(i)),
                    })
                }
                None => {
                    first_free.get_or_insert(i);
                }
                Some(off) if (w >> 32) as u32 == tag => {
                    let b = self.block(off, bump)?;
                    if self.key(&b) == key {
                        return Ok(Probe::Found { slot: i, block: b });
                    }
                }
                Some(_) => {}
            }
            i = (i + 1) & mask;
        }
        Ok(Probe::Vacant { slot: first_free })
    }

    /// Stores `value` for `key` (probe result from `find`). On error the
    /// stripe is unchanged.
    fn put(
        &self,
        key: &[u8],
        h: u64,
        probe: Probe,
        value: &[u8],
        units: usize,
        bump: usize,
    ) -> Result<(), DictError> {
        match probe {
            Probe::Found { slot, block } => {
                if block.val_len == 8 && value.len() == 8 {
                    // Same-size 8-byte value: one aligned atomic store, so a
                    // crash leaves the old or the new value.
                    let mut b = [0u8; 8];
                    b.copy_from_slice(value);
                    self.store_u64_in_place(&block, u64::from_ne_bytes(b));
                    return Ok(());
                }
                let off = self.alloc(units, bump)?;
                self.write_block(off, key, value);
                crash_point();
                // Publish: one store makes the new block the entry's value.
                self.active()[slot].store(make_word(tag_of(h), off), Ordering::Release);
                crash_point();
                self.free(block.off, block.class);
                Ok(())
            }
            Probe::Vacant { slot } => {
                // Hints from shared memory: an absurd value saturates
                // (reads as full; `verify` reports it, repair recounts).
                let count =
                    usize::try_from(self.hdr.count.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
                if count >= self.geo().max_load {
                    return Err(DictError::CapacityExceeded);
                }
                let tombs = usize::try_from(self.hdr.tombstones.load(Ordering::Relaxed))
                    .unwrap_or(usize::MAX);
                let t = self.active();
                let needs_rehash = match slot {
                    None => true,
                    Some(i) => {
                        t[i].load(Ordering::Relaxed) == EMPTY
                            && count.saturating_add(tombs) >= self.geo().max_load
                    }
                };
                let slot = if needs_rehash {
                    self.rehash(bump)?;
                    match self.find(key, h, bump)? {
                        Probe::Vacant { slot: Some(i) } => i,
                        _ => return Err(DictError::Corrupt("table full after rehash")),
                    }
                } else {
                    slot.ok_or(DictError::CapacityExceeded)?
                };
                let off = self.alloc(units, self.bump()?)?;
                self.write_block(off, key, value);
                crash_point();
                let t = self.active();
                let was_tomb = t[slot].load(Ordering::Relaxed) != EMPTY;
                t[slot].store(make_word(tag_of(h), off), Ordering::Release);
                crash_point();
                self.hdr.count.store(count as u64 + 1, Ordering::Relaxed);
                if was_tomb {
                    crash_point();
                    let tombs = self.hdr.tombstones.load(Ordering::Relaxed);
                    self.hdr
                        .tombstones
                        .store(tombs.saturating_sub(1), Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    #[cfg(not(loom))]
    fn store_u64_in_place(&self, b: &Block, v: u64) {
        let p = self.value_ptr(b);
        // SAFETY: the value's 8 bytes lie inside a validated block; values
        // start 8-aligned (16-byte block header, key padded to 8, arena
        // 8-aligned); we hold the stripe lock, so nobody reads them now.
        let a = unsafe { &*(p as *const AtomicU64) };
        a.store(v, Ordering::Relaxed);
    }

    #[cfg(loom)]
    fn store_u64_in_place(&self, b: &Block, v: u64) {
        let p = self.value_ptr(b);
        // SAFETY: as above (loom atomics cannot overlay raw memory, and
        // crash atomicity is not modelled under loom).
        unsafe { p.cast::<u64>().write_unaligned(v) };
    }

    /// Removes the entry in `slot` (whose block is `block`).
    fn delete(&self, slot: usize, block: Block) {
        let t = self.active();
        let next = (slot + 1) & (t.len() - 1);
        // A slot followed by an empty one ends every probe chain through
        // it, so it can become empty instead of a tombstone.
        if t[next].load(Ordering::Relaxed) == EMPTY {
            t[slot].store(EMPTY, Ordering::Release);
        } else {
            t[slot].store(TOMBSTONE, Ordering::Release);
            crash_point();
            // A hint another process may have scribbled: saturate (the
            // next insert then rehashes, which recounts it from zero).
            let tombs = self.hdr.tombstones.load(Ordering::Relaxed);
            self.hdr
                .tombstones
                .store(tombs.saturating_add(1), Ordering::Relaxed);
        }
        crash_point();
        let count = self.hdr.count.load(Ordering::Relaxed);
        self.hdr
            .count
            .store(count.saturating_sub(1), Ordering::Relaxed);
        crash_point();
        self.free(block.off, block.class);
    }

    fn write_block(&self, off: usize, key: &[u8], value: &[u8]) {
        self.wr(off, 1, key.len() as u32);
        self.wr(off, 2, value.len() as u32);
        self.wr(off, 3, 0);
        crash_point();
        let p = self.unit_ptr(off);
        // SAFETY: `off` came from `alloc` for a class holding
        // units_for(key, value) units, inside the arena; we hold the lock.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), p.add(BLOCK_HEADER), key.len());
            std::ptr::copy_nonoverlapping(
                value.as_ptr(),
                p.add(BLOCK_HEADER + round8(key.len())),
                value.len(),
            );
        }
    }

    /// Allocates a block of at least `units` units: free list of its
    /// class, else fresh space from the bump pointer, else a split larger
    /// free block. Returns its unit offset, its header's class written.
    fn alloc(&self, units: usize, bump: usize) -> Result<usize, DictError> {
        let c = class_for(units);
        if c > MAX_CLASS {
            return Err(DictError::CapacityExceeded);
        }
        if let Some(off) = self.pop_free(c, bump)? {
            return Ok(off);
        }
        let size = 1usize << c;
        if bump + size <= self.geo().arena_units {
            // Header first, then the bump store: a crash in between leaves
            // the header past `bump`, where nobody looks.
            self.wr(bump, 0, c);
            crash_point();
            self.hdr.bump.store((bump + size) as u64, Ordering::Relaxed);
            crash_point();
            return Ok(bump);
        }
        for big in c + 1..=MAX_CLASS {
            if let Some(off) = self.pop_free(big, bump)? {
                // Split: hand the upper halves to the smaller free lists
                // (each header written before the block below is shrunk).
                for k in (c..big).rev() {
                    let upper = off + (1usize << k);
                    self.wr(upper, 0, k);
                    self.push_free(upper, k);
                    crash_point();
                    self.wr(off, 0, k);
                }
                return Ok(off);
            }
        }
        Err(DictError::CapacityExceeded)
    }

    fn pop_free(&self, c: u32, bump: usize) -> Result<Option<usize>, DictError> {
        let head = &self.hdr.free[c as usize];
        let off = match self.hdr_link(head.load(Ordering::Relaxed)) {
            None => return Ok(None),
            Some(off) => off,
        };
        if off >= bump || self.rd(off, 0) != c || off + (1usize << c) > bump {
            return Err(DictError::Corrupt("free list points at an invalid block"));
        }
        head.store(self.rd(off, 1), Ordering::Relaxed);
        crash_point();
        Ok(Some(off))
    }

    fn hdr_link(&self, v: u32) -> Option<usize> {
        v.checked_sub(1).map(|o| o as usize)
    }

    fn push_free(&self, off: usize, c: u32) {
        let head = &self.hdr.free[c as usize];
        // Link first, then the head: a crash in between leaks the block
        // until the next repair, which rebuilds every free list.
        self.wr(off, 1, head.load(Ordering::Relaxed));
        crash_point();
        head.store(off as u32 + 1, Ordering::Relaxed);
    }

    fn free(&self, off: usize, c: u32) {
        self.push_free(off, c);
    }

    /// Rebuilds the active table into the other copy without tombstones,
    /// then flips `active` with one store. A crash before the flip leaves
    /// the old table live and intact.
    fn rehash(&self, bump: usize) -> Result<(), DictError> {
        let from = self.active_index();
        let src = self.table(from);
        let dst = self.table(from ^ 1);
        let mask = dst.len() - 1;
        for w in dst {
            w.store(EMPTY, Ordering::Relaxed);
        }
        crash_point();
        for w in src {
            let w = w.load(Ordering::Relaxed);
            let Some(off) = word_off(w) else { continue };
            let b = self.block(off, bump)?;
            let h = hash_bytes(self.key(&b));
            let mut i = h as usize & mask;
            let mut placed = false;
            for _ in 0..dst.len() {
                if dst[i].load(Ordering::Relaxed) == EMPTY {
                    dst[i].store(make_word(tag_of(h), off), Ordering::Relaxed);
                    placed = true;
                    break;
                }
                i = (i + 1) & mask;
            }
            if !placed {
                return Err(DictError::Corrupt("more entries than table slots"));
            }
        }
        crash_point();
        self.hdr.active.store((from ^ 1) as u64, Ordering::Release);
        crash_point();
        self.hdr.tombstones.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn clear(&self) {
        // Table first: until the allocator is reset, any entries a crash
        // leaves behind still point at intact blocks.
        for w in self.active() {
            w.store(EMPTY, Ordering::Relaxed);
        }
        self.hdr.count.store(0, Ordering::Relaxed);
        self.hdr.tombstones.store(0, Ordering::Relaxed);
        for f in &self.hdr.free {
            f.store(0, Ordering::Relaxed);
        }
        self.hdr.bump.store(0, Ordering::Relaxed);
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), DictError> {
        let bump = self.bump()?;
        for w in self.active() {
            if let Some(off) = word_off(w.load(Ordering::Relaxed)) {
                let b = self.block(off, bump)?;
                f(self.key(&b), self.value(&b));
            }
        }
        Ok(())
    }

    /// Every block from 0 to `bump`, in order (each header's class must
    /// tile the arena exactly).
    fn walk(&self, bump: usize) -> Result<Vec<(usize, u32)>, DictError> {
        let mut blocks = Vec::new();
        let mut off = 0;
        while off < bump {
            let c = self.rd(off, 0);
            if c == 0 || c > MAX_CLASS || off + (1usize << c) > bump {
                return Err(DictError::Corrupt("arena blocks do not tile the arena"));
            }
            blocks.push((off, c));
            off += 1usize << c;
        }
        Ok(blocks)
    }

    /// Live block offsets of the active table (sorted, each a block start,
    /// no two entries sharing a block) and the tombstone count.
    fn live_blocks(
        &self,
        bump: usize,
        blocks: &[(usize, u32)],
    ) -> Result<(Vec<usize>, usize), DictError> {
        let mut live = Vec::new();
        let mut tombs = 0;
        for w in self.active() {
            let w = w.load(Ordering::Relaxed);
            match word_off(w) {
                Some(off) => {
                    if blocks.binary_search_by_key(&off, |b| b.0).is_err() {
                        return Err(DictError::Corrupt("entry points inside an arena block"));
                    }
                    self.block(off, bump)?;
                    live.push(off);
                }
                None if w != EMPTY => tombs += 1,
                None => {}
            }
        }
        live.sort_unstable();
        if live.windows(2).any(|p| p[0] == p[1]) {
            return Err(DictError::Corrupt("two entries share one arena block"));
        }
        Ok((live, tombs))
    }

    /// Crash repair, run by the locker that found the previous holder dead.
    ///
    /// The active table is the only source of truth: each of its words was
    /// published by one store, so every entry is complete. Everything else
    /// (entry and tombstone counts, every free list) is rebuilt from it and
    /// from a walk over the arena's block headers. Idempotent: a crash
    /// during repair leaves the stripe marked inconsistent, and the next
    /// locker repairs again.
    fn repair(&self) -> Result<(), DictError> {
        let bump = self.bump()?;
        let blocks = self.walk(bump)?;
        let (live, tombs) = self.live_blocks(bump, &blocks)?;
        for f in &self.hdr.free {
            f.store(0, Ordering::Relaxed);
        }
        crash_point();
        for &(off, c) in &blocks {
            if live.binary_search(&off).is_err() {
                self.push_free(off, c);
            }
        }
        self.hdr.count.store(live.len() as u64, Ordering::Relaxed);
        crash_point();
        self.hdr.tombstones.store(tombs as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Full invariant check (tests, tooling).
    fn check(&self) -> Result<usize, DictError> {
        let bump = self.bump()?;
        let blocks = self.walk(bump)?;
        let (live, tombs) = self.live_blocks(bump, &blocks)?;
        if self.hdr.count.load(Ordering::Relaxed) != live.len() as u64 {
            return Err(DictError::Corrupt("entry count does not match the table"));
        }
        if self.hdr.tombstones.load(Ordering::Relaxed) != tombs as u64 {
            return Err(DictError::Corrupt(
                "tombstone count does not match the table",
            ));
        }
        // Every free-list block is a block start, of its list's class, not
        // live, and listed once (bounded walk).
        let mut free = Vec::new();
        for c in 1..=MAX_CLASS {
            let mut link = self.hdr.free[c as usize].load(Ordering::Relaxed);
            let mut steps = 0;
            while let Some(off) = self.hdr_link(link) {
                steps += 1;
                if steps > blocks.len() {
                    return Err(DictError::Corrupt("free list has a cycle"));
                }
                match blocks.binary_search_by_key(&off, |b| b.0) {
                    Ok(i) if blocks[i].1 == c => {}
                    _ => return Err(DictError::Corrupt("free list points at an invalid block")),
                }
                if live.binary_search(&off).is_ok() {
                    return Err(DictError::Corrupt("a live block is on a free list"));
                }
                free.push(off);
                link = self.rd(off, 1);
            }
        }
        free.sort_unstable();
        if free.windows(2).any(|p| p[0] == p[1]) {
            return Err(DictError::Corrupt("a block is on a free list twice"));
        }
        Ok(live.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_encoding() {
        assert_eq!(word_off(EMPTY), None);
        assert_eq!(word_off(TOMBSTONE), None);
        assert_eq!(word_off(make_word(0, 0)), Some(0));
        assert_eq!(word_off(make_word(u32::MAX, 5)), Some(5));
        assert_ne!(make_word(0xFFFF_FFFF, 0), TOMBSTONE);
        assert_eq!(class_for(1), 1);
        assert_eq!(class_for(2), 1);
        assert_eq!(class_for(3), 2);
        assert_eq!(units_for(3, 8), Some(2));
    }

    #[test]
    fn block_lengths_from_shared_memory_cannot_overflow() {
        // A block header may claim any lengths: sizing them is checked.
        assert_eq!(units_for(usize::MAX, 0), None);
        assert_eq!(units_for(usize::MAX - 3, 0), None);
        assert_eq!(units_for(0, usize::MAX), None);
        assert_eq!(units_for(8, usize::MAX - 20), None);
    }

    /// Two keys whose probe chains start at the same slot of a one-stripe
    /// dict's table (so the second lands right after the first).
    fn colliding_keys(d: &RawDict) -> (Vec<u8>, Vec<u8>) {
        let mask = d.geo.slots as u64 - 1;
        let mut seen = std::collections::HashMap::new();
        for k in 0u32.. {
            let key = k.to_le_bytes().to_vec();
            if let Some(other) = seen.insert(hash_bytes(&key) & mask, key.clone()) {
                return (other, key);
            }
        }
        unreachable!("the table is finite")
    }

    #[test]
    fn hostile_tombstone_count_saturates() {
        use super::super::{DictConfig, ShmDict};
        let d = ShmDict::in_heap(DictConfig::new(8, 4096).stripes(1)).unwrap();
        let (a, b) = colliding_keys(&d.raw);
        d.insert(&a, b"1").unwrap();
        d.insert(&b, b"2").unwrap();
        let hdr = d.raw.header(0);
        hdr.tombstones.store(u64::MAX, Ordering::Relaxed);
        // `a` is followed by `b`: removing it leaves a tombstone and bumps
        // the (hostile) counter, which must saturate, not overflow.
        assert_eq!(d.remove(&a).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(hdr.tombstones.load(Ordering::Relaxed), u64::MAX);
        // The next insert rehashes, which recounts the tombstones.
        d.insert(b"new", b"3").unwrap();
        assert_eq!(hdr.tombstones.load(Ordering::Relaxed), 0);
        assert_eq!(d.get(&b).unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(d.verify().unwrap(), 2);
    }

    #[test]
    fn hostile_entry_count_reads_as_full() {
        use super::super::{DictConfig, ShmDict};
        let d = ShmDict::in_heap(DictConfig::new(8, 4096).stripes(1)).unwrap();
        d.insert(b"a", b"1").unwrap();
        d.insert(b"c", b"3").unwrap();
        let count = &d.raw.header(0).count;
        count.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(d.len(), usize::MAX);
        assert!(matches!(
            d.insert(b"b", b"2"),
            Err(DictError::CapacityExceeded)
        ));
        assert!(matches!(d.verify(), Err(DictError::Corrupt(_))));
        assert!(d.remove(b"a").unwrap().is_some());
        // Too low instead: a removal stops at zero rather than wrapping.
        count.store(0, Ordering::Relaxed);
        assert!(d.remove(b"c").unwrap().is_some());
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert_eq!(d.len(), 0);
        assert_eq!(d.verify().unwrap(), 0);
    }
}
