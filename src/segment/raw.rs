//! [`Segment`]: one mapping of a named or anonymous shared memory object,
//! and the name rules.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::time::Duration;

use super::header::{
    Claim, Lifetime, OpenOptions, SegmentHeader, SegmentState, HEADER_SIZE, MAGIC,
};
use crate::error::{AttachError, Error};
use crate::os::shm_names::{self, Hold, TempName};
use crate::os::{self, shm, Deadline};

/// Longest accepted segment name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// How long an opener waits while a remover holds a name exclusively (a
/// remover only holds it for the few system calls of a removal).
const REMOVAL_WAIT: Duration = Duration::from_secs(2);

/// Checks a segment name: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.` (so never `.`/`..` and
/// never a hidden file), and therefore one path component without `/` or
/// NUL. The error says which rule the name broke.
///
/// ```
/// use shmkit::segment::validate_name;
/// assert!(validate_name("jobs-42").is_ok());
/// assert!(validate_name("a/b").is_err());
/// assert!(validate_name("..").is_err());
/// assert!(validate_name("").is_err());
/// let e = validate_name("a\0b").unwrap_err().to_string();
/// assert!(e.contains("NUL"), "{e}");
/// ```
pub fn validate_name(name: &str) -> Result<(), AttachError> {
    let bad = |reason| {
        Err(AttachError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' name directories, not segments");
    }
    if name.starts_with('.') {
        return bad("starts with '.' (hidden names are reserved)");
    }
    if name.contains('/') {
        return bad("contains '/': a name is one path component in /dev/shm");
    }
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// [`validate_name`] for a name that came from outside Rust strings (a
/// command line, a directory listing): also refuses non-UTF-8 bytes.
///
/// ```
/// use std::ffi::OsStr;
/// use std::os::unix::ffi::OsStrExt;
/// use shmkit::segment::validate_os_name;
/// assert_eq!(validate_os_name(OsStr::new("jobs")).unwrap(), "jobs");
/// let e = validate_os_name(OsStr::from_bytes(b"jo\xffbs")).unwrap_err();
/// assert!(e.to_string().contains("UTF-8"), "{e}");
/// ```
pub fn validate_os_name(name: &OsStr) -> Result<&str, AttachError> {
    let s = name.to_str().ok_or_else(|| AttachError::InvalidName {
        name: name.to_string_lossy().into_owned(),
        reason: "not valid UTF-8",
    })?;
    validate_name(s)?;
    Ok(s)
}

/// This process's `(pid, start time)` (read at attach time, which is not a
/// hot path).
fn my_identity() -> (u32, u64) {
    let pid = os::current_pid();
    (pid, os::process::process_start_time(pid).unwrap_or(0))
}

/// A mapping of a shared memory object (raw bytes; the object layer adds
/// the header).
///
/// **Holds.** A handle made by [`Segment::create`] or [`Segment::open`]
/// holds the segment (a kernel-managed lock on the file, released when the
/// process drops or loses its mapping, `SIGKILL` included; forked children
/// share it). A name nobody holds any more is *stale*: `create`,
/// `open_or_create` and [`gc`](super::gc()) may replace or remove it, never
/// one that a live process holds.
///
/// **Unlinking.** What happens to the name when a handle drops depends on
/// the segment's [`Lifetime`] (see the [`segment`](super) docs): by
/// default the creating process unlinks it. A forked child inherits the
/// handle but never unlinks. Any handle removes the name only if it still
/// points at this very file (a name re-created by someone else survives).
/// [`Segment::keep`] makes the name outlive every handle.
///
/// ```
/// use shmkit::Segment;
///
/// let name = format!("doc-seg-{}", std::process::id());
/// let seg = Segment::create(&name, 4096)?;
/// assert_eq!(seg.len(), 4096);
/// let other = Segment::open(&name)?; // what another process would do
/// assert_eq!(other.len(), 4096);
/// drop(seg); // unlinks the name
/// assert!(Segment::open(&name).is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    /// This mapping's entry in the pid-scope table; declared first so it is
    /// dropped (removed) before `map` is unmapped.
    scope: Option<super::pid_scope::ScopeEntry>,
    map: memmap2::MmapRaw,
    file: File,
    name: Option<String>,
    /// `(device, inode)` of the file.
    id: (u64, u64),
    /// Pid of the process that made this handle by create/open; only it
    /// unlinks or releases the name (0: never, e.g. anonymous).
    opener: u32,
    /// This handle created the name.
    created: bool,
    /// `keep()` was called on this handle.
    keep: bool,
    /// Pid that asked this handle to unlink on drop (0: none).
    force_unlink: u32,
    /// The segment starts with a validated shmkit header.
    has_header: bool,
    /// This handle's attach-table entry and the pid that made it.
    claim: Option<(u32, Claim)>,
}

/// A named segment whose file exists, sized and held, but has no name yet:
/// the object layer initialises and publishes it, then
/// [`finish`](PendingSegment::finish) gives it its name.
pub(crate) struct PendingSegment {
    seg: Segment,
    temp: TempName,
    name: Option<String>,
}

impl PendingSegment {
    /// The segment being initialised.
    pub(crate) fn segment(&mut self) -> &mut Segment {
        &mut self.seg
    }

    /// Links the name (replacing a stale segment of that name, never a
    /// held or kept one) and returns the finished handle.
    pub(crate) fn finish(mut self) -> Result<Segment, Error> {
        let Some(name) = self.name.take() else {
            return Ok(self.seg);
        };
        for _ in 0..16 {
            match shm_names::link_name(&self.seg.file, &mut self.temp, &name) {
                Ok(()) => {
                    self.seg.name = Some(name);
                    self.seg.opener = os::current_pid();
                    self.seg.created = true;
                    return Ok(self.seg);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if !super::gc::remove_if_stale(&name)?.name_is_free() {
                        return Err(Error::AlreadyExists(name));
                    }
                }
                Err(e) => return Err(map_create_err(e, &name, self.seg.len())),
            }
        }
        // Names replaced this often while we try: someone else keeps
        // winning; report the name as taken.
        Err(Error::AlreadyExists(name))
    }
}

impl Segment {
    /// Maps `len` bytes of `file` as a handle that has not created,
    /// opened or claimed anything yet (the callers set that up).
    fn mapped<E: From<io::Error>>(
        file: File,
        len: usize,
        name: Option<String>,
    ) -> Result<Segment, E> {
        let id = shm_names::file_id(&file)?;
        let map = shm::map(&file, len)?;
        Ok(Segment {
            scope: None,
            map,
            file,
            name,
            id,
            opener: 0,
            created: false,
            keep: false,
            force_unlink: 0,
            has_header: false,
            claim: None,
        })
    }

    /// Creates a new named segment of `size` bytes with mode 0600 and its
    /// pages reserved (a full `/dev/shm` is [`Error::NoSpace`] now, not a
    /// `SIGBUS` later). The name appears only once the file is complete.
    ///
    /// Fails with [`Error::AlreadyExists`] if the name is taken by a live
    /// segment, a kept one, or anything that is not a shmkit segment; a
    /// stale shmkit segment of this name (nobody holds it) is replaced.
    pub fn create(name: &str, size: usize) -> Result<Segment, Error> {
        Self::create_pending(Some(name), size)?.finish()
    }

    /// Starts creating a named (or, with `None`, anonymous) segment.
    pub(crate) fn create_pending(name: Option<&str>, size: usize) -> Result<PendingSegment, Error> {
        if size == 0 {
            return Err(Error::InvalidArgument("segment size must be non-zero"));
        }
        let Some(name) = name else {
            return Ok(PendingSegment {
                seg: Self::anonymous(size)?,
                temp: TempName::default(),
                name: None,
            });
        };
        validate_name(name)?;
        // Fail early (before reserving pages) when the name is in use.
        if shm_names::name_id(name)?.is_some() && !super::gc::remove_if_stale(name)?.name_is_free()
        {
            return Err(Error::AlreadyExists(name.to_owned()));
        }
        let (file, temp) =
            shm_names::create_unnamed(size as u64).map_err(|e| map_create_err(e, name, size))?;
        // A brand-new file: nobody else can hold it yet.
        shm_names::try_hold_shared(&file)?;
        Ok(PendingSegment {
            seg: Self::mapped::<Error>(file, size, None)?,
            temp,
            name: Some(name.to_owned()),
        })
    }

    /// Opens, holds and maps an existing named segment (its whole current
    /// size). Refuses ([`AttachError::Untrusted`]) a symbolic link, a
    /// non-regular file, and a file owned by another user or with
    /// group/other permission bits; see [`Segment::open_with`]. If a remover
    /// is deleting the name at this moment, waits for it and then reports
    /// `NotFound` (or opens the segment that replaced it).
    pub fn open(name: &str) -> Result<Segment, AttachError> {
        Self::open_with(name, &OpenOptions::new())
    }

    /// [`Segment::open`] honouring
    /// [`OpenOptions::allow_other_users`] (the only option it uses).
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Segment, AttachError> {
        validate_name(name)?;
        let deadline = Deadline::after(REMOVAL_WAIT);
        loop {
            let file = open_file(name, opts)?;
            let id = shm_names::file_id(&file)?;
            loop {
                match shm_names::try_hold_shared(&file)? {
                    Hold::Taken | Hold::Unsupported => break,
                    Hold::Busy if deadline.has_passed() => {
                        return Err(AttachError::NotReady(
                            "another process is removing it and has not finished",
                        ))
                    }
                    Hold::Busy => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            // Holding it, the name can no longer be removed by a remover;
            // make sure it still names this file (else it was replaced).
            if shm_names::name_id(name)? == Some(id) {
                let mut seg = Self::from_file(file, Some(name.to_owned()))?;
                seg.opener = os::current_pid();
                return Ok(seg);
            }
            if deadline.has_passed() {
                return Err(AttachError::NotReady(
                    "its name keeps being replaced while opening",
                ));
            }
        }
    }

    /// Opens and maps a named segment *without* holding it or registering
    /// (for inspection and removal); dropping it never unlinks.
    pub(crate) fn open_unheld(name: &str) -> Result<Segment, AttachError> {
        validate_name(name)?;
        Self::from_file(open_file(name, &OpenOptions::new())?, Some(name.to_owned()))
    }

    /// Creates an anonymous segment (a sealed memfd): shared with children
    /// forked after this call, or handed to a spawned child by its fd (see
    /// [`Segment::from_file`]).
    pub fn anonymous(size: usize) -> Result<Segment, Error> {
        if size == 0 {
            return Err(Error::InvalidArgument("segment size must be non-zero"));
        }
        let file = shm::create_anonymous(size as u64).map_err(|e| map_create_err(e, "", size))?;
        Self::mapped(file, size, None)
    }

    /// Maps an already-open shared memory file (for example a memfd
    /// inherited by a spawned child). The mapping covers the file's size.
    /// The handle never unlinks `name`.
    pub fn from_file(file: File, name: Option<String>) -> Result<Segment, AttachError> {
        let size = shm::file_size(&file)?;
        if size == 0 {
            return Err(AttachError::TooSmall {
                actual: 0,
                required: super::HEADER_SIZE as u64,
            });
        }
        let len = usize::try_from(size)
            .map_err(|_| AttachError::Corrupt("segment size overflows usize"))?;
        Self::mapped(file, len, name)
    }

    /// Removes a named segment from `/dev/shm` whoever holds it. Existing
    /// mappings stay valid.
    pub fn unlink(name: &str) -> Result<(), AttachError> {
        validate_name(name)?;
        shm::unlink_named(name).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => AttachError::NotFound(name.to_owned()),
            Some(libc::EACCES) | Some(libc::EPERM) => {
                AttachError::PermissionDenied(name.to_owned())
            }
            _ => AttachError::Io(e),
        })
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: segments are never empty.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Base address of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The segment's name, or `None` for an anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The underlying file (for handing an anonymous segment to a child).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `(device, inode)` of the underlying file: what the name must still
    /// point at for this handle to unlink it.
    pub fn file_id(&self) -> (u64, u64) {
        self.id
    }

    /// Whether dropping this handle (in this process) is certain to unlink
    /// the name: it created a [`Lifetime::Creator`] segment and was not
    /// kept, or [`unlink_on_drop`](Segment::unlink_on_drop) was called. (A
    /// [`Lifetime::Holders`] segment is unlinked by whichever holder drops
    /// last, decided at drop time.)
    pub fn is_owner(&self) -> bool {
        let me = os::current_pid();
        if self.name.is_none() || self.opener != me {
            return false;
        }
        if self.force_unlink == me {
            return true;
        }
        let state = self.state().unwrap_or_default();
        self.created && !self.keep && !state.persistent && state.lifetime == Lifetime::Creator
    }

    /// Keeps the name after every handle is dropped: marks the segment
    /// *persistent* (in its header, so no process's handle unlinks it and
    /// [`gc`](super::gc()) leaves it alone) until [`Segment::unlink`] or
    /// `shmkit rm`.
    pub fn keep(&mut self) {
        self.keep = true;
        self.force_unlink = 0;
        if let Some(h) = self.header() {
            h.set_persistent(true);
        }
    }

    /// Makes this handle unlink the name when this process drops it,
    /// whatever the lifetime (e.g. for the last user of a kept segment).
    pub fn unlink_on_drop(&mut self) {
        if self.name.is_some() {
            self.keep = false;
            self.force_unlink = os::current_pid();
            if self.opener == 0 {
                self.opener = self.force_unlink;
            }
        }
    }

    /// The segment's lifetime state (`None` for a segment without a
    /// shmkit header, e.g. a raw [`Segment::create`]).
    pub fn state(&self) -> Option<SegmentState> {
        self.header().and_then(|h| h.state().ok())
    }

    /// Sets who removes the name (see [`Lifetime`]); every process sees
    /// the change. Fails for a segment without a shmkit header.
    ///
    /// ```
    /// use shmkit::segment::Lifetime;
    /// use shmkit::{Event, ShmBox};
    ///
    /// let name = format!("doc-lifetime-{}", std::process::id());
    /// let ev = ShmBox::<Event>::create(&name, ())?;
    /// ev.segment().set_lifetime(Lifetime::Holders)?;
    /// assert_eq!(ev.segment().state().unwrap().lifetime, Lifetime::Holders);
    /// # shmkit::Segment::unlink(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_lifetime(&self, lifetime: Lifetime) -> Result<(), Error> {
        let h = self.header().ok_or(Error::InvalidArgument(
            "a segment without a shmkit header has no lifetime",
        ))?;
        h.set_lifetime(lifetime);
        Ok(())
    }

    /// The header, if this handle was validated as a shmkit segment.
    pub(crate) fn header(&self) -> Option<&SegmentHeader> {
        if !self.has_header {
            return None;
        }
        self.header_unchecked()
    }

    /// Called by the object layer once the header at the start of this
    /// segment is written (`created`) or validated: records this process
    /// in the attach table, and a hand-over when an attacher is not the
    /// creator.
    pub(crate) fn track(&mut self, created: bool) {
        self.has_header = true;
        let len = self.len();
        if self.scope.is_none() && len >= HEADER_SIZE {
            self.scope = super::pid_scope::register(self.as_ptr(), len);
        }
        let Some(h) = self.header() else { return };
        let (pid, start) = my_identity();
        let claim = h.attach_table(len).map(|t| t.register(pid, start));
        if !created && self.name.is_some() {
            let same = h.creator_pid() == pid && (h.creator_start() == start || start == 0);
            if !same {
                h.mark_handed_over();
            }
        }
        self.claim = claim.map(|c| (pid, c));
    }

    /// The first [`HEADER_SIZE`] bytes as a header, unvalidated (for
    /// tools that inspect any file): `None` if the file is shorter.
    pub(crate) fn header_unchecked(&self) -> Option<&SegmentHeader> {
        if self.len() < HEADER_SIZE {
            return None;
        }
        // SAFETY: the mapping is at least HEADER_SIZE bytes and
        // page-aligned; the header consists of atomics only, so any bytes
        // are a valid value.
        Some(unsafe { &*(self.as_ptr() as *const SegmentHeader) })
    }

    /// Whether the file starts with shmkit's magic (no other validation).
    pub(crate) fn has_magic(&self) -> bool {
        self.header_unchecked().is_some_and(|h| h.magic() == MAGIC)
    }

    /// Whether this handle may decide about the name as the last holder.
    ///
    /// It takes the segment exclusively if it can (proving no other
    /// process holds it, and keeping newcomers out while it decides). When
    /// the holder count says this handle was the last tracked one (`last`),
    /// holds that remain can only be handles that are letting go right now
    /// or copies inherited by forked children (which never take part in
    /// the decision): it waits briefly for the former, then decides anyway
    /// — unless a newcomer has registered meanwhile, which then decides.
    fn alone(&self, last: bool) -> bool {
        let deadline = Deadline::after(Duration::from_millis(20));
        loop {
            match shm_names::try_hold_exclusive(&self.file) {
                Ok(Hold::Taken) => return true,
                Ok(Hold::Busy) if last => {
                    let len = self.len();
                    let newcomer = self
                        .header()
                        .and_then(|h| h.attach_table(len))
                        .is_some_and(|t| t.holders() > 0);
                    if newcomer {
                        return false;
                    }
                    if deadline.has_passed() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Ok(Hold::Unsupported) => return last,
                _ => return false,
            }
        }
    }

    /// [`Lifetime::Holders`]: the last holder decides. Holding the segment
    /// exclusively proves no other process holds it, and no one can start
    /// to before we let go.
    fn release_as_holder(&self, last: bool, unlink: impl FnOnce()) {
        if !self.alone(last) {
            return;
        }
        match self.state() {
            Some(s) if s.persistent => {}
            Some(s) if s.handed_over => unlink(),
            _ => {
                if let Some(h) = self.header() {
                    h.mark_kept();
                }
            }
        }
        // Forked children may share this hold: keep it shared.
        let _ = shm_names::try_hold_shared(&self.file);
    }

    fn release_name(&self, name: &str, state: Option<SegmentState>, last: bool) {
        let unlink = || {
            let _ = shm_names::unlink_if_id(name, self.id);
        };
        match state {
            Some(s) if s.persistent => {}
            Some(s) if s.lifetime == Lifetime::Holders => self.release_as_holder(last, unlink),
            _ if self.created => unlink(),
            Some(_) => {
                // Creator lifetime, not the creator: if the creator died
                // without unlinking and nobody else holds the segment, it
                // would only linger as a stale name; remove it now.
                let Some(h) = self.header() else { return };
                let creator_alive =
                    super::header::identity_alive(h.creator_pid(), h.creator_start());
                if !creator_alive && self.alone(last) {
                    unlink();
                    let _ = shm_names::try_hold_shared(&self.file);
                }
            }
            None => {}
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let me = os::current_pid();
        let mut last = false;
        if let Some((pid, claim)) = self.claim {
            let len = self.len();
            if pid == me {
                if let Some(t) = self.header().and_then(|h| h.attach_table(len)) {
                    last = t.deregister(claim) == 0;
                }
            }
        }
        let Some(name) = &self.name else { return };
        if self.opener != me {
            return;
        }
        if self.force_unlink == me {
            let _ = shm_names::unlink_if_id(name, self.id);
            return;
        }
        if self.keep {
            return;
        }
        let state = if self.has_header {
            // A corrupt state word: treat like the default lifetime.
            Some(self.state().unwrap_or_default())
        } else {
            None
        };
        self.release_name(name, state, last);
    }
}

fn open_file(name: &str, opts: &OpenOptions) -> Result<File, AttachError> {
    let check = if opts.get_allow_other_users() {
        shm::OwnerCheck::AnyUser
    } else {
        shm::OwnerCheck::ThisUserOnly
    };
    shm::open_named(name, check).map_err(|e| match e {
        shm::OpenNamedError::Untrusted(reason) => AttachError::Untrusted {
            name: name.to_owned(),
            reason,
        },
        shm::OpenNamedError::Os(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => AttachError::NotFound(name.to_owned()),
            Some(libc::EACCES) | Some(libc::EPERM) => {
                AttachError::PermissionDenied(name.to_owned())
            }
            _ => AttachError::Io(e),
        },
    })
}

pub(crate) fn map_create_err(e: io::Error, name: &str, size: usize) -> Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Error::AlreadyExists(name.to_owned()),
        Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EFBIG) => Error::NoSpace(size as u64),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            Error::Attach(AttachError::PermissionDenied(name.to_owned()))
        }
        _ => Error::Io(e),
    }
}
