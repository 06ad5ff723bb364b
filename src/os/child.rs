//! Waiting for and signalling a child process of ours.
//!
//! A [`ChildHandle`] names one unreaped child by a pidfd where the kernel
//! has them (Linux 5.3+): opened while the child cannot have been reaped,
//! the pidfd refers to exactly that process even after its pid is
//! recycled. Without pidfds it falls back to the pid, which is equally
//! safe for an unreaped child of ours: its pid cannot be reused until we
//! reap it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, WaitOptions};

use super::clock::Deadline;
use super::signal::Signal;

/// How a reaped child ended, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChildExit {
    /// The exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal number, if a signal killed it.
    pub(crate) signal: Option<i32>,
}

/// One child process of ours that this process may wait for and signal.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl ChildHandle {
    /// A handle for child `pid`, which must be a child of this process that
    /// has not been reaped yet (so the pid cannot have been reused). Opens
    /// a pidfd when the kernel supports it.
    pub(crate) fn new(pid: u32) -> Self {
        let pidfd = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
        ChildHandle { pid, pidfd }
    }

    /// The pidfd (readable once the child has exited), if there is one.
    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// Sends `signal` to the child. A child that has already exited (but
    /// may not be reaped) is not an error. The caller must make sure the
    /// child has not been reaped when only the pid is known.
    pub(crate) fn signal(&self, signal: Signal) -> io::Result<()> {
        let signal = signal.to_rustix();
        let r = match &self.pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, signal),
            None => match i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
                Some(p) => rustix::process::kill_process(p, signal),
                None => Ok(()),
            },
        };
        match r {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sleeps until the child may have exited or `deadline` passes
    /// (`None`: no deadline). It may return early (a signal, or a 2 ms
    /// step without a pidfd); the caller re-checks with [`try_reap`](Self::try_reap).
    pub(crate) fn wait_exit(&self, deadline: Option<Deadline>) {
        match &self.pidfd {
            // Errors and early returns are fine: the caller re-checks.
            Some(fd) => drop(super::fd::wait_readable(fd, deadline)),
            None => {
                let step = Duration::from_millis(2);
                std::thread::sleep(deadline.map_or(step, |d| d.remaining().min(step)));
            }
        }
    }

    /// Reaps the child if it has exited, without blocking: `Ok(None)` while
    /// it runs. Retries on EINTR. After `Ok(Some(_))` the pid is free for
    /// reuse: call neither this nor [`signal`](Self::signal) again.
    pub(crate) fn try_reap(&self) -> io::Result<Option<ChildExit>> {
        if let Some(fd) = &self.pidfd {
            loop {
                match rustix::process::waitid(
                    WaitId::PidFd(fd.as_fd()),
                    WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
                ) {
                    Ok(Some(st)) => {
                        return Ok(Some(ChildExit {
                            code: st.exit_status(),
                            signal: st.terminating_signal(),
                        }))
                    }
                    Ok(None) => return Ok(None),
                    Err(Errno::INTR) => continue,
                    // P_PIDFD needs Linux 5.4; use the pid (still ours).
                    Err(Errno::INVAL) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                Ok(Some((_, st))) => {
                    return Ok(Some(ChildExit {
                        code: st.exit_status(),
                        signal: st.terminating_signal(),
                    }))
                }
                Ok(None) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::process::Command;

    /// Starts `sh -c script`; its pid. The child is reaped through a
    /// `ChildHandle` (std's handle is dropped, which neither waits nor
    /// kills).
    fn start(script: &str) -> u32 {
        Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap()
            .id()
    }

    /// Waits for and reaps the child.
    fn reap(h: &ChildHandle) -> ChildExit {
        loop {
            if let Some(e) = h.try_reap().unwrap() {
                return e;
            }
            h.wait_exit(Some(Deadline::after(Duration::from_millis(50))));
        }
    }

    /// Both ways of naming a child: the pidfd and, as on kernels without
    /// one, the bare pid.
    fn handles(pid: u32, with_pidfd: bool) -> ChildHandle {
        let h = ChildHandle::new(pid);
        if with_pidfd {
            h
        } else {
            ChildHandle { pid, pidfd: None }
        }
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        for with_pidfd in [true, false] {
            let pid = start("exit 3");
            let h = handles(pid, with_pidfd);
            assert_eq!(
                reap(&h),
                ChildExit {
                    code: Some(3),
                    signal: None
                }
            );

            let pid = start("sleep 60");
            let h = handles(pid, with_pidfd);
            assert_eq!(h.try_reap().unwrap(), None, "it is still running");
            h.signal(Signal::Kill).unwrap();
            let e = reap(&h);
            assert_eq!((e.code, e.signal), (None, Some(libc::SIGKILL)));
        }
    }

    #[test]
    fn signalling_an_exited_unreaped_child_is_not_an_error() {
        for with_pidfd in [true, false] {
            let pid = start("exit 0");
            // A pidfd turns readable when the child exits, before anyone
            // reaps it.
            let probe = ChildHandle::new(pid);
            let fd = probe.pidfd().expect("this kernel has pidfds");
            assert!(crate::os::fd::wait_readable(fd, None).unwrap());
            let h = handles(pid, with_pidfd);
            h.signal(Signal::Terminate).unwrap();
            assert_eq!(
                reap(&h),
                ChildExit {
                    code: Some(0),
                    signal: None
                },
                "it had exited by itself"
            );
        }
    }
}
