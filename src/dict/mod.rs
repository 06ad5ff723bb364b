//! [`ShmDict`]: a shared hash map of byte keys to byte values in one
//! segment, with no server process — Python's `Manager().dict()` without
//! the pickling round trip through a manager process that dies with it.
//!
//! # Design
//!
//! The dict is split into `stripes` independent stripes. A key's 64-bit
//! hash (fixed and seedless, so every process agrees) picks its stripe
//! from the high bits and its first slot from the low bits. Each stripe
//! has
//!
//! * a robust process-shared lock ([`RawMutex`](crate::RawMutex)),
//! * two open-addressing tables of `slots` 8-byte words (linear probing
//!   with tombstones, load factor ≤ 7/8; the second copy is the target of
//!   crash-safe rehashing),
//! * an arena of 16-byte units carved into power-of-two blocks, with one
//!   free list per size class and a bump pointer.
//!
//! A slot word is `0` (empty), `0xFFFF_FFFF_0000_0000` (tombstone), or
//! `tag << 32 | (block + 1)`: 32 hash bits to skip most key comparisons,
//! and the unit offset of the entry's block. A block is a 16-byte header
//! (`class`, `key_len` — or the free-list link while free —, `val_len`, 0)
//! followed by the key, padded to 8 bytes, then the value (so an 8-byte
//! value is 8-aligned).
//!
//! **Why striped locks and not a seqlock.** [`ShmDict::get_with`] hands the
//! caller a `&[u8]` straight into the arena. Under a seqlock that slice
//! could change (or be freed and reused) while the closure runs; with the
//! stripe lock held it cannot, and reading it is not a data race. The lock
//! is robust, so a reader or writer killed while holding it is recovered by
//! the next locker, which also repairs the stripe. Readers of different
//! keys do not serialise unless their keys share a stripe; an uncontended
//! operation is one CAS and one swap on the stripe's lock word.
//!
//! **Crash safety.** Every mutation writes new bytes into fresh arena space
//! and then publishes them with *one* store of the slot word (or, for an
//! 8-byte value replaced by another 8-byte value, one aligned atomic store
//! of the value itself); only then is the old block freed. Counters and
//! free lists are hints that a crash may leave stale; the locker that
//! finds the previous holder dead rebuilds them from the table and a walk
//! over the block headers (see `SAFETY.md`, "Shared dict").
//!
//! **Capacity.** Fixed at creation by [`DictConfig`]. Each stripe's table
//! holds its share of `max_entries` plus a 4σ margin; `arena_bytes` is
//! split evenly over stripes, and each entry takes the next power of two
//! of `16 + round8(key) + value` bytes. Freed blocks are reused by their
//! size class, and larger free blocks are split. An insert that does not
//! fit fails with [`DictError::CapacityExceeded`] and changes nothing.
//! [`DictConfig::for_entries`] sizes the arena from the entry count and
//! the largest key and value so that it never runs out before the table.
//!
//! ```
//! use shmkit::{DictConfig, ShmDict};
//!
//! let d = ShmDict::anonymous(DictConfig::new(1000, 1 << 20))?;
//! d.insert(b"num", &100i64.to_le_bytes())?;
//! d.fetch_add_i64(b"num", -1)?;
//! assert_eq!(d.get_i64(b"num")?, Some(99));
//! d.update(b"greeting", |old| {
//!     assert!(old.is_none());
//!     Some(b"hello".to_vec())
//! })?;
//! assert_eq!(d.get(b"greeting")?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(d.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod hash;
mod raw;
mod typed;

use std::time::Duration;

use bytemuck::Pod;

pub use config::{DictConfig, MAX_ENTRIES, MAX_KEY_LEN, MAX_STRIPES};
pub use error::DictError;
pub use typed::ShmMap;

use crate::error::{AttachError, Error};
use crate::primitives::AtomicU64;
use crate::segment::{
    attach_object, create_object, HeaderInfo, ObjectKind, OpenOptions, Region, SegmentObject,
};
use crate::Segment;
use config::{Geometry, UNIT};
use raw::{RawDict, StripeHeader};

/// Version of the dict's body layout and hash; stored in the header.
const DICT_FORMAT: u64 = 1;

