//! Benchmarks of the sync layer against peers measured in the same run:
//!
//! * uncontended lock/unlock: shmkit `RawMutex` vs `std::sync::Mutex` vs a
//!   `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST` pthread mutex;
//! * cross-process lock hand-off: two processes alternately take the lock
//!   and flip a turn value (shmkit `Mutex<u64>` vs the robust pthread
//!   mutex);
//! * cross-process wake-up round trip: shmkit `Event` set/wait/clear vs a
//!   raw shared-futex round trip vs a pipe round trip.
//!
//! Cross-process cases fork a child per sample (`iter_custom`) and run
//! both pinned (both processes on CPU 0) and unpinned. The systems compared
//! are interleaved (round 1 of each, then round 2 of each). A cache-line
//! ping-pong (two processes bouncing one atomic) is printed at the start and
//! the end so the machine's state is known.
//!
//! `cargo bench --bench sync -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Placement;
use criterion::Criterion;
use shmkit::os::futex;
use shmkit::{Event, Mutex, RawMutex, Segment, ShmBox, ShmValue};

// ---------------------------------------------------------------- helpers

#[derive(Clone, Copy, PartialEq)]
enum Pin {
    Pinned,
    Unpinned,
}

impl Pin {
    fn label(self) -> &'static str {
        match self {
            Pin::Pinned => "pinned",
            Pin::Unpinned => "unpinned",
        }
    }
}

/// Runs `child` in a forked process and `parent` here, timing only the
/// parent's part after the child has signalled readiness.
fn two_process(
    pin: Pin,
    child: impl FnOnce(),
    parent: impl FnOnce() -> Duration,
    ready: &ShmValue<u32>,
) -> Duration {
    common::with_pin((pin == Pin::Pinned).then_some(0), || {
        ready.store(0);
        let kid = common::Peer::fork(|| {
            ready.store(1);
            child();
        });
        while ready.load() == 0 {
            std::thread::yield_now();
        }
        let took = parent();
        kid.join();
        took
    })
}

// ------------------------------------------------------ pthread (robust)

/// A `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST` mutex and a turn word
/// in an anonymous shared segment.
struct PthreadRobust {
    seg: Segment,
}

impl PthreadRobust {
    fn new() -> Self {
        let seg = Segment::anonymous(4096).unwrap();
        // SAFETY: the fresh mapping is 4096 bytes, page-aligned (enough for
        // pthread_mutex_t), unshared during initialisation.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(seg.as_ptr().cast(), &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        PthreadRobust { seg }
    }

    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.seg.as_ptr().cast()
    }

    fn lock(&self) {
        // SAFETY: initialised above; the mapping outlives `self`.
        let r = unsafe { libc::pthread_mutex_lock(self.raw()) };
        if r == libc::EOWNERDEAD {
            // SAFETY: we hold the lock after EOWNERDEAD.
            unsafe { libc::pthread_mutex_consistent(self.raw()) };
        } else {
            assert_eq!(r, 0);
        }
    }

    fn unlock(&self) {
        // SAFETY: called only by the holder.
        unsafe { libc::pthread_mutex_unlock(self.raw()) };
    }

    /// The turn counter, protected by the mutex (an atomic so both
    /// processes' accesses are well-defined in Rust's model).
    fn turn(&self) -> &AtomicU64 {
        // SAFETY: offset 1024 is inside the 4096-byte mapping, 8-aligned,
        // past the pthread_mutex_t, and zero-initialised.
        unsafe { &*(self.seg.as_ptr().add(1024) as *const AtomicU64) }
    }
}

// ------------------------------------------------------------ benchmarks

fn uncontended(c: &mut Criterion, round: u32) {
    let mut g = c.benchmark_group("uncontended_lock_unlock");
    let shm = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let raw: &RawMutex = shm.raw();
    g.bench_function(format!("shmkit_RawMutex/r{round}"), |b| {
        b.iter(|| {
            let _ = black_box(raw.lock());
            // SAFETY: locked just above by this thread.
            unsafe { raw.unlock() };
        })
    });
    let std_m = std::sync::Mutex::new(0u64);
    g.bench_function(format!("std_Mutex/r{round}"), |b| {
        b.iter(|| {
            let g = std_m.lock().unwrap();
            black_box(&g);
        })
    });
    let pt = PthreadRobust::new();
    g.bench_function(format!("pthread_robust_pshared/r{round}"), |b| {
        b.iter(|| {
            pt.lock();
            black_box(&pt);
            pt.unlock();
        })
    });
    g.finish();
}

/// Hand-off loop for one side: take the lock, and when the counter's
/// parity is ours, bump it; `n` bumps in total.
fn handoff_shmkit(m: &Mutex<u64>, parity: u64, n: u64) {
    let mut done = 0;
    while done < n {
        let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
        if *g % 2 == parity {
            *g += 1;
            done += 1;
            drop(g);
        } else {
            drop(g);
            std::thread::yield_now();
        }
    }
}

