//! The workloads that are not a pair of ends: N producers × N consumers,
//! lock hand-off, the shared dict, and the process pool.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use shmkit::queue::{MpmcQueue, Queue};

use crate::chans::{seq_of, stamp};
use crate::sys::{wait_at_least, Child, Ctl, SharedCtl};

/// An N×N system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NxN {
    /// shmkit `MpmcQueue`, 8-byte messages, one process per end.
    ShmMpmc,
    /// shmkit typed `Queue<u64>` (postcard), one process per end.
    ShmQueueU64,
    /// crossbeam `ArrayQueue<u64>`, one thread per end, spinning.
    CbArray,
}

impl NxN {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            NxN::ShmMpmc => "shmkit MpmcQueue (processes)",
            NxN::ShmQueueU64 => "shmkit Queue<u64> (processes)",
            NxN::CbArray => "crossbeam ArrayQueue (threads)",
        }
    }
}

/// Messages per second through `n` producers and `n` consumers sharing one
/// queue; `total` messages in all, each received exactly once (checked by
/// count and by the sum of their values).
pub fn nxn(sys: NxN, n: usize, total: u64) -> Result<f64, String> {
    let per = total / n as u64;
    let total = per * n as u64;
    let ctl = SharedCtl::new();
    let want_sum = (0..total).fold(0u64, |a, s| a.wrapping_add(s));
    let elapsed;
    match sys {
        NxN::ShmMpmc | NxN::ShmQueueU64 => {
            let mq = MpmcQueue::anonymous(8, 1024).map_err(|e| e.to_string())?;
            let tq = Queue::<u64>::anonymous(16, 1024).map_err(|e| e.to_string())?;
            let mut kids = Vec::new();
            for _ in 0..n {
                let (mq, tq, ctl) = (&mq, &tq, &ctl);
                // Every consumer takes exactly `per` messages: any may get
                // any message, and `n × per` are sent, so all finish.
                kids.push(Child::fork(move || {
                    let rx = mq.receiver().expect("receiver");
                    ctl.ready.fetch_add(1, Ordering::AcqRel);
                    let mut sum = 0u64;
                    let mut buf = Vec::new();
                    for _ in 0..per {
                        let v = if sys == NxN::ShmMpmc {
                            rx.recv(&mut buf).expect("recv");
                            seq_of(&buf)
                        } else {
                            tq.recv().expect("recv")
                        };
                        sum = sum.wrapping_add(v);
                    }
                    ctl.seq_sum.fetch_add(sum, Ordering::AcqRel);
                    ctl.received.fetch_add(per, Ordering::AcqRel);
                    ctl.done.fetch_add(1, Ordering::AcqRel);
                }));
            }
            for p in 0..n as u64 {
                let (mq, tq, ctl) = (&mq, &tq, &ctl);
                kids.push(Child::fork(move || {
                    let tx = mq.sender().expect("sender");
                    ctl.ready.fetch_add(1, Ordering::AcqRel);
                    wait_at_least(&ctl.go, 1);
                    let mut msg = [0u8; 8];
                    for i in 0..per {
                        let v = p * per + i;
                        if sys == NxN::ShmMpmc {
                            stamp(&mut msg, v);
                            tx.send(&msg).expect("send");
                        } else {
                            tq.send(v).expect("send");
                        }
                    }
                }));
            }
            wait_at_least(&ctl.ready, 2 * n as u64);
            let t0 = Instant::now();
            ctl.go.store(1, Ordering::Release);
            wait_at_least(&ctl.done, n as u64);
            elapsed = t0.elapsed();
            for k in kids {
                k.join()?;
            }
        }
        NxN::CbArray => {
            let q = crossbeam_queue::ArrayQueue::<u64>::new(1024);
            let c: &Ctl = &ctl;
            elapsed = std::thread::scope(|s| {
                for _ in 0..n {
                    s.spawn(|| {
                        c.ready.fetch_add(1, Ordering::AcqRel);
                        let mut sum = 0u64;
                        for _ in 0..per {
                            let v = loop {
                                if let Some(v) = q.pop() {
                                    break v;
                                }
                                std::hint::spin_loop();
                            };
                            sum = sum.wrapping_add(v);
                        }
                        c.seq_sum.fetch_add(sum, Ordering::AcqRel);
                        c.received.fetch_add(per, Ordering::AcqRel);
                        c.done.fetch_add(1, Ordering::AcqRel);
                    });
                }
                for p in 0..n as u64 {
                    let q = &q;
                    s.spawn(move || {
                        c.ready.fetch_add(1, Ordering::AcqRel);
                        wait_at_least(&c.go, 1);
                        for i in 0..per {
                            let mut v = p * per + i;
                            while let Err(back) = q.push(v) {
                                v = back;
                                std::hint::spin_loop();
                            }
                        }
                    });
                }
                wait_at_least(&c.ready, 2 * n as u64);
                let t0 = Instant::now();
                c.go.store(1, Ordering::Release);
                wait_at_least(&c.done, n as u64);
                t0.elapsed()
            });
        }
    }
    let got = ctl.received.load(Ordering::Acquire);
    if got != total || ctl.seq_sum.load(Ordering::Acquire) != want_sum {
        return Err(format!("N×N: {got} of {total} received or wrong values"));
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// A lock-hand-off system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockSys {
    /// shmkit `Lock` (robust, process-shared), two processes.
    ShmLock,
    /// A `PTHREAD_PROCESS_SHARED` pthread mutex in shared memory, two processes.
    PthreadShared,
    /// `parking_lot::Mutex`, two threads.
    ParkingLot,
    /// `std::sync::Mutex`, two threads.
    StdMutex,
}

impl LockSys {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            LockSys::ShmLock => "shmkit Lock (processes)",
            LockSys::PthreadShared => "pthread mutex, process-shared (processes)",
            LockSys::ParkingLot => "parking_lot Mutex (threads)",
            LockSys::StdMutex => "std Mutex (threads)",
        }
    }
}