/// An owned `(key, value)` pair copied out of a dict.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Where a dict's memory comes from.
enum Backing {
    Segment(Segment),
    // Held only for its `Drop`, which frees the memory.
    Heap(#[allow(dead_code)] HeapParts),
    Borrowed,
}

/// Heap memory for a process-local dict (tests, Miri, loom).
struct HeapParts {
    stripes: *mut [StripeHeader],
    slots: *mut [AtomicU64],
    arena: *mut [u64],
}

// SAFETY: the parts are plain owned allocations (atomics and arena bytes
// accessed under stripe locks), freed only in Drop.
unsafe impl Send for HeapParts {}
// SAFETY: as above; HeapParts itself exposes nothing.
unsafe impl Sync for HeapParts {}

impl Drop for HeapParts {
    fn drop(&mut self) {
        // SAFETY: each pointer came from Box::into_raw in `in_heap` and is
        // freed exactly once, here.
        unsafe {
            drop(Box::from_raw(self.stripes));
            drop(Box::from_raw(self.slots));
            drop(Box::from_raw(self.arena));
        }
    }
}

/// A shared hash map from byte keys to byte values, living in one segment
/// that any number of processes map. See the [module docs](self) for the
/// design and [`ShmMap`] for a typed (serde) view.
///
/// Every operation locks one stripe; none calls into a server. Handles
/// inherited over `fork` work in the child (locks identify their owner by
/// the pid at lock time).
///
/// ```
/// use shmkit::{DictConfig, ShmDict};
///
/// let name = format!("doc-dict-{}", std::process::id());
/// let d = ShmDict::create(&name, DictConfig::new(100, 64 << 10))?;
/// let other = ShmDict::open(&name)?; // e.g. in another process
/// assert_eq!(d.insert(b"number1", b"25")?, None);
/// assert_eq!(other.get(b"number1")?.as_deref(), Some(&b"25"[..]));
/// assert_eq!(other.get_with(b"number1", |v| v.len())?, Some(2));
/// assert!(other.remove(b"number1")?.is_some());
/// assert!(d.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmDict {
    raw: RawDict,
    config: DictConfig,
    backing: Backing,
}

impl ShmDict {
    fn params(cfg: &DictConfig, g: &Geometry) -> [u64; 6] {
        [
            cfg.max_entries as u64,
            cfg.arena_bytes as u64,
            cfg.stripes as u64,
            g.slots as u64,
            g.arena_units as u64,
            DICT_FORMAT,
        ]
    }

    fn from_region(
        body: Region,
        config: DictConfig,
        geo: Geometry,
        backing: Backing,
    ) -> Result<Self, AttachError> {
        if body.len() < geo.body_len() {
            return Err(AttachError::TooSmall {
                actual: body.len() as u64,
                required: geo.body_len() as u64,
            });
        }
        let stripes = body.ptr_at::<StripeHeader>(0)?;
        body.sub(0, geo.tables_offset())?;
        let slots = body.ptr_at::<AtomicU64>(geo.tables_offset())?;
        let arena = body.sub(geo.arena_offset(), geo.stripes * geo.arena_units * UNIT)?;
        // SAFETY: the three regions were bounds-checked above against the body,
        // mapped as long as `backing` (kept in the result) lives; headers and
        // slots are atomics (any bytes valid); the arena is 64-aligned.
        let raw = unsafe { RawDict::new(stripes, slots, arena.as_ptr(), geo) };
        Ok(Self {
            raw,
            config,
            backing,
        })
    }

