//! [`RLock`]: a re-entrant robust process-shared lock — Python's
//! `multiprocessing.RLock()`.
//!
//! The owner is one thread of one process: the [`RawMutex`] word names the
//! process (so a dead owner is recovered exactly like a [`Lock`]'s), and a
//! second word names the thread within it by a process-local token. The
//! owning thread may acquire again any number of times; each guard
//! releases one level, and the lock is free once the last one is dropped.
//!
//! Only the owning thread ever writes the thread token and the count, and
//! it clears the token before it releases the lock word (`Release`), so a
//! thread that reads its own token back from the lock *is* the owner: no
//! other thread can have written it, and its own earlier "cleared" store
//! cannot be read back as older than itself.
//!
//! [`Lock`]: super::Lock

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::guard_count::Held;
use super::mutex::{owner_died, LockResult, TryLockError};
use super::raw_mutex::RawMutex;
use crate::error::{AttachError, Error};
use crate::os::{self, Deadline};
use crate::primitives::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{ObjectKind, OpenOptions, Segment, ShmBox, ShmObject};

/// Segment kind of an [`RLock`] (next to the other sync kinds; to become
/// `ObjectKind::RLOCK`).
pub const RLOCK_KIND: ObjectKind = ObjectKind::RLOCK;

/// A token naming the calling thread (never 0), unique across processes
/// and pid namespaces in practice: a per-process random base plus a
/// counter. Processes in two pid namespaces can have equal pids, so the
/// owner word alone cannot tell this process from another one; with equal
/// pids, equal tokens would let a thread re-enter a lock another
/// process's thread holds. Both the base and the thread's token are made
/// afresh under a new pid (a forked child), so a child never shares its
/// parent's tokens either.
fn thread_token() -> u64 {
    // Process-local bookkeeping, never in shared memory: std atomics.
    use std::sync::atomic::{AtomicU32 as StdU32, AtomicU64 as StdU64, Ordering as StdOrd};
    static BASE: StdU64 = StdU64::new(0);
    static BASE_PID: StdU32 = StdU32::new(0);
    static NEXT: StdU64 = StdU64::new(0);
    fn fresh(pid: u32) -> u64 {
        if BASE_PID.load(StdOrd::Acquire) != pid {
            BASE.store(random_u64(pid), StdOrd::Relaxed);
            BASE_PID.store(pid, StdOrd::Release);
        }
        loop {
            let t = BASE
                .load(StdOrd::Relaxed)
                .wrapping_add(NEXT.fetch_add(1, StdOrd::Relaxed));
            if t != 0 {
                return t;
            }
        }
    }
    let pid = os::current_pid();
    #[cfg(not(loom))]
    std::thread_local!(static TOKEN: Cell<(u32, u64)> = const { Cell::new((0, 0)) });
    #[cfg(loom)]
    loom::thread_local!(static TOKEN: Cell<(u32, u64)> = Cell::new((0, 0)));
    TOKEN
        .try_with(|t| {
            let (owner, token) = t.get();
            if owner == pid && token != 0 {
                return token;
            }
            let token = fresh(pid);
            t.set((pid, token));
            token
        })
        // Thread-local storage already torn down: a token nobody else has
        // (this thread then cannot re-enter, but never shares ownership).
        .unwrap_or_else(|_| fresh(pid))
}

/// 64 random bits for the token base: the kernel's `getrandom`, or, where
/// it fails, a mix of the pid, its namespace and the clock.
fn random_u64(pid: u32) -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is valid for writes of its length; getrandom writes
    // at most that many bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == bytes.len() as isize {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    pid.hash(&mut h);
    os::process::current_pid_namespace().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

