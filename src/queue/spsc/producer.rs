//! [`Producer`]: the pushing end of an [`SpscRing`](super::SpscRing), and
//! [`WriteGrant`] for zero-copy pushes.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use super::handle::{EndpointError, Owner, Side};
use super::learn;
use super::ring::{frame_size, max_payload, ProducerCursor, PushError, RawRing, Room, LEN_BYTES};
use crate::os::Deadline;
use crate::primitives::{Ordering, SpinBudget};
use crate::queue::error::{SendError, SendTimeoutError, TrySendError};
use crate::sync::guard_count::Held;
use crate::sync::notifier::{wait_with, Slices, Waited};

/// The producing end of an [`SpscRing`](super::SpscRing). Not `Sync`: one
/// thread pushes.
///
/// ```
/// use shmkit::queue::SpscRing;
///
/// let ring = SpscRing::in_process(64)?;
/// let mut tx = ring.producer()?;
/// let mut rx = ring.consumer()?;
/// // Zero-copy: write into the ring, then publish.
/// let mut g = tx.reserve(5).unwrap();
/// g.copy_from_slice(b"12345");
/// g.commit(5);
/// assert_eq!(&*rx.read().unwrap(), b"12345");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer {
    pub(super) ring: Arc<RawRing>,
    pub(super) cur: ProducerCursor,
    owner: Owner,
    /// Adaptive spin before parking while full (process-local).
    spin: SpinBudget,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("tail", &self.cur.tail)
            .field("owner", &self.owner)
            .finish()
    }
}

/// One non-blocking push attempt: ownership, a closed consumer, then the
/// ring itself.
#[inline]
fn try_push_parts(
    ring: &RawRing,
    owner: &mut Owner,
    cur: &mut ProducerCursor,
    msg: &[u8],
) -> Result<(), PushError> {
    if !owner.ensure(ring, cur) || ring.consumers().is_closed() {
        return Err(PushError::Disconnected);
    }
    cur.try_push(ring, msg)
}

impl Producer {
    pub(super) fn new(ring: Arc<RawRing>) -> Result<Self, EndpointError> {
        let (owner, cur) = Owner::claim::<ProducerCursor>(&ring, Side::Producer)?;
        Ok(Producer {
            ring,
            cur,
            owner,
            spin: SpinBudget::default(),
            _not_sync: PhantomData,
        })
    }

