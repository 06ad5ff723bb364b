//! POSIX shared memory objects and memfds, and mapping them.
//!
//! Named objects live in `/dev/shm` (tmpfs). They are opened with
//! `O_NOFOLLOW` (a planted symlink is refused), created with
//! `O_CREAT | O_EXCL` and mode 0600, and their pages are reserved with
//! `fallocate` at creation so a full tmpfs is an error *now* rather than a
//! `SIGBUS` on first touch later. A size that the filesystem or memory
//! cannot hold is refused before a single page is touched.
//!
//! Opening checks, with `fstat` on the opened descriptor (so nothing can be
//! swapped in between), that the name is a regular file owned by this
//! process's effective uid with no group or other permission bits, unless
//! the caller deliberately shares across users ([`OwnerCheck::AnyUser`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::UntrustedSegment;

const SHM_DIR: &str = "/dev/shm/";

fn shm_path(name: &str) -> String {
    let mut p = String::with_capacity(SHM_DIR.len() + name.len());
    p.push_str(SHM_DIR);
    p.push_str(name);
    p
}

/// Creates a new named shared memory object of `size` bytes (fails if the
/// name exists), reserving its pages. On any failure after creation the
/// name is unlinked again.
pub fn create_named(name: &str, size: u64) -> io::Result<File> {
    let fd = rustix::fs::open(
        shm_path(name).as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    match size_and_reserve(&fd, size) {
        Ok(()) => Ok(File::from(fd)),
        Err(e) => {
            let _ = unlink_named(name);
            Err(e)
        }
    }
}

/// Whose named segments [`open_named`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerCheck {
    /// Only regular files owned by this process's effective uid with no
    /// group/other permission bits (what shmkit creates). The default.
    ThisUserOnly,
    /// Any regular file this process can open read-write (deliberate
    /// sharing across users; the other users can then write every byte).
    AnyUser,
}

/// Why [`open_named`] refused.
#[derive(Debug)]
pub enum OpenNamedError {
    /// The OS call failed (`ENOENT`, `EACCES`...).
    Os(io::Error),
    /// The name exists but is not a segment this process may trust.
    Untrusted(UntrustedSegment),
}

impl From<Errno> for OpenNamedError {
    fn from(e: Errno) -> Self {
        OpenNamedError::Os(e.into())
    }
}

