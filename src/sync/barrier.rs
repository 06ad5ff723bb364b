//! [`Barrier`]: a reusable process-shared barrier for `n` participants,
//! with Python's `multiprocessing.Barrier` semantics: [`abort`],
//! [`reset`], [`is_broken`], [`n_waiting`], and a broken barrier as an
//! error value ([`BrokenBarrierError`]).
//!
//! [`abort`]: Barrier::abort
//! [`reset`]: Barrier::reset
//! [`is_broken`]: Barrier::is_broken
//! [`n_waiting`]: Barrier::n_waiting

use std::time::Duration;

use super::notifier::Notifier;
use crate::error::AttachError;
use crate::os::{self, Deadline};
use crate::primitives::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{ObjectKind, ShmObject};

/// Most participants a barrier can have (the `arrived` field's width).
pub const MAX_PARTIES: u32 = (1 << 23) - 1;
/// Processes whose waits a barrier tracks for liveness at once.
#[cfg(not(loom))]
pub const MEMBER_SLOTS: usize = 16;
/// Processes whose waits a barrier tracks for liveness at once (fewer
/// under loom, to keep the models small).
#[cfg(loom)]
pub const MEMBER_SLOTS: usize = 4;

const ARRIVED_MASK: u64 = (1 << 23) - 1;
const BROKEN: u64 = 1 << 23;
const HISTORY_SHIFT: u32 = 24;
const HISTORY_BITS: u64 = 8;
const GEN_SHIFT: u32 = 32;

const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(64);

fn generation(s: u64) -> u32 {
    (s >> GEN_SHIFT) as u32
}

fn history(s: u64) -> u64 {
    (s >> HISTORY_SHIFT) & 0xff
}

/// The state that starts the round after `s`; `reset` records how `s`'s
/// round ended.
fn next_round(s: u64, reset: bool) -> u64 {
    let gen = u64::from(generation(s).wrapping_add(1));
    let hist = ((history(s) << 1) | u64::from(reset)) & 0xff;
    (gen << GEN_SHIFT) | (hist << HISTORY_SHIFT)
}

/// Returned by a successful [`Barrier::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    index: u32,
    is_leader: bool,
}

impl BarrierWaitResult {
    /// Whether this waiter was the last to arrive in its round (exactly
    /// one per round; Python's `wait() == parties - 1`).
    pub fn is_leader(&self) -> bool {
        self.is_leader
    }

    /// The order of arrival in the round, `0..parties` (Python's return
    /// value of `wait()`); the leader's is `parties - 1`.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// The barrier is broken: it was [`abort`](Barrier::abort)ed or
/// [`reset`](Barrier::reset) while this call waited, a waiter timed out,
/// or a participant died while waiting (Python's `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken (aborted, reset, a waiter timed out, or a participant died while waiting); call reset() to use it again")]
pub struct BrokenBarrierError;

/// Why a bounded [`Barrier::wait_timeout`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarrierWaitError {
    /// See [`BrokenBarrierError`].
    #[error(transparent)]
    Broken(#[from] BrokenBarrierError),
    /// The round did not complete in time. This call broke the barrier
    /// (as Python does): every other waiter gets `Broken`.
    #[error(
        "timed out waiting at the barrier; the barrier is now broken: call reset() to use it again"
    )]
    TimedOut,
}

