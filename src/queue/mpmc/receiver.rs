//! [`MpmcReceiver`]: the receiving end of an [`MpmcQueue`].

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::handle::{close_side, Endpoint, Side};
use super::raw::{PopError, RawQueue};
use super::MpmcQueue;
use crate::os::Deadline;
use crate::primitives::Backoff;
use crate::queue::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::sync::guard_count::Held;
use crate::sync::notifier::{wait_with, Slices, Waited};

/// The receiving end of an [`MpmcQueue`]. Clone it for more receivers in
/// the same process; a handle inherited over `fork` registers the child on
/// first use. Senders see `Disconnected` by the registry's rule (see
/// [`queue`](crate::queue)): once every receiver has closed, dropped its
/// handles or died.
///
/// ```
/// use shmkit::queue::{MpmcQueue, TryRecvError};
///
/// let q = MpmcQueue::anonymous(16, 4)?;
/// let tx = q.sender()?;
/// let rx = q.receiver()?;
/// tx.send(b"abc").unwrap();
/// assert_eq!(rx.try_recv_with(|m| m.len()), Ok(3));
/// assert_eq!(rx.try_recv_with(|m| m.len()), Err(TryRecvError::Empty));
/// drop(tx); // the only sender is gone
/// let mut buf = Vec::new();
/// assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MpmcReceiver {
    pub(super) ep: Endpoint,
}

/// One pop attempt as `me` (waking a blocked sender on success).
#[inline]
fn attempt<R, F: FnOnce(&[u8], bool) -> R>(
    raw: &RawQueue,
    me: u32,
    f: &mut Option<F>,
) -> Result<R, PopError> {
    let r = raw.try_pop(me, f);
    if r.is_ok() {
        raw.notify_published(&raw.ctl().not_full);
    }
    r
}

/// A user's `f` with its panic caught, so that the slot it reads is freed
/// before the panic goes on (see [`rethrow`]), and run while this thread
/// counts as holding a guard: the slice `f` gets is shared memory lent
/// for the call, so `process::fork` from inside `f` is refused (a child
/// would keep reading a slot the parent frees).
#[inline(always)]
fn caught<R>(
    f: impl FnOnce(&[u8], bool) -> R,
) -> impl FnOnce(&[u8], bool) -> Result<R, Box<dyn Any + Send>> {
    // AssertUnwindSafe: nothing `f` may have left half-done is observed
    // here; the same panic resumes at once in the caller's frame.
    move |m, marked| {
        let _lent = Held::enter();
        dead_frees_nothing(catch_unwind(AssertUnwindSafe(|| f(m, marked))))
    }
}

/// Under loom, a simulated process that died in the closure frees
/// nothing, like a killed one: its unwind goes on at once, leaving the
/// claim for the survivors to recover. Elsewhere the identity.
#[cfg(loom)]
fn dead_frees_nothing<R>(r: Result<R, Box<dyn Any + Send>>) -> Result<R, Box<dyn Any + Send>> {
    match r {
        Err(p) if !crate::os::process::loom_liveness::current_alive() => resume_unwind(p),
        r => r,
    }
}

#[cfg(not(loom))]
#[inline(always)]
fn dead_frees_nothing<T>(r: T) -> T {
    r
}

/// Resumes a panic `caught` stopped, now that the slot is free again: a
/// message handed to a closure that panicked counts as received, and the
/// queue stays usable by every process.
#[inline(always)]
fn rethrow<R>(r: Result<R, Box<dyn Any + Send>>) -> R {
    match r {
        Ok(r) => r,
        Err(panic) => resume_unwind(panic),
    }
}

/// What an empty queue means once a liveness check is due: a dead
/// producer's slot at the head is recovered (`Ok(None)`: try again), or
/// the sending side is gone and one last attempt drains it (`Ok(Some)`),
/// or nothing changed (`Err(())`).
#[inline]
fn check_empty<R, F: FnOnce(&[u8], bool) -> R>(
    ep: &Endpoint,
    raw: &RawQueue,
    me: u32,
    f: &mut Option<F>,
    closed: bool,
) -> Result<Option<Result<R, TryRecvError>>, ()> {
    if raw.recover_head() {
        return Ok(None);
    }
    if closed || ep.other().is_disconnected() {
        ep.gate.recheck_next();
        return Ok(Some(match attempt(raw, me, f) {
            Ok(r) => Ok(r),
            Err(PopError::Corrupt(c)) => Err(TryRecvError::Corrupt(c)),
            Err(PopError::Empty) => Err(TryRecvError::Disconnected),
        }));
    }
    Err(())
}

/// The copying receives' closure: the message into `buf` (cleared
/// first), returning its length. It runs no user code, so it needs neither
/// a guard token nor a caught panic.
#[inline(always)]
fn copy_into(buf: &mut Vec<u8>) -> impl FnOnce(&[u8], bool) -> usize + '_ {
    move |m, _| {
        buf.clear();
        buf.extend_from_slice(m);
        m.len()
    }
}

/// An untimed wait's outcome: it cannot time out, so anything but
/// `Corrupt` is the sending side being gone.
#[inline]
fn untimed<R>(r: Result<R, RecvTimeoutError>) -> Result<R, RecvError> {
    match r {
        Ok(r) => Ok(r),
        Err(RecvTimeoutError::Corrupt(c)) => Err(RecvError::Corrupt(c)),
        Err(_) => Err(RecvError::Disconnected),
    }
}

impl MpmcReceiver {
    fn raw(&self) -> &RawQueue {
        &self.ep.shared.raw
    }