/// Two contenders each take the lock `iters` times and bump a counter
/// under it. Returns nanoseconds per acquisition (total time over all
/// acquisitions); checks the counter.
pub fn lock_handoff(sys: LockSys, iters: u64) -> Result<f64, String> {
    let ctl = SharedCtl::new();
    let c: &Ctl = &ctl;
    let bump = |c: &Ctl| {
        // A read-modify-write split in two, so a broken lock loses counts.
        let v = c.counter.load(Ordering::Relaxed);
        c.counter.store(v + 1, Ordering::Relaxed);
    };
    let elapsed = match sys {
        LockSys::ShmLock => {
            let lock = shmkit::Lock::anonymous().map_err(|e| e.to_string())?;
            let work = |c: &Ctl| {
                c.ready.fetch_add(1, Ordering::AcqRel);
                wait_at_least(&c.go, 1);
                for _ in 0..iters {
                    let g = lock.acquire().expect("acquire");
                    bump(c);
                    drop(g);
                }
                c.done.fetch_add(1, Ordering::AcqRel);
            };
            let kids: Vec<Child> = (0..2).map(|_| Child::fork(|| work(c))).collect();
            let e = time_go(c, 2);
            for k in kids {
                k.join()?;
            }
            e
        }
        LockSys::PthreadShared => {
            let m = crate::sys::shared_map(4096).cast::<libc::pthread_mutex_t>();
            // SAFETY: `m` points at a fresh page-aligned shared page, large
            // enough for a pthread_mutex_t; attributes are initialised
            // before use and destroyed after.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
                libc::pthread_mutexattr_init(&mut attr);
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
                libc::pthread_mutex_init(m, &attr);
                libc::pthread_mutexattr_destroy(&mut attr);
            }
            let addr = m as usize;
            let work = |c: &Ctl| {
                let m = addr as *mut libc::pthread_mutex_t;
                c.ready.fetch_add(1, Ordering::AcqRel);
                wait_at_least(&c.go, 1);
                for _ in 0..iters {
                    // SAFETY: an initialised process-shared mutex in a
                    // mapping every contender inherited.
                    unsafe { libc::pthread_mutex_lock(m) };
                    bump(c);
                    // SAFETY: as above; this process holds it.
                    unsafe { libc::pthread_mutex_unlock(m) };
                }
                c.done.fetch_add(1, Ordering::AcqRel);
            };
            let kids: Vec<Child> = (0..2).map(|_| Child::fork(|| work(c))).collect();
            let e = time_go(c, 2);
            for k in kids {
                k.join()?;
            }
            // SAFETY: both contenders are gone; the page is ours.
            unsafe { libc::munmap(m.cast(), 4096) };
            e
        }
        LockSys::ParkingLot | LockSys::StdMutex => {
            let pl = parking_lot::Mutex::new(());
            let sm = std::sync::Mutex::new(());
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        c.ready.fetch_add(1, Ordering::AcqRel);
                        wait_at_least(&c.go, 1);
                        for _ in 0..iters {
                            if sys == LockSys::ParkingLot {
                                let _g = pl.lock();
                                bump(c);
                            } else {
                                let _g = sm.lock().expect("std mutex");
                                bump(c);
                            }
                        }
                        c.done.fetch_add(1, Ordering::AcqRel);
                    });
                }
                time_go(c, 2)
            })
        }
    };
    let got = ctl.counter.load(Ordering::Acquire);
    if got != 2 * iters {
        return Err(format!("lock hand-off: counter {got}, want {}", 2 * iters));
    }
    Ok(elapsed.as_nanos() as f64 / (2 * iters) as f64)
}

fn time_go(c: &Ctl, n: u64) -> std::time::Duration {
    wait_at_least(&c.ready, n);
    let t0 = Instant::now();
    c.go.store(1, Ordering::Release);
    wait_at_least(&c.done, n);
    t0.elapsed()
}

/// Dict figures: nanoseconds per operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DictNs {
    pub shm_get: f64,
    pub shm_set: f64,
    pub shm_get_peer: f64,
    pub mutex_map_get: f64,
    pub mutex_map_set: f64,
}

