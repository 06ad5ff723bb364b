//! Loom models of the sync layer: the robust mutex's lock word, the
//! `Notifier` event count every blocking primitive parks on, and the
//! primitives built on it.
//!
//! Under `cfg(loom)` the futex is modelled with a loom `Mutex` + `Condvar`
//! (see `src/os/futex.rs`), so a lost wake-up shows up as a loom deadlock.
//! Deadlines never pass under loom, so only untimed operations are used.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_sync`
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;

use shmkit::sync::Notifier;
use shmkit::{Barrier, Condvar, Event, Mutex, RawMutex, Semaphore};

/// A loom cell shared between model threads; each test documents why its
/// accesses are ordered (loom checks that claim).
struct SyncCell<T>(UnsafeCell<T>);

// SAFETY: every test orders its accesses through the primitive under test;
// loom reports a data race if it does not.
unsafe impl<T: Send> Sync for SyncCell<T> {}

impl<T> SyncCell<T> {
    fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// A counter that only ever changes under `lock`: loom's `UnsafeCell`
/// reports a data race if two threads ever touch it without the mutex's
/// Acquire/Release ordering between them.
struct Guarded {
    lock: RawMutex,
    count: SyncCell<u32>,
}

impl Guarded {
    fn new() -> Self {
        Self {
            lock: RawMutex::new(),
            count: SyncCell::new(0),
        }
    }

    fn increment(&self) {
        let a = self.lock.lock();
        assert!(!a.owner_died, "all threads share one live pid");
        // SAFETY: the lock is held.
        self.count.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: this thread holds the lock.
        unsafe { self.lock.unlock() };
    }

    fn read(&self) -> u32 {
        let _ = self.lock.lock();
        // SAFETY: the lock is held.
        let v = self.count.with(|p| unsafe { *p });
        // SAFETY: this thread holds the lock.
        unsafe { self.lock.unlock() };
        v
    }
}

#[test]
fn loom_raw_mutex_two_threads() {
    loom::model(|| {
        let g = Arc::new(Guarded::new());
        let g2 = g.clone();
        let t = thread::spawn(move || g2.increment());
        g.increment();
        t.join().unwrap();
        assert_eq!(g.read(), 2);
        assert!(!g.lock.is_locked());
    });
}

#[test]
fn loom_raw_mutex_three_threads() {
    loom::model(|| {
        let g = Arc::new(Guarded::new());
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.increment())
            })
            .collect();
        g.increment();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.read(), 3);
    });
}

#[test]
fn loom_raw_mutex_try_lock_excludes() {
    loom::model(|| {
        let g = Arc::new(Guarded::new());
        let g2 = g.clone();
        let t = thread::spawn(move || {
            if let Some(a) = g2.lock.try_lock() {
                assert!(!a.owner_died);
                // SAFETY: the lock is held.
                g2.count.with_mut(|p| unsafe { *p += 1 });
                // SAFETY: this thread holds the lock.
                unsafe { g2.lock.unlock() };
                1
            } else {
                0
            }
        });
        g.increment();
        let won = t.join().unwrap();
        assert_eq!(g.read(), 1 + won);
    });
}

#[test]
fn loom_notifier_no_lost_wakeup() {
    loom::model(|| {
        let n = Arc::new(Notifier::new());
        let flag = Arc::new(AtomicBool::new(false));
        let data = Arc::new(SyncCell::new(0u32));
        let t = {
            let (n, flag, data) = (n.clone(), flag.clone(), data.clone());
            thread::spawn(move || {
                // SAFETY: the waiter reads `data` only after the flag's
                // Release/Acquire pair orders this write before the read.
                data.with_mut(|p| unsafe { *p = 7 });
                flag.store(true, Ordering::Release);
                n.notify_all();
            })
        };
        let got = n.wait_until(None, || flag.load(Ordering::Acquire).then_some(()));
        assert_eq!(got, Some(()));
        // SAFETY: ordered after the writer by the flag (loom checks it).
        assert_eq!(data.with(|p| unsafe { *p }), 7);
        t.join().unwrap();
        assert_eq!(n.waiters(), 0);
    });
}

#[test]
fn loom_notifier_two_waiters_notify_all() {
    loom::model(|| {
        let n = Arc::new(Notifier::new());
        let flag = Arc::new(AtomicBool::new(false));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (n, flag) = (n.clone(), flag.clone());
                thread::spawn(move || {
                    n.wait_until(None, || flag.load(Ordering::Acquire).then_some(()))
                        .unwrap();
                })
            })
            .collect();
        flag.store(true, Ordering::Release);
        n.notify_all();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(n.waiters(), 0);
    });
}