    /// Takes the oldest message into `buf` (cleared first); returns its
    /// length.
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        self.try_recv_caught(copy_into(buf))
    }

    /// Takes the oldest message and passes it to `f` while the slot is
    /// still held (zero-copy: `f` reads shared memory directly).
    ///
    /// `Disconnected` is reported when the queue is empty and the sending
    /// side was closed or is gone by the registry's rule (checked at most
    /// once a millisecond per handle, or at once after an endpoint left).
    /// A stuck slot of a dead producer is skipped as part of the same
    /// check.
    ///
    /// If `f` panics, the slot is freed before the panic continues: the
    /// message counts as received and the queue stays usable.
    #[inline]
    pub fn try_recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, TryRecvError> {
        self.try_recv_caught(caught(move |m, _| f(m))).map(rethrow)
    }

    /// [`try_recv_with`](Self::try_recv_with) whose `f` is also told
    /// whether the message was marked (the typed queue's spill records).
    pub(crate) fn try_recv_marked_with<R>(
        &self,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<R, TryRecvError> {
        self.try_recv_caught(caught(f)).map(rethrow)
    }

    fn try_recv_caught<R>(&self, f: impl FnOnce(&[u8], bool) -> R) -> Result<R, TryRecvError> {
        let Ok(me) = self.ep.me() else {
            return Err(TryRecvError::Disconnected);
        };
        let (ep, raw) = (&self.ep, self.raw());
        let mut f = Some(f);
        loop {
            match attempt(raw, me, &mut f) {
                Ok(r) => return Ok(r),
                Err(PopError::Corrupt(c)) => return Err(TryRecvError::Corrupt(c)),
                Err(PopError::Empty) => {}
            }
            let closed = ep.closed();
            if !closed && !ep.gate.due(&ep.other()) {
                return Err(TryRecvError::Empty);
            }
            match check_empty(ep, raw, me, &mut f, closed) {
                Ok(None) => continue,
                Ok(Some(r)) => return r,
                Err(()) => return Err(TryRecvError::Empty),
            }
        }
    }

    /// Waits for a message and copies it into `buf`; returns its length.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        untimed(self.recv_deadline_caught(None, copy_into(buf)))
    }

    /// Waits at most `timeout` for a message and copies it into `buf`.
    pub fn recv_timeout(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_deadline_caught(Some(Deadline::after(timeout)), copy_into(buf))
    }

    /// Waits for a message and passes it to `f` (zero-copy).
    pub fn recv_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        untimed(self.recv_deadline_with(None, f))
    }

    /// Waits until `deadline` (`None` = forever) for a message and passes
    /// it to `f`. A panic in `f` frees the slot first, as in
    /// [`try_recv_with`](Self::try_recv_with).
    pub fn recv_deadline_with<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_deadline_caught(deadline, caught(move |m, _| f(m)))
            .map(rethrow)
    }

    /// [`recv_deadline_with`](Self::recv_deadline_with) whose `f` is also
    /// told whether the message was marked.
    pub(crate) fn recv_deadline_marked_with<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_deadline_caught(deadline, caught(f)).map(rethrow)
    }

    fn recv_deadline_caught<R>(
        &self,
        deadline: Option<Deadline>,
        f: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<R, RecvTimeoutError> {
        let Ok(me) = self.ep.me() else {
            return Err(RecvTimeoutError::Disconnected);
        };
        let (ep, raw) = (&self.ep, self.raw());
        let mut f = Some(f);
        let to_timeout = |r: Result<R, TryRecvError>| {
            r.map_err(|e| match e {
                TryRecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
                _ => RecvTimeoutError::Disconnected,
            })
        };
        match attempt(raw, me, &mut f) {
            Ok(r) => return Ok(r),
            Err(PopError::Corrupt(c)) => return Err(RecvTimeoutError::Corrupt(c)),
            Err(PopError::Empty) => {}
        }
        let waited = wait_with(
            &raw.ctl().not_empty,
            raw.handshake(),
            deadline,
            Slices::LIVENESS,
            &mut Backoff::new(),
            |probe| loop {
                match attempt(raw, me, &mut f) {
                    Ok(r) => return Some(Ok(r)),
                    Err(PopError::Corrupt(c)) => return Some(Err(TryRecvError::Corrupt(c))),
                    Err(PopError::Empty) => {}
                }
                // Empty. Look for the dead after any park (a wake-up with
                // no message may be a sender leaving), when closed, or at
                // once when an endpoint left.
                let other = ep.other();
                let closed = ep.closed();
                if !closed && !probe.after_park() && !ep.gate.departed(&other) {
                    return None;
                }
                ep.gate.mark(&other);
                match check_empty(ep, raw, me, &mut f, closed) {
                    Ok(None) => continue,
                    Ok(Some(r)) => return Some(r),
                    Err(()) => return None,
                }
            },
        );
        match waited {
            Waited::Ready(r, _) => to_timeout(r),
            Waited::TimedOut => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Closes the receiving side for every process: senders get
    /// `Disconnected` (blocked ones too).
    pub fn close(&self) {
        close_side(&self.ep.shared, Side::Recv);
    }

    /// Select's hooks (crate-internal): this endpoint's notifier and
    /// readiness (see `Shared::readiness`).
    pub(crate) fn select_notifier(&self) -> &crate::sync::Notifier {
        self.ep.shared.notifiers().0
    }

    /// See [`select_notifier`](Self::select_notifier).
    pub(crate) fn select_readiness(&self, liveness: bool) -> Option<bool> {
        self.ep.shared.readiness(false, liveness)
    }

    /// The queue this endpoint receives from.
    pub fn queue(&self) -> MpmcQueue {
        MpmcQueue {
            shared: self.ep.shared.clone(),
        }
    }
}
