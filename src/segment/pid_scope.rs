//! The pid-namespace guard: which pids stored in a segment this process
//! may judge.
//!
//! Every recovery path (stealing a dead owner's lock, freeing a dead
//! process's MPMC claim, peer slot or barrier seat, sweeping the attach
//! table) decides "the process that wrote this pid is dead" by asking the
//! kernel about that pid. A pid means something only in its pid
//! namespace: a process in another namespace (a container sharing
//! `/dev/shm`, `unshare --pid --fork`) would see a live holder as dead (and
//! overwrite live data) or a stranger as itself. So before judging a pid
//! read from shared memory, recovery code asks [`pid_scope`] for the
//! memory it read it from:
//!
//! | scope | when | what may be judged |
//! |---|---|---|
//! | [`PidScope::Local`] | the segment's creator is in this process's pid namespace and no process of another namespace ever attached; or the memory is not in a shmkit segment of this process (process-local memory) | every pid |
//! | [`PidScope::CreatorOnly`] | this process is in the creator's namespace, but a process of another namespace attached (with [`OpenOptions::foreign_pid_namespace`](super::OpenOptions::foreign_pid_namespace)) | only the creator's pid, from the header; a pid in a lock word, claim or slot may be either namespace's |
//! | [`PidScope::Foreign`] | the creator is in another pid namespace | none |
//!
//! Outside [`PidScope::Local`], recovery is off for the segment: a holder
//! is treated as alive for as long as it holds. Blocking calls then wait
//! until the holder lets go (a holder that died holding a lock blocks an
//! untimed `lock()` for good), and their timed and `try_` forms return
//! `Timeout`/`WouldBlock` as for any live holder. An unknown namespace
//! (no `/proc`: inode 0, on either side) counts as the same namespace.
//!
//! How the scope reaches the recovery code: every [`Segment`](super::Segment)
//! that carries a validated header registers its mapping's address range
//! in a small process-local table (lock-free, so a forked child never
//! inherits it locked) when it is created or attached, and removes it
//! before unmapping. Recovery code, which only has the address of the
//! object it recovers, looks the address up there on its slow path (after
//! a park slice ran out, never on a fast path) and reads the segment
//! header's `pid_ns` word. A process with more than [`MAX_TRACKED`]
//! segments mapped at once stops registering new ones and from then on
//! treats every unregistered address as [`PidScope::Foreign`] (no
//! recovery there), never as local.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::header::{identity_alive, OpenOptions, SegmentHeader, HEADER_SIZE};
use crate::error::AttachError;
use crate::os::{self, process};

/// What this process may conclude from pids stored in some memory (see
/// the [module docs](self)).
///
/// ```
/// use shmkit::segment::{pid_scope, PidScope};
///
/// // Memory outside any segment (here: the stack) is local.
/// let word = 0u32;
/// assert_eq!(pid_scope(&word as *const u32 as *const u8), PidScope::Local);
///
/// // A segment this process created is local too.
/// let ev = shmkit::ShmBox::<shmkit::Event>::anonymous(())?;
/// assert_eq!(pid_scope(&*ev as *const shmkit::Event as *const u8), PidScope::Local);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidScope {
    /// Every pid is in this process's namespace: recovery runs.
    Local,
    /// This process shares the creator's namespace, but a process of
    /// another namespace attached: only the creator's pid can be judged.
    CreatorOnly,
    /// The segment's creator is in another pid namespace: no pid in it can
    /// be judged, not even one equal to this process's own.
    Foreign,
}

impl PidScope {
    /// Whether pids read from this memory (lock owners, claims, slots) may
    /// be judged dead or taken as this process's own.
    pub fn judges_pids(self) -> bool {
        self == PidScope::Local
    }
}