    /// Pushes one frame if there is room right now.
    pub fn try_push<'a>(&mut self, msg: &'a [u8]) -> Result<(), TrySendError<&'a [u8]>> {
        match try_push_parts(&self.ring, &mut self.owner, &mut self.cur, msg) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(TrySendError::Full(msg)),
            Err(PushError::TooLarge) => Err(TrySendError::TooLarge(msg)),
            Err(PushError::Disconnected) => Err(TrySendError::Disconnected(msg)),
        }
    }

    /// Pushes one frame, blocking while the ring is full. Fails if the
    /// consumer closed or died (`Disconnected`) or the frame can never fit.
    pub fn push<'a>(&mut self, msg: &'a [u8]) -> Result<(), SendError<&'a [u8]>> {
        self.push_until(msg, None).map_err(|e| match e {
            SendTimeoutError::TooLarge(m) => SendError::TooLarge(m),
            SendTimeoutError::Disconnected(m) | SendTimeoutError::Timeout(m) => {
                SendError::Disconnected(m)
            }
        })
    }

    /// [`push`](Producer::push) with a timeout.
    pub fn push_timeout<'a>(
        &mut self,
        msg: &'a [u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.push_until(msg, Some(Deadline::after(timeout)))
    }

    /// [`push`](Producer::push) with an absolute deadline.
    pub fn push_deadline<'a>(
        &mut self,
        msg: &'a [u8],
        deadline: Deadline,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        self.push_until(msg, Some(deadline))
    }

    fn push_until<'a>(
        &mut self,
        msg: &'a [u8],
        deadline: Option<Deadline>,
    ) -> Result<(), SendTimeoutError<&'a [u8]>> {
        // Fast path: room right now, no spin state touched.
        match self.try_push(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(m)) => return Err(SendTimeoutError::Disconnected(m)),
            Err(TrySendError::TooLarge(m)) => return Err(SendTimeoutError::TooLarge(m)),
        }
        let ring = &*self.ring;
        let (owner, cur) = (&mut self.owner, &mut self.cur);
        let mut spinner = self.spin.start();
        let waited = wait_with(
            &ring.hdr().notify.space,
            ring.handshake(),
            deadline,
            Slices::LIVENESS,
            &mut spinner,
            |probe| match try_push_parts(ring, owner, cur, msg) {
                Err(PushError::Full) => {
                    // The liveness check costs syscalls: only once a park
                    // slice ended and there is still no room.
                    let gone = probe.after_park() && Side::Producer.peer(ring).is_disconnected();
                    gone.then_some(Err(PushError::Disconnected))
                }
                other => Some(other),
            },
        );
        match waited {
            Waited::Ready(r, phase) => {
                self.spin = learn(self.spin, phase, &spinner);
                match r {
                    Ok(()) => Ok(()),
                    Err(PushError::TooLarge) => Err(SendTimeoutError::TooLarge(msg)),
                    Err(_) => Err(SendTimeoutError::Disconnected(msg)),
                }
            }
            Waited::TimedOut => Err(SendTimeoutError::Timeout(msg)),
        }
    }

    /// Pushes as many of `msgs` (in order) as fit right now and publishes
    /// them with one index store and at most one wake-up. Returns how many
    /// were pushed; stops at the first that does not fit (or can never
    /// fit, or when the consumer is gone).
    pub fn push_batch(&mut self, msgs: &[&[u8]]) -> usize {
        let ring = &*self.ring;
        if !self.owner.ensure(ring, &mut self.cur) || ring.consumers().is_closed() {
            return 0;
        }
        let cur = &mut self.cur;
        let start_tail = cur.tail;
        let start_pushed = cur.pushed;
        let mut n = 0;
        for msg in msgs {
            let fsize = match frame_size(msg.len()) {
                Some(f) if msg.len() <= max_payload(ring.cap) => f,
                _ => break,
            };
            // `place` works on `cur.tail`; advance it locally, publish once.
            match cur.place(ring, fsize) {
                Ok(at) => {
                    ProducerCursor::write_frame(ring, at, msg);
                    cur.tail = at.wrapping_add(fsize);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if n > 0 || cur.tail != start_tail {
            let tail = cur.tail;
            cur.publish(ring, tail, start_pushed.wrapping_add(n as u64));
        }
        n
    }

    /// Reserves room for a frame of up to `len` bytes and returns a grant
    /// to write it in place. Nothing is visible to the consumer until
    /// [`WriteGrant::commit`]; dropping the grant publishes nothing.
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, TrySendError<usize>> {
        let ring = &*self.ring;
        if !self.owner.ensure(ring, &mut self.cur) || ring.consumers().is_closed() {
            return Err(TrySendError::Disconnected(len));
        }
        let fsize = match frame_size(len) {
            Some(f) if len <= max_payload(ring.cap) => f,
            _ => return Err(TrySendError::TooLarge(len)),
        };
        match self.cur.place(ring, fsize) {
            Ok(at) => Ok(WriteGrant {
                producer: self,
                at,
                len,
                held: Held::enter(),
            }),
            Err(Room::Full) => Err(TrySendError::Full(len)),
            Err(_) => Err(TrySendError::Disconnected(len)),
        }
    }

    /// Makes sure this process owns the producer side (taking it over from
    /// the parent after a fork). Returns false if another live process
    /// holds it.
    pub fn claim(&mut self) -> bool {
        self.owner.ensure(&self.ring, &mut self.cur)
    }

    /// Closes the producer side for good: the consumer drains what was
    /// committed, then gets `Disconnected`. No producer can attach again.
    pub fn close(&mut self) {
        self.ring.producers().close();
        self.ring.hdr().notify.data.notify_all();
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.hdr().cons.pos.load(Ordering::Acquire) == self.cur.tail
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&mut self) -> bool {
        !matches!(self.cur.room(&self.ring, 8), Room::Ok)
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.cap
    }

    /// Whether the consumer side is gone by the registry's disconnection
    /// rule (a liveness check: a few syscalls).
    pub fn is_disconnected(&self) -> bool {
        self.ring.consumers().is_disconnected()
    }

    /// Waits until the consumer has taken every committed frame, or
    /// `timeout` passes (`None`: no limit), or the consumer is gone with
    /// frames left ([`DrainError`](crate::queue::DrainError)); see
    /// [`MpmcQueue::wait_drained`](crate::queue::MpmcQueue::wait_drained).
    ///
    /// ```
    /// use shmkit::queue::{DrainError, SpscRing};
    /// use std::time::Duration;
    ///
    /// let ring = SpscRing::anonymous(1024)?;
    /// let mut tx = ring.producer()?;
    /// tx.push(b"frame")?;
    /// assert_eq!(tx.wait_drained(Some(Duration::from_millis(1))), Err(DrainError::Timeout));
    /// let mut rx = ring.consumer()?;
    /// let mut buf = Vec::new();
    /// rx.pop(&mut buf)?;
    /// assert_eq!(buf, b"frame");
    /// assert_eq!(tx.wait_drained(None), Ok(()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_drained(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), crate::queue::DrainError> {
        crate::queue::drain::wait_drained(
            timeout,
            || self.is_empty(),
            || self.ring.consumers().is_disconnected(),
        )
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.owner.release(&self.ring);
    }
}

/// Room for one frame, written in place; see [`Producer::reserve`].
///
/// Dropping it without [`commit`](Self::commit) (a panic's unwind
/// included) publishes nothing and leaves the ring as it was. While a
/// grant is alive, [`process::fork`](crate::process::fork()) refuses; a
/// copy that reached a child some other way refuses to write or commit.
pub struct WriteGrant<'a> {
    producer: &'a mut Producer,
    at: u64,
    len: usize,
    held: Held,
}

impl WriteGrant<'_> {
    /// Publishes the first `len` bytes of the grant as one frame.
    ///
    /// # Panics
    /// If `len` exceeds the reserved length, or in a process other than
    /// the one that reserved it.
    pub fn commit(self, len: usize) {
        self.held.assert_owner("WriteGrant");
        assert!(
            len <= self.len,
            "commit({len}) exceeds the reserved {} bytes",
            self.len
        );
        let at = self.at;
        let p = self.producer;
        let ring = &*p.ring;
        ring.write_len(at & ring.mask(), len as u32);
        // frame_size cannot fail: len <= reserved len, which fit.
        let fsize = frame_size(len).unwrap_or(0);
        let pushed = p.cur.pushed.wrapping_add(1);
        p.cur.publish(ring, at.wrapping_add(fsize), pushed);
    }

    fn payload_ptr(&self) -> *mut u8 {
        self.held.assert_owner("WriteGrant");
        let ring = &*self.producer.ring;
        ring.at((self.at & ring.mask()) + LEN_BYTES)
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `place` reserved `len` payload bytes at this offset, inside
        // the buffer and owned by the producer until published; `&self`
        // borrows the producer, so nothing else writes them in this process.
        unsafe { std::slice::from_raw_parts(self.payload_ptr(), self.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.payload_ptr(), self.len) }
    }
}

impl fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.len)
            .finish()
    }
}