/// A re-entrant robust lock shared between processes (Python's
/// `multiprocessing.RLock`).
///
/// The thread that holds it may [`acquire`](RLock::acquire) it again;
/// every acquisition returns an [`RLockGuard`], and the lock is released
/// when the last guard is dropped. Other threads — of this process or any
/// other — wait. Only the owning thread can release it (guards cannot
/// leave their thread). If the owning *process* dies holding it, the next
/// acquirer gets `Err(OwnerDied(guard))`, exactly as with a
/// [`Lock`](crate::sync::Lock); a thread that exits while holding it, in a
/// process that lives on, keeps it held (as in Python).
///
/// Layout: `#[repr(C)]`, 24 bytes, align 8: `raw: RawMutex` (owner pid,
/// flags), `thread: u64` (owner thread token, 0 = none), `count: u32`
/// (recursion depth), `pad: u32`. All-zero is unlocked. Segment kind
/// [`RLOCK_KIND`].
///
/// ```
/// use shmkit::sync::RLock;
///
/// let lock = RLock::anonymous()?;
/// let outer = lock.acquire().unwrap();
/// let inner = lock.acquire().unwrap(); // the same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// assert!(lock.is_owned_by_current_thread());
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(lock.try_acquire().is_err())); // another thread
/// });
/// drop(outer);
/// assert!(!lock.is_locked());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct RLock {
    raw: RawMutex,
    thread: AtomicU64,
    count: AtomicU32,
    _pad: AtomicU32,
}

// SAFETY: atomics only, so every bit pattern is a valid RLock (a garbage
// token or count only confuses the lock; see the guard's drop); repr(C).
unsafe impl ShmObject for RLock {
    const KIND: ObjectKind = RLOCK_KIND;
    type Init = ();
    unsafe fn init_in_place(ptr: *mut Self, _: ()) {
        // SAFETY: forwarded contract.
        unsafe { Self::init_in(ptr) }
    }
}

impl RLock {
    /// An unlocked re-entrant lock (process-local, or to copy into place).
    pub fn new() -> Self {
        Self {
            raw: RawMutex::new(),
            thread: AtomicU64::new(0),
            count: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
        }
    }

    /// A new re-entrant lock in an anonymous segment, shared with the
    /// children this process forks or spawns with it afterwards.
    pub fn anonymous() -> Result<ShmBox<RLock>, Error> {
        ShmBox::anonymous(())
    }