    /// Creates a named dict (this handle owns the name and unlinks it on
    /// drop in this process).
    pub fn create(name: &str, config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, config)
    }

    /// Creates an anonymous dict, shared with children forked afterwards.
    pub fn anonymous(config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(config)
    }

    /// A dict in this process's heap: the same algorithm with no segment
    /// (for single-process use, tests, Miri and loom models).
    pub fn in_heap(config: DictConfig) -> Result<Self, Error> {
        let geo = Geometry::from_config(&config)?;
        let stripes: Box<[StripeHeader]> = (0..geo.stripes).map(|_| StripeHeader::new()).collect();
        let slots: Box<[AtomicU64]> = (0..geo.stripes * 2 * geo.slots)
            .map(|_| AtomicU64::new(0))
            .collect();
        let arena: Box<[u64]> = vec![0u64; geo.stripes * geo.arena_units * UNIT / 8].into();
        let parts = HeapParts {
            stripes: Box::into_raw(stripes),
            slots: Box::into_raw(slots),
            arena: Box::into_raw(arena),
        };
        // SAFETY: the three allocations have exactly the sizes RawDict
        // needs, the arena is 8-aligned, and `parts` (kept in the returned
        // value) frees them only when the dict is dropped.
        let raw = unsafe {
            RawDict::new(
                parts.stripes as *const StripeHeader,
                parts.slots as *const AtomicU64,
                parts.arena as *mut u8,
                geo,
            )
        };
        Ok(Self {
            raw,
            config,
            backing: Backing::Heap(parts),
        })
    }

    crate::segment::inherent_opens!("dict");

    /// Opens the named dict, or creates it with `config` if there is none
    /// (race-free between processes; see
    /// [`SegmentObject::open_or_create`]).
    pub fn open_or_create(name: &str, config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, config)
    }

    fn finish_attach(seg: Segment, info: HeaderInfo, body: Region) -> Result<Self, AttachError> {
        let p = info.params;
        let config = DictConfig {
            max_entries: usize::try_from(p[0]).unwrap_or(usize::MAX),
            arena_bytes: usize::try_from(p[1]).unwrap_or(usize::MAX),
            stripes: usize::try_from(p[2]).unwrap_or(usize::MAX),
        };
        let geo = Geometry::from_config(&config)
            .map_err(|_| AttachError::Corrupt("dict parameters out of range"))?;
        let expected = Self::params(&config, &geo);
        for (i, what) in [
            (3, "slots per stripe"),
            (4, "arena units per stripe"),
            (5, "dict format"),
        ] {
            if p[i] != expected[i] {
                return Err(AttachError::ParamMismatch {
                    what,
                    found: p[i],
                    expected: expected[i],
                });
            }
        }
        if info.body_len != geo.body_len() {
            return Err(AttachError::ParamMismatch {
                what: "dict body length",
                found: info.body_len as u64,
                expected: geo.body_len() as u64,
            });
        }
        Self::from_region(body, config, geo, Backing::Segment(seg))
    }

    /// Bytes of caller-provided memory a dict of `config` needs (the body
    /// only: no segment header).
    pub fn embedded_size(config: &DictConfig) -> Result<usize, Error> {
        Ok(Geometry::from_config(config)?.body_len())
    }

    /// Initialises an empty dict in caller-provided memory (for crates that
    /// manage their own segments). The layout is this module's, version
    /// [`LAYOUT_VERSION`](crate::segment::LAYOUT_VERSION).
    ///
    /// # Safety
    /// `ptr` must be 64-aligned, valid for writes of `len` bytes, and not in
    /// use by anyone during the call.
    pub unsafe fn init_in(ptr: *mut u8, len: usize, config: &DictConfig) -> Result<(), Error> {
        let need = Self::embedded_size(config)?;
        if len < need || ptr as usize % 64 != 0 {
            return Err(Error::InvalidArgument(
                "embedded dict memory too small or misaligned",
            ));
        }
        // SAFETY: the caller guarantees `ptr` is valid for `len >= need`
        // bytes and unused; all-zero is an empty dict.
        unsafe { std::ptr::write_bytes(ptr, 0, need) };
        Ok(())
    }

    /// Views caller-provided memory initialised by
    /// [`init_in`](ShmDict::init_in) (in any process) as a dict.
    ///
    /// # Safety
    /// `ptr` must stay mapped, readable and writable for `len` bytes for as
    /// long as the returned dict is used. Any contents are memory-safe to
    /// operate on (bad ones give `Corrupt`).
    pub unsafe fn from_raw(
        ptr: *mut u8,
        len: usize,
        config: DictConfig,
    ) -> Result<Self, AttachError> {
        let geo = Geometry::from_config(&config)
            .map_err(|_| AttachError::Corrupt("dict parameters out of range"))?;
        // SAFETY: guaranteed by the caller.
        let body = unsafe { Region::new(ptr, len) };
        Self::from_region(body, config, geo, Backing::Borrowed)
    }

    /// The capacity this dict was created with.
    pub fn config(&self) -> DictConfig {
        self.config
    }

    /// The segment holding the dict (`None` for heap or embedded dicts).
    pub fn segment(&self) -> Option<&Segment> {
        <Self as SegmentObject>::segment(self)
    }

    /// Keeps the segment's name after this (owning) handle is dropped.
    pub fn keep(&mut self) {
        if let Backing::Segment(s) = &mut self.backing {
            s.keep();
        }
    }

    /// Bounds how long each call on this handle waits for stripe locks
    /// (`None`, the default, waits as long as a live process holds one; a
    /// dead holder is always recovered). With a timeout, a call that
    /// cannot get its locks in time fails with [`DictError::LockTimeout`];
    /// the timeout covers the whole call, also for calls that lock every
    /// stripe ([`clear`](ShmDict::clear), [`for_each`](ShmDict::for_each),
    /// [`snapshot`](ShmDict::snapshot), [`verify`](ShmDict::verify); for
    /// [`iter`](ShmDict::iter), each `next`).
    ///
    /// ```
    /// use shmkit::{DictConfig, ShmDict};
    /// use std::time::Duration;
    ///
    /// let mut d = ShmDict::anonymous(DictConfig::new(16, 4096))?;
    /// d.set_lock_timeout(Some(Duration::from_secs(1)));
    /// d.insert(b"k", b"v")?;
    /// assert_eq!(d.snapshot()?.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_lock_timeout(&mut self, timeout: Option<Duration>) {
        self.raw.set_lock_timeout(timeout);
    }

    /// Inserts `value` for `key`, returning the previous value. On error
    /// (e.g. [`DictError::CapacityExceeded`]) the dict is unchanged.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, DictError> {
        self.raw.insert_with(key, value, <[u8]>::to_vec)
    }

    /// Stores `value` for `key` without returning the previous value
    /// (Python's `d[k] = v`): no copy of the old value is made. Returns
    /// whether the key was already present. Crash-safe exactly like
    /// [`insert`](ShmDict::insert); on error the dict is unchanged.
    ///
    /// ```
    /// use shmkit::{DictConfig, ShmDict};
    ///
    /// let d = ShmDict::anonymous(DictConfig::new(16, 1 << 14))?;
    /// assert!(!d.set(b"k", b"one")?);
    /// assert!(d.set(b"k", b"two")?);
    /// assert_eq!(d.get(b"k")?.as_deref(), Some(&b"two"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<bool, DictError> {
        Ok(self.raw.insert_with(key, value, |_| ())?.is_some())
    }

    /// A copy of the value for `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DictError> {
        self.raw.get_with(key, <[u8]>::to_vec)
    }

    /// Calls `f` with the value for `key` in place (zero-copy), while the
    /// key's stripe is locked. `f` must not use this dict (the stripe lock
    /// is not reentrant) and should be short: it blocks the stripe.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, DictError> {
        self.raw.get_with(key, f)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool, DictError> {
        Ok(self.raw.get_with(key, |_| ())?.is_some())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DictError> {
        self.raw.remove(key)
    }

    /// Atomic read-modify-write of one key: `f` sees the current value (or
    /// `None`) and returns the new one (`None` removes the key). No other
    /// process can change the key in between, so `update(k, |v| v - 1)` is
    /// the correct form of Python's `d['num'] -= 1` race. Returns the value
    /// stored (`f`'s result). `f` runs with the stripe locked: it must not
    /// use this dict. If the new value does not fit, the old one stays.
    pub fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, DictError> {
        self.raw.update(key, f)
    }

    /// Atomically adds `delta` (wrapping) to the little-endian `i64` stored
    /// at `key` (absent counts as 0) and returns the previous value. Fails
    /// with [`DictError::Decode`] if the stored value is not 8 bytes.
    pub fn fetch_add_i64(&self, key: &[u8], delta: i64) -> Result<i64, DictError> {
        self.raw.fetch_add_i64(key, delta)
    }

    /// The little-endian `i64` at `key` (written by `fetch_add_i64` or
    /// `insert_pod`).
    pub fn get_i64(&self, key: &[u8]) -> Result<Option<i64>, DictError> {
        self.get_pod::<i64>(key)
    }

    /// Reads the value at `key` as a `T` (its native-endian bytes, as
    /// [`insert_pod`](ShmDict::insert_pod) stores them). A value of another
    /// length is [`DictError::Decode`].
    pub fn get_pod<T: Pod>(&self, key: &[u8]) -> Result<Option<T>, DictError> {
        match self.raw.get_with(key, |v| {
            (v.len() == std::mem::size_of::<T>()).then(|| bytemuck::pod_read_unaligned::<T>(v))
        })? {
            None => Ok(None),
            Some(Some(t)) => Ok(Some(t)),
            Some(None) => Err(DictError::Decode(format!(
                "stored value is not {} bytes",
                std::mem::size_of::<T>()
            ))),
        }
    }

    /// Stores `value`'s bytes at `key` (no serialisation).
    pub fn insert_pod<T: Pod>(&self, key: &[u8], value: &T) -> Result<(), DictError> {
        self.set(key, bytemuck::bytes_of(value)).map(drop)
    }

    /// Number of entries: the sum of the stripes' counts, each exact, read
    /// one after another (so only a snapshot while others write).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the dict has no entries (see [`len`](ShmDict::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry, stripe by stripe (each stripe atomically; an
    /// entry inserted concurrently into an already-cleared stripe stays).
    pub fn clear(&self) -> Result<(), DictError> {
        self.raw.clear()
    }

    /// Calls `f(key, value)` for every entry, zero-copy, locking one stripe
    /// at a time (weakly consistent, like [`iter`](ShmDict::iter)). `f`
    /// must not use this dict.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), DictError> {
        let deadline = self.raw.call_deadline();
        for s in 0..self.raw.geometry().stripes {
            self.raw.for_each_in_stripe(s, deadline, &mut f)?;
        }
        Ok(())
    }

    /// Iterates over copies of the entries, **weakly consistent**: each
    /// stripe is copied atomically under its lock when the iterator reaches
    /// it, but different stripes at different times. An entry present and
    /// unchanged for the whole iteration is yielded exactly once; one
    /// inserted or removed meanwhile may or may not be. For a consistent
    /// snapshot use [`snapshot`](ShmDict::snapshot).
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            dict: self,
            stripe: 0,
            buf: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// The keys, weakly consistent (see [`iter`](ShmDict::iter)).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, DictError> {
        let mut out = Vec::new();
        self.for_each(|k, _| out.push(k.to_vec()))?;
        Ok(out)
    }

    /// A consistent copy of every entry: locks all stripes (in index order,
    /// the order every multi-stripe operation uses), copies, unlocks. It
    /// blocks every writer for the duration of the copy.
    pub fn snapshot(&self) -> Result<Vec<Entry>, DictError> {
        let mut out = Vec::new();
        self.raw
            .for_each_consistent(&mut |k, v| out.push((k.to_vec(), v.to_vec())))?;
        Ok(out)
    }

    /// How many times a stripe was repaired after its lock holder died
    /// (summed over stripes; for monitoring and tests).
    pub fn repairs(&self) -> u64 {
        self.raw.repairs()
    }

    /// Checks every stripe's invariants (counters match the table, every
    /// entry points at a valid block, free lists are sane) and returns the
    /// number of entries; [`DictError::Corrupt`] says what is wrong. Locks
    /// one stripe at a time. For tests and tooling.
    pub fn verify(&self) -> Result<usize, DictError> {
        self.raw.check_consistency()
    }
}

