//! The segment header, its handshake, and the table of attached processes.
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
//! | 24 | `body_offset: u64` | where the object starts (64-aligned, ≥ 128, after the attach table) |
//! | 32 | `body_len: u64` | the object's length |
//! | 40 | `creator_pid: u32` | written first |
//! | 44 | `ready: u32` | `0x52454459` once published |
//! | 48 | `creator_start: u64` | creator's start time (clock ticks) |
//! | 56 | `attach_slots: u32` | slots in the attach table at offset 128 (0 = no table, at most [`ATTACH_SLOTS`]) |
//! | 60 | `state: u32` | [`Lifetime`] in bits 0–7; bit 8 persistent, bit 9 handed over, bit 10 kept |
//! | 64 | `params: [u64; 6]` | kind-specific layout parameters |
//! | 112 | `type_tag: u64` | fingerprint of the element type of a typed object (0 = untyped) |
//! | 120 | `pid_ns: u64` | inode of the creator's pid namespace (0 = unknown); bit 63 set once a process of another pid namespace attached |
//!
//! The **attach table** follows at offset 128: a 16-byte counter block
//! (`untracked: u32`, `generation: u32`, `holders: u32`, reserved `u32`)
//! and then
//! `attach_slots` 16-byte [`AttachSlot`]s (`tag: u64` = pid | generation
//! << 32, 0 when free; `start: u64` = that process's start time). Every
//! process that creates or attaches a segment claims a slot and frees it
//! when its handle drops; a slot whose process is dead (pid and start time
//! no longer match a live process) is swept when the table is full, and an
//! attach that still finds no slot only counts itself in `untracked`.
//! `holders` counts tracked handles (up at create/attach, down at drop),
//! so that of several handles dropping at once exactly one knows it is the
//! last and decides about the name.
//! The table is a *report* (who is attached, for `shmkit ls`): whether a
//! segment is still held is decided by the kernel-managed holds of
//! [`crate::os::shm_names`], which also cover forked children.

use std::time::Duration;

use crate::error::AttachError;
use crate::os::{self, futex, Deadline};
use crate::primitives::{AtomicU32, AtomicU64, Ordering};

/// Size of the header at the start of every segment.
pub const HEADER_SIZE: usize = 128;
/// Version of the header and of every object layout in this crate. Bumped
/// on any change to a `#[repr(C)]` type that lives in a segment.
///
/// Version 2 added the attach table, the lifetime/state word and holds;
/// version 3 the type tag and the creator's pid namespace (taking two of
/// the eight parameter words).
pub const LAYOUT_VERSION: u32 = 3;
/// Header magic: `b"SHMKIT\0\x01"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
/// Value of the ready word once the creator has published the segment.
pub const READY: u32 = 0x5245_4459;
/// Number of kind-specific parameter words in the header.
pub const PARAM_WORDS: usize = 6;
/// Slots in the attach table of segments made by this crate (and the most
/// a header may declare).
pub const ATTACH_SLOTS: usize = 63;
/// Bytes of the attach table (counters plus [`ATTACH_SLOTS`] slots).
pub const ATTACH_TABLE_SIZE: usize = 16 * (1 + ATTACH_SLOTS);
/// Where [`create_object`](super::create_object) places the object: after
/// the header and the attach table.
pub const BODY_OFFSET: usize = HEADER_SIZE + ATTACH_TABLE_SIZE;

/// Bit 63 of the `pid_ns` word: a process of another pid namespace has
/// attached (see [`SegmentHeader::mark_foreign_attached`]).
const FOREIGN_ATTACHED: u64 = 1 << 63;

const LIFETIME_MASK: u32 = 0xff;
const STATE_PERSISTENT: u32 = 1 << 8;
const STATE_HANDED_OVER: u32 = 1 << 9;
const STATE_KEPT: u32 = 1 << 10;
const STATE_KNOWN: u32 = LIFETIME_MASK | STATE_PERSISTENT | STATE_HANDED_OVER | STATE_KEPT;

