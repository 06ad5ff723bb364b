//! The segment header and its handshake.
//!
//! Every shmkit segment starts with a 128-byte [`SegmentHeader`]. The
//! creator writes `creator_pid` first (so attachers can tell a dead creator
//! from a slow one), then every other field and the object itself, and
//! stores [`READY`](SegmentHeader) into `ready` last with `Release`.
//! An attacher waits (bounded) for `ready` with `Acquire`, then validates
//! every field before trusting any of them.
//!
//! Layout (little-endian, all fields atomics so concurrent readers never
//! race in the Rust memory model):
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic: u64` | `b"SHMKIT\0\x01"` |
//! | 8 | `version: u32` | [`LAYOUT_VERSION`] |
//! | 12 | `kind: u32` | [`ObjectKind`] |
//! | 16 | `total_size: u64` | bytes the creator sized the segment to |
//! | 24 | `body_offset: u64` | where the object starts (64-aligned, ≥ 128) |
//! | 32 | `body_len: u64` | the object's length |
//! | 40 | `creator_pid: u32` | written first |
//! | 44 | `ready: u32` | `0x52454459` once published |
//! | 48 | `creator_start: u64` | creator's start time (clock ticks) |
//! | 56 | reserved | zero |
//! | 64 | `params: [u64; 8]` | kind-specific layout parameters |

use std::time::Duration;

use crate::error::AttachError;
use crate::os::{self, futex, Deadline};
use crate::primitives::{AtomicU32, AtomicU64, Ordering};

/// Size of the header at the start of every segment.
pub const HEADER_SIZE: usize = 128;
/// Version of the header and of every object layout in this crate. Bumped
/// on any change to a `#[repr(C)]` type that lives in a segment.
pub const LAYOUT_VERSION: u32 = 1;
/// Header magic: `b"SHMKIT\0\x01"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
/// Value of the ready word once the creator has published the segment.
pub const READY: u32 = 0x5245_4459;
/// Number of kind-specific parameter words in the header.
pub const PARAM_WORDS: usize = 8;

/// What object a segment holds. Values below `0x1000_0000` are shmkit's;
/// other crates embedding shmkit segments pick kinds at or above
/// [`ObjectKind::USER`].
///
/// ```
/// use shmkit::segment::ObjectKind;
/// assert_ne!(ObjectKind::MUTEX, ObjectKind::EVENT);
/// let mine = ObjectKind(ObjectKind::USER.0 + 7);
/// assert!(mine.0 >= ObjectKind::USER.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKind(pub u32);

#[allow(missing_docs)]
impl ObjectKind {
    pub const MUTEX: ObjectKind = ObjectKind(0x0101);
    pub const CONDVAR: ObjectKind = ObjectKind(0x0102);
    pub const SEMAPHORE: ObjectKind = ObjectKind(0x0103);
    pub const EVENT: ObjectKind = ObjectKind(0x0104);
    pub const BARRIER: ObjectKind = ObjectKind(0x0105);
    pub const VALUE: ObjectKind = ObjectKind(0x0106);
    pub const ARRAY: ObjectKind = ObjectKind(0x0107);
    pub const RAW_MUTEX: ObjectKind = ObjectKind(0x0108);
    pub const SPSC_RING: ObjectKind = ObjectKind(0x0201);
    pub const MPMC_QUEUE: ObjectKind = ObjectKind(0x0202);
    pub const JOINABLE_QUEUE: ObjectKind = ObjectKind(0x0203);
    pub const PIPE: ObjectKind = ObjectKind(0x0204);
    pub const DICT: ObjectKind = ObjectKind(0x0301);
    pub const POOL: ObjectKind = ObjectKind(0x0401);
    /// First kind value free for other crates.
    pub const USER: ObjectKind = ObjectKind(0x1000_0000);
}

/// The header at offset 0 of every shmkit segment. See the module docs for
/// the layout; the size and offsets are pinned by a test.
#[repr(C, align(64))]
pub struct SegmentHeader {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    total_size: AtomicU64,
    body_offset: AtomicU64,
    body_len: AtomicU64,
    creator_pid: AtomicU32,
    ready: AtomicU32,
    creator_start: AtomicU64,
    reserved: AtomicU64,
    params: [AtomicU64; PARAM_WORDS],
}

