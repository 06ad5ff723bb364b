//! Loom models of the sync layer: the robust mutex's lock word, the
//! `Notifier` event count every blocking primitive parks on, and the
//! primitives built on it.
//!
//! The recovery paths are modelled with simulated processes
//! (`shmkit::os::process::loom_liveness`): a thread that calls
//! `become_process` has its own pid, `die` marks it dead (survivors that
//! see it dead also see what it did before), and a timed park slice runs
//! out once after each death. So "the holder dies, a waiter recovers" is
//! checked in every interleaving, including a waiter that went to sleep
//! before the death (no lost wake-up: the model would deadlock).
//!
//! The sync primitives notify through `Notifier::notify_one`/`notify_all`,
//! whose fence is the same in production and under loom, so these models
//! check the production notify path.
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

use shmkit::os::process::loom_liveness as liveness;
use shmkit::sync::{BrokenBarrierError, Lock, Notifier, RLock};
use shmkit::{Barrier, Condvar, Event, Mutex, RawMutex, Semaphore, TryLockError};

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
                let r1 = b.wait().unwrap().is_leader() as u32;
                let r2 = b.wait().unwrap().is_leader() as u32;
                (r1, r2)
            })
        };
        let r1 = b.wait().unwrap().is_leader() as u32;
        let r2 = b.wait().unwrap().is_leader() as u32;
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
                let leader = b.wait().unwrap().is_leader() as u32;
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

/// Silences the panic message of simulated crashes (`liveness::Crashed`);
/// every other panic still prints.
fn quiet_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<liveness::Crashed>().is_none() {
                default(info)
            }
        }));
    });
}

#[test]
fn loom_lock_holder_dies_exactly_one_waiter_recovers() {
    // The holder process takes the lock, writes, starts two waiter
    // processes and dies holding it (its guard releases nothing). Whether
    // a waiter is asleep, spinning or not yet started at the death, both
    // finish (no lost wake-up: a stuck waiter is a loom deadlock), exactly
    // one sees OwnerDied, and both see the dead holder's write.
    loom::model(|| {
        liveness::become_process();
        let lock = Arc::new(Lock::new());
        let data = Arc::new(SyncCell::new(0u32));
        let died = Arc::new(AtomicU32::new(0));
        let holder = {
            let (lock, data, died) = (lock.clone(), data.clone(), died.clone());
            thread::spawn(move || {
                liveness::become_process();
                let g = lock.acquire().expect("a fresh lock");
                // SAFETY: the lock is held.
                data.with_mut(|p| unsafe { *p = 1 });
                let waiters: Vec<_> = (0..2)
                    .map(|_| {
                        let (lock, data, died) = (lock.clone(), data.clone(), died.clone());
                        thread::spawn(move || {
                            liveness::become_process();
                            let g = match lock.acquire() {
                                Ok(g) => g,
                                Err(d) => {
                                    died.fetch_add(1, Ordering::Relaxed);
                                    let g = d.into_inner();
                                    g.mark_consistent();
                                    g
                                }
                            };
                            // SAFETY: the lock is held; the dead holder's
                            // write is ordered before by its death.
                            data.with_mut(|p| unsafe { *p += 1 });
                            drop(g);
                        })
                    })
                    .collect();
                liveness::die();
                drop(g);
                waiters
            })
        };
        for w in holder.join().unwrap() {
            w.join().unwrap();
        }
        assert_eq!(died.load(Ordering::Relaxed), 1, "exactly one recovery");
        // SAFETY: every other thread has been joined.
        assert_eq!(data.with(|p| unsafe { *p }), 3);
        assert!(!lock.is_locked());
        assert!(lock.is_consistent());
    });
}

#[test]
fn loom_raw_mutex_try_lock_steals_from_dead_owner_once() {
    // Two processes race to take a lock whose owner died: try_lock's
    // liveness check and the steal CAS let exactly one of them win.
    loom::model(|| {
        liveness::become_process();
        let m = Arc::new(RawMutex::new());
        let dead = {
            let m = m.clone();
            thread::spawn(move || {
                liveness::become_process();
                assert!(!m.lock().owner_died);
                liveness::die();
            })
        };
        dead.join().unwrap();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    liveness::become_process();
                    match m.try_lock() {
                        Some(a) => {
                            assert!(a.owner_died);
                            1u32
                        }
                        None => 0,
                    }
                })
            })
            .collect();
        let won: u32 = racers.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(won, 1, "exactly one process takes the dead owner's lock");
        assert!(m.is_locked());
    });
}

