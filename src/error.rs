//! Error types shared by every layer.
//!
//! Attaching to foreign memory has its own precise enum ([`AttachError`]);
//! per-operation errors of locks and queues live next to those types.

use std::io;

/// Why attaching to (or validating) a shared segment failed.
///
/// Every value a peer or a stranger could have written is checked; a bad
/// one is reported here, never dereferenced.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// No segment with this name exists.
    #[error("no shared segment named {0:?}: create it first or check the name")]
    NotFound(String),
    /// The segment exists but belongs to another user (segments are 0600).
    #[error("permission denied for segment {0:?}: it belongs to another user")]
    PermissionDenied(String),
    /// The name is not a valid segment name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// The creator has not published the segment (yet): it is still
    /// initialising past the open timeout, or it died before finishing.
    #[error("segment not ready: {0}; retry later or remove the stale segment")]
    NotReady(&'static str),
    /// The segment was laid out by an incompatible shmkit version.
    #[error("layout version mismatch: segment is v{found}, this shmkit reads v{expected}; use the same shmkit version in every process")]
    VersionMismatch {
        /// Version found in the header.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// The segment holds a different kind of object.
    #[error("kind mismatch: segment holds object kind {found:#x}, expected {expected:#x}; check the name and the type you open it as")]
    KindMismatch {
        /// Kind found in the header.
        found: u32,
        /// Kind the caller asked for.
        expected: u32,
    },
    /// The segment is smaller than its header or its object requires.
    #[error("segment too small: {actual} bytes, need at least {required}")]
    TooSmall {
        /// Actual size in bytes.
        actual: u64,
        /// Required size in bytes.
        required: u64,
    },
    /// The segment holds the right kind of object, but laid out with other
    /// parameters than the caller expects (element size, capacity...).
    #[error("parameter mismatch: segment has {what} = {found}, expected {expected}")]
    ParamMismatch {
        /// Which parameter differs.
        what: &'static str,
        /// Value in the segment.
        found: u64,
        /// Value the caller expects.
        expected: u64,
    },
    /// The object was created for another element type than the one it is
    /// opened as: the fingerprints in the header and of the opener's type
    /// (or explicit tag) differ. See
    /// [`segment::type_tag`](crate::segment::type_tag).
    #[error("type mismatch: the segment's element type tag is {found:#018x}, but {type_name} expects {expected:#018x}; open it as the type its creator used, or give both sides the same explicit tag (TypeTag::named(..).scope(..) to create, OpenOptions::type_tag to open), or accept any type with TypeTag::ANY")]
    TypeMismatch {
        /// Tag recorded by the creator.
        found: u64,
        /// Tag this opener expects.
        expected: u64,
        /// The Rust type the opener used (`std::any::type_name`).
        type_name: &'static str,
    },
    /// The name exists, but what it names is not a segment this process
    /// may trust: a symbolic link, not a regular file, owned by another
    /// user, or open to group/other. Anyone who could create or change
    /// such a file could feed this process hostile lock words or truncate
    /// it under the mapping.
    #[error("refusing segment {name:?}: {reason}")]
    Untrusted {
        /// The segment name.
        name: String,
        /// What is wrong with it.
        reason: UntrustedSegment,
    },
    /// The segment was created in another pid namespace (a container
    /// sharing `/dev/shm`, `unshare --pid`). Pids stored in it mean nothing
    /// here, so this process could not tell a dead lock holder from a live
    /// one. Opt in with
    /// [`OpenOptions::foreign_pid_namespace`](crate::segment::OpenOptions::foreign_pid_namespace)
    /// to attach without dead-owner recovery (see
    /// [`pid_scope`](mod@crate::segment::pid_scope)).
    #[error("segment was created in pid namespace {segment}, this process is in pid namespace {ours}: pids stored in it cannot be judged here; to attach anyway without dead-owner recovery (waits on a dead holder become plain timeouts, for every process using the segment), open with OpenOptions::foreign_pid_namespace(true)")]
    ForeignPidNamespace {
        /// Inode of the creator's pid namespace.
        segment: u64,
        /// Inode of this process's pid namespace.
        ours: u64,
    },
    /// A header or object field holds an impossible value.
    #[error("segment is corrupt: {0}")]
    Corrupt(&'static str),
    /// An OS error not covered above.
    #[error("I/O error attaching segment: {0}")]
    Io(#[from] io::Error),
}

/// Why a named segment was refused before mapping it (see
/// [`AttachError::Untrusted`]).
///
/// ```
/// use shmkit::error::UntrustedSegment;
///
/// let why = UntrustedSegment::GroupOrOtherAccess { mode: 0o666 };
/// assert!(why.to_string().contains("0o666"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UntrustedSegment {
    /// The name is a symbolic link (segments are never opened through one).
    #[error("it is a symbolic link; segments are never opened through links: remove the link")]
    SymbolicLink,
    /// The name is a directory, FIFO, socket or device.
    #[error("it is a {file_type}, not a regular file: remove it or pick another name")]
    NotRegularFile {
        /// What it is instead.
        file_type: &'static str,
    },
    /// The file belongs to another user.
    #[error("it belongs to uid {owner}, not to this process's effective uid {euid}; if sharing across users is deliberate, open with OpenOptions::allow_other_users(true)")]
    ForeignOwner {
        /// The file's owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The file grants access to its group or to others.
    #[error("its mode {mode:#o} grants group or other access (shmkit creates segments 0600); if sharing across users is deliberate, open with OpenOptions::allow_other_users(true)")]
    GroupOrOtherAccess {
        /// The file's permission bits.
        mode: u32,
    },
}

impl UntrustedSegment {
    /// For tools that look at what sits at a name (`gc`, `inspect`): why
    /// it is not a segment of ours to judge as shmkit's, or `None` when it
    /// belongs to another user (a permission matter, not a foreign file).
    pub(crate) fn foreign_reason(self) -> Option<&'static str> {
        match self {
            UntrustedSegment::SymbolicLink => Some("a symbolic link"),
            UntrustedSegment::NotRegularFile { .. } => Some("not a regular file"),
            UntrustedSegment::GroupOrOtherAccess { .. } => {
                Some("open to group or others (shmkit creates segments 0600)")
            }
            UntrustedSegment::ForeignOwner { .. } => None,
        }
    }
}

/// The crate-wide error for creating and attaching shared objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Attaching or validating failed.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// A segment with this name already exists.
    #[error("a shared segment named {0:?} already exists: open it, or unlink the stale one")]
    AlreadyExists(String),
    /// `/dev/shm` (or memory) has no room for the segment.
    #[error("no space for a {0}-byte segment in /dev/shm: free space or use a smaller capacity")]
    NoSpace(u64),
    /// A size or capacity parameter is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Any other OS error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}