/// The attach-time half of the guard: a segment created in another pid
/// namespace is refused unless `opts` opts in; an opted-in attach marks
/// the segment ([`SegmentHeader::mark_foreign_attached`]) before this
/// process can write its first pid into it. A segment of this process's
/// namespace is admitted as is, also when a foreign process attached
/// before (this process then runs without recovery on it, like every
/// process of the creator's namespace).
pub(crate) fn admit(h: &SegmentHeader, opts: &OpenOptions) -> Result<(), AttachError> {
    let segment = h.pid_namespace();
    let ours = process::current_pid_namespace();
    if process::same_pid_namespace(segment, ours) {
        return Ok(());
    }
    if !opts.get_foreign_pid_namespace() {
        return Err(AttachError::ForeignPidNamespace { segment, ours });
    }
    h.mark_foreign_attached();
    Ok(())
}

/// How many segments one process can have registered at once.
pub const MAX_TRACKED: usize = 1024;

const PAGE_SHIFT: u32 = 12;
/// Bits of a packed entry holding the base page number (47-bit addresses).
const BASE_BITS: u32 = 35;

// Process-local bookkeeping, never in shared memory: std atomics. An entry
// is `base page | pages << BASE_BITS` (0 = free), one word, so a reader
// always sees the base and length of one registration together.
static ENTRIES: [AtomicU64; MAX_TRACKED] = [const { AtomicU64::new(0) }; MAX_TRACKED];
/// Entries `[0, HIGH)` may be in use.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Some segment could not be registered: unknown addresses are foreign.
static OVERFLOW: AtomicBool = AtomicBool::new(false);

fn pack(base: usize, len: usize) -> Option<u64> {
    if base & ((1 << PAGE_SHIFT) - 1) != 0 || len < HEADER_SIZE {
        return None;
    }
    let page = (base as u64) >> PAGE_SHIFT;
    let pages = (len as u64).div_ceil(1 << PAGE_SHIFT);
    (page != 0 && page < 1 << BASE_BITS && pages < 1 << (64 - BASE_BITS))
        .then_some(page | pages << BASE_BITS)
}

fn unpack(w: u64) -> (usize, usize) {
    let base = ((w & ((1 << BASE_BITS) - 1)) << PAGE_SHIFT) as usize;
    let len = ((w >> BASE_BITS) << PAGE_SHIFT) as usize;
    (base, len)
}

/// A mapping's entry in the table; removes it when dropped. Held by the
/// [`Segment`](super::Segment) and dropped *before* the mapping goes.
#[derive(Debug)]
pub(crate) struct ScopeEntry {
    index: usize,
    word: u64,
}