impl SegmentObject for ShmDict {
    type Config = DictConfig;

    fn create_in(name: Option<&str>, config: DictConfig) -> Result<Self, Error> {
        let geo = Geometry::from_config(&config)?;
        // A zero-filled body is an empty dict: nothing to initialise.
        let (seg, body) = create_object(
            name,
            ObjectKind::DICT,
            &Self::params(&config, &geo),
            geo.body_len(),
            |_| Ok(()),
        )?;
        Ok(Self::from_region(body, config, geo, Backing::Segment(seg))?)
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, ObjectKind::DICT, opts)?;
        Self::finish_attach(seg, info, body)
    }

    fn segment(&self) -> Option<&Segment> {
        match &self.backing {
            Backing::Segment(s) => Some(s),
            Backing::Heap(_) | Backing::Borrowed => None,
        }
    }
}

impl std::fmt::Debug for ShmDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmDict")
            .field("segment", &self.segment().and_then(|s| s.name()))
            .field("config", &self.config)
            .field("len", &self.len())
            .finish()
    }
}

/// Iterator over a [`ShmDict`]'s entries (copies), from
/// [`ShmDict::iter`]: weakly consistent, one stripe at a time.
///
/// ```
/// use shmkit::{DictConfig, ShmDict};
///
/// let d = ShmDict::in_heap(DictConfig::new(16, 4096))?;
/// d.insert(b"a", b"1")?;
/// let all: Result<Vec<_>, _> = d.iter().collect();
/// assert_eq!(all?, vec![(b"a".to_vec(), b"1".to_vec())]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Iter<'a> {
    dict: &'a ShmDict,
    stripe: usize,
    buf: std::vec::IntoIter<Entry>,
    failed: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Entry, DictError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(Ok(e));
            }
            if self.failed || self.stripe >= self.dict.raw.geometry().stripes {
                return None;
            }
            let mut v = Vec::new();
            let r = self.dict.raw.for_each_in_stripe(
                self.stripe,
                self.dict.raw.call_deadline(),
                &mut |k, val| v.push((k.to_vec(), val.to_vec())),
            );
            self.stripe += 1;
            if let Err(e) = r {
                self.failed = true;
                return Some(Err(e));
            }
            self.buf = v.into_iter();
        }
    }
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("stripe", &self.stripe)
            .finish()
    }
}

#[cfg(test)]
mod tests;
