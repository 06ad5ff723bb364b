//! POSIX shared memory objects and memfds, and mapping them.
//!
//! Named objects live in `/dev/shm` (tmpfs). They are opened with
//! `O_NOFOLLOW` (a planted symlink is refused), created with
//! `O_CREAT | O_EXCL` and mode 0600, and their pages are reserved with
//! `fallocate` at creation so a full tmpfs is an error *now* rather than a
//! `SIGBUS` on first touch later.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

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

/// Opens an existing named shared memory object read-write, refusing
/// symlinks and anything that is not a regular file.
pub fn open_named(name: &str) -> io::Result<File> {
    let fd = rustix::fs::open(
        shm_path(name).as_str(),
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(File::from(fd))
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