/// A barrier that releases its `n` participants together, reusable for any
/// number of rounds (Python's `multiprocessing.Barrier`, without the
/// `action` callable: the [leader](BarrierWaitResult::is_leader) can run it).
///
/// Layout: `#[repr(C)]`, 152 bytes, align 8: `{ parties: u32, pad: u32,
/// state: u64, notifier: Notifier (8), members: [u64; 16] }` (see the
/// state word below; a member is `pid | waiting << 32`).
/// All-zero is refused on attach (zero parties).
///
/// Peer death: a participant that dies while waiting breaks the barrier
/// within one park slice ([`BrokenBarrierError`] for everyone); one that
/// dies before it arrives leaves the others waiting — use
/// [`wait_timeout`](Barrier::wait_timeout) when that matters.
///
/// ```
/// use shmkit::sync::{Barrier, BarrierWaitError};
/// use std::time::Duration;
///
/// let b = Barrier::new(2);
/// let leaders = std::thread::scope(|s| {
///     let t = s.spawn(|| b.wait().unwrap().is_leader() as u32);
///     b.wait().unwrap().is_leader() as u32 + t.join().unwrap()
/// });
/// assert_eq!(leaders, 1);
///
/// // Nobody else comes: the timed-out waiter breaks the barrier.
/// assert_eq!(b.wait_timeout(Duration::from_millis(5)), Err(BarrierWaitError::TimedOut));
/// assert!(b.is_broken());
/// assert!(b.wait().is_err());
/// b.reset();
/// assert!(!b.is_broken());
/// ```
///
/// # State word
///
/// One 64-bit word holds the whole round state, changed only by CAS:
///
/// | bits | field | meaning |
/// |---|---|---|
/// | 0..23 | `arrived` | participants counted in this round |
/// | 23 | `broken` | this round is broken (abort, timeout, dead waiter) |
/// | 24..32 | `history` | how the last 8 rounds ended, newest in bit 24: 0 = released, 1 = reset |
/// | 32..64 | `generation` | round number |
///
/// The last arriver ends a round by advancing the generation with a 0 in
/// the history; [`reset`](Barrier::reset) advances it with a 1. A waiter of round `g` that
/// finds the generation at `g + d` reads how `g` ended from history bit
/// `d - 1`, so a reset is never mistaken for a release. (A waiter that
/// sleeps through more than 8 rounds reports the barrier broken.)
///
/// # Dead participants
///
/// A waiting process records its pid (and how many of its threads wait)
/// in a small table, and removes it when it leaves. Waiters sleep in
/// slices (1 ms doubling to 64 ms) and, after each slice that runs out,
/// check the pids in the table; a dead one can never arrive or leave, so
/// they break the round and every waiter returns [`BrokenBarrierError`]
/// instead of hanging. A participant that dies *between* rounds, before
/// it waits again, is not in the table: bound such waits with
/// [`wait_timeout`](Barrier::wait_timeout). The table has
/// [`MEMBER_SLOTS`] entries; processes beyond that wait untracked.
#[repr(C)]
#[derive(Debug)]
pub struct Barrier {
    n: AtomicU32,
    _pad: AtomicU32,
    state: AtomicU64,
    notifier: Notifier,
    members: [AtomicU64; MEMBER_SLOTS],
}

// SAFETY: atomics only; every bit pattern is valid (zero or too many
// parties are refused by validate; a corrupt count only ends a round
// early, a corrupt member only breaks the barrier).
unsafe impl ShmObject for Barrier {
    const KIND: ObjectKind = ObjectKind::BARRIER;
    /// Number of participants.
    type Init = u32;
    unsafe fn init_in_place(ptr: *mut Self, n: u32) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(Barrier::new(n)) }
    }
    fn validate(&self) -> Result<(), AttachError> {
        match self.n.load(Ordering::Relaxed) {
            0 => Err(AttachError::Corrupt("barrier with zero participants")),
            n if n > MAX_PARTIES => Err(AttachError::Corrupt("barrier with too many participants")),
            _ => Ok(()),
        }
    }
}

/// A waiting process's entry in the member table; leaves on drop.
struct Member<'a> {
    barrier: &'a Barrier,
    slot: Option<usize>,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        // A simulated process dying in a loom model leaves its entry, as a
        // killed one does.
        #[cfg(loom)]
        if !os::process::loom_liveness::current_alive() {
            return;
        }
        if let Some(i) = self.slot {
            self.barrier.leave(i);
        }
    }
}

