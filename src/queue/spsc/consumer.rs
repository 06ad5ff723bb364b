//! [`Consumer`]: the popping end of an [`SpscRing`](super::SpscRing), and
//! [`ReadGrant`] for zero-copy pops.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use super::handle::{EndpointError, Owner, Side};
use super::learn;
use super::ring::{ConsumerCursor, Frame, Peeked, RawRing};
use crate::os::Deadline;
use crate::primitives::{Ordering, SpinBudget};
use crate::queue::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::queue::peers::LivenessGate;
use crate::sync::guard_count::Held;
use crate::sync::notifier::{wait_with, Slices, Waited};

/// `try_pop_into` could not deliver a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryPopIntoError {
    /// Nothing queued (or the queue is disconnected/corrupt).
    #[error(transparent)]
    Recv(#[from] TryRecvError),
    /// The next frame is `needed` bytes, larger than the buffer; it was not
    /// consumed.
    #[error("buffer too small: the next frame is {needed} bytes")]
    BufferTooSmall {
        /// Length of the waiting frame.
        needed: usize,
    },
}

/// The consuming end of an [`SpscRing`](super::SpscRing). Not `Sync`: one
/// thread pops.
///
/// ```
/// use shmkit::queue::SpscRing;
///
/// let ring = SpscRing::in_process(64)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_push(b"ab").unwrap();
/// let mut buf = [0u8; 8];
/// assert_eq!(rx.try_pop_into(&mut buf), Ok(2));
/// assert_eq!(&buf[..2], b"ab");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    pub(super) ring: Arc<RawRing>,
    pub(super) cur: ConsumerCursor,
    owner: Owner,
    /// When an empty `try_pop` may check the producer's liveness.
    gate: LivenessGate,
    /// Liveness checks the gate let through (every 16th asks the kernel).
    dues: u32,
    /// Adaptive spin before parking while empty (process-local).
    spin: SpinBudget,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.cur.head)
            .field("owner", &self.owner)
            .finish()
    }
}

/// How many due liveness checks of an empty non-blocking poll look only
/// at shared memory before one asks the kernel whether the registered
/// producer still lives (about every 16 ms of polling).
const KERNEL_CHECK_EVERY: u32 = 16;

/// The next committed frame, or why there is none. An empty ring reads
/// as `Disconnected` (after draining) once the producer side is gone: the
/// closed flag is looked at on every call; liveness in full when `check`
/// is set (after a park slice). A non-blocking poll, when the gate says a
/// check is due (once a millisecond), looks at the registry in shared
/// memory (a producer that left has cleared its slot: no syscall), and
/// only every [`KERNEL_CHECK_EVERY`]th time asks the kernel whether the
/// registered producer still lives (a SIGKILLed one clears nothing).
#[inline(always)]
fn next_frame(
    ring: &RawRing,
    owner: &mut Owner,
    cur: &mut ConsumerCursor,
    gate: &LivenessGate,
    dues: &mut u32,
    check: bool,
) -> Result<Frame, TryRecvError> {
    // The per-message path: this process owns the side and a plain frame
    // is committed; an empty ring goes straight to the liveness rule.
    // Everything else (pad, takeover, corruption) goes through the full,
    // out-of-line path.
    if owner.is_current() {
        match cur.peek_ready(ring) {
            Peeked::Frame(f) => return Ok(f),
            Peeked::Empty => return when_empty(ring, cur, gate, dues, check),
            Peeked::Other => {}
        }
    }
    next_frame_slow(ring, owner, cur, gate, dues, check)
}

#[inline(never)]
fn next_frame_slow(
    ring: &RawRing,
    owner: &mut Owner,
    cur: &mut ConsumerCursor,
    gate: &LivenessGate,
    dues: &mut u32,
    check: bool,
) -> Result<Frame, TryRecvError> {
    if !owner.ensure(ring, cur) {
        return Err(TryRecvError::Disconnected);
    }
    if let Some(f) = cur.peek(ring)? {
        return Ok(f);
    }
    when_empty(ring, cur, gate, dues, check)
}

/// Nothing is committed: `Empty`, unless the producer side is closed or
/// gone (by the liveness rule), in which case whatever it committed in
/// the meantime is still delivered before `Disconnected`.
#[inline(never)]
fn when_empty(
    ring: &RawRing,
    cur: &mut ConsumerCursor,
    gate: &LivenessGate,
    dues: &mut u32,
    check: bool,
) -> Result<Frame, TryRecvError> {
    let table = Side::Consumer.peer(ring);
    let gone = table.is_closed()
        || if check {
            table.is_disconnected()
        } else if gate.due(&table) {
            *dues = dues.wrapping_add(1);
            (table.slot_pid(0) == 0 || *dues % KERNEL_CHECK_EVERY == 0) && table.is_disconnected()
        } else {
            false
        };
    if !gone {
        return Err(TryRecvError::Empty);
    }
    // Drain: everything committed before the close/death is delivered;
    // the next empty poll looks again at once.
    gate.recheck_next();
    cur.peek(ring)?.ok_or(TryRecvError::Disconnected)
}

