//! [`MpmcSender`]: the sending end of an [`MpmcQueue`].

use std::time::Duration;

use super::handle::{close_side, Endpoint, Side};
use super::raw::{PushError, RawQueue};
use super::MpmcQueue;
use crate::os::Deadline;
use crate::primitives::Backoff;
use crate::queue::error::{SendError, SendTimeoutError, TrySendError};
use crate::sync::notifier::{wait_with, Probe, Slices, Waited};

/// The sending end of an [`MpmcQueue`]. Clone it for more senders in the
/// same process; a handle inherited over `fork` registers the child on
/// first use. The receivers see `Disconnected` by the registry's rule
/// (see [`queue`](crate::queue)): once every sender has closed, dropped
/// its handles or died.
///
/// ```
/// use shmkit::queue::{MpmcQueue, TrySendError};
///
/// let q = MpmcQueue::anonymous(8, 2)?;
/// let tx = q.sender()?;
/// let _rx = q.receiver()?;
/// tx.try_send(b"a").unwrap();
/// tx.try_send(b"b").unwrap();
/// assert!(matches!(tx.try_send(b"c"), Err(TrySendError::Full(b"c"))));
/// assert!(matches!(tx.try_send(&[0; 9]), Err(TrySendError::TooLarge(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct MpmcSender {
    pub(super) ep: Endpoint,
}

/// One push attempt as `me`, the message written by `write` into the
/// claimed slot: `None` = full.
#[inline]
fn attempt<W: FnOnce(&mut [u8]) -> Option<usize>>(
    ep: &Endpoint,
    raw: &RawQueue,
    write: &mut Option<W>,
    me: u32,
) -> Option<Result<(), SendTimeoutError<()>>> {
    if ep.closed() {
        return Some(Err(SendTimeoutError::Disconnected(())));
    }
    match raw.try_push_with(me, write) {
        Ok(()) => {
            raw.notify_published(&raw.ctl().not_empty);
            Some(Ok(()))
        }
        Err(PushError::TooLarge) => Some(Err(SendTimeoutError::TooLarge(()))),
        Err(PushError::Corrupt) => Some(Err(SendTimeoutError::Disconnected(()))),
        Err(PushError::Full) => None,
    }
}

/// A writer that copies `msg` into the slot (length checked by the caller).
#[inline]
fn copy_of(msg: &[u8]) -> impl FnOnce(&mut [u8]) -> Option<usize> + '_ {
    move |dst: &mut [u8]| {
        dst[..msg.len()].copy_from_slice(msg);
        Some(msg.len())
    }
}

impl MpmcSender {
    fn raw(&self) -> &RawQueue {
        &self.ep.shared.raw
    }

