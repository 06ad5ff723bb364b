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

/// One push attempt as `me`: `None` = full.
#[inline]
fn attempt<'a>(
    ep: &Endpoint,
    raw: &RawQueue,
    msg: &'a [u8],
    me: u32,
) -> Option<Result<(), SendTimeoutError<&'a [u8]>>> {
    if ep.closed() {
        return Some(Err(SendTimeoutError::Disconnected(msg)));
    }
    match raw.try_push(msg, me) {
        Ok(()) => {
            raw.notify_published(&raw.ctl().not_empty);
            Some(Ok(()))
        }
        Err(PushError::TooLarge) => Some(Err(SendTimeoutError::TooLarge(msg))),
        Err(PushError::Corrupt) => Some(Err(SendTimeoutError::Disconnected(msg))),
        Err(PushError::Full) => None,
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
        let Ok(me) = self.ep.me() else {
            return Err(TrySendError::Disconnected(msg));
        };
        if self.ep.closed() {
            return Err(TrySendError::Disconnected(msg));
        }
        let raw = self.raw();
        loop {
            match raw.try_push(msg, me) {
                Ok(()) => {
                    raw.notify_published(&raw.ctl().not_empty);
                    return Ok(());
                }
                Err(PushError::TooLarge) => return Err(TrySendError::TooLarge(msg)),
                Err(PushError::Corrupt) => return Err(TrySendError::Disconnected(msg)),
                Err(PushError::Full) => {}
            }
            let other = self.ep.other();
            if !self.ep.gate.due(&other) {
                return Err(TrySendError::Full(msg));
            }
            if other.is_disconnected() {
                return Err(TrySendError::Disconnected(msg));
            }
            if !raw.recover_tail() {
                return Err(TrySendError::Full(msg));
            }
        }
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
        let Ok(me) = self.ep.me() else {
            return Err(SendTimeoutError::Disconnected(msg));
        };
        let (ep, raw) = (&self.ep, self.raw());
        if let Some(r) = attempt(ep, raw, msg, me) {
            return r;
        }
        let waited = wait_with(
            &raw.ctl().not_full,
            raw.handshake(),
            deadline,
            Slices::LIVENESS,
            &mut Backoff::new(),
            |probe| loop {
                if let Some(r) = attempt(ep, raw, msg, me) {
                    return Some(r);
                }
                // Still full. Look for the dead when a whole slice passed
                // without a wake-up, or at once when an endpoint left.
                let other = ep.other();
                if probe != Probe::Expired && !ep.gate.departed(&other) {
                    return None;
                }
                ep.gate.mark(&other);
                if other.is_disconnected() {
                    return Some(Err(SendTimeoutError::Disconnected(msg)));
                }
                if !raw.recover_tail() {
                    return None;
                }
            },
        );
        match waited {
            Waited::Ready(r, _) => r,
            Waited::TimedOut => Err(SendTimeoutError::Timeout(msg)),
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