/// Opens an existing named shared memory object read-write, refusing
/// symlinks, anything that is not a regular file, and (with
/// [`OwnerCheck::ThisUserOnly`]) files of other users or with group/other
/// permission bits.
///
/// ```
/// use shmkit::os::shm::{open_named, OpenNamedError, OwnerCheck};
///
/// let err = open_named("shmkit-doc-no-such-segment", OwnerCheck::ThisUserOnly);
/// assert!(matches!(err, Err(OpenNamedError::Os(e)) if e.kind() == std::io::ErrorKind::NotFound));
/// ```
pub fn open_named(name: &str, check: OwnerCheck) -> Result<File, OpenNamedError> {
    // O_NONBLOCK: opening a FIFO (or a device) planted at the name must not
    // block; it has no effect on a regular file.
    let fd = match rustix::fs::open(
        shm_path(name).as_str(),
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(OpenNamedError::Untrusted(UntrustedSegment::SymbolicLink)),
        Err(Errno::ISDIR) => return Err(not_regular("directory")),
        // Opening a Unix socket's path.
        Err(Errno::NXIO) => return Err(not_regular("socket or device")),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    let file_type = FileType::from_raw_mode(st.st_mode);
    if file_type != FileType::RegularFile {
        return Err(not_regular(match file_type {
            FileType::Directory => "directory",
            FileType::Fifo => "FIFO",
            FileType::Socket => "socket",
            FileType::CharacterDevice => "character device",
            FileType::BlockDevice => "block device",
            FileType::Symlink => "symbolic link",
            _ => "special file",
        }));
    }
    if check == OwnerCheck::ThisUserOnly {
        let euid = rustix::process::geteuid().as_raw();
        let owner = st.st_uid;
        if owner != euid {
            return Err(OpenNamedError::Untrusted(UntrustedSegment::ForeignOwner {
                owner,
                euid,
            }));
        }
        let mode = st.st_mode & 0o7777;
        if mode & 0o077 != 0 {
            return Err(OpenNamedError::Untrusted(
                UntrustedSegment::GroupOrOtherAccess { mode },
            ));
        }
    }
    Ok(File::from(fd))
}

fn not_regular(file_type: &'static str) -> OpenNamedError {
    OpenNamedError::Untrusted(UntrustedSegment::NotRegularFile { file_type })
}

/// Removes a named shared memory object. Processes that have it mapped keep
/// their mapping.
pub fn unlink_named(name: &str) -> io::Result<()> {
    rustix::fs::unlink(shm_path(name).as_str())?;
    Ok(())
}

/// Creates an anonymous shared memory file (memfd) of `size` bytes whose
/// size is then sealed, so no process can shrink it under a mapping.
pub fn create_anonymous(size: u64) -> io::Result<File> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create("shmkit", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    size_and_reserve(&fd, size)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(File::from(fd))
}

/// The current size of a shared memory file.
pub fn file_size(file: &File) -> io::Result<u64> {
    Ok(rustix::fs::fstat(file)?.st_size as u64)
}

fn size_and_reserve(fd: &OwnedFd, size: u64) -> io::Result<()> {
    check_reservable(fd.as_fd(), size)?;
    rustix::fs::ftruncate(fd.as_fd(), size)?;
    match rustix::fs::fallocate(fd.as_fd(), rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate: accept the (documented) SIGBUS risk.
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Maps `len` bytes of `file` shared and read-write.
pub fn map(file: &File, len: usize) -> io::Result<memmap2::MmapRaw> {
    memmap2::MmapOptions::new().len(len).map_raw(file)
}

/// Segments up to this size skip the free-space and free-memory probes
/// (they cost a few syscalls and a `/proc` read).
const PROBE_ABOVE: u64 = 64 << 20;

/// Refuses a size that cannot be reserved, before `ftruncate`/`fallocate`
/// touch anything: above the file size limit (`EFBIG`), above the free
/// space of a size-limited tmpfs such as `/dev/shm` (`ENOSPC`), or above
/// the memory this process could still get (`ENOMEM`; tmpfs pages are RAM
/// or swap, and a memfd has no size limit of its own, so without this an
/// absurd size would be allocated page by page until the OOM killer
/// struck).
fn check_reservable(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    if size > i64::MAX as u64 {
        return Err(Errno::FBIG.into());
    }
    if size <= PROBE_ABOVE {
        return Ok(());
    }
    let vfs = rustix::fs::fstatvfs(fd)?;
    // f_blocks == 0: a tmpfs without a size limit (every memfd).
    if vfs.f_blocks != 0 && size > vfs.f_bavail.saturating_mul(vfs.f_frsize) {
        return Err(Errno::NOSPC.into());
    }
    if let Some(room) = memory_headroom() {
        if size > room {
            return Err(Errno::NOMEM.into());
        }
    }
    Ok(())
}

/// Bytes of memory this process could still fill: available RAM plus free
/// swap, capped by its memory cgroup's remaining allowance. `None` when
/// nothing can be read.
fn memory_headroom() -> Option<u64> {
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let avail = meminfo_bytes(&text, "MemAvailable:")?;
            Some(avail.saturating_add(meminfo_bytes(&text, "SwapFree:").unwrap_or(0)))
        })
        .or_else(sysinfo_total);
    match (system, cgroup_headroom()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `Key:   N kB` line of `/proc/meminfo`, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Total RAM plus swap (the fallback when `/proc` is not mounted).
fn sysinfo_total() -> Option<u64> {
    // SAFETY: `sysinfo` only fills the struct we pass; all-zero is a valid
    // initial value of this plain C struct.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable `struct sysinfo`.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    let unit = u64::from(info.mem_unit.max(1));
    let units = (info.totalram as u64).saturating_add(info.totalswap as u64);
    Some(units.saturating_mul(unit))
}

/// What is left of this process's memory cgroup limit (v2 `memory.max`
/// minus `memory.current`, or v1 `limit_in_bytes` minus `usage_in_bytes`),
/// if it has one. Inside a container the cgroup path from
/// `/proc/self/cgroup` may not exist under the mount; then the mount's
/// root is the process's own cgroup.
fn cgroup_headroom() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut best: Option<u64> = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let room = if id == "0" && controllers.is_empty() {
            cgroup_room("/sys/fs/cgroup", path, "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            cgroup_room(
                "/sys/fs/cgroup/memory",
                path,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            None
        };
        if let Some(r) = room {
            best = Some(best.map_or(r, |b| b.min(r)));
        }
    }
    best
}

fn cgroup_room(mount: &str, path: &str, limit: &str, usage: &str) -> Option<u64> {
    let read = |dir: &str, file: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).ok()?;
        text.trim().parse().ok()
    };
    let nested = format!("{mount}{}", path.trim_end_matches('/'));
    let dir = if std::path::Path::new(&format!("{nested}/{limit}")).exists() {
        nested.as_str()
    } else {
        mount
    };
    // "max" (v2) does not parse: no limit. v1 reports "no limit" as a
    // huge page-rounded number.
    let max = read(dir, limit)?;
    if max >= 1 << 62 {
        return None;
    }
    Some(max.saturating_sub(read(dir, usage).unwrap_or(0)))
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines_parse_to_bytes() {
        let text = "MemTotal:       24683656 kB\nMemAvailable:    1000 kB\nSwapFree: 0 kB\n";
        assert_eq!(meminfo_bytes(text, "MemAvailable:"), Some(1_024_000));
        assert_eq!(meminfo_bytes(text, "SwapFree:"), Some(0));
        assert_eq!(meminfo_bytes(text, "Missing:"), None);
    }

    #[test]
    fn headroom_is_known_and_below_the_absurd() {
        let room = memory_headroom().expect("Linux reports memory");
        assert!(room > 0 && room < 1 << 56, "{room}");
    }

    #[test]
    fn impossible_sizes_are_refused_before_reserving() {
        // A memfd has no size limit of its own: these must fail in the
        // check, without ftruncate or fallocate running.
        for size in [u64::MAX, 1 << 63, 1 << 56] {
            let e = create_anonymous(size).expect_err("refused");
            assert!(
                matches!(e.raw_os_error(), Some(libc::EFBIG | libc::ENOMEM)),
                "{size}: {e}"
            );
        }
    }
}