/// `ShmDict` get/set with `keys` 8-byte keys and 8-byte values (gets also
/// timed in a forked peer process), against an in-process
/// `Mutex<HashMap>`; every value read back is checked.
pub fn dict(keys: u64, ops: u64) -> Result<DictNs, String> {
    let cfg = shmkit::DictConfig::new(keys as usize * 2, (keys as usize * 64).max(1 << 16));
    let d = shmkit::ShmDict::anonymous(cfg).map_err(|e| e.to_string())?;
    let key = |i: u64| i.to_le_bytes();
    let t0 = Instant::now();
    for i in 0..ops {
        let k = i % keys;
        d.set(&key(k), &(k * 3).to_le_bytes())
            .map_err(|e| e.to_string())?;
    }
    let shm_set = t0.elapsed().as_nanos() as f64 / ops as f64;
    let t0 = Instant::now();
    for i in 0..ops {
        let k = i % keys;
        let v = d.get(&key(k)).map_err(|e| e.to_string())?;
        if v.as_deref() != Some(&(k * 3).to_le_bytes()[..]) {
            return Err(format!("dict get {k}: wrong value"));
        }
    }
    let shm_get = t0.elapsed().as_nanos() as f64 / ops as f64;
    let ctl = SharedCtl::new();
    let c: &Ctl = &ctl;
    let d2 = &d;
    let child = Child::fork(move || {
        let t0 = Instant::now();
        let mut bad = 0;
        for i in 0..ops {
            let k = i % keys;
            if d2.get(&key(k)).ok().flatten().as_deref() != Some(&(k * 3).to_le_bytes()[..]) {
                bad += 1;
            }
        }
        c.counter
            .store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.errors.store(bad, Ordering::Relaxed);
        c.done.store(1, Ordering::Release);
    });
    child.join()?;
    if ctl.errors.load(Ordering::Acquire) != 0 {
        return Err("dict get in peer: wrong values".into());
    }
    let shm_get_peer = ctl.counter.load(Ordering::Acquire) as f64 / ops as f64;
    let m = std::sync::Mutex::new(HashMap::<[u8; 8], [u8; 8]>::new());
    let t0 = Instant::now();
    for i in 0..ops {
        let k = i % keys;
        m.lock()
            .expect("mutex")
            .insert(key(k), (k * 3).to_le_bytes());
    }
    let mutex_map_set = t0.elapsed().as_nanos() as f64 / ops as f64;
    let t0 = Instant::now();
    for i in 0..ops {
        let k = i % keys;
        let v = m.lock().expect("mutex").get(&key(k)).copied();
        if v != Some((k * 3).to_le_bytes()) {
            return Err("mutex map: wrong value".into());
        }
    }
    let mutex_map_get = t0.elapsed().as_nanos() as f64 / ops as f64;
    Ok(DictNs {
        shm_get,
        shm_set,
        shm_get_peer,
        mutex_map_get,
        mutex_map_set,
    })
}

shmkit::task! { static ADD_ONE: Task<u64, u64> = |x| x + 1; }

/// Pool figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolNs {
    /// Tasks per second through `imap_unordered` with chunksize 1.
    pub imap_tasks_per_s: f64,
    /// Median `apply_async(..).get()` round trip, ns.
    pub apply_async_ns: f64,
}

/// shmkit `Pool` with `workers` processes: `tasks` tiny tasks through
/// `imap_unordered(chunksize 1)`, then `rounds` sequential `apply_async`
/// round trips. Every result is checked.
pub fn pool(workers: usize, tasks: u64, rounds: u64) -> Result<PoolNs, String> {
    let pool = shmkit::Pool::new(workers).map_err(|e| e.to_string())?;
    // One warm-up so every worker is up.
    pool.map(&ADD_ONE, 0..workers as u64 * 2, None)
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut sum = 0u64;
    for r in pool.imap_unordered(&ADD_ONE, 0..tasks, Some(1)) {
        sum += r.map_err(|e| e.to_string())?;
    }
    let imap = tasks as f64 / t0.elapsed().as_secs_f64();
    if sum != (1..=tasks).sum::<u64>() {
        return Err("pool imap_unordered: wrong results".into());
    }
    let mut samples = Vec::new();
    for i in 0..rounds {
        let t0 = Instant::now();
        let r = pool.apply_async(&ADD_ONE, i).map_err(|e| e.to_string())?;
        let v = r.get().map_err(|e| e.to_string())?;
        samples.push(t0.elapsed().as_nanos() as f64);
        if v != i + 1 {
            return Err("pool apply_async: wrong result".into());
        }
    }
    pool.close();
    pool.join();
    drop(pool);
    // The suite forks after this: the pool's monitor thread must be gone.
    let t0 = Instant::now();
    while crate::sys::thread_count() > 1 {
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            return Err(format!(
                "the pool left {} threads running; later forks would be unsafe",
                crate::sys::thread_count()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(PoolNs {
        imap_tasks_per_s: imap,
        apply_async_ns: crate::sys::median(&mut samples),
    })
}