impl Consumer {
    pub(super) fn new(ring: Arc<RawRing>) -> Result<Self, EndpointError> {
        let (owner, cur) = Owner::claim::<ConsumerCursor>(&ring, Side::Consumer)?;
        Ok(Consumer {
            ring,
            cur,
            owner,
            gate: LivenessGate::default(),
            dues: 0,
            spin: SpinBudget::default(),
            _not_sync: PhantomData,
        })
    }

    #[inline]
    fn next(&mut self) -> Result<Frame, TryRecvError> {
        next_frame(
            &self.ring,
            &mut self.owner,
            &mut self.cur,
            &self.gate,
            &mut self.dues,
            false,
        )
    }

    #[inline]
    fn consume(&mut self, f: Frame) {
        self.cur.consume(&self.ring, f);
    }

    #[inline]
    fn payload(&self, f: Frame) -> &[u8] {
        ConsumerCursor::payload(&self.ring, f)
    }

    /// Pops one frame into `buf` (cleared first) if one is committed.
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<(), TryRecvError> {
        let f = self.next()?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// Pops one frame into `buf`, returning its length. If the frame is
    /// longer than `buf`, it stays queued and `BufferTooSmall` says how
    /// long it is.
    pub fn try_pop_into(&mut self, buf: &mut [u8]) -> Result<usize, TryPopIntoError> {
        let f = self.next()?;
        if f.len > buf.len() {
            return Err(TryPopIntoError::BufferTooSmall { needed: f.len });
        }
        buf[..f.len].copy_from_slice(self.payload(f));
        self.consume(f);
        Ok(f.len)
    }

    /// Borrows the next frame in place (zero-copy). The frame is consumed
    /// when the grant is released or dropped.
    pub fn read(&mut self) -> Result<ReadGrant<'_>, TryRecvError> {
        let f = self.next()?;
        Ok(ReadGrant {
            consumer: self,
            f,
            held: Held::enter(),
        })
    }

    /// Calls `f` on up to `max` committed frames in order, then publishes
    /// the new head once. Returns how many were handed to `f`; `Empty` /
    /// `Disconnected` only when there was none.
    ///
    /// If `f` panics, the frames handed to it so far (the one it panicked
    /// on included) count as popped and the head is published during the
    /// unwind: the ring stays consistent and usable.
    pub fn try_pop_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, TryRecvError> {
        let mut frame = self.next()?;
        let ring = &*self.ring;
        // Publishes the head when the batch ends, by return or by unwind.
        let batch = HeadOnDrop {
            ring,
            cur: &mut self.cur,
        };
        let mut n = 0;
        loop {
            // Step past the frame first: its bytes stay unpublished (ours)
            // until `batch` drops, after `f` returned or panicked.
            batch.cur.advance(frame);
            f(ConsumerCursor::payload(ring, frame));
            n += 1;
            if n >= max || batch.cur.head == batch.cur.tail_cache {
                break;
            }
            // Only frames below the cached tail: no reload mid-batch.
            match batch.cur.peek(ring) {
                Ok(Some(fr)) => frame = fr,
                _ => break,
            }
        }
        drop(batch);
        Ok(n)
    }

    /// Pops one frame into `buf`, blocking while the ring is empty.
    /// Returns `Disconnected` once the producer side is gone (see the
    /// registry's disconnection rule) and every committed frame has been
    /// popped.
    pub fn pop(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let f = self.wait_frame(None).map_err(|e| match e {
            RecvTimeoutError::Corrupt(c) => RecvError::Corrupt(c),
            _ => RecvError::Disconnected,
        })?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// [`pop`](Consumer::pop) with a timeout.
    pub fn pop_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), RecvTimeoutError> {
        self.pop_deadline(buf, Deadline::after(timeout))
    }

    /// [`pop`](Consumer::pop) with an absolute deadline.
    pub fn pop_deadline(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Deadline,
    ) -> Result<(), RecvTimeoutError> {
        let f = self.wait_frame(Some(deadline))?;
        buf.clear();
        buf.extend_from_slice(self.payload(f));
        self.consume(f);
        Ok(())
    }

