//! Single-process (threads) tests of the sync algorithms over heap memory,
//! so they also run under Miri:
//! `cargo +nightly miri test --test sync_threads`.
//!
//! Counts are scaled down under Miri.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmkit::sync::{BarrierWaitError, BrokenBarrierError, Lock, Notifier, RLock};
use shmkit::{Barrier, Condvar, Event, Mutex, RawMutex, Semaphore, ShmValue, TryLockError};

const THREADS: u64 = 4;
#[cfg(miri)]
const N: u64 = 20;
#[cfg(not(miri))]
const N: u64 = 20_000;

#[test]
fn mutex_counter_threads() {
    let m = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..N {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(*m.lock().unwrap(), THREADS * N);
    assert!(!m.is_locked());
}

#[test]
fn raw_mutex_try_lock_and_timeout() {
    let m = RawMutex::new();
    assert!(!m.lock().owner_died);
    assert!(m.is_locked());
    assert_eq!(m.owner(), Some(shmkit::os::current_pid()));
    assert!(m.try_lock().is_none());
    std::thread::scope(|s| {
        s.spawn(|| {
            let d = shmkit::os::Deadline::after(Duration::from_millis(5));
            assert!(m.lock_until(Some(d)).is_none(), "held by a live process");
        });
    });
    // SAFETY: this thread holds the lock.
    unsafe { m.unlock() };
    assert!(!m.is_locked());
    assert!(m.try_lock().is_some());
    // SAFETY: as above.
    unsafe { m.unlock() };
}

#[test]
fn mutex_lock_timeout_and_try_lock() {
    let m = Mutex::new(1u32);
    let g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
            assert!(matches!(
                m.lock_timeout(Duration::from_millis(2)),
                Err(TryLockError::TimedOut)
            ));
        });
    });
    drop(g);
    assert_eq!(*m.lock_timeout(Duration::from_secs(5)).unwrap(), 1);
}

#[test]
fn condvar_ping_pong_threads() {
    let turns = N.min(2_000);
    let m = Mutex::new(0u64);
    let cv = Condvar::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..turns {
                let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 0).unwrap();
                *g += 1;
                drop(g);
                cv.notify_all();
            }
        });
        for _ in 0..turns {
            let mut g = cv.wait_while(m.lock().unwrap(), |v| *v % 2 == 1).unwrap();
            *g += 1;
            drop(g);
            cv.notify_one();
        }
    });
    assert_eq!(*m.lock().unwrap(), 2 * turns);
}

#[test]
fn condvar_wait_timeout_reports_timeout() {
    let m = Mutex::new(0u8);
    let cv = Condvar::new();
    let (g, timed_out) = cv
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(1))
        .unwrap();
    assert!(timed_out);
    drop(g);
    assert!(!m.is_locked());
}

#[test]
fn condvar_wait_timeout_relock_is_bounded() {
    // Another thread takes the mutex while we wait, notifies us, and keeps
    // the mutex until we are done: our re-lock gives up at the deadline
    // (TimedOut, lock not held) instead of waiting for it. (The deadline
    // only has to outlast the holder taking the lock; it also bounds how
    // long the test takes.)
    let m = Mutex::new(0u8);
    let cv = Condvar::new();
    let done = AtomicU32::new(0);
    let g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Blocks until `wait_timeout` below releases the mutex.
            let g = m.lock().unwrap();
            cv.notify_all();
            while done.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            drop(g);
        });
        match cv.wait_timeout(g, Duration::from_millis(200)) {
            Err(TryLockError::TimedOut) => {}
            Ok((_, timed_out)) => panic!("got the guard back (timed out: {timed_out})"),
            Err(e) => panic!("{e}"),
        }
        done.store(1, Ordering::Release);
    });
    assert!(!m.is_locked());
    let (g, timed_out) = cv
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(1))
        .unwrap();
    assert!(timed_out);
    drop(g);
}

