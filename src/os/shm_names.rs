//! Names in `/dev/shm` and who holds them: the calls behind race-free
//! creation, stale-name replacement, `gc` and waiting for a name.
//!
//! * **Creation without a half-made name.** [`create_unnamed`] makes a file
//!   that has no name yet (`O_TMPFILE`, or a hidden `.shmkit-new-…` name
//!   where `O_TMPFILE` cannot be linked); [`link_name`] gives it its public
//!   name only once it is complete, failing with `EEXIST` if the name is
//!   taken. An opener therefore never sees a short or unpublished segment
//!   made this way, and a creator killed mid-way leaves no name behind.
//! * **Holds.** Every process that maps a named segment holds a shared
//!   open-file-description lock (`F_OFD_SETLK`, `F_RDLCK`) on it. The kernel
//!   drops it when the last descriptor *and* mapping of that open file
//!   description go away — on exit, on `SIGKILL`, in every pid namespace —
//!   and a forked child shares its parent's. Whoever wants to remove a name
//!   takes the exclusive lock first ([`try_hold_exclusive`]): it succeeds
//!   only when no process holds the segment, and while it is held no one can
//!   start holding it.
//! * **Identity.** [`file_id`] and [`name_id`] give `(device, inode)`, so a
//!   name is only unlinked while it still points at the file that was
//!   checked.
//! * **Waiting.** [`NameWatch`] sleeps on inotify until something is created
//!   in `/dev/shm` (with a bounded back-off sleep where inotify is missing).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::clock::Deadline;

/// The directory holding POSIX shared memory objects.
pub const SHM_DIR: &str = "/dev/shm";
/// Prefix of the hidden names used while creating where `O_TMPFILE`
/// cannot be linked; followed by `<pid>-<start time>-<n>`.
pub const TEMP_PREFIX: &str = ".shmkit-new-";

fn open_dir() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        SHM_DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The hidden name an unnamed file has where `O_TMPFILE` cannot be used;
/// dropping it removes that name (the file lives on while open).
#[derive(Debug, Default)]
pub struct TempName(Option<String>);

impl Drop for TempName {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            if let Ok(dir) = open_dir() {
                let _ = rustix::fs::unlinkat(&dir, t.as_str(), AtFlags::empty());
            }
        }
    }
}

/// How this process makes unnamed files: decided once by a probe.
const METHOD_UNKNOWN: u8 = 0;
const METHOD_TMPFILE: u8 = 1;
const METHOD_TEMP_NAME: u8 = 2;
static METHOD: AtomicU8 = AtomicU8::new(METHOD_UNKNOWN);
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh hidden name `.shmkit-new-<pid>-<start time>-<n>`: whoever finds
/// one whose process is gone may remove it ([`parse_temp_name`]).
fn temp_name() -> String {
    let pid = super::current_pid();
    format!(
        "{TEMP_PREFIX}{pid}-{}-{}",
        super::process::process_start_time(pid).unwrap_or(0),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `(pid, start time)` of the process that made the hidden creation
/// name `name`, if it is one.
///
/// ```
/// use shmkit::os::shm_names::parse_temp_name;
/// assert_eq!(parse_temp_name(".shmkit-new-42-977-3"), Some((42, 977)));
/// assert_eq!(parse_temp_name("jobs"), None);
/// ```
pub fn parse_temp_name(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix(TEMP_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some((pid, start))
}

/// Creates a shared memory file of `size` bytes, mode 0600, pages
/// reserved, with no public name (see [`link_name`]).
pub fn create_unnamed(size: u64) -> io::Result<(File, TempName)> {
    let dir = open_dir()?;
    let method = match METHOD.load(Ordering::Relaxed) {
        METHOD_UNKNOWN => {
            let m = if tmpfile_links(&dir) {
                METHOD_TMPFILE
            } else {
                METHOD_TEMP_NAME
            };
            METHOD.store(m, Ordering::Relaxed);
            m
        }
        m => m,
    };
    let (file, temp) = if method == METHOD_TMPFILE {
        let fd = rustix::fs::openat(
            &dir,
            ".",
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )?;
        (File::from(fd), TempName(None))
    } else {
        let temp = temp_name();
        let fd = rustix::fs::openat(
            &dir,
            temp.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )?;
        (File::from(fd), TempName(Some(temp)))
    };
    size_and_reserve(&file, size)?;
    Ok((file, temp))
}

/// Whether an `O_TMPFILE` file in `/dev/shm` can be given a name here
/// (needs `O_TMPFILE` support and either `/proc` or `CAP_DAC_READ_SEARCH`).
fn tmpfile_links(dir: &OwnedFd) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    ) else {
        return false;
    };
    let probe = temp_name();
    let ok = link_fd(dir, &fd, &probe).is_ok();
    if ok {
        let _ = rustix::fs::unlinkat(dir, probe.as_str(), AtFlags::empty());
    }
    ok
}

fn link_fd(dir: &OwnedFd, fd: &impl AsFd, name: &str) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    match rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(io::Error::from_raw_os_error(libc::EEXIST)),
        Err(first) => {
            match rustix::fs::linkat(fd, "", dir, name, AtFlags::EMPTY_PATH) {
                Ok(()) => Ok(()),
                Err(rustix::io::Errno::EXIST) => Err(io::Error::from_raw_os_error(libc::EEXIST)),
                // Report the first failure: the /proc route is the usual one.
                Err(_) => Err(first.into()),
            }
        }
    }
}