/// When a named segment's name is removed. Recorded in the header so every
/// process agrees; see the table in the [`segment`](super) docs.
///
/// ```
/// use shmkit::segment::Lifetime;
/// assert_eq!(Lifetime::default(), Lifetime::Creator);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lifetime {
    /// The name goes when its creator's handle drops (`create`'s default).
    #[default]
    Creator,
    /// The name lives while any process holds the segment, and until a
    /// process other than its creator has opened it at least once (a
    /// rendezvous: what a creator left behind waits for its first reader).
    /// The last holder to drop removes it (`open_or_create`'s default).
    Holders,
}

impl Lifetime {
    fn code(self) -> u32 {
        match self {
            Lifetime::Creator => 0,
            Lifetime::Holders => 1,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Lifetime::Creator),
            1 => Some(Lifetime::Holders),
            _ => None,
        }
    }
}

/// A snapshot of a segment's lifetime state word.
///
/// ```
/// use shmkit::segment::{Lifetime, SegmentState};
/// let s = SegmentState::default();
/// assert_eq!(s.lifetime, Lifetime::Creator);
/// assert!(!s.persistent && !s.kept && !s.handed_over);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Who removes the name.
    pub lifetime: Lifetime,
    /// Someone called `keep()`: no handle removes the name; only an
    /// explicit unlink (`shmkit rm`) does, and `gc` leaves it alone.
    pub persistent: bool,
    /// A process other than the creator has attached at least once.
    pub handed_over: bool,
    /// A [`Lifetime::Holders`] segment whose holders all left before it
    /// was handed over: it waits (name and contents) for its first opener.
    pub kept: bool,
}

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
    pub const RLOCK: ObjectKind = ObjectKind(0x0109);
    pub const SPSC_RING: ObjectKind = ObjectKind(0x0201);
    pub const MPMC_QUEUE: ObjectKind = ObjectKind(0x0202);
    pub const JOINABLE_QUEUE: ObjectKind = ObjectKind(0x0203);
    pub const PIPE: ObjectKind = ObjectKind(0x0204);
    pub const DICT: ObjectKind = ObjectKind(0x0301);
    pub const POOL: ObjectKind = ObjectKind(0x0401);
    /// First kind value free for other crates.
    pub const USER: ObjectKind = ObjectKind(0x1000_0000);
}

impl ObjectKind {
    /// A short name for shmkit's own kinds (`"mutex"`, `"mpmc-queue"`...),
    /// `None` for other values.
    ///
    /// ```
    /// use shmkit::segment::ObjectKind;
    /// assert_eq!(ObjectKind::DICT.name(), Some("dict"));
    /// assert_eq!(ObjectKind(0x7777).name(), None);
    /// ```
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ObjectKind::MUTEX => "mutex",
            ObjectKind::CONDVAR => "condvar",
            ObjectKind::SEMAPHORE => "semaphore",
            ObjectKind::EVENT => "event",
            ObjectKind::BARRIER => "barrier",
            ObjectKind::VALUE => "value",
            ObjectKind::ARRAY => "array",
            ObjectKind::RAW_MUTEX => "raw-mutex",
            ObjectKind::RLOCK => "rlock",
            ObjectKind::SPSC_RING => "spsc-ring",
            ObjectKind::MPMC_QUEUE => "mpmc-queue",
            ObjectKind::JOINABLE_QUEUE => "joinable-queue",
            ObjectKind::PIPE => "pipe",
            ObjectKind::DICT => "dict",
            ObjectKind::POOL => "pool",
            _ => return None,
        })
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None if self.0 >= ObjectKind::USER.0 => write!(f, "user:{:#x}", self.0),
            None => write!(f, "unknown:{:#x}", self.0),
        }
    }
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
    attach_slots: AtomicU32,
    state: AtomicU32,
    params: [AtomicU64; PARAM_WORDS],
    type_tag: AtomicU64,
    pid_ns: AtomicU64,
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
    /// Start time of the creating process (clock ticks after boot; 0 if
    /// unknown).
    pub creator_start: u64,
    /// Slots in the attach table at offset [`HEADER_SIZE`].
    pub attach_slots: usize,
    /// The lifetime state word.
    pub state: SegmentState,
    /// Fingerprint of a typed object's element type (0 when untyped or not
    /// yet set).
    pub type_tag: u64,
    /// Inode of the creator's pid namespace (0 if unknown).
    pub pid_ns: u64,
}

