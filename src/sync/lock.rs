//! [`Lock`]: a plain robust process-shared lock with no data — Python's
//! `multiprocessing.Lock()`, without spelling it `ShmBox<Mutex<()>>`.

use std::fmt;
use std::time::Duration;

use super::guard_count::Held;
use super::mutex::{owner_died, LockResult, TryLockError};
use super::raw_mutex::RawMutex;
use crate::error::{AttachError, Error};
use crate::os::Deadline;
use crate::segment::{ObjectKind, OpenOptions, Segment, ShmBox, ShmObject};

/// A robust lock shared between processes (Python's
/// `multiprocessing.Lock`).
///
/// [`acquire`](Lock::acquire) returns a [`LockGuard`]; dropping it
/// releases the lock. If the holder dies (SIGKILL, crash) while holding
/// it, the next acquirer gets `Err(OwnerDied(guard))` — the lock *is*
/// held — and decides whether what the lock protects is consistent, then
/// calls [`LockGuard::mark_consistent`]; until then every acquirer gets
/// `OwnerDied`. A lock held by a live process is never taken away.
///
/// Make one with [`Lock::anonymous`] (shared with children forked or
/// spawned with it), [`Lock::create`] / [`Lock::open`] (by name), or
/// [`Lock::new`] / [`Lock::init_in`] (process-local or in memory you
/// manage). `ShmBox<Lock>` is the handle: it dereferences to the lock.
///
/// Layout: `#[repr(C)]`, exactly a [`RawMutex`] (8 bytes, align 4);
/// all-zero is unlocked. Segment kind [`ObjectKind::RAW_MUTEX`].
///
/// ```
/// use shmkit::sync::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::anonymous()?;
/// {
///     let _held = lock.acquire().unwrap();
///     assert!(lock.is_locked());
///     std::thread::scope(|s| {
///         s.spawn(|| assert!(lock.acquire_timeout(Duration::from_millis(5)).is_err()));
///     });
/// } // released here
/// assert!(lock.try_acquire().is_ok());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Lock {
    raw: RawMutex,
}

// SAFETY: a RawMutex is two atomics, so every bit pattern is a valid Lock;
// repr(C); all mutation goes through those atomics.
unsafe impl ShmObject for Lock {
    const KIND: ObjectKind = ObjectKind::RAW_MUTEX;
    type Init = ();
    unsafe fn init_in_place(ptr: *mut Self, _: ()) {
        // SAFETY: forwarded contract.
        unsafe { Self::init_in(ptr) }
    }
}

impl Lock {
    /// An unlocked lock (process-local: for threads, or to copy into
    /// place before any other process sees it).
    pub fn new() -> Self {
        Self {
            raw: RawMutex::new(),
        }
    }

    /// A new lock in an anonymous segment, shared with the children this
    /// process forks or spawns with it afterwards.
    pub fn anonymous() -> Result<ShmBox<Lock>, Error> {
        ShmBox::anonymous(())
    }

