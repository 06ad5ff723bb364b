//! [`Mutex<T>`]: a robust, process-shared mutex around `Pod` data, with
//! guards (the `lock_api` shape: the raw core is [`RawMutex`]).

use crate::primitives::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use super::guard_count::Held;
use super::raw_mutex::RawMutex;
use crate::os::Deadline;
use crate::segment::{ObjectKind, ShmObject};

/// The lock was acquired, but its previous holder died while holding it;
/// the data may be half-updated. Inspect or repair it through the guard,
/// then call [`MutexGuard::mark_consistent`]; until then every locker gets
/// this error (like a poisoned `std::sync::Mutex`).
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    /// The guard: the lock *is* held.
    pub fn into_inner(self) -> G {
        self.guard
    }
    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }
    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied(..)")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous lock holder died while holding the lock; check the data, then mark it consistent")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

pub(crate) fn owner_died<G>(guard: G) -> OwnerDied<G> {
    OwnerDied { guard }
}

/// Result of a blocking lock: `Err` still carries the guard.
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why `try_lock` / `lock_timeout` (or a bounded
/// [`Condvar`](crate::Condvar) wait) did not return a clean guard.
pub enum TryLockError<G> {
    /// Held by a live process (`try_lock`).
    WouldBlock,
    /// Still held when the timeout expired (`lock_timeout`, and the re-lock
    /// of a bounded condvar wait). The lock is **not** held.
    TimedOut,
    /// Acquired, but the previous owner died holding it.
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::TimedOut => f.write_str("TimedOut"),
            TryLockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => {
                f.write_str("the lock is held by another live process or thread")
            }
            TryLockError::TimedOut => f.write_str("timed out waiting for the lock"),
            TryLockError::OwnerDied(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// A robust process-shared mutex protecting a `T: Pod`.
///
/// Place it in shared memory with [`ShmBox`](crate::ShmBox) (own segment)
/// or [`Mutex::init_in`] (memory you manage). If a process dies holding
/// the lock, the next locker gets `Err(OwnerDied(guard))`.
///
/// Layout: `#[repr(C)]` `{ raw: RawMutex (8 bytes), data: T }`, data at
/// offset `max(8, align_of::<T>())`-aligned.
///
/// ```
/// use shmkit::{Mutex, ShmBox};
///
/// let m = ShmBox::<Mutex<[u32; 4]>>::anonymous([0; 4])?;
/// {
///     let mut g = m.lock().unwrap();
///     g[2] = 7;
/// }
/// assert_eq!(m.lock().unwrap()[2], 7);
/// assert!(m.try_lock().is_ok());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct Mutex<T> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which exists only while
// the lock is held; `T: Pod` has no thread affinity.
unsafe impl<T: Pod + Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Send for Mutex<T> {}

// SAFETY: RawMutex is two atomics and T is Pod, so every bit pattern is a
// valid Mutex<T>; the layout is repr(C); data is only touched under the lock.
unsafe impl<T: Pod + Send> ShmObject for Mutex<T> {
    const KIND: ObjectKind = ObjectKind::MUTEX;
    type Init = T;
    unsafe fn init_in_place(ptr: *mut Self, init: T) {
        // SAFETY: forwarded contract.
        unsafe { Self::init_in(ptr, init) }
    }
}

impl<T: Pod> Mutex<T> {
    /// A new unlocked mutex (process-local; copy into place or use
    /// [`ShmBox`](crate::ShmBox)).
    pub fn new(value: T) -> Self {
        Self {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Initialises a mutex in caller-provided memory.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `size_of::<Self>()` bytes, aligned
    /// for `Self`, and not used by anyone else during the call.
    pub unsafe fn init_in(ptr: *mut Self, value: T) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr.write(Self::new(value)) }
    }

    /// Views caller-provided memory as a mutex.
    ///
    /// # Safety
    /// `ptr` must be aligned and valid for `size_of::<Self>()` bytes for
    /// `'a`, and initialised with [`init_in`](Self::init_in) in some process.
    pub unsafe fn from_raw<'a>(ptr: *const Self) -> &'a Self {
        // SAFETY: guaranteed by the caller; any bit pattern is valid.
        unsafe { &*ptr }
    }

    fn guard(&self, died: bool) -> LockResult<MutexGuard<'_, T>> {
        let g = MutexGuard {
            mutex: self,
            held: Held::enter(),
        };
        if died {
            Err(OwnerDied { guard: g })
        } else {
            Ok(g)
        }
    }

    /// Blocks until the lock is acquired.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let a = self.raw.lock();
        self.guard(a.owner_died)
    }

    /// Acquires the lock if it is free (or its holder is dead).
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        match self.raw.try_lock() {
            None => Err(TryLockError::WouldBlock),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Blocks for at most `timeout` (a holder that died is recovered, as
    /// by [`lock`](Self::lock); one held by a live process gives
    /// `TimedOut`). A zero timeout is [`try_lock`](Self::try_lock).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        self.lock_deadline(Deadline::after(timeout))
    }

    /// Blocks until `deadline` at the latest (see
    /// [`lock_timeout`](Self::lock_timeout)).
    ///
    /// ```
    /// use shmkit::{os::Deadline, Mutex, TryLockError};
    /// use std::time::Duration;
    ///
    /// let m = Mutex::new(1u8);
    /// let g = m.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let d = Deadline::after(Duration::from_millis(5));
    ///         assert!(matches!(m.lock_deadline(d), Err(TryLockError::TimedOut)));
    ///     });
    /// });
    /// drop(g);
    /// assert!(m.lock_deadline(Deadline::after(Duration::ZERO)).is_ok());
    /// ```
    pub fn lock_deadline(
        &self,
        deadline: Deadline,
    ) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        match self.raw.lock_until(Some(deadline)) {
            None => Err(TryLockError::TimedOut),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// The raw lock (for building other primitives on this mutex).
    pub fn raw(&self) -> &RawMutex {
        &self.raw
    }

    /// Whether some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("owner", &self.raw.owner())
            .field("consistent", &self.raw.is_consistent())
            .finish_non_exhaustive()
    }
}

/// Holds a [`Mutex`] locked; unlocks on drop.
///
/// A guard belongs to the process that took it.
/// [`process::fork`](crate::process::fork()) refuses while one is alive,
/// and a copy that reached another process anyway (an `unsafe` raw
/// `fork`) panics on dereference and does not unlock on drop (SAFETY.md,
/// "Fork and guards").
///
/// ```
/// use shmkit::Mutex;
/// let m = Mutex::new(5u64);
/// let mut g = m.lock().unwrap();
/// *g += 1;
/// drop(g);
/// assert_eq!(*m.lock().unwrap(), 6);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    held: Held,
}

impl<'a, T: Pod> MutexGuard<'a, T> {
    /// Declares the protected data consistent again after an
    /// [`OwnerDied`] recovery; later lockers get clean guards.
    pub fn mark_consistent(&self) {
        self.assert_owner();
        self.mutex.raw.mark_consistent();
    }

    /// Panics if this guard was copied into another process by `fork`.
    #[inline]
    #[track_caller]
    pub(crate) fn assert_owner(&self) {
        self.held.assert_owner("MutexGuard");
    }

    /// The mutex this guard locks.
    pub fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.assert_owner();
        // SAFETY: the guard exists only while the process that took it
        // holds the lock, and we are that process (checked above), so no
        // other thread or process accesses the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.assert_owner();
        // SAFETY: as for Deref; `&mut self` makes the access unique here.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // A copy of the guard in a forked child must not release the
        // parent's lock: only the process that took it unlocks.
        if self.held.in_owner_process() {
            // SAFETY: the guard proves this process holds the lock.
            unsafe { self.mutex.raw.unlock() }
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