/// Gives the unnamed `file` (with its `temp` name from [`create_unnamed`])
/// the public name `name` (one path component), atomically: fails with
/// `EEXIST` if the name exists (whatever it is), never replaces.
pub fn link_name(file: &File, temp: &mut TempName, name: &str) -> io::Result<()> {
    let dir = open_dir()?;
    match &temp.0 {
        None => link_fd(&dir, file, name),
        Some(t) => {
            rustix::fs::linkat(&dir, t.as_str(), &dir, name, AtFlags::empty())?;
            drop(std::mem::take(temp)); // removes the hidden name
            Ok(())
        }
    }
}

fn size_and_reserve(file: &File, size: u64) -> io::Result<()> {
    rustix::fs::ftruncate(file, size)?;
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate: accept the (documented) SIGBUS risk.
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a hold request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The lock is now held by this open file description.
    Taken,
    /// Another open file description holds a conflicting lock.
    Busy,
    /// This system has no open-file-description locks.
    Unsupported,
}

fn ofd_lock(file: &File, cmd: libc::c_int, kind: libc::c_short) -> io::Result<libc::flock> {
    // SAFETY: an all-zero flock is a valid value of the plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // the whole file, however it grows
    fl.l_pid = 0; // required for OFD commands
    loop {
        // SAFETY: `file` is an open descriptor for the duration of the call
        // and `fl` is a valid, writable flock.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if r == 0 {
            return Ok(fl);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn set_hold(file: &File, kind: libc::c_short) -> io::Result<Hold> {
    match ofd_lock(file, libc::F_OFD_SETLK, kind) {
        Ok(_) => Ok(Hold::Taken),
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(Hold::Busy),
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOLCK) => Ok(Hold::Unsupported),
            _ => Err(e),
        },
    }
}

/// Takes (or downgrades this open file description's lock to) the shared
/// hold on `file`, without waiting: [`Hold::Busy`] while a remover holds
/// it exclusively.
pub fn try_hold_shared(file: &File) -> io::Result<Hold> {
    set_hold(file, libc::F_RDLCK as libc::c_short)
}

/// Takes (or upgrades this open file description's shared hold to) the
/// exclusive hold on `file`, without waiting: [`Hold::Busy`] while any
/// *other* open file description — in any process — holds it.
pub fn try_hold_exclusive(file: &File) -> io::Result<Hold> {
    set_hold(file, libc::F_WRLCK as libc::c_short)
}

/// Whether another open file description holds `file` (shared or
/// exclusive), without taking anything. `None` where OFD locks are
/// unsupported.
pub fn is_held(file: &File) -> io::Result<Option<bool>> {
    match ofd_lock(file, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short) {
        Ok(fl) => Ok(Some(fl.l_type != libc::F_UNLCK as libc::c_short)),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOLCK) => Ok(None),
            _ => Err(e),
        },
    }
}

/// `(device, inode)` of an open file.
pub fn file_id(file: &File) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(file)?;
    Ok((st.st_dev, st.st_ino))
}

/// `(device, inode)` that the name `name` in `/dev/shm` points at now
/// (not following a symlink), or `None` if there is no such name.
pub fn name_id(name: &str) -> io::Result<Option<(u64, u64)>> {
    let dir = open_dir()?;
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some((st.st_dev, st.st_ino))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Unlinks `name` only if it still points at `id`. Returns whether it
/// did. (A name swapped between the check and the unlink is the one case
/// this cannot see; every remover in shmkit holds the segment exclusively
/// first, which rules that out between shmkit processes.)
pub fn unlink_if_id(name: &str, id: (u64, u64)) -> io::Result<bool> {
    if name_id(name)? != Some(id) {
        return Ok(false);
    }
    let dir = open_dir()?;
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every entry name in `/dev/shm` (any file type, any owner).
pub fn list_names() -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        names.push(entry?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Total and available bytes of the filesystem behind `/dev/shm`.
pub fn space() -> io::Result<(u64, u64)> {
    let dir = open_dir()?;
    let st = rustix::fs::fstatvfs(&dir)?;
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize),
        st.f_bavail.saturating_mul(st.f_frsize),
    ))
}

/// Sleeps until something may have been created in `/dev/shm`: an inotify
/// watch for created and moved-in names, or (where inotify is unavailable)
/// a back-off sleep from 1 ms up to 50 ms. Spurious wake-ups are allowed;
/// callers re-check the name.
#[derive(Debug)]
pub struct NameWatch {
    inotify: Option<OwnedFd>,
    backoff: Duration,
}

impl NameWatch {
    /// Starts watching. Check for the name *after* this returns, then call
    /// [`wait`](NameWatch::wait): a creation between the two is not missed.
    pub fn new() -> Self {
        use rustix::fs::inotify;
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .ok()
            .filter(|fd| {
                inotify::add_watch(
                    fd,
                    SHM_DIR,
                    inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
                )
                .is_ok()
            });
        Self {
            inotify,
            backoff: Duration::from_millis(1),
        }
    }

    /// Waits until a name appears or `deadline` passes (at most 100 ms per
    /// call with inotify, so a missed event only costs a short delay).
    pub fn wait(&mut self, deadline: Deadline) {
        let cap = Deadline::earliest(Some(deadline), Deadline::after(Duration::from_millis(100)));
        match &self.inotify {
            Some(fd) => {
                use rustix::event::{poll, PollFd, PollFlags};
                let left = cap.remaining();
                let ts = rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as _,
                };
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                if let Ok(n) = poll(&mut fds, Some(&ts)) {
                    if n > 0 {
                        // Drain the queued events; their content is not needed.
                        let mut buf = [0u8; 4096];
                        while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
                    }
                }
            }
            None => {
                std::thread::sleep(self.backoff.min(cap.remaining()));
                self.backoff = (self.backoff * 2).min(Duration::from_millis(50));
            }
        }
    }
}

impl Default for NameWatch {
    fn default() -> Self {
        Self::new()
    }
}