    /// A new lock in the named segment `name` (this handle owns the name
    /// and unlinks it when dropped).
    ///
    /// ```
    /// use shmkit::sync::Lock;
    ///
    /// let name = format!("doc-lock-{}", std::process::id());
    /// let lock = Lock::create(&name)?;
    /// let other = Lock::open(&name)?; // e.g. in another process
    /// let held = lock.acquire().unwrap();
    /// assert!(other.try_acquire().is_err());
    /// drop(held);
    /// assert!(other.try_acquire().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(name: &str) -> Result<ShmBox<Lock>, Error> {
        ShmBox::create(name, ())
    }

    /// Attaches to the lock another process created under `name`.
    pub fn open(name: &str) -> Result<ShmBox<Lock>, AttachError> {
        ShmBox::open(name)
    }

    /// [`open`](Lock::open) with explicit options.
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<ShmBox<Lock>, AttachError> {
        ShmBox::open_with(name, opts)
    }

    /// Opens the lock called `name`, or creates it if there is none
    /// (race-free between processes; see
    /// [`SegmentObject::open_or_create`](crate::SegmentObject::open_or_create)).
    pub fn open_or_create(name: &str) -> Result<ShmBox<Lock>, Error> {
        ShmBox::open_or_create(name, ())
    }

    /// Attaches to a lock in an already-mapped segment (e.g. one inherited
    /// as a file descriptor).
    pub fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<ShmBox<Lock>, AttachError> {
        ShmBox::from_segment(seg, opts)
    }

    /// Initialises an unlocked lock in caller-provided memory (e.g. a
    /// segment another crate manages).
    ///
    /// # Safety
    /// `ptr` must be valid for writes of 8 bytes, 4-aligned, and not in use
    /// by anyone else during the call.
    pub unsafe fn init_in(ptr: *mut Self) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr.write(Self::new()) }
    }

    /// Views caller-provided memory as a lock.
    ///
    /// # Safety
    /// `ptr` must be 4-aligned and valid for 8 bytes for `'a`, initialised
    /// by [`init_in`](Self::init_in) (or zeroed) in some process. Any bit
    /// pattern is memory-safe; garbage only means a confused lock.
    pub unsafe fn from_raw<'a>(ptr: *const Self) -> &'a Self {
        // SAFETY: guaranteed by the caller; the only field is atomics.
        unsafe { &*ptr }
    }

    fn guard(&self, died: bool) -> LockResult<LockGuard<'_>> {
        let g = LockGuard {
            lock: self,
            held: Held::enter(),
        };
        if died {
            Err(owner_died(g))
        } else {
            Ok(g)
        }
    }

    /// Blocks until the lock is acquired (a holder that died is detected
    /// within one park slice and recovered: `Err(OwnerDied(guard))`).
    ///
    /// Unbounded while a *live* process holds the lock; see
    /// [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        let a = self.raw.lock();
        self.guard(a.owner_died)
    }

    /// Acquires the lock if it is free or its holder is dead; otherwise
    /// `Err(TryLockError::WouldBlock)` at once.
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.raw.try_lock() {
            None => Err(TryLockError::WouldBlock),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Blocks for at most `timeout` (Python's `acquire(timeout=…)`): a
    /// live holder past the timeout gives `Err(TryLockError::TimedOut)`;
    /// a dead one is recovered (`OwnerDied`) even at the deadline.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout))
    }

    /// Blocks until `deadline` at the latest (see
    /// [`acquire_timeout`](Self::acquire_timeout)).
    pub fn acquire_deadline(
        &self,
        deadline: Deadline,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        match self.raw.lock_until(Some(deadline)) {
            None => Err(TryLockError::TimedOut),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Pid of the process holding the lock, if any (a snapshot).
    pub fn owner(&self) -> Option<u32> {
        self.raw.owner()
    }

    /// Whether no holder died since the last
    /// [`mark_consistent`](LockGuard::mark_consistent).
    pub fn is_consistent(&self) -> bool {
        self.raw.is_consistent()
    }

    /// The raw lock word (for building other primitives).
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("owner", &self.raw.owner())
            .field("consistent", &self.raw.is_consistent())
            .finish()
    }
}

/// Holds a [`Lock`]; releases it on drop.
///
/// Like every shmkit guard it belongs to the process that took it:
/// [`process::fork`](crate::process::fork()) refuses while one is alive,
/// and a copy that reached another process anyway releases nothing.
///
/// ```
/// use shmkit::sync::Lock;
///
/// let lock = Lock::new();
/// let g = lock.acquire().unwrap();
/// g.release(); // same as drop(g)
/// assert!(!lock.is_locked());
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    held: Held,
}

impl<'a> LockGuard<'a> {
    /// Declares what the lock protects consistent again after an
    /// `OwnerDied` recovery; later acquirers get clean guards.
    pub fn mark_consistent(&self) {
        self.held.assert_owner("LockGuard");
        self.lock.raw.mark_consistent();
    }

    /// Releases the lock (Python's `release()`); the same as dropping the
    /// guard.
    pub fn release(self) {
        drop(self)
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // A copy in a forked child never releases the parent's lock.
        if self.held.in_owner_process() {
            // SAFETY: the guard proves this process holds the lock.
            unsafe { self.lock.raw.unlock() }
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_a_raw_mutex() {
        assert_eq!(std::mem::size_of::<Lock>(), 8);
        assert_eq!(std::mem::align_of::<Lock>(), 4);
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri cannot query process liveness")]
    fn dead_holder_gives_owner_died_until_marked() {
        let lock = Lock::new();
        // A word naming a pid that cannot exist (above pid_max's limit).
        lock.raw.force_state_for_test(0x3FFF_FFFF);
        let g = match lock.try_acquire() {
            Err(TryLockError::OwnerDied(d)) => d.into_inner(),
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        assert!(!lock.is_consistent());
        drop(g);
        let g = lock.acquire().expect_err("still inconsistent").into_inner();
        g.mark_consistent();
        drop(g);
        assert!(lock.acquire().is_ok());
        assert!(lock.is_consistent());
    }
}