    /// Blocking [`read`](Consumer::read): waits for a frame (or `deadline`).
    pub fn read_blocking(
        &mut self,
        deadline: Option<Deadline>,
    ) -> Result<ReadGrant<'_>, RecvTimeoutError> {
        let f = self.wait_frame(deadline)?;
        Ok(ReadGrant {
            consumer: self,
            f,
            held: Held::enter(),
        })
    }

    /// Waits until a frame is committed, without consuming it (`Ok`), or
    /// until the producer is gone and everything was drained
    /// (`Disconnected`), or `deadline` passes.
    pub fn wait_ready(&mut self, deadline: Option<Deadline>) -> Result<(), RecvTimeoutError> {
        self.wait_frame(deadline).map(|_| ())
    }

    /// Makes sure this process owns the consumer side (taking it over from
    /// the parent after a fork). Returns false if another live process
    /// holds it.
    pub fn claim(&mut self) -> bool {
        self.owner.ensure(&self.ring, &mut self.cur)
    }

    /// Waits until a frame is committed (it is not consumed).
    fn wait_frame(&mut self, deadline: Option<Deadline>) -> Result<Frame, RecvTimeoutError> {
        let map = |e: TryRecvError| match e {
            TryRecvError::Corrupt(c) => RecvTimeoutError::Corrupt(c),
            _ => RecvTimeoutError::Disconnected,
        };
        // Fast path: a frame is already committed, no spin state touched.
        match self.next() {
            Ok(f) => return Ok(f),
            Err(TryRecvError::Empty) => {}
            Err(e) => return Err(map(e)),
        }
        let ring = &*self.ring;
        let (owner, cur, gate, dues) = (&mut self.owner, &mut self.cur, &self.gate, &mut self.dues);
        let mut spinner = self.spin.start();
        let waited = wait_with(
            &ring.hdr().notify.data,
            ring.handshake(),
            deadline,
            Slices::LIVENESS,
            &mut spinner,
            // The liveness check (syscalls) only once a park slice ended.
            |probe| match next_frame(ring, owner, cur, gate, dues, probe.after_park()) {
                Err(TryRecvError::Empty) => None,
                other => Some(other),
            },
        );
        match waited {
            Waited::Ready(r, phase) => {
                self.spin = learn(self.spin, phase, &spinner);
                r.map_err(map)
            }
            Waited::TimedOut => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Closes the consumer side for good: the producer's pushes fail with
    /// `Disconnected`. No consumer can attach again.
    pub fn close(&mut self) {
        self.ring.consumers().close();
        self.ring.hdr().notify.space.notify_all();
    }

    /// Frames queued (pushed and not yet popped); a snapshot.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no committed bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.hdr().prod.pos.load(Ordering::Acquire) == self.cur.head
    }

    /// Whether not even the smallest frame fits right now.
    pub fn is_full(&self) -> bool {
        let tail = self.ring.hdr().prod.pos.load(Ordering::Acquire);
        (self.ring.cap as u64).saturating_sub(tail.wrapping_sub(self.cur.head)) < 8
    }

    /// Capacity of the frame buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.cap
    }

    /// Whether the producer side is gone by the registry's disconnection
    /// rule (a liveness check: a few syscalls).
    pub fn is_disconnected(&self) -> bool {
        self.ring.producers().is_disconnected()
    }
}

/// Publishes a batch's head when dropped (also during an unwind).
struct HeadOnDrop<'a> {
    ring: &'a RawRing,
    cur: &'a mut ConsumerCursor,
}

impl Drop for HeadOnDrop<'_> {
    fn drop(&mut self) {
        self.cur.publish_head(self.ring);
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.owner.release(&self.ring);
    }
}

/// One frame borrowed in place; see [`Consumer::read`]. Dereferences to the
/// payload. Releasing (or dropping) it consumes the frame, also when it is
/// dropped by a panic's unwind.
///
/// While a grant is alive, [`process::fork`](crate::process::fork()) refuses
/// (a forked child must not share the borrowed bytes); a copy that reached
/// a child some other way refuses to read and consumes nothing.
///
/// The bytes live in shared memory: a misbehaving process with write
/// access could change them while they are borrowed (never their location
/// or length).
pub struct ReadGrant<'a> {
    consumer: &'a mut Consumer,
    f: Frame,
    held: Held,
}

impl ReadGrant<'_> {
    /// Consumes the frame (same as dropping the grant).
    pub fn release(self) {}
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.held.assert_owner("ReadGrant");
        self.consumer.payload(self.f)
    }
}

impl Drop for ReadGrant<'_> {
    fn drop(&mut self) {
        // Only the process that took the grant consumes its frame.
        if self.held.in_owner_process() {
            let f = self.f;
            self.consumer.consume(f);
        }
    }
}

impl fmt::Debug for ReadGrant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGrant")
            .field("len", &self.f.len)
            .finish()
    }
}
