//! Select's view of a ring endpoint (crate-internal): the notifier a
//! blocked pop or push sleeps on, and a readiness check that only loads
//! shared indices (plus the registry's liveness rule when asked), so that
//! `select` and the async waiter thread can wait on a ring without
//! touching the endpoint's process-local cursor.

use std::sync::Arc;

use super::ring::{check_indices, frame_size, RawRing};
use super::{Consumer, Producer};
use crate::primitives::Ordering;
use crate::sync::Notifier;

/// What a [`RingWatch`] waits for.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// A committed frame past the consumer's `head`.
    Frame { head: u64 },
    /// A committed frame past the consumer's published head (for a
    /// long-lived probe while the consumer keeps popping).
    AnyFrame,
    /// Room for a frame of `fsize` bytes at the producer's `tail`.
    Room { tail: u64, fsize: u64 },
}

/// An owned readiness probe of one ring endpoint, taken at a moment when
/// the endpoint's cursor is not moving (the endpoint is borrowed by a
/// pending future, or by a selector until it returns).
pub(crate) struct RingWatch {
    ring: Arc<RawRing>,
    want: Want,
}

impl RingWatch {
    /// The notifier the endpoint's blocking call sleeps on.
    pub(crate) fn notifier(&self) -> &Notifier {
        match self.want {
            Want::Frame { .. } | Want::AnyFrame => &self.ring.hdr().notify.data,
            Want::Room { .. } => &self.ring.hdr().notify.space,
        }
    }

    /// `Some(true)`: the pop/push would not block; `Some(false)`: it
    /// would report `Disconnected` (the other side closed, or with
    /// `liveness` gone by the registry's rule, and nothing left to pop);
    /// `None`: it would block.
    pub(crate) fn readiness(&self, liveness: bool) -> Option<bool> {
        readiness(&self.ring, self.want, liveness)
    }
}

fn readiness(ring: &RawRing, want: Want, liveness: bool) -> Option<bool> {
    let h = ring.hdr();
    let want = match want {
        Want::AnyFrame => Want::Frame {
            head: h.cons.pos.load(Ordering::Acquire),
        },
        other => other,
    };
    match want {
        Want::AnyFrame => None,
        Want::Frame { head } => {
            let has_frame = || h.prod.pos.load(Ordering::Acquire) != head;
            if has_frame() {
                return Some(true);
            }
            let peers = ring.producers();
            if peers.is_closed() || (liveness && peers.is_disconnected()) {
                // Drain first: a frame committed before the close counts.
                return Some(has_frame());
            }
            None
        }
        Want::Room { tail, fsize } => {
            let peers = ring.consumers();
            if peers.is_closed() {
                return Some(false);
            }
            let head = h.cons.pos.load(Ordering::Acquire);
            if check_indices(head, tail, ring.cap).is_err() {
                // Let the push itself report the corruption.
                return Some(true);
            }
            let cap = ring.cap as u64;
            let to_end = cap - (tail & (cap - 1));
            // A frame that does not fit before the end needs a pad first.
            let need = if fsize <= to_end {
                fsize
            } else {
                to_end + fsize
            };
            if cap - (tail - head) >= need.min(cap) {
                return Some(true);
            }
            if liveness && peers.is_disconnected() {
                return Some(false);
            }
            None
        }
    }
}

impl Consumer {
    /// Select's hooks: the notifier a pop sleeps on.
    pub(crate) fn select_notifier(&self) -> &Notifier {
        &(*self.ring).hdr().notify.data
    }

    /// Select's readiness hook (see [`RingWatch::readiness`]).
    pub(crate) fn select_readiness(&self, liveness: bool) -> Option<bool> {
        readiness(
            &self.ring,
            Want::Frame {
                head: self.cur.head,
            },
            liveness,
        )
    }

    /// An owned probe for "a frame is waiting": past the current cursor
    /// (for a future that holds the consumer), or with `live` past
    /// whatever head the consumer has published when it looks.
    pub(crate) fn watch(&self, live: bool) -> RingWatch {
        RingWatch {
            ring: self.ring.clone(),
            want: if live {
                Want::AnyFrame
            } else {
                Want::Frame {
                    head: self.cur.head,
                }
            },
        }
    }
}

impl Producer {
    /// An owned probe for "a frame of `len` payload bytes fits" as of
    /// the current cursor.
    pub(crate) fn watch(&self, len: usize) -> RingWatch {
        let cap = self.ring.cap as u64;
        RingWatch {
            ring: self.ring.clone(),
            want: Want::Room {
                tail: self.cur.tail,
                fsize: frame_size(len).unwrap_or(cap).min(cap),
            },
        }
    }
}