impl Barrier {
    /// A barrier for `n` participants (`n` is clamped to
    /// `1..=`[`MAX_PARTIES`]).
    pub fn new(n: u32) -> Self {
        Self {
            n: AtomicU32::new(n.clamp(1, MAX_PARTIES)),
            _pad: AtomicU32::new(0),
            state: AtomicU64::new(0),
            notifier: Notifier::new(),
            members: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Number of participants.
    pub fn parties(&self) -> u32 {
        self.n.load(Ordering::Relaxed).clamp(1, MAX_PARTIES)
    }

    /// Blocks until all participants have called `wait` this round.
    ///
    /// `Err(BrokenBarrierError)` if the barrier is broken when called or
    /// becomes broken while waiting (aborted, reset, another waiter timed
    /// out, or a waiting participant died). Unbounded while live
    /// participants are missing; see [`wait_timeout`](Self::wait_timeout).
    pub fn wait(&self) -> Result<BarrierWaitResult, BrokenBarrierError> {
        self.wait_until(None).map_err(|e| match e {
            BarrierWaitError::Broken(b) => b,
            BarrierWaitError::TimedOut => unreachable!("an untimed barrier wait cannot time out"),
        })
    }

    /// Like [`wait`](Self::wait), but gives up after `timeout`: then it
    /// breaks the barrier (every other waiter gets `Broken`, as in Python)
    /// and returns [`BarrierWaitError::TimedOut`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult, BarrierWaitError> {
        self.wait_until(Some(Deadline::after(timeout)))
    }

    /// [`wait_timeout`](Self::wait_timeout) with an absolute deadline.
    pub fn wait_deadline(&self, deadline: Deadline) -> Result<BarrierWaitResult, BarrierWaitError> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(
        &self,
        deadline: Option<Deadline>,
    ) -> Result<BarrierWaitResult, BarrierWaitError> {
        // Register before arriving: once counted, a death is noticed.
        let _member = self.enter();
        let n = self.parties();
        let mut s = self.state.load(Ordering::Acquire);
        let (gen, index) = loop {
            if s & BROKEN != 0 {
                return Err(BrokenBarrierError.into());
            }
            let arrived = (s & ARRIVED_MASK) as u32;
            // `>=` rather than `==`: a corrupted count must end the round,
            // not strand everyone.
            let (new, leader) = if arrived.saturating_add(1) >= n {
                (next_round(s, false), true)
            } else {
                (s + 1, false)
            };
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if leader => {
                    self.notifier.notify_all();
                    return Ok(BarrierWaitResult {
                        index: n - 1,
                        is_leader: true,
                    });
                }
                Ok(_) => break (generation(s), arrived),
                Err(now) => s = now,
            }
        };
        self.await_round(gen, deadline)?;
        Ok(BarrierWaitResult {
            index,
            is_leader: false,
        })
    }

    /// How round `gen` ended, if it has: `Ok` released, `Err` broken.
    fn outcome(&self, gen: u32) -> Option<Result<(), BrokenBarrierError>> {
        let s = self.state.load(Ordering::Acquire);
        let now = generation(s);
        if now == gen {
            return (s & BROKEN != 0).then_some(Err(BrokenBarrierError));
        }
        let rounds_ago = u64::from(now.wrapping_sub(gen));
        if rounds_ago <= HISTORY_BITS && history(s) >> (rounds_ago - 1) & 1 == 0 {
            Some(Ok(()))
        } else {
            Some(Err(BrokenBarrierError))
        }
    }

