//! Shared futex wait/wake.
//!
//! Always the *shared* variant: `FUTEX_PRIVATE_FLAG` keys the wait queue on
//! the virtual address in one process and would never see a wake from
//! another process mapping the same page at another address. Waits take an
//! absolute `CLOCK_MONOTONIC` deadline (`FUTEX_WAIT_BITSET`).
//!
//! Under `cfg(loom)` the futex is modelled with a loom mutex and condvar so
//! that a lost wake-up shows up as a deadlock in the model.

use crate::os::clock::Deadline;
use crate::primitives::AtomicU32;

/// Why [`wait`] returned. Callers re-check their condition in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by [`wake`] (or spuriously).
    Woken,
    /// The word did not hold the expected value when the kernel checked.
    ValueChanged,
    /// The deadline passed.
    TimedOut,
    /// A signal interrupted the wait.
    Interrupted,
}

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// ```
/// use shmkit::os::{futex, Deadline};
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
///
/// let word = AtomicU32::new(1);
/// // The value is not 0, so the kernel returns at once.
/// assert_eq!(futex::wait(&word, 0, None), futex::WaitOutcome::ValueChanged);
/// let d = Deadline::after(Duration::from_millis(1));
/// assert_eq!(futex::wait(&word, 1, Some(d)), futex::WaitOutcome::TimedOut);
/// ```
#[cfg(not(loom))]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> WaitOutcome {
    use rustix::io::Errno;
    use rustix::thread::futex;
    let ts = deadline.map(|d| {
        let t = d.to_timespec();
        futex::Timespec {
            tv_sec: t.tv_sec as _,
            tv_nsec: t.tv_nsec as _,
        }
    });
    // FUTEX_WAIT_BITSET without FUTEX_CLOCK_REALTIME takes an absolute
    // CLOCK_MONOTONIC time; empty flags (no FUTEX_PRIVATE_FLAG): the word is
    // shared memory.
    match futex::wait_bitset(
        word,
        futex::Flags::empty(),
        expected,
        ts.as_ref(),
        MATCH_ANY,
    ) {
        Ok(()) => WaitOutcome::Woken,
        Err(Errno::AGAIN) => WaitOutcome::ValueChanged,
        Err(Errno::TIMEDOUT) => WaitOutcome::TimedOut,
        Err(Errno::INTR) => WaitOutcome::Interrupted,
        // EFAULT/EINVAL cannot happen for a valid reference; treat anything
        // else as a spurious wake-up, which every caller already handles.
        Err(_) => WaitOutcome::Woken,
    }
}

/// `FUTEX_BITSET_MATCH_ANY`: a bitset wait that any wake matches.
#[cfg(not(loom))]
const MATCH_ANY: std::num::NonZeroU32 = match std::num::NonZeroU32::new(u32::MAX) {
    Some(v) => v,
    None => unreachable!(),
};

/// Wakes up to `count` waiters sleeping on `word`; returns how many woke.
///
/// ```
/// use shmkit::os::futex;
/// use std::sync::atomic::AtomicU32;
///
/// let word = AtomicU32::new(0);
/// assert_eq!(futex::wake(&word, u32::MAX), 0); // nobody sleeps
/// ```
#[cfg(not(loom))]
pub fn wake(word: &AtomicU32, count: u32) -> usize {
    use rustix::thread::futex;
    let count = count.min(i32::MAX as u32);
    // Shared (not private) for the reason above. FUTEX_WAKE only uses the
    // address as a key; it cannot fail for a valid reference.
    futex::wake(word, futex::Flags::empty(), count).unwrap_or(0)
}

/// The most words one [`wait_any`] call can sleep on (the kernel's
/// `FUTEX_WAITV_MAX`).
pub const WAITV_MAX: usize = 128;