fn handoff_pthread(m: &PthreadRobust, parity: u64, n: u64) {
    let mut done = 0;
    while done < n {
        m.lock();
        let t = m.turn().load(Ordering::Relaxed);
        if t % 2 == parity {
            m.turn().store(t + 1, Ordering::Relaxed);
            done += 1;
            m.unlock();
        } else {
            m.unlock();
            std::thread::yield_now();
        }
    }
}

fn handoff(c: &mut Criterion, round: u32) {
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut g = c.benchmark_group("xproc_lock_handoff");
    g.sample_size(20);
    for pin in [Pin::Pinned, Pin::Unpinned] {
        let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
        g.bench_function(format!("shmkit_Mutex/{}/r{round}", pin.label()), |b| {
            b.iter_custom(|iters| {
                *m.lock().unwrap() = 0;
                two_process(
                    pin,
                    || handoff_shmkit(&m, 1, iters),
                    || {
                        let start = Instant::now();
                        handoff_shmkit(&m, 0, iters);
                        start.elapsed()
                    },
                    &ready,
                )
            })
        });
        let pt = PthreadRobust::new();
        g.bench_function(format!("pthread_robust/{}/r{round}", pin.label()), |b| {
            b.iter_custom(|iters| {
                pt.turn().store(0, Ordering::Relaxed);
                two_process(
                    pin,
                    || handoff_pthread(&pt, 1, iters),
                    || {
                        let start = Instant::now();
                        handoff_pthread(&pt, 0, iters);
                        start.elapsed()
                    },
                    &ready,
                )
            })
        });
    }
    g.finish();
}

fn futex_wait_for(word: &AtomicU32) {
    while word.load(Ordering::Acquire) == 0 {
        futex::wait(word, 0, None);
    }
    word.store(0, Ordering::Relaxed);
}

fn futex_post(word: &AtomicU32) {
    word.store(1, Ordering::Release);
    futex::wake(word, 1);
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn write_byte(fd: i32) {
    // SAFETY: writing one byte from a valid buffer to our own pipe.
    assert_eq!(unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) }, 1);
}

fn read_byte(fd: i32) {
    let mut b = [0u8];
    // SAFETY: reading one byte into a valid buffer from our own pipe.
    assert_eq!(unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) }, 1);
}

fn round_trip(c: &mut Criterion, round: u32) {
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut g = c.benchmark_group("xproc_wake_round_trip");
    g.sample_size(20);
    for pin in [Pin::Pinned, Pin::Unpinned] {
        let ping = ShmBox::<Event>::anonymous(()).unwrap();
        let pong = ShmBox::<Event>::anonymous(()).unwrap();
        g.bench_function(format!("shmkit_Event/{}/r{round}", pin.label()), |b| {
            b.iter_custom(|iters| {
                two_process(
                    pin,
                    || {
                        for _ in 0..iters {
                            ping.wait();
                            ping.clear();
                            pong.set();
                        }
                    },
                    || {
                        let start = Instant::now();
                        for _ in 0..iters {
                            ping.set();
                            pong.wait();
                            pong.clear();
                        }
                        start.elapsed()
                    },
                    &ready,
                )
            })
        });

        let words = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
        // The two halves of one shared u64 as futex words.
        // SAFETY: the ShmValue<u64> is 8 bytes, 8-aligned, in a shared
        // mapping that outlives this function; we only use it through
        // atomics.
        let (a, bw) = unsafe {
            let p = (&*words as *const ShmValue<u64>).cast::<AtomicU32>();
            (&*p, &*p.add(1))
        };
        g.bench_function(format!("raw_futex/{}/r{round}", pin.label()), |b| {
            b.iter_custom(|iters| {
                two_process(
                    pin,
                    || {
                        for _ in 0..iters {
                            futex_wait_for(a);
                            futex_post(bw);
                        }
                    },
                    || {
                        let start = Instant::now();
                        for _ in 0..iters {
                            futex_post(a);
                            futex_wait_for(bw);
                        }
                        start.elapsed()
                    },
                    &ready,
                )
            })
        });

        let (to_child_r, to_child_w) = pipe();
        let (to_parent_r, to_parent_w) = pipe();
        g.bench_function(format!("pipe/{}/r{round}", pin.label()), |b| {
            b.iter_custom(|iters| {
                two_process(
                    pin,
                    || {
                        for _ in 0..iters {
                            read_byte(to_child_r);
                            write_byte(to_parent_w);
                        }
                    },
                    || {
                        let start = Instant::now();
                        for _ in 0..iters {
                            write_byte(to_child_w);
                            read_byte(to_parent_r);
                        }
                        start.elapsed()
                    },
                    &ready,
                )
            })
        });
        for fd in [to_child_r, to_child_w, to_parent_r, to_parent_w] {
            // SAFETY: closing pipe fds this function opened.
            unsafe { libc::close(fd) };
        }
    }
    g.finish();
}

fn main() {
    common::report_pingpongs("start", &[Placement::Unpinned]);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for round in 1..=2 {
        uncontended(&mut c, round);
        handoff(&mut c, round);
        round_trip(&mut c, round);
    }
    c.final_summary();
    common::report_pingpongs("end", &[Placement::Unpinned]);
}