impl Drop for ScopeEntry {
    fn drop(&mut self) {
        let _ =
            ENTRIES[self.index].compare_exchange(self.word, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Registers the mapping `[base, base + len)`, which starts with a
/// validated shmkit header and stays mapped until the returned entry is
/// dropped. `None` (and unknown addresses count as foreign from then on)
/// when the table is full or the range cannot be recorded.
pub(crate) fn register(base: *const u8, len: usize) -> Option<ScopeEntry> {
    let Some(word) = pack(base as usize, len) else {
        OVERFLOW.store(true, Ordering::SeqCst);
        return None;
    };
    for (index, e) in ENTRIES.iter().enumerate() {
        if e.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            HIGH.fetch_max(index + 1, Ordering::AcqRel);
            return Some(ScopeEntry { index, word });
        }
    }
    OVERFLOW.store(true, Ordering::SeqCst);
    None
}

/// The header of the registered segment whose mapping contains `addr`.
///
/// Sound because `addr` is inside memory the caller holds a reference to
/// (so its mapping stays for the call), entries are added after mapping and
/// removed before unmapping, and live mappings never overlap: an entry
/// whose range contains `addr` is that very mapping's.
fn header_at<'a>(addr: usize) -> Option<&'a SegmentHeader> {
    let high = HIGH.load(Ordering::Acquire).min(MAX_TRACKED);
    for e in &ENTRIES[..high] {
        let w = e.load(Ordering::Acquire);
        if w == 0 {
            continue;
        }
        let (base, len) = unpack(w);
        if addr >= base && addr - base < len {
            // SAFETY: see above: `base` starts a live mapping of at least
            // HEADER_SIZE bytes (checked by `pack`) holding a header, which
            // consists of atomics only, page-aligned.
            return Some(unsafe { &*(base as *const SegmentHeader) });
        }
    }
    None
}

fn scope_of(h: &SegmentHeader) -> PidScope {
    // Pairs with the fence after `mark_foreign_attached`: a pid the caller
    // read before this point, written by a foreign attacher, implies the
    // attacher's mark is visible below.
    crate::primitives::fence(crate::primitives::Ordering::SeqCst);
    if !process::same_pid_namespace(h.pid_namespace(), process::current_pid_namespace()) {
        PidScope::Foreign
    } else if h.has_foreign_attacher() {
        PidScope::CreatorOnly
    } else {
        PidScope::Local
    }
}

/// The [`PidScope`] of the memory at `addr` for the calling process (see
/// the [module docs](self)). Cheap when nothing is registered; otherwise a
/// scan of this process's registered segments: for slow paths only.
pub fn pid_scope(addr: *const u8) -> PidScope {
    if HIGH.load(Ordering::Acquire) == 0 && !OVERFLOW.load(Ordering::SeqCst) {
        return PidScope::Local;
    }
    match header_at(addr as usize) {
        Some(h) => scope_of(h),
        None if OVERFLOW.load(Ordering::SeqCst) => PidScope::Foreign,
        None => PidScope::Local,
    }
}

/// Whether the process `pid`, read from a lock word, claim or slot at
/// `addr`, must be treated as alive: [`os::process_alive`] where the
/// scope is [`PidScope::Local`], and always `true` elsewhere (no recovery
/// across pid namespaces). `pid` 0 is no process.
///
/// ```
/// use shmkit::segment::holder_alive;
/// let word = 0u32;
/// let at = &word as *const u32 as *const u8;
/// assert!(holder_alive(at, shmkit::os::current_pid()));
/// assert!(!holder_alive(at, 0x3FFF_FFFF)); // above pid_max: never a process
/// ```
pub fn holder_alive(addr: *const u8, pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    if pid_scope(addr).judges_pids() {
        os::process_alive(pid)
    } else {
        true
    }
}

/// Whether the creator of the object at `addr`, whose pid the caller knows
/// as `pid`, must be treated as alive. In a registered segment whose
/// creator is in this process's namespace the header's `(creator_pid,
/// creator_start)` is checked, so a reused pid counts as dead; in a
/// foreign one the creator is always alive. Elsewhere (process-local
/// memory) only the pid is checked. `pid` 0 (unknown) is alive.
pub fn creator_alive(addr: *const u8, pid: u32) -> bool {
    if pid == 0 {
        return true;
    }
    if HIGH.load(Ordering::Acquire) != 0 || OVERFLOW.load(Ordering::SeqCst) {
        match header_at(addr as usize) {
            Some(h) => {
                if scope_of(h) == PidScope::Foreign {
                    return true;
                }
                if h.creator_pid() == pid {
                    return identity_alive(pid, h.creator_start());
                }
            }
            None if OVERFLOW.load(Ordering::SeqCst) => return true,
            None => {}
        }
    }
    os::process_alive(pid)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Mutex, ShmBox};

    /// A pid above `pid_max`'s limit: never a live process.
    const DEAD: u32 = 0x3FFF_FFFF;

    /// The `pid_ns` word of the segment holding `b` (offset 120).
    fn pid_ns_word<T: crate::segment::ShmObject>(b: &ShmBox<T>) -> &AtomicU64 {
        // SAFETY: offset 120 of the mapped, 64-aligned header is the
        // 8-aligned `pid_ns` word, an atomic.
        unsafe { &*(b.segment().as_ptr().add(120) as *const AtomicU64) }
    }

    #[test]
    #[cfg_attr(miri, ignore = "segments and liveness call the OS")]
    fn no_lock_steal_outside_the_local_scope() {
        let lock = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
        let at = &*lock as *const Mutex<u64> as *const u8;
        assert_eq!(pid_scope(at), PidScope::Local);
        let word = pid_ns_word(&lock);
        let ours = word.load(Ordering::Relaxed);
        assert_eq!(ours, process::current_pid_namespace());

        // As if created in another pid namespace: a dead-looking owner is
        // not judged, the lock is not taken.
        word.store(ours ^ 0x5a5a, Ordering::Relaxed);
        assert_eq!(pid_scope(at), PidScope::Foreign);
        lock.raw().force_state_for_test(DEAD);
        assert!(lock.raw().try_lock().is_none(), "stolen across namespaces");
        let d = crate::os::Deadline::after(std::time::Duration::from_millis(5));
        assert!(lock.raw().lock_until(Some(d)).is_none());
        assert!(creator_alive(at, DEAD), "a foreign creator is never dead");
        assert!(holder_alive(at, DEAD));

        // Our namespace, but a foreign process attached: the same.
        word.store(ours, Ordering::Relaxed);
        lock.segment().header().unwrap().mark_foreign_attached();
        assert_eq!(pid_scope(at), PidScope::CreatorOnly);
        assert!(lock.raw().try_lock().is_none(), "stolen in a mixed segment");
        assert!(
            !creator_alive(at, DEAD),
            "the creator's pid is still judged"
        );

        // Local again: the dead owner's lock is recovered.
        word.store(ours, Ordering::Relaxed);
        assert_eq!(pid_scope(at), PidScope::Local);
        let a = lock.raw().try_lock().expect("dead owner recovered");
        assert!(a.owner_died);
        // SAFETY: we hold it.
        unsafe { lock.raw().unlock() };
    }

    #[test]
    #[cfg_attr(miri, ignore = "segments and liveness call the OS")]
    fn attach_table_sweep_judges_no_foreign_entry() {
        let lock = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
        let seg = lock.segment();
        let table = seg.header().unwrap().attach_table(seg.len()).unwrap();
        let word = pid_ns_word(&lock);
        let ours = word.load(Ordering::Relaxed);
        table.register(DEAD, 1);
        word.store(ours ^ 0x5a5a, Ordering::Relaxed);
        table.sweep();
        assert!(
            table.entries().iter().any(|a| a.pid == DEAD),
            "a foreign segment's entry was judged"
        );
        word.store(ours, Ordering::Relaxed);
        table.sweep();
        assert!(table.entries().iter().all(|a| a.pid != DEAD));
    }

    #[test]
    #[cfg_attr(miri, ignore = "segments call the OS")]
    fn foreign_attach_is_refused_unless_opted_in() {
        let lock = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
        let h = lock.segment().header().unwrap();
        let ours = process::current_pid_namespace();
        assert!(admit(h, &OpenOptions::new()).is_ok());
        if ours == 0 {
            return; // no /proc: every namespace counts as ours
        }
        pid_ns_word(&lock).store(ours + 1, Ordering::Relaxed);
        match admit(h, &OpenOptions::new()) {
            Err(AttachError::ForeignPidNamespace { segment, ours: o }) => {
                assert_eq!((segment, o), (ours + 1, ours));
            }
            other => panic!("expected ForeignPidNamespace, got {other:?}"),
        }
        assert!(!h.has_foreign_attacher());
        admit(h, &OpenOptions::new().foreign_pid_namespace(true)).unwrap();
        assert!(h.has_foreign_attacher());
        assert_eq!(
            h.pid_namespace(),
            ours + 1,
            "the creator's namespace is kept"
        );
    }

    #[test]
    fn pack_round_trips_and_refuses_what_it_cannot_hold() {
        let w = pack(0x7f00_1234_5000, 1 << 20).unwrap();
        assert_eq!(unpack(w), (0x7f00_1234_5000, 1 << 20));
        // Lengths round up to whole pages (a mapping is page-granular).
        assert_eq!(unpack(pack(0x10_0000, 5000).unwrap()).1, 8192);
        assert!(pack(0x10_0001, 4096).is_none(), "not page-aligned");
        assert!(pack(0, 4096).is_none(), "null base");
        assert!(pack(0x10_0000, 64).is_none(), "shorter than a header");
    }
}