/// How to attach to a named object.
///
/// ```
/// use shmkit::segment::OpenOptions;
/// use std::time::Duration;
/// let o = OpenOptions::new()
///     .ready_timeout(Duration::from_millis(50))
///     .wait(Duration::from_secs(5)); // the name may not exist yet
/// assert_eq!(o.get_ready_timeout(), Duration::from_millis(50));
/// assert!(!o.get_allow_other_users());
/// assert_eq!(o.get_wait(), Some(Duration::from_secs(5)));
/// assert_eq!(OpenOptions::new().get_wait(), None);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    ready_timeout: Duration,
    allow_other_users: bool,
    wait: Option<Duration>,
    /// Inspection only (the CLI's `stat`): attach without entering the
    /// attach table or marking a hand-over.
    pub(crate) inspect: bool,
    type_tag: Option<super::TypeTag>,
    foreign_pid_namespace: bool,
}

/// The process-wide default of [`OpenOptions::foreign_pid_namespace`]
/// (process-local bookkeeping: a std atomic).
static FOREIGN_PID_NAMESPACE_DEFAULT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(2),
            allow_other_users: false,
            wait: None,
            inspect: false,
            type_tag: None,
            foreign_pid_namespace: FOREIGN_PID_NAMESPACE_DEFAULT
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl OpenOptions {
    /// Default options: fail with `NotFound` at once if the name does not
    /// exist; wait up to 2 s for a creator that is still initialising.
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

    /// Waits up to `t` for the name to appear instead of failing with
    /// `NotFound` at once. The wait sleeps on an inotify watch of
    /// `/dev/shm` (no busy polling); `Duration::MAX` waits indefinitely.
    pub fn wait(mut self, t: Duration) -> Self {
        self.wait = Some(t);
        self
    }

    /// The configured wait for the name to appear (`None`: do not wait).
    pub fn get_wait(&self) -> Option<Duration> {
        self.wait
    }

    /// The element-type tag a typed object opened with these options must
    /// carry, instead of the one derived from the Rust type: an explicit
    /// [`TypeTag::named`](super::TypeTag::named) its creator also used, or
    /// [`TypeTag::ANY`](super::TypeTag::ANY) to accept any type. See
    /// [`type_tag`](super::type_tag).
    ///
    /// ```
    /// use shmkit::segment::{OpenOptions, TypeTag};
    /// let o = OpenOptions::new().type_tag(TypeTag::named("trade-v1"));
    /// assert_eq!(o.get_type_tag(), Some(TypeTag::named("trade-v1")));
    /// assert_eq!(OpenOptions::new().get_type_tag(), None);
    /// ```
    pub fn type_tag(mut self, tag: super::TypeTag) -> Self {
        self.type_tag = Some(tag);
        self
    }

    /// The explicit type tag expected (`None`: the type's derived tag).
    pub fn get_type_tag(&self) -> Option<super::TypeTag> {
        self.type_tag
    }

    /// Attaches to a segment created in another pid namespace (default
    /// `false`: refused with [`AttachError::ForeignPidNamespace`]). Pids
    /// stored there cannot be judged from here, so the segment is attached
    /// without dead-owner recovery, and attaching marks it so that the
    /// processes of the creator's namespace stop recovering too (they
    /// cannot judge this process's pids either): a lock, claim or slot
    /// held by a process that died stays held; untimed waits on it block
    /// for good, timed and `try_` forms time out. See
    /// [`pid_scope`](mod@super::pid_scope).
    ///
    /// ```
    /// use shmkit::segment::OpenOptions;
    /// let o = OpenOptions::new().foreign_pid_namespace(true);
    /// assert!(o.get_foreign_pid_namespace());
    /// ```
    pub fn foreign_pid_namespace(mut self, allow: bool) -> Self {
        self.foreign_pid_namespace = allow;
        self
    }

    /// Whether segments of another pid namespace are attached.
    pub fn get_foreign_pid_namespace(&self) -> bool {
        self.foreign_pid_namespace
    }

    /// Sets the process-wide default of
    /// [`foreign_pid_namespace`](Self::foreign_pid_namespace) for options
    /// made from now on by [`OpenOptions::new`], which is what the paths
    /// without an options argument use (`open`, `open_or_create`, handles
    /// handed to a spawned child, pool workers).
    ///
    /// ```
    /// use shmkit::segment::OpenOptions;
    /// OpenOptions::set_foreign_pid_namespace_default(true);
    /// assert!(OpenOptions::new().get_foreign_pid_namespace());
    /// OpenOptions::set_foreign_pid_namespace_default(false);
    /// assert!(!OpenOptions::new().get_foreign_pid_namespace());
    /// ```
    pub fn set_foreign_pid_namespace_default(allow: bool) {
        FOREIGN_PID_NAMESPACE_DEFAULT.store(allow, std::sync::atomic::Ordering::Relaxed);
    }
}