#[test]
fn mutex_lock_deadline_and_zero_timeout() {
    let m = Mutex::new(3u32);
    assert_eq!(*m.lock_timeout(Duration::ZERO).unwrap(), 3);
    let g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let d = shmkit::os::Deadline::after(Duration::from_millis(1));
            assert!(matches!(m.lock_deadline(d), Err(TryLockError::TimedOut)));
            assert!(matches!(
                m.lock_timeout(Duration::ZERO),
                Err(TryLockError::TimedOut)
            ));
        });
    });
    drop(g);
}

#[test]
fn event_wakes_all_waiters() {
    let e = Event::new();
    let woke = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                e.wait();
                woke.fetch_add(1, Ordering::Relaxed);
            });
        }
        e.set();
    });
    assert_eq!(woke.load(Ordering::Relaxed), 3);
    assert!(e.wait_timeout(Duration::ZERO));
    e.clear();
    assert!(!e.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn semaphore_units_conserved_threads() {
    let s = Semaphore::new(2, Some(2));
    let holders = AtomicU32::new(0);
    let max = AtomicU32::new(0);
    std::thread::scope(|sc| {
        for _ in 0..THREADS {
            sc.spawn(|| {
                for _ in 0..N / 4 {
                    s.acquire();
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    holders.fetch_sub(1, Ordering::SeqCst);
                    s.release().unwrap();
                }
            });
        }
    });
    assert!(max.load(Ordering::SeqCst) <= 2);
    assert_eq!(s.value(), 2);
    assert!(s.try_acquire());
    assert!(s.try_acquire());
    assert!(!s.try_acquire());
    assert!(!s.acquire_timeout(Duration::from_millis(1)));
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.release(), Err(shmkit::sync::SemaphoreFull(2)));
}

#[test]
fn barrier_rounds_threads() {
    let rounds = N.min(200) as u32;
    let b = Barrier::new(3);
    let leaders = AtomicU32::new(0);
    let arrived = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for r in 0..rounds {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    if b.wait().expect("nobody breaks it").is_leader() {
                        leaders.fetch_add(1, Ordering::Relaxed);
                    }
                    let a = arrived.load(Ordering::SeqCst);
                    assert!(a >= 3 * (r + 1) && a < 3 * (r + 2), "round {r}: {a}");
                }
            });
        }
    });
    assert_eq!(leaders.load(Ordering::Relaxed), rounds);
    // A lone waiter on a 2-party barrier times out, and breaks it.
    let b2 = Barrier::new(2);
    assert_eq!(
        b2.wait_timeout(Duration::from_millis(1)),
        Err(BarrierWaitError::TimedOut)
    );
    assert!(b2.is_broken());
}

/// Blocks until `n` participants wait at `b` (a hang watchdog, not a
/// timing assertion: generous under Miri).
fn wait_for_waiters(b: &Barrier, n: u32) {
    let start = std::time::Instant::now();
    while b.n_waiting() != n {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "watchdog: {n} waiters never arrived"
        );
        std::thread::yield_now();
    }
}

#[test]
fn barrier_abort_breaks_current_and_future_waits() {
    let b = Barrier::new(3);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..2).map(|_| s.spawn(|| b.wait())).collect();
        wait_for_waiters(&b, 2);
        assert!(!b.is_broken());
        b.abort();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Err(BrokenBarrierError));
        }
    });
    assert!(b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    assert_eq!(b.wait(), Err(BrokenBarrierError), "stays broken");
    assert_eq!(
        b.wait_timeout(Duration::from_secs(60)),
        Err(BarrierWaitError::Broken(BrokenBarrierError)),
        "a broken barrier fails at once, whatever the timeout"
    );
}