/// What a validated header says about the object in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The object's kind.
    pub kind: ObjectKind,
    /// Offset of the object from the segment base.
    pub body_offset: usize,
    /// Length of the object in bytes.
    pub body_len: usize,
    /// Kind-specific parameters (capacity, slot size, ...), unvalidated
    /// beyond what the header itself guarantees.
    pub params: [u64; PARAM_WORDS],
    /// Pid of the creating process.
    pub creator_pid: u32,
}

/// How to attach to a named object.
///
/// ```
/// use shmkit::segment::OpenOptions;
/// use std::time::Duration;
/// let o = OpenOptions::new().ready_timeout(Duration::from_millis(50));
/// assert_eq!(o.get_ready_timeout(), Duration::from_millis(50));
/// assert!(!o.get_allow_other_users());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    ready_timeout: Duration,
    allow_other_users: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(2),
            allow_other_users: false,
        }
    }
}

impl OpenOptions {
    /// Default options: wait up to 2 s for a creator that is still
    /// initialising.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for a segment that exists but is not yet published
    /// (or not yet sized) before failing with `NotReady` / `TooSmall`.
    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// The configured ready timeout.
    pub fn get_ready_timeout(&self) -> Duration {
        self.ready_timeout
    }

    /// Accepts a named segment owned by another user or with group/other
    /// permission bits (default `false`: such a segment is refused with
    /// [`AttachError::Untrusted`]). Only for deliberate sharing across
    /// users: whoever else can write the file can then hand this process
    /// hostile lock words (a lock that looks held by a live process) or
    /// truncate it under the mapping (`SIGBUS`). Symbolic links and
    /// non-regular files are refused either way.
    ///
    /// ```
    /// use shmkit::segment::OpenOptions;
    /// let shared = OpenOptions::new().allow_other_users(true);
    /// assert!(shared.get_allow_other_users());
    /// ```
    pub fn allow_other_users(mut self, allow: bool) -> Self {
        self.allow_other_users = allow;
        self
    }

    /// Whether segments of other users are accepted.
    pub fn get_allow_other_users(&self) -> bool {
        self.allow_other_users
    }
}