impl SegmentHeader {
    /// Writes a complete, not-yet-ready header at `base`, with an empty
    /// attach table of `attach_slots` slots (at most [`ATTACH_SLOTS`]) at
    /// [`HEADER_SIZE`] when `attach_slots > 0`.
    ///
    /// # Safety
    /// `base` must be valid for writes of [`HEADER_SIZE`] bytes (plus the
    /// attach table's `16 * (1 + attach_slots)` bytes), 64-aligned, and not
    /// yet visible to attachers as ready.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn write(
        base: *mut u8,
        kind: ObjectKind,
        total_size: usize,
        body_offset: usize,
        body_len: usize,
        params: &[u64],
        attach_slots: usize,
        lifetime: Lifetime,
    ) {
        // SAFETY: the caller guarantees `base` is valid and aligned for a
        // header; every field is an atomic, so a shared reference is fine
        // even if a stranger reads concurrently.
        let h = unsafe { &*(base as *const SegmentHeader) };
        let pid = os::current_pid();
        h.creator_pid.store(pid, Ordering::Relaxed);
        h.ready.store(0, Ordering::Relaxed);
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.kind.store(kind.0, Ordering::Relaxed);
        h.total_size.store(total_size as u64, Ordering::Relaxed);
        h.body_offset.store(body_offset as u64, Ordering::Relaxed);
        h.body_len.store(body_len as u64, Ordering::Relaxed);
        let start = os::process::process_start_time(pid).unwrap_or(0);
        h.creator_start.store(start, Ordering::Relaxed);
        h.type_tag.store(0, Ordering::Relaxed);
        h.pid_ns
            .store(os::process::pid_namespace().unwrap_or(0), Ordering::Relaxed);
        let slots = attach_slots.min(ATTACH_SLOTS);
        h.attach_slots.store(slots as u32, Ordering::Relaxed);
        h.state.store(lifetime.code(), Ordering::Relaxed);
        for (i, w) in h.params.iter().enumerate() {
            w.store(params.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
        if slots > 0 {
            // SAFETY: the caller guarantees the table's bytes after the
            // header are writable; all-zero is an empty table, and only
            // atomics are written.
            let table = unsafe { AttachTable::at(base.add(HEADER_SIZE), slots) };
            table.clear();
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
            let judge = os::process::same_pid_namespace(
                self.pid_namespace(),
                os::process::current_pid_namespace(),
            );
            if pid != 0 && judge && !identity_alive(pid, self.creator_start()) {
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
        let info = self.validate_any(mapped_len)?;
        if info.kind != kind {
            return Err(AttachError::KindMismatch {
                found: info.kind.0,
                expected: kind.0,
            });
        }
        Ok(info)
    }

    /// Checks every field of a header of any kind (for tools that list
    /// segments): magic, version, sizes, body range, attach table, state.
    pub fn validate_any(&self, mapped_len: usize) -> Result<HeaderInfo, AttachError> {
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
        let kind = ObjectKind(self.kind.load(Ordering::Relaxed));
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
        let slots = self.attach_slots.load(Ordering::Relaxed) as u64;
        if slots > ATTACH_SLOTS as u64 {
            return Err(AttachError::Corrupt("attach table larger than allowed"));
        }
        if slots > 0 && HEADER_SIZE as u64 + 16 * (1 + slots) > body_offset {
            return Err(AttachError::Corrupt("attach table overlaps the body"));
        }
        let state = self.state()?;
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
            creator_start: self.creator_start.load(Ordering::Relaxed),
            attach_slots: slots as usize,
            state,
            type_tag: self.type_tag.load(Ordering::Relaxed),
            pid_ns: self.pid_namespace(),
        })
    }

    /// Records the fingerprint of a typed object's element type. Called by
    /// the creator before [`publish`](Self::publish).
    pub fn set_type_tag(&self, tag: u64) {
        self.type_tag.store(tag, Ordering::Relaxed);
    }

    /// The type fingerprint as stored (0 = untyped).
    pub fn type_tag(&self) -> u64 {
        self.type_tag.load(Ordering::Relaxed)
    }

    /// The inode of the creator's pid namespace as stored (0 = unknown).
    pub fn pid_namespace(&self) -> u64 {
        self.pid_ns.load(Ordering::Relaxed) & !FOREIGN_ATTACHED
    }

    /// Records (for good) that a process of another pid namespace attached:
    /// from then on no process runs pid-based recovery on this segment (see
    /// [`pid_scope`](mod@super::pid_scope)). Bit 63 of the `pid_ns` word (a
    /// namespace inode never uses it). `SeqCst`: stored before the
    /// attacher can write its first pid anywhere in the segment, and
    /// followed by a `SeqCst` fence: a process that reads one of those pids
    /// and then, after its own `SeqCst` fence, this word sees the bit
    /// (`pid_scope` does that; SAFETY.md §3d).
    pub fn mark_foreign_attached(&self) {
        self.pid_ns.fetch_or(FOREIGN_ATTACHED, Ordering::SeqCst);
        crate::primitives::fence(Ordering::SeqCst);
    }

    /// Whether a process of another pid namespace has ever attached.
    pub fn has_foreign_attacher(&self) -> bool {
        self.pid_ns.load(Ordering::SeqCst) & FOREIGN_ATTACHED != 0
    }

    /// The magic word as stored (equal to [`MAGIC`] in a shmkit segment).
    pub fn magic(&self) -> u64 {
        self.magic.load(Ordering::Relaxed)
    }

    /// The layout version as stored.
    pub fn version(&self) -> u32 {
        self.version.load(Ordering::Relaxed)
    }

    /// The object kind as stored.
    pub fn kind(&self) -> ObjectKind {
        ObjectKind(self.kind.load(Ordering::Relaxed))
    }

    /// The total size the creator recorded.
    pub fn total_size(&self) -> u64 {
        self.total_size.load(Ordering::Relaxed)
    }

    /// Pid of the process that created the segment.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid.load(Ordering::Relaxed)
    }

    /// Start time of the process that created the segment (0 if unknown).
    pub fn creator_start(&self) -> u64 {
        self.creator_start.load(Ordering::Relaxed)
    }

    /// Whether the creator has published the segment.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) == READY
    }

    /// The lifetime state word, decoded; `Corrupt` for unknown bits.
    pub fn state(&self) -> Result<SegmentState, AttachError> {
        let w = self.state.load(Ordering::Acquire);
        if w & !STATE_KNOWN != 0 {
            return Err(AttachError::Corrupt("unknown bits in the lifetime state"));
        }
        let lifetime = Lifetime::from_code(w & LIFETIME_MASK)
            .ok_or(AttachError::Corrupt("unknown segment lifetime"))?;
        Ok(SegmentState {
            lifetime,
            persistent: w & STATE_PERSISTENT != 0,
            handed_over: w & STATE_HANDED_OVER != 0,
            kept: w & STATE_KEPT != 0,
        })
    }

    /// Sets the lifetime (keeping the other state bits).
    pub fn set_lifetime(&self, lifetime: Lifetime) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((w & !LIFETIME_MASK) | lifetime.code())
            });
    }

    /// Marks the segment persistent (`keep`): no handle removes its name.
    pub fn set_persistent(&self, on: bool) {
        if on {
            self.state.fetch_or(STATE_PERSISTENT, Ordering::AcqRel);
        } else {
            self.state.fetch_and(!STATE_PERSISTENT, Ordering::AcqRel);
        }
    }

    /// Records that a process other than the creator attached (and that
    /// the segment is no longer waiting for one).
    pub fn mark_handed_over(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((w | STATE_HANDED_OVER) & !STATE_KEPT)
            });
    }

    /// Records that the last holder left a [`Lifetime::Holders`] segment
    /// before its hand-over: it waits for its first opener.
    pub fn mark_kept(&self) {
        self.state.fetch_or(STATE_KEPT, Ordering::AcqRel);
    }

    /// The attach table after this header, if the header declares one and
    /// it fits in `mapped_len` bytes. Crate-internal: `mapped_len` must be
    /// the length of the mapping this header starts (a `Segment`'s).
    pub(crate) fn attach_table(&self, mapped_len: usize) -> Option<AttachTable<'_>> {
        let slots = self.attach_slots.load(Ordering::Relaxed) as usize;
        if slots == 0 || slots > ATTACH_SLOTS || HEADER_SIZE + 16 * (1 + slots) > mapped_len {
            return None;
        }
        let base = self as *const SegmentHeader as *mut u8;
        // SAFETY: `mapped_len` bytes are mapped from `base` (callers pass
        // their segment's length), the table fits (checked above), it is
        // 8-aligned after the 128-byte header and made of atomics only.
        Some(unsafe { AttachTable::at(base.add(HEADER_SIZE), slots) })
    }
}