#[test]
fn loom_condvar_mutex_handoff() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(0u32));
        let cv = Arc::new(Condvar::new());
        let t = {
            let (m, cv) = (m.clone(), cv.clone());
            thread::spawn(move || {
                // Hand the turn to the main thread, then wait for it back.
                *m.lock().unwrap() = 1;
                cv.notify_all();
                let g = cv.wait_while(m.lock().unwrap(), |v| *v != 2).unwrap();
                assert_eq!(*g, 2);
            })
        };
        {
            let mut g = cv.wait_while(m.lock().unwrap(), |v| *v != 1).unwrap();
            *g = 2;
        }
        cv.notify_all();
        t.join().unwrap();
        assert_eq!(*m.lock().unwrap(), 2);
    });
}

#[test]
fn loom_event_set_wakes_two_waiters() {
    loom::model(|| {
        let e = Arc::new(Event::new());
        let data = Arc::new(SyncCell::new(0u32));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (e, data) = (e.clone(), data.clone());
                thread::spawn(move || {
                    e.wait();
                    assert!(e.is_set());
                    // SAFETY: ordered after the setter's write by the
                    // event's Release store / Acquire load (loom checks).
                    assert_eq!(data.with(|p| unsafe { *p }), 5);
                })
            })
            .collect();
        // SAFETY: written before `set`, read by waiters only after `wait`.
        data.with_mut(|p| unsafe { *p = 5 });
        e.set();
        for t in ts {
            t.join().unwrap();
        }
        e.clear();
        assert!(!e.is_set());
    });
}

#[test]
fn loom_semaphore_conserves_units() {
    // 3 threads, 1 unit: at most one holder at a time, and the unit is back
    // at the end. The holder touches a loom cell, so the semaphore's
    // Acquire/Release pair is checked too.
    loom::model(|| {
        let s = Arc::new(Semaphore::new(1, Some(1)));
        let holders = Arc::new(AtomicU32::new(0));
        let cell = Arc::new(SyncCell::new(0u32));
        let work = {
            let (s, holders, cell) = (s.clone(), holders.clone(), cell.clone());
            move || {
                s.acquire();
                let now = holders.fetch_add(1, Ordering::Relaxed) + 1;
                assert!(now <= 1, "{now} holders of a 1-unit semaphore");
                // SAFETY: exclusive while the single unit is held.
                cell.with_mut(|p| unsafe { *p += 1 });
                holders.fetch_sub(1, Ordering::Relaxed);
                s.release().unwrap();
            }
        };
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let w = work.clone();
                thread::spawn(w)
            })
            .collect();
        work();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 1);
        // SAFETY: all other threads joined.
        assert_eq!(cell.with(|p| unsafe { *p }), 3);
    });
}

#[test]
fn loom_semaphore_two_units_three_threads() {
    loom::model(|| {
        let s = Arc::new(Semaphore::new(2, None));
        let holders = Arc::new(AtomicU32::new(0));
        let work = {
            let (s, holders) = (s.clone(), holders.clone());
            move || {
                s.acquire();
                let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= 2, "{now} holders of a 2-unit semaphore");
                holders.fetch_sub(1, Ordering::SeqCst);
                s.release().unwrap();
            }
        };
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let w = work.clone();
                thread::spawn(w)
            })
            .collect();
        work();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 2);
    });
}

#[test]
fn loom_barrier_two_rounds() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let t = {
            let b = b.clone();
            thread::spawn(move || {
                let r1 = b.wait().is_leader() as u32;
                let r2 = b.wait().is_leader() as u32;
                (r1, r2)
            })
        };
        let r1 = b.wait().is_leader() as u32;
        let r2 = b.wait().is_leader() as u32;
        let (t1, t2) = t.join().unwrap();
        assert_eq!(r1 + t1, 1, "exactly one leader in round 1");
        assert_eq!(r2 + t2, 1, "exactly one leader in round 2");
    });
}

#[test]
fn loom_barrier_three_publishes_writes() {
    // Each participant writes its own cell before the barrier and reads all
    // cells after it: loom reports a race if the barrier does not order
    // every pre-barrier write before every post-barrier read.
    loom::model(|| {
        let b = Arc::new(Barrier::new(3));
        let cells: Arc<[SyncCell<u32>; 3]> =
            Arc::new([SyncCell::new(0), SyncCell::new(0), SyncCell::new(0)]);
        let run = {
            let (b, cells) = (b.clone(), cells.clone());
            move |me: usize| {
                // SAFETY: only participant `me` writes cell `me`, before
                // the barrier.
                cells[me].with_mut(|p| unsafe { *p = me as u32 + 1 });
                let leader = b.wait().is_leader() as u32;
                for (i, c) in cells.iter().enumerate() {
                    // SAFETY: all writes happened before the barrier.
                    assert_eq!(c.with(|p| unsafe { *p }), i as u32 + 1);
                }
                leader
            }
        };
        let ts: Vec<_> = (1..3)
            .map(|me| {
                let r = run.clone();
                thread::spawn(move || r(me))
            })
            .collect();
        let mut leaders = run(0);
        for t in ts {
            leaders += t.join().unwrap();
        }
        assert_eq!(leaders, 1);
    });
}
