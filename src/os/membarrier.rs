//! Process-wide asymmetric barriers: Linux `membarrier(2)` with
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
//!
//! A Dekker-style hand-over (a publisher stores its index then loads a
//! waiter count; a waiter stores the count then loads the index) needs a
//! full barrier between the store and the load on *both* sides. When one
//! side runs once per message and the other only before it sleeps, the
//! rare side can pay for both: the frequent side keeps a compiler-only
//! barrier between its store and its load, and the rare side calls
//! [`heavy_barrier`], which makes every running thread of every process
//! that called [`register`] execute a full memory barrier (an IPI to the
//! CPUs running them; a thread that is not running passes one when it is
//! scheduled again) before the call returns. SAFETY.md ("SPSC publish")
//! gives the argument.
//!
//! Support is queried once per process. Registration is per process
//! (an `exec` drops it), so [`register`] is keyed on the current pid and
//! repeats itself in a forked child. Under loom and Miri, and off Linux,
//! nothing is supported: callers take their symmetric (full-barrier)
//! fallback, which is the protocol the loom models check.

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
mod imp {
    use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};

    /// 0 = not asked yet, 1 = unsupported, 2 = supported.
    static SUPPORT: AtomicU8 = AtomicU8::new(0);
    /// The pid that registered (0 = none yet); a forked child differs.
    static REGISTERED: AtomicU32 = AtomicU32::new(0);

    #[inline]
    pub(crate) fn supported() -> bool {
        match SUPPORT.load(Ordering::Relaxed) {
            0 => query(),
            s => s == 2,
        }
    }

    #[cold]
    fn query() -> bool {
        let q = membarrier_query();
        let ok = q.contains(MembarrierQuery::GLOBAL_EXPEDITED)
            && q.contains(MembarrierQuery::REGISTER_GLOBAL_EXPEDITED);
        SUPPORT.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
        ok
    }

    pub(crate) fn register() -> bool {
        if !supported() {
            return false;
        }
        let me = crate::os::current_pid();
        if REGISTERED.load(Ordering::Relaxed) == me {
            return true;
        }
        if membarrier(MembarrierCommand::RegisterGlobalExpedited).is_err() {
            return false;
        }
        REGISTERED.store(me, Ordering::Relaxed);
        true
    }

    #[inline]
    pub(crate) fn heavy_barrier() -> bool {
        supported() && membarrier(MembarrierCommand::GlobalExpedited).is_ok()
    }
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
mod imp {
    #[inline]
    pub(crate) fn supported() -> bool {
        false
    }

    pub(crate) fn register() -> bool {
        false
    }

    #[inline]
    pub(crate) fn heavy_barrier() -> bool {
        false
    }
}

/// Whether this process can issue [`heavy_barrier`] and [`register`] for
/// it (asked once per process).
#[inline]
pub(crate) fn supported() -> bool {
    imp::supported()
}

/// Registers the calling process so that other processes'
/// [`heavy_barrier`] calls order its memory accesses; once per process
/// (again in a forked child). False when unsupported or refused: the
/// caller must then publish with full barriers.
pub(crate) fn register() -> bool {
    imp::register()
}

/// A full memory barrier on every CPU currently running a thread of a
/// registered process, and on the caller, before returning. False when it
/// could not be issued (the caller must not rely on it).
#[inline]
pub(crate) fn heavy_barrier() -> bool {
    imp::heavy_barrier()
}

#[cfg(all(test, target_os = "linux", not(loom), not(miri)))]
mod tests {
    #[test]
    fn registration_is_idempotent_and_barrier_follows_support() {
        let first = super::register();
        assert_eq!(super::register(), first);
        assert_eq!(first, super::supported());
        assert_eq!(super::heavy_barrier(), super::supported());
    }
}