/// One entry of the attach table.
#[repr(C)]
pub struct AttachSlot {
    tag: AtomicU64,
    start: AtomicU64,
}

#[repr(C)]
struct TableCounters {
    untracked: AtomicU32,
    generation: AtomicU32,
    holders: AtomicU32,
    reserved: AtomicU32,
}

/// The table of attached processes after a header (see the module docs).
///
/// ```
/// use shmkit::segment::{AttachTable, Attachment};
///
/// // A table in ordinary memory, as it would be in a segment.
/// let mut mem = vec![0u64; 2 * (1 + 4)];
/// // SAFETY: `mem` is 8-aligned, zeroed and large enough for 4 slots.
/// let table = unsafe { AttachTable::at(mem.as_mut_ptr().cast(), 4) };
/// let me = shmkit::os::current_pid();
/// let claim = table.register(me, 0);
/// assert!(table.entries().iter().any(|a| a.pid == me));
/// table.deregister(claim);
/// assert!(table.entries().is_empty());
/// ```
#[derive(Clone, Copy)]
pub struct AttachTable<'a> {
    counters: &'a TableCounters,
    slots: &'a [AttachSlot],
}

/// A process recorded in an attach table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Its pid (in the pid namespace of whoever registered it).
    pub pid: u32,
    /// Its start time in clock ticks after boot (0 while registering or if
    /// unknown).
    pub start: u64,
}