#[test]
fn barrier_reset_wakes_waiters_broken_then_works_again() {
    let b = Barrier::new(2);
    std::thread::scope(|s| {
        let w = s.spawn(|| b.wait());
        wait_for_waiters(&b, 1);
        b.reset();
        // Reset is not a release: the waiter of the old round is told so.
        assert_eq!(w.join().unwrap(), Err(BrokenBarrierError));
    });
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    let indices = std::thread::scope(|s| {
        let t = s.spawn(|| b.wait().unwrap().index());
        let mine = b.wait().unwrap().index();
        let mut v = vec![mine, t.join().unwrap()];
        v.sort_unstable();
        v
    });
    assert_eq!(indices, vec![0, 1], "one arrival index each, leader last");
}

#[test]
fn barrier_timeout_breaks_it_for_the_others() {
    let b = Barrier::new(3);
    std::thread::scope(|s| {
        let w = s.spawn(|| b.wait());
        wait_for_waiters(&b, 1);
        assert_eq!(
            b.wait_timeout(Duration::from_millis(1)),
            Err(BarrierWaitError::TimedOut)
        );
        assert_eq!(w.join().unwrap(), Err(BrokenBarrierError));
    });
    b.reset();
    assert!(!b.is_broken());
}

/// A counter bumped with a separate load and store: any two holders at
/// once would lose an increment.
fn unguarded_bump(c: &AtomicU32) {
    let v = c.load(Ordering::Relaxed);
    std::hint::spin_loop();
    c.store(v + 1, Ordering::Relaxed);
}

#[test]
fn lock_excludes_threads() {
    let lock = Lock::new();
    let count = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..N {
                    let g = lock.acquire().unwrap();
                    unguarded_bump(&count);
                    g.release();
                }
            });
        }
    });
    assert_eq!(u64::from(count.load(Ordering::Relaxed)), THREADS * N);
    assert!(!lock.is_locked());
    let g = lock.acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
    drop(g);
    assert!(lock.acquire_timeout(Duration::ZERO).is_ok());
}

#[test]
fn rlock_reenters_on_its_thread_and_excludes_others() {
    let lock = RLock::new();
    let count = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..N / 4 {
                    let outer = lock.acquire().unwrap();
                    // Nested acquisitions by the owner never block.
                    let mid = lock.try_acquire().unwrap();
                    let inner = lock.acquire_timeout(Duration::ZERO).unwrap();
                    assert_eq!(lock.depth(), 3);
                    unguarded_bump(&count);
                    drop(mid);
                    unguarded_bump(&count);
                    drop(inner);
                    assert_eq!(lock.depth(), 1);
                    assert!(lock.is_owned_by_current_thread());
                    unguarded_bump(&count);
                    drop(outer);
                    assert_eq!(lock.depth(), 0);
                }
            });
        }
    });
    assert_eq!(
        u64::from(count.load(Ordering::Relaxed)),
        THREADS * (N / 4) * 3
    );
    assert!(!lock.is_locked());
}

#[test]
fn notifier_wait_until_sees_flag() {
    let n = Notifier::new();
    let flag = AtomicU32::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            flag.store(5, Ordering::Release);
            n.notify_all();
        });
        let v = n.wait_until(None, || match flag.load(Ordering::Acquire) {
            0 => None,
            v => Some(v),
        });
        assert_eq!(v, Some(5));
    });
    assert_eq!(n.waiters(), 0);
    let d = shmkit::os::Deadline::after(Duration::from_millis(1));
    assert_eq!(n.wait_until(Some(d), || None::<()>), None);
    assert_eq!(n.waiters(), 0);
}

#[test]
fn shm_value_threads() {
    let v = ShmValue::<u64>::new(0);
    let f = ShmValue::<f64>::new(0.0);
    let b = ShmValue::<bool>::new(false);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..N {
                    v.fetch_add(1);
                }
                f.fetch_add(0.5);
                let _ = b.compare_exchange(false, true);
            });
        }
    });
    assert_eq!(v.load(), THREADS * N);
    assert_eq!(f.load(), THREADS as f64 * 0.5);
    assert!(b.load());
    let i = ShmValue::<i32>::new(i32::MIN);
    assert_eq!(i.fetch_sub(1), i32::MIN);
    assert_eq!(i.load(), i32::MAX, "integers wrap");
}
