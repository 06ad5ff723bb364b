//! [`Selectable`] for shmkit's own types: which notifier each one's
//! blocking call parks on, and the look-only readiness check matching its
//! try-call.

use std::os::fd::BorrowedFd;

use super::{Ready, Selectable};
use crate::process::AsyncResult;
use crate::queue::spsc::{Consumer, RingWatch};
use crate::queue::{Connection, JoinableQueue, MpmcQueue, MpmcReceiver, Queue};
use crate::sync::{Event, Notifier, Semaphore};
use crate::Process;

/// The executor's future type, named once here (and in `aio`) so that a
/// rename is a one-line change.
pub(crate) type PoolFuture<R> = crate::process::TaskFuture<R>;

/// A queue hook's answer as a [`Ready`].
fn ready_of(hook: Option<bool>) -> Option<Ready> {
    hook.map(|item| if item { Ready::Item } else { Ready::Closed })
}

/// An SPSC consumer: ready when a frame is committed past its head, or
/// the producer side is closed or gone (liveness) with nothing left.
impl Selectable for Consumer {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.select_notifier());
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        ready_of(self.select_readiness(liveness))
    }
}

/// An MPMC receiver: ready when the slot at the head is published, or the
/// queue is closed or its senders gone (liveness) and empty.
impl Selectable for MpmcReceiver {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.select_notifier());
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        ready_of(self.select_readiness(liveness))
    }
    fn after_ready(&self) {
        // Senders wake receivers with `notify_one`.
        self.select_notifier().notify_one();
    }
}

/// A typed queue's receiving side (a [`PodQueue`](crate::queue::PodQueue)
/// too): as [`MpmcReceiver`].
impl<T, C> Selectable for Queue<T, C> {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.as_mpmc().notifiers().0);
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        if self.rx().is_none() {
            // No receiver slot: the try-call reports it at once.
            return Some(Ready::Closed);
        }
        ready_of(self.as_mpmc().readiness(false, liveness))
    }
    fn after_ready(&self) {
        self.as_mpmc().notifiers().0.notify_one();
    }
}

/// A joinable queue's receiving side: as [`Queue`].
impl<T, C> Selectable for JoinableQueue<T, C> {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        self.as_queue().notifiers(out)
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        self.as_queue().readiness(liveness)
    }
    fn after_ready(&self) {
        self.as_queue().after_ready()
    }
}

/// A pipe end: ready to receive (a message, or end-of-file).
impl Selectable for Connection {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        self.rx_ref().notifiers(out)
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        self.rx_ref().readiness(liveness)
    }
}

/// An event: ready while set. `set` wakes every waiter.
impl Selectable for Event {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.notifier());
    }
    fn readiness(&self, _liveness: bool) -> Option<Ready> {
        self.is_set().then_some(Ready::Item)
    }
    fn notifies_every_change(&self) -> bool {
        true
    }
}

/// A semaphore: ready while a permit is free (`try_acquire` would
/// succeed, unless another process takes it first).
impl Selectable for Semaphore {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.notifier());
    }
    fn readiness(&self, _liveness: bool) -> Option<Ready> {
        (self.value() > 0).then_some(Ready::Item)
    }
    fn notifies_every_change(&self) -> bool {
        true
    }
    fn after_ready(&self) {
        // `release` wakes with `notify_one`.
        self.notifier().notify_one();
    }
}

/// A child process: ready ([`Ready::Closed`]) once it has ended (it is
/// reaped by the check, as by [`Process::exit_status`]).
impl Selectable for Process {
    fn notifiers<'a>(&'a self, _out: &mut Vec<&'a Notifier>) {}
    fn readiness(&self, _liveness: bool) -> Option<Ready> {
        self.exit_status().map(|_| Ready::Closed)
    }
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        Process::pidfd(self)
    }
}

/// A pool result: ready once the task finished (checked when a liveness
/// slice ends: the pool's results arrive through process memory).
impl<R: serde::de::DeserializeOwned> Selectable for AsyncResult<R> {
    fn notifiers<'a>(&'a self, _out: &mut Vec<&'a Notifier>) {}
    fn readiness(&self, _liveness: bool) -> Option<Ready> {
        self.ready().then_some(Ready::Item)
    }
}

/// An executor future: as [`AsyncResult`].
impl<R> Selectable for PoolFuture<R> {
    fn notifiers<'a>(&'a self, _out: &mut Vec<&'a Notifier>) {}
    fn readiness(&self, _liveness: bool) -> Option<Ready> {
        self.done().then_some(Ready::Item)
    }
}

/// An owned ring probe (the waiter thread's and [`ReadyFd`](super::ReadyFd)'s).
impl Selectable for RingWatch {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        out.push(self.notifier());
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        ready_of(RingWatch::readiness(self, liveness))
    }
}

/// An owned MPMC probe: one side of a queue, without registering an
/// endpoint (so it keeps no peer "connected").
pub(crate) struct MpmcWatch {
    pub(crate) queue: MpmcQueue,
    /// Waits for a free slot (a send) rather than a message.
    pub(crate) send: bool,
}

impl Selectable for MpmcWatch {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        let (recv, send) = self.queue.notifiers();
        out.push(if self.send { send } else { recv });
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        ready_of(self.queue.readiness(self.send, liveness))
    }
    fn after_ready(&self) {
        let (recv, send) = self.queue.notifiers();
        if self.send { send } else { recv }.notify_one();
    }
}
