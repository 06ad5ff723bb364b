//! [`Segment`]: one mapping of a named or anonymous shared memory object.

use std::fs::File;
use std::io;

use super::header::OpenOptions;
use crate::error::{AttachError, Error};
use crate::os::{self, shm};

/// Longest accepted segment name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a segment name: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters,
/// digits, `.`, `_` and `-`, not starting with `.` (so never `.`/`..` and
/// never a hidden file), and therefore one path component without `/` or
/// NUL.
///
/// ```
/// use shmkit::segment::validate_name;
/// assert!(validate_name("jobs-42").is_ok());
/// assert!(validate_name("a/b").is_err());
/// assert!(validate_name("..").is_err());
/// assert!(validate_name("").is_err());
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
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed (no '/', no NUL)");
    }
    Ok(())
}

/// A mapping of a shared memory object (raw bytes; no header semantics).
///
/// Created with [`Segment::create`] it is *owned*: when the creating
/// process drops it, the name is unlinked (other processes keep their
/// mappings). A forked child inherits the handle but never unlinks: only
/// the process that created the name does. [`Segment::keep`] makes the
/// name outlive the handle.
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
    map: memmap2::MmapRaw,
    file: File,
    name: Option<String>,
    /// Pid of the process that unlinks the name on drop; 0 = nobody.
    unlink_by: u32,
}

impl Segment {
    /// Creates a new named segment of `size` bytes (fails if the name is
    /// taken), with mode 0600 and its pages reserved up front.
    pub fn create(name: &str, size: usize) -> Result<Segment, Error> {
        validate_name(name)?;
        if size == 0 {
            return Err(Error::InvalidArgument("segment size must be non-zero"));
        }
        let file =
            shm::create_named(name, size as u64).map_err(|e| map_create_err(e, name, size))?;
        let map = match shm::map(&file, size) {
            Ok(m) => m,
            Err(e) => {
                let _ = shm::unlink_named(name);
                return Err(e.into());
            }
        };
        Ok(Segment {
            map,
            file,
            name: Some(name.to_owned()),
            unlink_by: os::current_pid(),
        })
    }

    /// Opens and maps an existing named segment (its whole current size).
    /// Refuses ([`AttachError::Untrusted`]) a symbolic link, a non-regular
    /// file, and a file owned by another user or with group/other
    /// permission bits; see [`Segment::open_with`].
    pub fn open(name: &str) -> Result<Segment, AttachError> {
        Self::open_with(name, &OpenOptions::new())
    }

    /// [`Segment::open`] honouring
    /// [`OpenOptions::allow_other_users`] (the only option it uses).
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<Segment, AttachError> {
        validate_name(name)?;
        let check = if opts.get_allow_other_users() {
            shm::OwnerCheck::AnyUser
        } else {
            shm::OwnerCheck::ThisUserOnly
        };
        let file = shm::open_named(name, check).map_err(|e| match e {
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
        })?;
        Self::from_file(file, Some(name.to_owned()))
    }

    /// Creates an anonymous segment (a sealed memfd): shared with children
    /// forked after this call, or handed to a spawned child by its fd (see
    /// [`Segment::from_file`]).
    pub fn anonymous(size: usize) -> Result<Segment, Error> {
        if size == 0 {
            return Err(Error::InvalidArgument("segment size must be non-zero"));
        }
        let file = shm::create_anonymous(size as u64).map_err(|e| map_create_err(e, "", size))?;
        let map = shm::map(&file, size)?;
        Ok(Segment {
            map,
            file,
            name: None,
            unlink_by: 0,
        })
    }

    /// Maps an already-open shared memory file (for example a memfd
    /// inherited by a spawned child). The mapping covers the file's size.
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
        let map = shm::map(&file, len)?;
        Ok(Segment {
            map,
            file,
            name,
            unlink_by: 0,
        })
    }

    /// Removes a named segment from `/dev/shm`. Existing mappings stay valid.
    pub fn unlink(name: &str) -> Result<(), AttachError> {
        validate_name(name)?;
        shm::unlink_named(name).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => AttachError::NotFound(name.to_owned()),
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

    /// Whether dropping this handle (in this process) unlinks the name.
    pub fn is_owner(&self) -> bool {
        self.unlink_by != 0 && self.unlink_by == os::current_pid()
    }

    /// Keeps the name after this handle is dropped (the segment persists
    /// until [`Segment::unlink`]).
    pub fn keep(&mut self) {
        self.unlink_by = 0;
    }

    /// Makes this handle unlink the name when this process drops it (the
    /// inverse of [`Segment::keep`], e.g. for the last user of a segment).
    pub fn unlink_on_drop(&mut self) {
        if self.name.is_some() {
            self.unlink_by = os::current_pid();
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            if self.is_owner() {
                let _ = shm::unlink_named(name);
            }
        }
    }
}

fn map_create_err(e: io::Error, name: &str, size: usize) -> Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Error::AlreadyExists(name.to_owned()),
        Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EFBIG) => Error::NoSpace(size as u64),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            Error::Attach(AttachError::PermissionDenied(name.to_owned()))
        }
        _ => Error::Io(e),
    }
}
