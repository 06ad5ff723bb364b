//! Which processes hold which end of a queue, so that a dead peer reads as
//! a closed one.
//!
//! A queue segment holds one [`PeerTable`] per side (senders, receivers):
//! a small header and a fixed array of [`PeerSlot`]s. A process registers
//! when it opens an endpoint (claiming a free slot, or one whose pid is
//! dead) and deregisters when its last endpoint on that side drops. A side
//! is *disconnected* once it has ever had a member and now has no live
//! one — whether its members closed cleanly or were SIGKILLed. Waiters
//! check this after each bounded park slice, so a blocked receiver whose
//! only sender died returns `Disconnected` within one slice.

use crate::error::AttachError;
use crate::os;
use crate::primitives::{AtomicU32, Ordering};

/// One registered process: its pid (0 = free) and how many endpoints of
/// this side it holds. `#[repr(C)]`, 8 bytes.
#[repr(C)]
#[derive(Debug, Default)]
pub struct PeerSlot {
    pid: AtomicU32,
    handles: AtomicU32,
}

/// Header of a peer table, followed in memory by its slots. `#[repr(C)]`,
/// 8 bytes: `ever: u32` (nonzero once anyone registered), `closed: u32`
/// (nonzero once the side was explicitly closed for good).
#[repr(C)]
#[derive(Debug, Default)]
pub struct PeerTableHeader {
    ever: AtomicU32,
    closed: AtomicU32,
}

/// A view of one side's registry: a header plus `slots`.
///
/// ```
/// use shmkit::queue::peers::{PeerSlot, PeerTable, PeerTableHeader};
///
/// let header = PeerTableHeader::default();
/// let slots: Vec<PeerSlot> = (0..4).map(|_| PeerSlot::default()).collect();
/// let table = PeerTable::new(&header, &slots);
/// assert!(!table.is_disconnected()); // nobody ever joined: not closed yet
/// let me = table.register().unwrap();
/// assert_eq!(table.live_count(), 1);
/// table.unregister(me);
/// assert!(table.is_disconnected()); // had a member, now none
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PeerTable<'a> {
    header: &'a PeerTableHeader,
    slots: &'a [PeerSlot],
}

/// No free slot was left for another process on this side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many processes attached to this side of the queue ({0} slots, all held by live processes)"
)]
pub struct PeersFull(pub usize);

impl<'a> PeerTable<'a> {
    /// Views a header and its slots.
    pub fn new(header: &'a PeerTableHeader, slots: &'a [PeerSlot]) -> Self {
        Self { header, slots }
    }

    /// Registers one endpoint of the calling process; returns its slot.
    pub fn register(&self) -> Result<usize, PeersFull> {
        let me = os::current_pid();
        // Already registered (another handle in this process)?
        for (i, s) in self.slots.iter().enumerate() {
            if s.pid.load(Ordering::Acquire) == me {
                s.handles.fetch_add(1, Ordering::AcqRel);
                // Re-check: a concurrent last-unregister may have freed it.
                if s.pid.load(Ordering::Acquire) == me {
                    self.header.ever.store(1, Ordering::Release);
                    return Ok(i);
                }
                s.handles.fetch_sub(1, Ordering::AcqRel);
            }
        }
        for (i, s) in self.slots.iter().enumerate() {
            if self.claim_free_or_dead(s, me) {
                return Ok(i);
            }
        }
        Err(PeersFull(self.slots.len()))
    }

    /// Claims `s` for `me` (with one handle) if it is free or held by a
    /// dead process other than `me`; returns whether the claim succeeded.
    fn claim_free_or_dead(&self, s: &PeerSlot, me: u32) -> bool {
        let pid = s.pid.load(Ordering::Acquire);
        let claimable = pid == 0 || (pid != me && !os::process_alive(pid));
        claimable && self.claim_from(s, pid, me)
    }

    /// Moves `s` from pid `from` to `me`, with one handle, if it still
    /// holds `from`; returns whether it did.
    fn claim_from(&self, s: &PeerSlot, from: u32, me: u32) -> bool {
        if s.pid
            .compare_exchange(from, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            s.handles.store(1, Ordering::Release);
            self.header.ever.store(1, Ordering::Release);
            return true;
        }
        false
    }

    /// Drops one endpoint registered in `slot` by this process; frees the
    /// slot when it was the process's last one. Out-of-range or foreign
    /// slots are ignored.
    pub fn unregister(&self, slot: usize) {
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        let me = os::current_pid();
        if s.pid.load(Ordering::Acquire) != me {
            return;
        }
        if s.handles.fetch_sub(1, Ordering::AcqRel) <= 1 {
            s.handles.store(0, Ordering::Release);
            let _ = s
                .pid
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Pid registered in `slot` (0 when free or out of range). Used by
    /// single-owner endpoints to check cheaply that they still own it.
    #[inline]
    pub fn slot_pid(&self, slot: usize) -> u32 {
        self.slots
            .get(slot)
            .map_or(0, |s| s.pid.load(Ordering::Relaxed))
    }

    /// Claims `slot` exclusively for the calling process if it is free or
    /// held by a dead process (not if this process already holds it).
    /// Returns whether the claim succeeded.
    pub fn claim_exclusive(&self, slot: usize) -> bool {
        let Some(s) = self.slots.get(slot) else {
            return false;
        };
        self.claim_free_or_dead(s, os::current_pid())
    }

    /// Moves `slot` from process `from` (e.g. the parent this process was
    /// forked from, whose handle it inherited) to the calling process.
    /// Returns whether the slot was held by `from` and is now ours.
    pub fn take_over(&self, slot: usize, from: u32) -> bool {
        let Some(s) = self.slots.get(slot) else {
            return false;
        };
        let me = os::current_pid();
        if from == 0 || from == me {
            return false;
        }
        self.claim_from(s, from, me)
    }

    /// Marks the side closed for good (e.g. `close()` on a sender): the
    /// other side sees it disconnected even while this process lives.
    pub fn close(&self) {
        self.header.ever.store(1, Ordering::Release);
        self.header.closed.store(1, Ordering::Release);
    }

    /// Whether the side was explicitly closed.
    pub fn is_closed(&self) -> bool {
        self.header.closed.load(Ordering::Acquire) != 0
    }

    /// Number of slots held by live processes (dead holders' slots are
    /// freed as a side effect).
    pub fn live_count(&self) -> usize {
        let mut n = 0;
        for s in self.slots {
            let pid = s.pid.load(Ordering::Acquire);
            if pid == 0 {
                continue;
            }
            if os::process_alive(pid) {
                n += 1;
            } else {
                let _ = s
                    .pid
                    .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
            }
        }
        n
    }

    /// True once the side is closed, or has had members and none is alive.
    pub fn is_disconnected(&self) -> bool {
        self.is_closed()
            || (self.header.ever.load(Ordering::Acquire) != 0 && self.live_count() == 0)
    }

    /// Checks a table read from foreign memory (slot pids above the kernel's
    /// limit are cleared rather than trusted).
    pub fn validate(&self) -> Result<(), AttachError> {
        for s in self.slots {
            if s.pid.load(Ordering::Relaxed) > i32::MAX as u32 {
                s.pid.store(0, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