    /// A new re-entrant lock in the named segment `name` (this handle owns
    /// the name).
    ///
    /// ```
    /// use shmkit::sync::RLock;
    ///
    /// let name = format!("doc-rlock-{}", std::process::id());
    /// let lock = RLock::create(&name)?;
    /// let seen = RLock::open(&name)?; // e.g. in another process
    /// let _g = lock.acquire().unwrap();
    /// assert_eq!(seen.owner(), Some(std::process::id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(name: &str) -> Result<ShmBox<RLock>, Error> {
        ShmBox::create(name, ())
    }

    /// Attaches to the re-entrant lock another process created as `name`.
    pub fn open(name: &str) -> Result<ShmBox<RLock>, AttachError> {
        ShmBox::open(name)
    }

    /// [`open`](RLock::open) with explicit options.
    pub fn open_with(name: &str, opts: &OpenOptions) -> Result<ShmBox<RLock>, AttachError> {
        ShmBox::open_with(name, opts)
    }

    /// Opens the lock called `name`, or creates it if there is none
    /// (race-free between processes; see
    /// [`SegmentObject::open_or_create`](crate::SegmentObject::open_or_create)).
    pub fn open_or_create(name: &str) -> Result<ShmBox<RLock>, Error> {
        ShmBox::open_or_create(name, ())
    }

    /// Attaches to a re-entrant lock in an already-mapped segment.
    pub fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<ShmBox<RLock>, AttachError> {
        ShmBox::from_segment(seg, opts)
    }

    /// Initialises an unlocked re-entrant lock in caller-provided memory.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of 24 bytes, 8-aligned, and not in
    /// use by anyone else during the call.
    pub unsafe fn init_in(ptr: *mut Self) {
        // SAFETY: guaranteed by the caller.
        unsafe { ptr.write(Self::new()) }
    }

    /// Views caller-provided memory as a re-entrant lock.
    ///
    /// # Safety
    /// `ptr` must be 8-aligned and valid for 24 bytes for `'a`, initialised
    /// by [`init_in`](Self::init_in) (or zeroed) in some process. Any bit
    /// pattern is memory-safe.
    pub unsafe fn from_raw<'a>(ptr: *const Self) -> &'a Self {
        // SAFETY: guaranteed by the caller; every field is an atomic.
        unsafe { &*ptr }
    }

    /// Whether the calling thread (of this process) holds the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.raw.owner() == Some(os::current_pid())
            && self.thread.load(Ordering::Relaxed) == thread_token()
    }

    /// Another level for the owning thread, if it is the caller.
    fn reenter(&self) -> Option<RLockGuard<'_>> {
        if !self.is_owned_by_current_thread() {
            return None;
        }
        // Only the owner writes the count. Saturating: a count scribbled
        // by another process stays at the top instead of wrapping (the
        // guards then release early, never someone else's lock).
        let depth = self.count.load(Ordering::Relaxed);
        self.count.store(depth.saturating_add(1), Ordering::Relaxed);
        Some(self.guard())
    }

    /// The first level, just after the lock word was taken.
    fn take(&self, died: bool) -> LockResult<RLockGuard<'_>> {
        self.thread.store(thread_token(), Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        let g = self.guard();
        if died {
            Err(owner_died(g))
        } else {
            Ok(g)
        }
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            held: Held::enter(),
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock, or one more level of it if this thread already
    /// holds it. Blocks while another thread or process holds it; a dead
    /// owning process is recovered (`Err(OwnerDied(guard))`, the lock held
    /// at depth 1).
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let a = self.raw.lock();
        self.take(a.owner_died)
    }

    /// [`acquire`](Self::acquire) without blocking: `WouldBlock` if another
    /// live thread or process holds it.
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.raw.try_lock() {
            None => Err(TryLockError::WouldBlock),
            Some(a) => self.take(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// [`acquire`](Self::acquire) for at most `timeout` (`TimedOut` while
    /// another live thread or process holds it).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        self.acquire_deadline(Deadline::after(timeout))
    }

    /// [`acquire`](Self::acquire) until `deadline` at the latest.
    pub fn acquire_deadline(
        &self,
        deadline: Deadline,
    ) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        match self.raw.lock_until(Some(deadline)) {
            None => Err(TryLockError::TimedOut),
            Some(a) => self.take(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Whether some thread of some process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Pid of the owning process, if locked (a snapshot).
    pub fn owner(&self) -> Option<u32> {
        self.raw.owner()
    }

    /// How many levels the calling thread holds (0 if it does not own the
    /// lock).
    pub fn depth(&self) -> u32 {
        if self.is_owned_by_current_thread() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether no owner died since the last
    /// [`mark_consistent`](RLockGuard::mark_consistent).
    pub fn is_consistent(&self) -> bool {
        self.raw.is_consistent()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("owner", &self.raw.owner())
            .field("consistent", &self.raw.is_consistent())
            .finish_non_exhaustive()
    }
}

/// One level of an [`RLock`] held by the calling thread; dropping it
/// releases that level (and the lock, after the last one).
///
/// Not `Send`: an `RLock` is owned by a thread, and only that thread may
/// release it. Like every shmkit guard, it belongs to the process that
/// took it (`fork` refuses while one is alive).
///
/// ```
/// use shmkit::sync::RLock;
///
/// let lock = RLock::new();
/// let a = lock.acquire().unwrap();
/// let b = lock.acquire().unwrap();
/// a.release(); // levels can be released in any order
/// assert!(lock.is_locked());
/// b.release();
/// assert!(!lock.is_locked());
/// ```
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    held: Held,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    /// Declares what the lock protects consistent again after an
    /// `OwnerDied` recovery.
    pub fn mark_consistent(&self) {
        self.held.assert_owner("RLockGuard");
        self.lock.raw.mark_consistent();
    }

    /// Releases this level (Python's `release()`): the same as dropping
    /// the guard.
    pub fn release(self) {
        drop(self)
    }

    /// The lock this guard holds a level of.
    pub fn lock(&self) -> &'a RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // A copy in a forked child never releases the parent's lock, and a
        // guard whose lock no longer names this thread (its count was
        // scribbled on and an earlier level already released it) releases
        // nothing: never someone else's lock.
        if !self.held.in_owner_process() || !self.lock.is_owned_by_current_thread() {
            return;
        }
        let depth = self.lock.count.load(Ordering::Relaxed);
        if depth > 1 {
            self.lock.count.store(depth - 1, Ordering::Relaxed);
            return;
        }
        self.lock.count.store(0, Ordering::Relaxed);
        self.lock.thread.store(0, Ordering::Relaxed);
        // SAFETY: this thread of this process owns the lock word (checked
        // above); the token is cleared first, so once the word is free no
        // thread can mistake itself for the owner.
        unsafe { self.lock.raw.unlock() }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_is_pinned() {
        assert_eq!(std::mem::size_of::<RLock>(), 24);
        assert_eq!(std::mem::align_of::<RLock>(), 8);
        assert_eq!(std::mem::offset_of!(RLock, raw), 0);
        assert_eq!(std::mem::offset_of!(RLock, thread), 8);
        assert_eq!(std::mem::offset_of!(RLock, count), 16);
    }

    #[test]
    fn nested_levels_release_in_any_order() {
        let l = RLock::new();
        let a = l.acquire().unwrap();
        let b = l.try_acquire().unwrap();
        let c = l.acquire_timeout(Duration::ZERO).unwrap();
        assert_eq!(l.depth(), 3);
        drop(b);
        drop(a);
        assert_eq!(l.depth(), 1);
        assert!(l.is_locked());
        drop(c);
        assert!(!l.is_locked());
        assert_eq!(l.depth(), 0);
    }

    #[test]
    fn other_thread_waits() {
        let l = RLock::new();
        let g = l.acquire().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!l.is_owned_by_current_thread());
                assert_eq!(l.depth(), 0);
                assert!(matches!(l.try_acquire(), Err(TryLockError::WouldBlock)));
                assert!(matches!(
                    l.acquire_timeout(Duration::from_millis(2)),
                    Err(TryLockError::TimedOut)
                ));
            });
        });
        drop(g);
    }

    #[test]
    fn scribbled_count_never_releases_a_foreign_lock() {
        let l = RLock::new();
        let a = l.acquire().unwrap();
        let b = l.acquire().unwrap();
        // Another process scribbles the depth down to 1: the first drop
        // releases the lock early, and the second must not touch it.
        l.count.store(1, Ordering::Relaxed);
        drop(b);
        assert!(!l.is_locked());
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let l = &l;
            s.spawn(move || {
                let theirs = l.acquire().unwrap();
                held_tx.send(()).unwrap();
                done_rx.recv().unwrap();
                assert!(l.is_owned_by_current_thread());
                drop(theirs);
            });
            held_rx.recv().unwrap();
            // The stale guard on this thread must leave the other's lock.
            drop(a);
            assert!(
                l.is_locked(),
                "a stale guard released another thread's lock"
            );
            done_tx.send(()).unwrap();
        });
        assert!(!l.is_locked());
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri cannot query process liveness")]
    fn dead_owner_process_is_recovered_at_depth_one() {
        let l = RLock::new();
        l.raw.force_state_for_test(0x3FFF_FFFF);
        l.thread.store(77, Ordering::Relaxed);
        l.count.store(5, Ordering::Relaxed);
        let g = l.acquire().expect_err("owner died").into_inner();
        assert_eq!(l.depth(), 1);
        g.mark_consistent();
        drop(g);
        assert!(!l.is_locked());
        assert!(l.acquire().is_ok());
    }
}