#[test]
fn loom_rlock_reenters_per_thread() {
    // Two threads of one process: each re-enters its own hold, the other
    // waits, and the counter (touched at both depths) is never raced.
    loom::model(|| {
        let lock = Arc::new(RLock::new());
        let data = Arc::new(SyncCell::new(0u32));
        let work = {
            let (lock, data) = (lock.clone(), data.clone());
            move || {
                let outer = lock.acquire().unwrap();
                let inner = lock.acquire().unwrap();
                assert_eq!(lock.depth(), 2);
                // SAFETY: the lock is held.
                data.with_mut(|p| unsafe { *p += 1 });
                drop(inner);
                assert!(lock.is_owned_by_current_thread());
                // SAFETY: still held at depth 1.
                data.with_mut(|p| unsafe { *p += 1 });
                drop(outer);
                assert_eq!(lock.depth(), 0);
            }
        };
        let t = {
            let w = work.clone();
            thread::spawn(w)
        };
        work();
        t.join().unwrap();
        // SAFETY: the other thread has been joined.
        assert_eq!(data.with(|p| unsafe { *p }), 4);
        assert!(!lock.is_locked());
    });
}

#[test]
fn loom_rlock_owner_dies_at_depth_two() {
    // The owning process dies two levels deep: the next process gets it
    // with OwnerDied at depth 1, re-enters it, and frees it completely.
    loom::model(|| {
        liveness::become_process();
        let lock = Arc::new(RLock::new());
        let owner = {
            let lock = lock.clone();
            thread::spawn(move || {
                liveness::become_process();
                let a = lock.acquire().unwrap();
                let b = lock.acquire().unwrap();
                let next = {
                    let lock = lock.clone();
                    thread::spawn(move || {
                        liveness::become_process();
                        let outer = match lock.acquire() {
                            Err(d) => d.into_inner(),
                            Ok(_) => panic!("taken from a dead owner without OwnerDied"),
                        };
                        assert_eq!(lock.depth(), 1);
                        outer.mark_consistent();
                        let inner = lock.acquire().expect("re-entry");
                        assert_eq!(lock.depth(), 2);
                        drop(inner);
                        drop(outer);
                    })
                };
                liveness::die();
                drop((a, b));
                next
            })
        };
        owner.join().unwrap().join().unwrap();
        assert!(!lock.is_locked());
        assert!(matches!(lock.try_acquire(), Ok(_)));
    });
}

#[test]
fn loom_rlock_other_process_cannot_reenter() {
    // A thread of another process never counts as the owner: it gets
    // WouldBlock, not a re-entry.
    loom::model(|| {
        liveness::become_process();
        let lock = Arc::new(RLock::new());
        let g = lock.acquire().unwrap();
        let other = {
            let lock = lock.clone();
            thread::spawn(move || {
                liveness::become_process();
                assert!(!lock.is_owned_by_current_thread());
                assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
            })
        };
        other.join().unwrap();
        drop(g);
        assert!(!lock.is_locked());
    });
}

#[test]
fn loom_barrier_waiter_dies_breaks_it() {
    // A 3-party barrier; one waiter process is killed while waiting, the
    // third party never comes. The survivor must not hang: it sees the
    // dead member after a park slice and gets BrokenBarrierError.
    quiet_crashes();
    loom::model(|| {
        liveness::become_process();
        let b = Arc::new(Barrier::new(3));
        let victim = {
            let b = b.clone();
            thread::spawn(move || {
                liveness::become_process();
                liveness::arm_crash(0);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.wait()));
                assert!(r.is_err(), "the victim dies inside wait");
            })
        };
        let survivor = {
            let b = b.clone();
            thread::spawn(move || {
                liveness::become_process();
                b.wait()
            })
        };
        victim.join().unwrap();
        assert_eq!(survivor.join().unwrap(), Err(BrokenBarrierError));
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
    });
}

#[test]
fn loom_barrier_abort_and_reset_wake_waiters_broken() {
    // A waiter of a 2-party barrier is released by neither abort nor reset
    // as if the round had completed: it always gets BrokenBarrierError.
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let w = {
            let b = b.clone();
            thread::spawn(move || b.wait())
        };
        while b.n_waiting() != 1 {
            thread::yield_now();
        }
        b.abort();
        b.reset();
        assert_eq!(w.join().unwrap(), Err(BrokenBarrierError));
        assert!(!b.is_broken());
    });
}
