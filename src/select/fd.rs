//! [`ReadyFd`]: a file descriptor that turns readable when a set of
//! shmkit receivers has something to receive (or was disconnected), for
//! epoll, mio or tokio's `AsyncFd`.
//!
//! The fd is an eventfd written by the per-process waiter thread (see
//! `watcher`): it parks on the members' futex words like a selector and
//! writes the eventfd when one turns ready. Senders pay nothing extra
//! unless the fd is armed (then, as for any waiter, a `futex_wake` per
//! send that finds the waiter count nonzero).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use super::impls::MpmcWatch;
use super::watcher::{FdRegistration, Probe};
use super::{Selectable, Selected};
use crate::queue::spsc::Consumer;
use crate::queue::{Connection, JoinableQueue, MpmcQueue, MpmcReceiver, Queue};

/// Something a [`ReadyFd`] (or the waiter thread) can watch after the
/// borrow ends: it hands out an owned probe of its readiness that shares
/// its memory (an `Arc` of the mapping), registers no endpoint, and
/// consumes nothing.
///
/// Implemented for the receiving side of [`Queue`], [`JoinableQueue`],
/// [`MpmcQueue`], [`MpmcReceiver`], SPSC [`Consumer`] and pipe
/// [`Connection`]s, and for any `Arc` of a [`Selectable`] (e.g.
/// `Arc<ShmBox<Event>>`).
pub trait Watchable {
    /// An owned probe of this member's readiness.
    fn watch(&self) -> Box<dyn Selectable + Send + Sync>;
}

impl<T, C> Watchable for Queue<T, C> {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Watchable::watch(self.as_mpmc())
    }
}

impl<T, C> Watchable for JoinableQueue<T, C> {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Watchable::watch(self.as_queue())
    }
}

impl Watchable for MpmcQueue {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Box::new(MpmcWatch {
            queue: self.clone(),
            send: false,
        })
    }
}

impl Watchable for MpmcReceiver {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Watchable::watch(&self.queue())
    }
}

impl Watchable for Consumer {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Box::new(Consumer::watch(self, true))
    }
}

impl Watchable for Connection {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Box::new(self.rx_ref().watch(true))
    }
}

impl<S: Selectable + Send + Sync + 'static> Watchable for Arc<S> {
    fn watch(&self) -> Box<dyn Selectable + Send + Sync> {
        Box::new(self.clone())
    }
}

/// A file descriptor (an eventfd) that turns readable when any member is
/// ready ([`Ready::Item`](super::Ready::Item) or
/// [`Ready::Closed`](super::Ready::Closed)), to hand to epoll, mio or
/// tokio's `AsyncFd` (with the `tokio` feature:
/// [`aio::AsyncReadyFd`](crate::aio)).
///
/// It is edge-like: once readable it stays readable until
/// [`rearm`](Self::rearm), which the program calls after taking what was
/// ready with the try-calls and before waiting on the fd again. Re-arming
/// re-checks every member before sleeping, so a message that arrived
/// while the program was busy makes the fd readable again at once: no
/// wake-up is lost.
///
/// ```
/// use shmkit::select::ReadyFd;
/// use shmkit::Queue;
///
/// let q = Queue::<u64>::anonymous(16, 8)?;
/// let fd = ReadyFd::new(&[&q])?;
/// q.send(7).unwrap();
/// // Any poller sees the fd readable; plain poll(2) here.
/// let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
/// rustix::event::poll(&mut p, None)?;
/// assert_eq!(fd.ready().len(), 1);
/// assert_eq!(q.try_recv().unwrap(), 7);
/// fd.rearm(); // drained: wait on the fd again
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadyFd {
    reg: FdRegistration,
}

impl std::fmt::Debug for ReadyFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyFd")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl ReadyFd {
    /// A readiness fd over `members` (indices in [`ready`](Self::ready)
    /// follow their order), armed.
    pub fn new(members: &[&dyn Watchable]) -> std::io::Result<Self> {
        let probes: Vec<Probe> = members.iter().map(|m| m.watch()).collect();
        Ok(ReadyFd {
            reg: FdRegistration::new(probes)?,
        })
    }

    /// Drains the fd and watches again (call after taking what was
    /// ready).
    pub fn rearm(&self) {
        self.reg.rearm()
    }

    /// The members found ready when the fd fired, and those ready now.
    pub fn ready(&self) -> Vec<Selected> {
        self.reg.ready()
    }
}

impl AsFd for ReadyFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.reg.fd()
    }
}

impl AsRawFd for ReadyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.reg.fd().as_raw_fd()
    }
}
