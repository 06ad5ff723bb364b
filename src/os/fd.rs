//! File descriptors the process layer hands to its children: close-on-exec
//! pipes and memfds, the close-on-exec and non-blocking flags, and waiting
//! until a descriptor is readable.
//!
//! Every descriptor shmkit creates is close-on-exec; a spawn clears the
//! flag only on the descriptors it passes, only in the forked child, just
//! before `exec` ([`clear_cloexec_raw`]).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::{Errno, FdFlags};

use super::clock::Deadline;

/// A pipe `(read end, write end)` with both ends close-on-exec.
pub(crate) fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing
    // else owns; each `OwnedFd` takes one of them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An empty, close-on-exec memfd named `name` (the name only shows in
/// `/proc/<pid>/fd`; it is not a path and need not be unique).
pub(crate) fn memfd_cloexec(name: &str) -> io::Result<File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(File::from(fd))
}

/// Sets close-on-exec on `fd` (so that children this process starts later
/// do not inherit it).
pub(crate) fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?)
}

/// Puts `fd` in non-blocking mode, keeping its other status flags.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    Ok(rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?)
}

/// Whether `fd` is an open descriptor in this process.
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor's flags; an invalid or
    // closed `fd` makes it fail with EBADF, nothing else.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Clears close-on-exec on `fd`, so that an `exec` that follows keeps it.
///
/// Async-signal-safe and allocation-free (one `fcntl`; the error, if any,
/// is `io::Error::last_os_error`), so it may run in a forked child before
/// `exec` (`Command::pre_exec`). `fd` is a raw number because that child
/// owns nothing: the descriptor belongs to the parent's copy.
pub(crate) fn clear_cloexec_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD with plain integer arguments changes only the flags
    // of `fd`; a bad `fd` makes it fail with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sleeps until `fd` is readable (or hung up) or `deadline` passes
/// (`None`: no deadline). `Ok(true)` when it is ready; `Ok(false)` when
/// the deadline passed or a signal interrupted the wait, so the caller
/// re-checks its condition and calls again with the same deadline.
pub(crate) fn wait_readable(fd: impl AsFd, deadline: Option<Deadline>) -> io::Result<bool> {
    let ts = deadline.map(|d| {
        let left = d.remaining();
        rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as _,
        }
    });
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, ts.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn pipe_is_cloexec_and_carries_bytes() {
        let (r, w) = pipe_cloexec().unwrap();
        for fd in [&r, &w] {
            let flags = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(flags.contains(FdFlags::CLOEXEC));
        }
        let (mut r, mut w) = (File::from(r), File::from(w));
        w.write_all(b"ok").unwrap();
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ok");
    }

    #[test]
    fn cloexec_flag_can_be_cleared_and_set_again() {
        let f = memfd_cloexec("shmkit-test").unwrap();
        assert!(rustix::io::fcntl_getfd(&f)
            .unwrap()
            .contains(FdFlags::CLOEXEC));
        clear_cloexec_raw(f.as_raw_fd()).unwrap();
        assert!(!rustix::io::fcntl_getfd(&f)
            .unwrap()
            .contains(FdFlags::CLOEXEC));
        set_cloexec(&f).unwrap();
        assert!(rustix::io::fcntl_getfd(&f)
            .unwrap()
            .contains(FdFlags::CLOEXEC));
    }

    #[test]
    fn open_and_invalid_descriptors_are_told_apart() {
        let (r, _w) = pipe_cloexec().unwrap();
        assert!(is_open(r.as_raw_fd()));
        assert!(!is_open(-1));
        assert_eq!(
            clear_cloexec_raw(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn wait_readable_times_out_then_sees_data_and_hangup() {
        let (r, w) = pipe_cloexec().unwrap();
        set_nonblocking(&r).unwrap();
        assert!(rustix::fs::fcntl_getfl(&r)
            .unwrap()
            .contains(OFlags::NONBLOCK));
        let soon = Deadline::after(Duration::from_millis(1));
        assert!(!wait_readable(&r, Some(soon)).unwrap());
        let mut w = File::from(w);
        w.write_all(b"x").unwrap();
        assert!(wait_readable(&r, None).unwrap());
        let mut r = File::from(r);
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        // Drained: not readable until the write end is gone, then "ready"
        // (a read returns EOF at once). No deadline on the second wait: a
        // child another test forks holds a copy until it execs.
        assert!(!wait_readable(&r, Some(soon)).unwrap());
        drop(w);
        assert!(wait_readable(&r, None).unwrap());
        assert_eq!(r.read(&mut byte).unwrap(), 0);
    }
}