    /// Sends `msg` if a slot is free right now.
    ///
    /// `Disconnected` is reported when either side was closed, or when
    /// the queue is full and the receiving side is gone by the registry's
    /// rule (checked at most once a millisecond per handle, or at once
    /// after an endpoint left).
    #[inline]
    pub fn try_send<'a>(&self, msg: &'a [u8]) -> Result<(), TrySendError<&'a [u8]>> {
        if msg.len() > self.raw().slot_size {
            return Err(TrySendError::TooLarge(msg));
        }
        self.try_send_with(copy_of(msg)).map_err(|e| match e {
            TrySendError::Full(()) => TrySendError::Full(msg),
            TrySendError::Disconnected(()) => TrySendError::Disconnected(msg),
            TrySendError::TooLarge(()) => TrySendError::TooLarge(msg),
        })
    }

    /// Sends `msg`, waiting while the queue is full.
    pub fn send<'a>(&self, msg: &'a [u8]) -> Result<(), SendError<&'a [u8]>> {
        match self.send_deadline(msg, None) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Disconnected(m)) | Err(SendTimeoutError::Timeout(m)) => {
                Err(SendError::Disconnected(m))
            }
            Err(SendTimeoutError::TooLarge(m)) => Err(SendError::TooLarge(m)),
        }
    }

    /// Sends `msg`, waiting at most `timeout` for a free slot.
    pub fn send_timeout<'a>(
        &self,
        msg: &'a [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.send_deadline(msg, Some(Deadline::after(timeout)))
    }

    /// Sends `msg`, waiting until `deadline` (`None` = forever).
    pub fn send_deadline<'a>(
        &self,
        msg: &'a [u8],
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        if msg.len() > self.raw().slot_size {
            return Err(SendTimeoutError::TooLarge(msg));
        }
        self.send_deadline_with(deadline, copy_of(msg))
            .map_err(|e| match e {
                SendTimeoutError::Timeout(()) => SendTimeoutError::Timeout(msg),
                SendTimeoutError::Disconnected(()) => SendTimeoutError::Disconnected(msg),
                SendTimeoutError::TooLarge(()) => SendTimeoutError::TooLarge(msg),
            })
    }

    /// [`try_send`](Self::try_send) of a message that `write` encodes
    /// straight into the claimed slot (the typed queue's path: no
    /// intermediate buffer). `write` gets the whole slot and returns the
    /// length used, or `None` when the message does not fit (`TooLarge`;
    /// the position is given up as skipped). It runs at most once, and only
    /// when a slot was claimed.
    #[inline]
    pub(crate) fn try_send_with(
        &self,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), TrySendError<()>> {
        let Ok(me) = self.ep.me() else {
            return Err(TrySendError::Disconnected(()));
        };
        if self.ep.closed() {
            return Err(TrySendError::Disconnected(()));
        }
        let raw = self.raw();
        let mut write = Some(write);
        loop {
            match raw.try_push_with(me, &mut write) {
                Ok(()) => {
                    raw.notify_published(&raw.ctl().not_empty);
                    return Ok(());
                }
                Err(PushError::TooLarge) => return Err(TrySendError::TooLarge(())),
                Err(PushError::Corrupt) => return Err(TrySendError::Disconnected(())),
                Err(PushError::Full) => {}
            }
            let other = self.ep.other();
            if !self.ep.gate.due(&other) {
                return Err(TrySendError::Full(()));
            }
            if other.is_disconnected() {
                return Err(TrySendError::Disconnected(()));
            }
            if !raw.recover_tail() {
                return Err(TrySendError::Full(()));
            }
        }
    }

    /// [`send_deadline`](Self::send_deadline) of a message that `write`
    /// encodes into the slot, as in [`try_send_with`](Self::try_send_with).
    pub(crate) fn send_deadline_with(
        &self,
        deadline: Option<Deadline>,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SendTimeoutError<()>> {
        let Ok(me) = self.ep.me() else {
            return Err(SendTimeoutError::Disconnected(()));
        };
        let (ep, raw) = (&self.ep, self.raw());
        let mut write = Some(write);
        if let Some(r) = attempt(ep, raw, &mut write, me) {
            return r;
        }
        let waited = wait_with(
            &raw.ctl().not_full,
            raw.handshake(),
            deadline,
            Slices::LIVENESS,
            &mut Backoff::new(),
            |probe| loop {
                if let Some(r) = attempt(ep, raw, &mut write, me) {
                    return Some(r);
                }
                let other = ep.other();
                if probe != Probe::Expired && !ep.gate.departed(&other) {
                    return None;
                }
                ep.gate.mark(&other);
                if other.is_disconnected() {
                    return Some(Err(SendTimeoutError::Disconnected(())));
                }
                if !raw.recover_tail() {
                    return None;
                }
            },
        );
        match waited {
            Waited::Ready(r, _) => r,
            Waited::TimedOut => Err(SendTimeoutError::Timeout(())),
        }
    }

    /// Closes the sending side for every process: receivers drain what is
    /// queued, then get `Disconnected`; later sends fail.
    pub fn close(&self) {
        close_side(&self.ep.shared, Side::Send);
    }

    /// The queue this endpoint sends into.
    pub fn queue(&self) -> MpmcQueue {
        MpmcQueue {
            shared: self.ep.shared.clone(),
        }
    }
}