/// Sleeps until any of `words` (each with the value it is expected to
/// hold) is woken or no longer holds its value, or `deadline` passes:
/// Linux's `futex_waitv` (5.16 and later), shared futexes of 32 bits.
///
/// Returns `None` without sleeping when the kernel lacks `futex_waitv`
/// (`ENOSYS`, remembered for the rest of the process), when `words` is
/// empty or longer than [`WAITV_MAX`]; the caller then falls back to
/// sleeping on one word for a bounded slice and re-checking them all.
///
/// ```
/// use shmkit::os::{futex, Deadline};
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
///
/// let (a, b) = (AtomicU32::new(0), AtomicU32::new(5));
/// // `b` does not hold 4: the kernel returns at once (on 5.16+).
/// let r = futex::wait_any(&[(&a, 0), (&b, 4)], None);
/// assert!(matches!(r, None | Some(futex::WaitOutcome::ValueChanged)));
/// let d = Deadline::after(Duration::from_millis(1));
/// let r = futex::wait_any(&[(&a, 0), (&b, 5)], Some(d));
/// assert!(matches!(r, None | Some(futex::WaitOutcome::TimedOut)));
/// ```
#[cfg(not(loom))]
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Deadline>) -> Option<WaitOutcome> {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Set once the kernel answered `ENOSYS`.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    /// `struct futex_waitv` of the kernel's uapi.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct FutexWaitv {
        val: u64,
        uaddr: u64,
        flags: u32,
        reserved: u32,
    }
    /// `FUTEX2_SIZE_U32`; no `FUTEX2_PRIVATE`: the words are shared memory.
    const FUTEX2_SIZE_U32: u32 = 2;
    /// The syscall number, the same on every architecture (generic table).
    const SYS_FUTEX_WAITV: libc::c_long = 449;

    // Miri does not model futex_waitv: the callers' fallback runs there.
    if cfg!(miri)
        || words.is_empty()
        || words.len() > WAITV_MAX
        || UNSUPPORTED.load(Ordering::Relaxed)
    {
        return None;
    }
    let mut v = [FutexWaitv {
        val: 0,
        uaddr: 0,
        flags: 0,
        reserved: 0,
    }; WAITV_MAX];
    for (slot, (word, expected)) in v.iter_mut().zip(words) {
        *slot = FutexWaitv {
            val: u64::from(*expected),
            uaddr: (*word as *const AtomicU32) as usize as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        };
    }
    let ts = deadline.map(|d| d.to_timespec());
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // The kernel only reads them; the timeout is absolute (CLOCK_MONOTONIC).
    // SAFETY: `v` holds `words.len()` initialised entries: live, aligned
    // `AtomicU32`s borrowed for this call; `ts_ptr` is null or points at
    // a timespec on this stack frame.
    let r = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            v.as_ptr(),
            words.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Some(WaitOutcome::Woken);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(WaitOutcome::ValueChanged),
        Some(libc::ETIMEDOUT) => Some(WaitOutcome::TimedOut),
        Some(libc::EINTR) => Some(WaitOutcome::Interrupted),
        Some(libc::ENOSYS) => {
            UNSUPPORTED.store(true, Ordering::Relaxed);
            None
        }
        // EFAULT/EINVAL cannot happen for live words and a valid deadline;
        // anything else reads as a spurious wake-up.
        _ => Some(WaitOutcome::Woken),
    }
}

#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    pub(super) struct Table {
        pub(super) lock: Mutex<()>,
        pub(super) cond: Condvar,
    }

    loom::lazy_static! {
        pub(super) static ref TABLE: Table = Table { lock: Mutex::new(()), cond: Condvar::new() };
    }
}

/// Loom model of `futex_wait`: the value check and the sleep are atomic
/// with respect to [`wake`], exactly like the kernel's hash-bucket lock.
///
/// There is no time under loom. A timed wait stands for a park slice:
/// until a simulated process dies (`os::process::loom_liveness`) it
/// sleeps until woken, like an untimed one; from the first death on, every
/// timed wait ends with `TimedOut` (before sleeping, or when the death
/// wakes it) after yielding to the other threads. So a waiter that only
/// notices a dead peer when a slice runs out is modelled with as many
/// slices as it needs, as in a real run. Such a slice ends after the death in real
/// time, so the waiter then also sees every store the dead process made
/// (the death is recorded under this model's lock).
#[cfg(loom)]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> WaitOutcome {
    use crate::os::process::loom_liveness;
    use crate::primitives::Ordering;
    let guard = model::TABLE.lock.lock().unwrap();
    if deadline.is_some() && loom_liveness::any_death() {
        drop(guard);
        return slice_ran_out();
    }
    if word.load(Ordering::SeqCst) != expected {
        return WaitOutcome::ValueChanged;
    }
    let guard = model::TABLE.cond.wait(guard).unwrap();
    if deadline.is_some() && loom_liveness::any_death() {
        drop(guard);
        return slice_ran_out();
    }
    WaitOutcome::Woken
}

/// Loom model of `futex_waitv`: like [`wait`], with the value check over
/// every word atomic with respect to [`wake`].
#[cfg(loom)]
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Deadline>) -> Option<WaitOutcome> {
    use crate::os::process::loom_liveness;
    use crate::primitives::Ordering;
    if words.is_empty() || words.len() > WAITV_MAX {
        return None;
    }
    let guard = model::TABLE.lock.lock().unwrap();
    if deadline.is_some() && loom_liveness::any_death() {
        drop(guard);
        return Some(slice_ran_out());
    }
    if words.iter().any(|(w, e)| w.load(Ordering::SeqCst) != *e) {
        return Some(WaitOutcome::ValueChanged);
    }
    let guard = model::TABLE.cond.wait(guard).unwrap();
    if deadline.is_some() && loom_liveness::any_death() {
        drop(guard);
        return Some(slice_ran_out());
    }
    Some(WaitOutcome::Woken)
}

/// A timed wait's slice ran out (loom model): let the others run first,
/// as real time passing would, so a waiter re-checking a live owner
/// after each slice does not spin the model forever.
#[cfg(loom)]
fn slice_ran_out() -> WaitOutcome {
    loom::thread::yield_now();
    WaitOutcome::TimedOut
}

/// Loom model: time passes (a simulated process died): `record` runs
/// under the model's lock, then every sleeper wakes so that timed waits
/// re-check for an expired slice. A wait that sees the record took the
/// lock after it, so it also sees everything the dead process did.
#[cfg(loom)]
pub(crate) fn model_time_passes(record: impl FnOnce()) {
    let _guard = model::TABLE.lock.lock().unwrap();
    record();
    model::TABLE.cond.notify_all();
}

/// Loom model of `futex_wake` (wakes everyone; futex users must tolerate
/// spurious wake-ups anyway).
#[cfg(loom)]
pub fn wake(_word: &AtomicU32, _count: u32) -> usize {
    let _guard = model::TABLE.lock.lock().unwrap();
    model::TABLE.cond.notify_all();
    1
}