impl Attachment {
    /// Whether this process is still running: the pid is alive and, when
    /// both are known, has the recorded start time (so a reused pid counts
    /// as dead). A pid from another pid namespace cannot be judged here.
    pub fn is_alive(&self) -> bool {
        identity_alive(self.pid, self.start)
    }
}

/// Whether `(pid, start)` names a running process (see
/// [`Attachment::is_alive`]).
pub fn identity_alive(pid: u32, start: u64) -> bool {
    if !os::process_alive(pid) {
        return false;
    }
    match (start, os::process::process_start_time(pid)) {
        (0, _) | (_, None) => true,
        (want, Some(now)) => want == now,
    }
}

/// What [`AttachTable::register`] got; hand it back to
/// [`AttachTable::deregister`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Slot `index`, tagged `tag`.
    Slot {
        /// Index in the table.
        index: usize,
        /// The tag written there.
        tag: u64,
    },
    /// The table was full even after sweeping dead entries; only counted.
    Untracked,
}

impl<'a> AttachTable<'a> {
    /// Views `16 * (1 + slots)` bytes at `ptr` as a table.
    ///
    /// # Safety
    /// `ptr` must be 8-aligned and valid for reads and writes of that many
    /// bytes for `'a`; other processes may write it concurrently (the
    /// table consists of atomics only, so any contents are a valid value).
    pub unsafe fn at(ptr: *mut u8, slots: usize) -> AttachTable<'a> {
        // SAFETY: guaranteed by the caller; TableCounters and AttachSlot
        // are 16-byte repr(C) structs of atomics.
        unsafe {
            AttachTable {
                counters: &*(ptr as *const TableCounters),
                slots: std::slice::from_raw_parts(ptr.add(16) as *const AttachSlot, slots),
            }
        }
    }

    fn clear(&self) {
        self.counters.untracked.store(0, Ordering::Relaxed);
        self.counters.generation.store(0, Ordering::Relaxed);
        self.counters.holders.store(0, Ordering::Relaxed);
        self.counters.reserved.store(0, Ordering::Relaxed);
        for s in self.slots {
            s.tag.store(0, Ordering::Relaxed);
            s.start.store(0, Ordering::Relaxed);
        }
    }

    /// Records process `(pid, start)`: counts it as a holder and claims a
    /// free slot, sweeping slots of dead processes if none is free; when the
    /// table is still full, only counts the process as untracked.
    pub fn register(&self, pid: u32, start: u64) -> Claim {
        self.counters.holders.fetch_add(1, Ordering::AcqRel);
        for sweep in [false, true] {
            if sweep {
                self.sweep();
            }
            for (index, slot) in self.slots.iter().enumerate() {
                if slot.tag.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                let gen = self.counters.generation.fetch_add(1, Ordering::Relaxed);
                let tag = u64::from(pid) | (u64::from(gen) << 32);
                if slot
                    .tag
                    .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.start.store(start, Ordering::Release);
                    return Claim::Slot { index, tag };
                }
            }
        }
        self.counters.untracked.fetch_add(1, Ordering::Relaxed);
        Claim::Untracked
    }

    /// Frees what [`register`](AttachTable::register) claimed (a slot only
    /// if it still carries the claim's tag) and returns how many holders
    /// remain counted. Exactly one of several handles dropping at the same
    /// time sees 0 (a holder that died without deregistering is never
    /// subtracted, so after a crash nobody may see 0).
    pub fn deregister(&self, claim: Claim) -> u32 {
        let left =
            match self
                .counters
                .holders
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            {
                Ok(before) => before - 1,
                Err(_) => 0,
            };
        match claim {
            Claim::Slot { index, tag } => {
                if let Some(slot) = self.slots.get(index) {
                    let _ = slot
                        .tag
                        .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
            Claim::Untracked => {
                let _ = self.counters.untracked.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
            }
        }
        left
    }

    /// Handles counted as holders now (including those of processes that
    /// died without deregistering).
    pub fn holders(&self) -> u32 {
        self.counters.holders.load(Ordering::Acquire)
    }

    /// Frees the slots of processes that are no longer running. A slot
    /// still being registered (start time not yet written) is left alone
    /// unless its pid is dead.
    pub fn sweep(&self) {
        let at = self.counters as *const TableCounters as *const u8;
        if !super::pid_scope::pid_scope(at).judges_pids() {
            // Entries of another pid namespace's processes cannot be
            // judged: leave them (a full table only counts newcomers).
            return;
        }
        for slot in self.slots {
            let tag = slot.tag.load(Ordering::Acquire);
            if tag == 0 {
                continue;
            }
            let start = slot.start.load(Ordering::Acquire);
            if !identity_alive(tag as u32, start) {
                let _ = slot
                    .tag
                    .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// The processes recorded now (live or not).
    pub fn entries(&self) -> Vec<Attachment> {
        self.slots
            .iter()
            .filter_map(|s| {
                let tag = s.tag.load(Ordering::Acquire);
                (tag != 0).then(|| Attachment {
                    pid: tag as u32,
                    start: s.start.load(Ordering::Acquire),
                })
            })
            .collect()
    }

    /// Attaches that found the table full.
    pub fn untracked(&self) -> u32 {
        self.counters.untracked.load(Ordering::Relaxed)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
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
        assert_eq!(offset_of!(SegmentHeader, attach_slots), 56);
        assert_eq!(offset_of!(SegmentHeader, state), 60);
        assert_eq!(offset_of!(SegmentHeader, params), 64);
        assert_eq!(offset_of!(SegmentHeader, type_tag), 112);
        assert_eq!(offset_of!(SegmentHeader, pid_ns), 120);
        assert_eq!(LAYOUT_VERSION, 3);
    }

    #[test]
    fn attach_table_layout_is_pinned() {
        assert_eq!(size_of::<AttachSlot>(), 16);
        assert_eq!(offset_of!(AttachSlot, tag), 0);
        assert_eq!(offset_of!(AttachSlot, start), 8);
        assert_eq!(size_of::<TableCounters>(), 16);
        assert_eq!(offset_of!(TableCounters, untracked), 0);
        assert_eq!(offset_of!(TableCounters, generation), 4);
        assert_eq!(offset_of!(TableCounters, holders), 8);
        assert_eq!(ATTACH_TABLE_SIZE, 1024);
        assert_eq!(BODY_OFFSET, 1152);
        assert_eq!(BODY_OFFSET % 64, 0);
    }

    fn table_mem(slots: usize) -> Vec<u64> {
        vec![0u64; 2 * (1 + slots)]
    }

    #[test]
    fn full_table_counts_untracked_and_frees_in_order() {
        let mut mem = table_mem(2);
        // SAFETY: 8-aligned, zeroed, sized for 2 slots, outlives `t`.
        let t = unsafe { AttachTable::at(mem.as_mut_ptr().cast(), 2) };
        let me = os::current_pid();
        let a = t.register(me, 0);
        let b = t.register(me, 0);
        let c = t.register(me, 0);
        assert!(matches!(a, Claim::Slot { index: 0, .. }));
        assert!(matches!(b, Claim::Slot { index: 1, .. }));
        assert_eq!(c, Claim::Untracked);
        assert_eq!((t.entries().len(), t.untracked()), (2, 1));
        assert_eq!(t.holders(), 3);
        assert_eq!(t.deregister(c), 2);
        assert_eq!(t.deregister(a), 1);
        assert_eq!((t.entries().len(), t.untracked()), (1, 0));
        let d = t.register(me, 0);
        assert_eq!(t.deregister(b), 1);
        assert_eq!(t.deregister(d), 0, "the last handle sees 0");
        assert!(t.entries().is_empty());
        // A claim whose tag is no longer in its slot frees no slot, and the
        // count never goes below zero.
        let e = t.register(me, 0);
        assert_eq!(t.deregister(a), 0);
        assert_eq!(t.entries().len(), 1);
        assert_eq!(t.deregister(e), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "liveness checks call the OS")]
    fn sweep_frees_dead_processes_only() {
        let mut mem = table_mem(2);
        // SAFETY: 8-aligned, zeroed, sized for 2 slots, outlives `t`.
        let t = unsafe { AttachTable::at(mem.as_mut_ptr().cast(), 2) };
        let me = os::current_pid();
        let start = os::process::process_start_time(me).unwrap();
        // A pid above PID_MAX_LIMIT never runs; a live pid with the wrong
        // start time is a reused pid: both dead.
        t.register(0x3FFF_FFFF, 5);
        t.register(me, start + 1);
        let mine = t.register(me, start);
        assert!(matches!(mine, Claim::Slot { .. }), "sweep made room");
        assert_eq!(
            t.entries(),
            vec![Attachment { pid: me, start }],
            "only the live entry is left"
        );
    }

    #[test]
    fn state_word_round_trips_and_rejects_unknown_bits() {
        // SAFETY: an all-zero header is valid (atomics only).
        let h: SegmentHeader = unsafe { std::mem::zeroed() };
        assert_eq!(h.state().unwrap(), SegmentState::default());
        h.set_lifetime(Lifetime::Holders);
        h.mark_kept();
        assert!(h.state().unwrap().kept);
        h.mark_handed_over();
        h.set_persistent(true);
        let s = h.state().unwrap();
        assert_eq!(s.lifetime, Lifetime::Holders);
        assert!(s.handed_over && s.persistent && !s.kept);
        h.state.store(7, Ordering::Relaxed);
        assert!(matches!(h.state(), Err(AttachError::Corrupt(_))));
        h.state.store(1 << 20, Ordering::Relaxed);
        assert!(matches!(h.state(), Err(AttachError::Corrupt(_))));
    }
}