    fn await_round(&self, gen: u32, deadline: Option<Deadline>) -> Result<(), BarrierWaitError> {
        let mut slice = FIRST_SLICE;
        loop {
            if let Some(r) = self.outcome(gen) {
                return r.map_err(Into::into);
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                if self.break_round(gen) {
                    return Err(BarrierWaitError::TimedOut);
                }
                // The round ended first: report how.
                continue;
            }
            // Loom models may kill a waiter here (arrived, registered).
            #[cfg(loom)]
            os::process::loom_liveness::crash_point();
            let key = self.notifier.prepare_wait();
            if let Some(r) = self.outcome(gen) {
                self.notifier.cancel_wait();
                return r.map_err(Into::into);
            }
            let woken = self.notifier.commit_wait(
                key,
                Some(Deadline::earliest(deadline, Deadline::after(slice))),
            );
            if !woken {
                slice = (slice * 2).min(MAX_SLICE);
                if self.member_died() {
                    self.break_round(gen);
                }
            }
        }
    }

    /// Breaks round `gen` if it is still running; returns whether it is
    /// now broken (false: it had already ended).
    fn break_round(&self, gen: u32) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if generation(s) != gen {
                return false;
            }
            if s & BROKEN != 0 {
                return true;
            }
            match self.state.compare_exchange_weak(
                s,
                s | BROKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.notifier.notify_all();
                    return true;
                }
                Err(now) => s = now,
            }
        }
    }

    /// Puts the barrier into the broken state: every current and future
    /// [`wait`](Self::wait) fails with [`BrokenBarrierError`] until
    /// [`reset`](Self::reset) (Python's `abort()`).
    ///
    /// ```
    /// use shmkit::sync::Barrier;
    /// let b = Barrier::new(3);
    /// b.abort();
    /// assert!(b.is_broken());
    /// assert!(b.wait().is_err());
    /// ```
    pub fn abort(&self) {
        // A round that ends meanwhile is not broken: break the next one.
        while !self.break_round(generation(self.state.load(Ordering::Acquire))) {}
    }

    /// Returns the barrier to its empty, unbroken state; participants
    /// waiting in the current round get [`BrokenBarrierError`] (Python's
    /// `reset()`). Also forgets participants that died while waiting.
    ///
    /// ```
    /// use shmkit::sync::Barrier;
    /// let b = Barrier::new(2);
    /// b.abort();
    /// b.reset();
    /// assert!(!b.is_broken());
    /// assert_eq!(b.n_waiting(), 0);
    /// ```
    pub fn reset(&self) {
        for m in &self.members {
            let w = m.load(Ordering::Relaxed);
            let pid = w as u32;
            if pid != 0 && !crate::segment::holder_alive(self.at(), pid) {
                let _ = m.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            match self.state.compare_exchange_weak(
                s,
                next_round(s, true),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        self.notifier.notify_all();
    }

    /// Whether the barrier is broken (Python's `broken`).
    pub fn is_broken(&self) -> bool {
        self.state.load(Ordering::Acquire) & BROKEN != 0
    }

    /// How many participants are waiting in the current round (0 while
    /// broken; Python's `n_waiting`). A snapshot.
    pub fn n_waiting(&self) -> u32 {
        let s = self.state.load(Ordering::Acquire);
        if s & BROKEN != 0 {
            0
        } else {
            (s & ARRIVED_MASK) as u32
        }
    }

    /// Records that one more thread of this process waits here.
    fn enter(&self) -> Member<'_> {
        let me = os::current_pid();
        let slot = self.enter_slot(me);
        Member {
            barrier: self,
            slot,
        }
    }

    fn enter_slot(&self, me: u32) -> Option<usize> {
        // Bounded: each failed CAS means another process changed a slot.
        for _ in 0..4 * MEMBER_SLOTS {
            let mut free = None;
            let mut mine = None;
            for (i, m) in self.members.iter().enumerate() {
                let w = m.load(Ordering::Relaxed);
                if w as u32 == me {
                    mine = Some((i, w));
                    break;
                }
                if w == 0 && free.is_none() {
                    free = Some(i);
                }
            }
            let (i, old, new) = match (mine, free) {
                (Some((i, w)), _) => (i, w, w.wrapping_add(1 << 32)),
                (None, Some(i)) => (i, 0, u64::from(me) | 1 << 32),
                (None, None) => return None,
            };
            if self.members[i]
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    /// Undoes [`enter_slot`](Self::enter_slot): one thread fewer; the
    /// slot is freed with the last one.
    fn leave(&self, i: usize) {
        let me = os::current_pid();
        let m = &self.members[i];
        let mut w = m.load(Ordering::Relaxed);
        loop {
            // Cleared by a reset, or scribbled: not ours any more.
            if w as u32 != me {
                return;
            }
            let new = if w >> 32 <= 1 { 0 } else { w - (1 << 32) };
            match m.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => w = now,
            }
        }
    }

    /// This barrier's address, for the pid-namespace guard
    /// ([`pid_scope`](mod@crate::segment::pid_scope)).
    fn at(&self) -> *const u8 {
        self as *const Barrier as *const u8
    }

    /// Whether a process recorded as waiting here is dead.
    fn member_died(&self) -> bool {
        self.members.iter().any(|m| {
            let w = m.load(Ordering::Acquire);
            let pid = w as u32;
            pid != 0 && w >> 32 != 0 && !crate::segment::holder_alive(self.at(), pid)
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(std::mem::size_of::<Barrier>(), 152);
        assert_eq!(std::mem::align_of::<Barrier>(), 8);
        assert_eq!(std::mem::offset_of!(Barrier, state), 8);
        assert_eq!(std::mem::offset_of!(Barrier, notifier), 16);
        assert_eq!(std::mem::offset_of!(Barrier, members), 24);
    }

    #[test]
    fn history_tells_reset_from_release() {
        let s0 = 5u64 << GEN_SHIFT;
        let released = next_round(s0, false);
        let reset = next_round(released, true);
        assert_eq!(generation(reset), 7);
        // Round 5 was released, round 6 reset.
        assert_eq!(history(reset) & 1, 1);
        assert_eq!(history(reset) >> 1 & 1, 0);
        let b = Barrier::new(2);
        b.state.store(reset, Ordering::Relaxed);
        assert_eq!(b.outcome(5), Some(Ok(())));
        assert_eq!(b.outcome(6), Some(Err(BrokenBarrierError)));
        assert_eq!(b.outcome(7), None);
        // Older than the history: reported broken.
        assert_eq!(
            b.outcome(7u32.wrapping_sub(9)),
            Some(Err(BrokenBarrierError))
        );
    }

    #[test]
    fn corrupt_count_ends_the_round() {
        let b = Barrier::new(3);
        b.state.store(ARRIVED_MASK, Ordering::Relaxed);
        let r = b.wait().unwrap();
        assert!(r.is_leader());
        assert_eq!(r.index(), 2);
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri cannot query process liveness")]
    fn a_dead_member_breaks_the_round() {
        let b = Barrier::new(2);
        // A waiting process that cannot exist (above pid_max's limit).
        b.members[3].store(0x3FFF_FFFF | 1 << 32, Ordering::Relaxed);
        assert_eq!(b.wait(), Err(BrokenBarrierError));
        b.reset();
        assert_eq!(
            b.members[3].load(Ordering::Relaxed),
            0,
            "reset forgets the dead"
        );
        assert!(!b.is_broken());
    }

    #[test]
    fn member_table_counts_threads_and_frees_the_slot() {
        let b = Barrier::new(2);
        let me = os::current_pid();
        let a = b.enter();
        let c = b.enter();
        assert_eq!(a.slot, c.slot);
        let i = a.slot.unwrap();
        assert_eq!(
            b.members[i].load(Ordering::Relaxed),
            u64::from(me) | 2 << 32
        );
        drop(a);
        assert_eq!(
            b.members[i].load(Ordering::Relaxed),
            u64::from(me) | 1 << 32
        );
        drop(c);
        assert_eq!(b.members[i].load(Ordering::Relaxed), 0);
    }
}