impl SegmentHeader {
    /// Writes a complete, not-yet-ready header at `base`.
    ///
    /// # Safety
    /// `base` must be valid for writes of [`HEADER_SIZE`] bytes, 64-aligned,
    /// and not yet visible to attachers as ready.
    pub unsafe fn write(
        base: *mut u8,
        kind: ObjectKind,
        total_size: usize,
        body_offset: usize,
        body_len: usize,
        params: &[u64],
    ) {
        // SAFETY: the caller guarantees `base` is valid and aligned for a
        // header; every field is an atomic, so a shared reference is fine
        // even if a stranger reads concurrently.
        let h = unsafe { &*(base as *const SegmentHeader) };
        h.creator_pid.store(os::current_pid(), Ordering::Relaxed);
        h.ready.store(0, Ordering::Relaxed);
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.kind.store(kind.0, Ordering::Relaxed);
        h.total_size.store(total_size as u64, Ordering::Relaxed);
        h.body_offset.store(body_offset as u64, Ordering::Relaxed);
        h.body_len.store(body_len as u64, Ordering::Relaxed);
        let start = os::process::process_start_time(os::current_pid()).unwrap_or(0);
        h.creator_start.store(start, Ordering::Relaxed);
        h.reserved.store(0, Ordering::Relaxed);
        for (i, w) in h.params.iter().enumerate() {
            w.store(params.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
        h.magic.store(MAGIC, Ordering::Relaxed);
    }

    /// Publishes the segment: stores the ready word with `Release` (after
    /// the object has been initialised) and wakes attachers waiting on it.
    pub fn publish(&self) {
        self.ready.store(READY, Ordering::Release);
        futex::wake(&self.ready, u32::MAX);
    }

    /// Waits (bounded by `opts`) until the header is published, then checks
    /// every field against `kind` and the mapped length `mapped_len`.
    pub fn wait_and_validate(
        &self,
        mapped_len: usize,
        kind: ObjectKind,
        opts: &OpenOptions,
    ) -> Result<HeaderInfo, AttachError> {
        let deadline = Deadline::after(opts.ready_timeout);
        loop {
            if self.ready.load(Ordering::Acquire) == READY {
                break;
            }
            let magic = self.magic.load(Ordering::Relaxed);
            if magic != 0 && magic != MAGIC {
                return Err(AttachError::Corrupt("bad magic: not a shmkit segment"));
            }
            let pid = self.creator_pid.load(Ordering::Relaxed);
            if pid != 0 && !os::process_alive(pid) {
                return Err(AttachError::NotReady(
                    "its creator died before finishing initialisation",
                ));
            }
            if deadline.has_passed() {
                return Err(AttachError::NotReady(
                    "its creator has not finished initialising it",
                ));
            }
            let slice = Deadline::after(Duration::from_millis(2));
            let current = self.ready.load(Ordering::Relaxed);
            if current != READY {
                futex::wait(
                    &self.ready,
                    current,
                    Some(Deadline::earliest(Some(deadline), slice)),
                );
            }
        }
        self.validate(mapped_len, kind)
    }

    /// Checks a published header without waiting.
    pub fn validate(&self, mapped_len: usize, kind: ObjectKind) -> Result<HeaderInfo, AttachError> {
        if self.magic.load(Ordering::Relaxed) != MAGIC {
            return Err(AttachError::Corrupt("bad magic: not a shmkit segment"));
        }
        let version = self.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(AttachError::VersionMismatch {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let found = self.kind.load(Ordering::Relaxed);
        if found != kind.0 {
            return Err(AttachError::KindMismatch {
                found,
                expected: kind.0,
            });
        }
        let total = self.total_size.load(Ordering::Relaxed);
        if total > mapped_len as u64 {
            return Err(AttachError::TooSmall {
                actual: mapped_len as u64,
                required: total,
            });
        }
        let body_offset = self.body_offset.load(Ordering::Relaxed);
        let body_len = self.body_len.load(Ordering::Relaxed);
        if body_offset < HEADER_SIZE as u64 || body_offset % 64 != 0 {
            return Err(AttachError::Corrupt(
                "body offset inside the header or misaligned",
            ));
        }
        match body_offset.checked_add(body_len) {
            Some(end) if end <= total => {}
            _ => return Err(AttachError::Corrupt("body extends past the segment's size")),
        }
        let mut params = [0u64; PARAM_WORDS];
        for (p, w) in params.iter_mut().zip(self.params.iter()) {
            *p = w.load(Ordering::Relaxed);
        }
        Ok(HeaderInfo {
            kind,
            body_offset: body_offset as usize,
            body_len: body_len as usize,
            params,
            creator_pid: self.creator_pid.load(Ordering::Relaxed),
        })
    }

    /// Pid of the process that created the segment.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid.load(Ordering::Relaxed)
    }

    /// Whether the creator has published the segment.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) == READY
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn header_layout_is_pinned() {
        assert_eq!(size_of::<SegmentHeader>(), HEADER_SIZE);
        assert_eq!(align_of::<SegmentHeader>(), 64);
        assert_eq!(offset_of!(SegmentHeader, magic), 0);
        assert_eq!(offset_of!(SegmentHeader, version), 8);
        assert_eq!(offset_of!(SegmentHeader, kind), 12);
        assert_eq!(offset_of!(SegmentHeader, total_size), 16);
        assert_eq!(offset_of!(SegmentHeader, body_offset), 24);
        assert_eq!(offset_of!(SegmentHeader, body_len), 32);
        assert_eq!(offset_of!(SegmentHeader, creator_pid), 40);
        assert_eq!(offset_of!(SegmentHeader, ready), 44);
        assert_eq!(offset_of!(SegmentHeader, creator_start), 48);
        assert_eq!(offset_of!(SegmentHeader, params), 64);
    }
}
