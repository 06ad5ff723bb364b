//! SPSC ring benchmarks, cross-process, each system next to its peers in
//! the same run:
//!
//! * throughput (8 B, 64 B, 4 KiB, 64 KiB): shmkit copy (`push`/`pop`),
//!   zero-copy (`reserve`/`commit` + `read`/`release`), batched
//!   (`push_batch` + `try_pop_batch`), pipe(2) and a Unix socketpair;
//!   unpinned and pinned (both processes on CPU 0);
//! * round-trip latency: shmkit busy-poll and blocking, raw atomic
//!   ping-pong, raw shared-futex ping-pong;
//! * in-process: `rtrb` vs `SpscRing` over threads.
//!
//! A cache-line ping-pong (two processes bouncing one atomic) is printed at
//! the start and the end, since this VM's CPUs flip between a fast and a
//! slow state. Run: `cargo bench --bench queue_spsc -- --warm-up-time 1 --measurement-time 2`.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Peer, Placement};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use shmkit::os::futex;
use shmkit::queue::{SpscRing, TryRecvError};
use shmkit::Segment;

/// A few words of anonymous shared memory for handshakes.
struct Shared {
    seg: Segment,
}

impl Shared {
    fn new() -> Self {
        Shared {
            seg: Segment::anonymous(4096).expect("segment"),
        }
    }
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < 16);
        // SAFETY: in bounds of the 4096-byte page-aligned mapping; atomics
        // are valid for any bytes; the mapping outlives the reference.
        unsafe { &*(self.seg.as_ptr().add(i * 128) as *const AtomicU64) }
    }
    fn word32(&self, i: usize) -> &AtomicU32 {
        // SAFETY: as above (u32 view of an 8-aligned word).
        unsafe { &*(self.seg.as_ptr().add(i * 128) as *const AtomicU32) }
    }
}

/// Runs `child` and `parent` in two processes, both starting on a shared
/// go signal; returns the parent's time.
fn cross(child: impl FnOnce(), parent: impl FnOnce()) -> Duration {
    let sh = Shared::new();
    let peer = Peer::fork(|| {
        sh.word(0).store(1, Ordering::Release);
        while sh.word(1).load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        child();
    });
    while sh.word(0).load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    sh.word(1).store(1, Ordering::Release);
    parent();
    let d = t.elapsed();
    peer.join();
    d
}

/// Futex ping-pong: each side sleeps on the shared word until it changes.
fn ping_pong_futex(rounds: u64) -> Duration {
    let sh = Shared::new();
    let w = sh.word32(3);
    let wait_for = |v: u32| loop {
        let cur = w.load(Ordering::Acquire);
        if cur == v {
            break;
        }
        futex::wait(w, cur, None);
    };
    cross(
        || {
            for i in 0..rounds as u32 {
                wait_for(2 * i + 1);
                w.store(2 * i + 2, Ordering::Release);
                futex::wake(w, 1);
            }
        },
        || {
            for i in 0..rounds as u32 {
                w.store(2 * i + 1, Ordering::Release);
                futex::wake(w, 1);
                wait_for(2 * i + 2);
            }
        },
    )
}

#[derive(Clone, Copy)]
enum Sys {
    Copy,
    ZeroCopy,
    Batch,
    Pipe,
    SocketPair,
}

const RING: usize = 1 << 20;

fn run_throughput(sys: Sys, size: usize, n: u64) -> Duration {
    match sys {
        Sys::Copy | Sys::ZeroCopy | Sys::Batch => {
            let ring = SpscRing::anonymous(RING).expect("ring");
            cross(
                || {
                    let mut tx = ring.producer().expect("producer");
                    let msg = vec![7u8; size];
                    match sys {
                        Sys::Copy => (0..n).for_each(|_| tx.push(&msg).expect("push")),
                        Sys::ZeroCopy => {
                            let mut sent = 0;
                            while sent < n {
                                if let Ok(mut g) = tx.reserve(size) {
                                    g[0] = 7;
                                    g.commit(size);
                                    sent += 1;
                                } else {
                                    std::thread::yield_now();
                                }
                            }
                        }
                        _ => {
                            let batch: Vec<&[u8]> = vec![&msg[..]; 64];
                            let mut sent = 0u64;
                            while sent < n {
                                let k = ((n - sent) as usize).min(batch.len());
                                let pushed = tx.push_batch(&batch[..k]);
                                if pushed == 0 {
                                    std::thread::yield_now();
                                }
                                sent += pushed as u64;
                            }
                        }
                    }
                },
                || {
                    let mut rx = ring.consumer().expect("consumer");
                    let mut got = 0u64;
                    let mut buf = Vec::with_capacity(size);
                    while got < n {
                        match sys {
                            Sys::Copy => {
                                rx.pop(&mut buf).expect("pop");
                                got += 1;
                            }
                            Sys::ZeroCopy => {
                                let g = rx.read_blocking(None).expect("read");
                                std::hint::black_box(g[0]);
                                got += 1;
                            }
                            _ => match rx.try_pop_batch(256, |f| {
                                std::hint::black_box(f[0]);
                            }) {
                                Ok(k) => got += k as u64,
                                Err(TryRecvError::Empty) => std::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            },
                        }
                    }
                },
            )
        }
        Sys::Pipe | Sys::SocketPair => {
            let mut fds = [0; 2];
            // SAFETY: valid two-element fd array.
            let r = unsafe {
                if let Sys::Pipe = sys {
                    libc::pipe(fds.as_mut_ptr())
                } else {
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr())
                }
            };
            assert_eq!(r, 0);
            let d = cross(
                || {
                    let msg = vec![7u8; size];
                    for _ in 0..n {
                        let mut off = 0;
                        while off < size {
                            // SAFETY: writing from a live buffer.
                            let w = unsafe {
                                libc::write(fds[1], msg[off..].as_ptr().cast(), size - off)
                            };
                            assert!(w > 0);
                            off += w as usize;
                        }
                    }
                },
                || {
                    let mut buf = vec![0u8; size];
                    for _ in 0..n {
                        let mut off = 0;
                        while off < size {
                            // SAFETY: reading into a live buffer.
                            let r = unsafe {
                                libc::read(fds[0], buf[off..].as_mut_ptr().cast(), size - off)
                            };
                            assert!(r > 0);
                            off += r as usize;
                        }
                    }
                },
            );
            // SAFETY: our fds.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            d
        }
    }
}

fn throughput(c: &mut Criterion) {
    for pinned in [false, true] {
        common::with_pin(pinned.then_some(0), || {
            for size in [8usize, 64, 4096, 65536] {
                let mut g = c.benchmark_group(format!(
                    "spsc_throughput_{}/{size}B",
                    if pinned { "pinned" } else { "unpinned" }
                ));
                g.throughput(Throughput::Bytes(size as u64));
                for (name, sys) in [
                    ("shmkit_copy", Sys::Copy),
                    ("shmkit_zero_copy", Sys::ZeroCopy),
                    ("shmkit_batch", Sys::Batch),
                    ("pipe", Sys::Pipe),
                    ("socketpair", Sys::SocketPair),
                ] {
                    g.bench_function(BenchmarkId::from_parameter(name), |b| {
                        b.iter_custom(|iters| run_throughput(sys, size, iters.max(1)))
                    });
                }
                g.finish();
            }
        });
    }
}

fn rtt_shmkit(blocking: bool, rounds: u64) -> Duration {
    let ping = SpscRing::anonymous(4096).expect("ring");
    let pong = SpscRing::anonymous(4096).expect("ring");
    let msg = [1u8; 8];
    let recv = |rx: &mut shmkit::queue::Consumer, buf: &mut Vec<u8>| {
        if blocking {
            rx.pop(buf).expect("pop");
        } else {
            while rx.try_pop(buf).is_err() {
                std::hint::spin_loop();
            }
        }
    };
    cross(
        || {
            let mut rx = ping.consumer().expect("c");
            let mut tx = pong.producer().expect("p");
            let mut buf = Vec::new();
            for _ in 0..rounds {
                recv(&mut rx, &mut buf);
                tx.push(&buf).expect("push");
            }
        },
        || {
            let mut tx = ping.producer().expect("p");
            let mut rx = pong.consumer().expect("c");
            let mut buf = Vec::new();
            for _ in 0..rounds {
                tx.push(&msg).expect("push");
                recv(&mut rx, &mut buf);
            }
        },
    )
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_round_trip_unpinned");
    g.bench_function("raw_atomic_ping_pong", |b| {
        b.iter_custom(|n| common::pingpong(n.max(1), Placement::Unpinned))
    });
    g.bench_function("shmkit_busy_poll", |b| {
        b.iter_custom(|n| rtt_shmkit(false, n.max(1)))
    });
    g.bench_function("raw_futex_ping_pong", |b| {
        b.iter_custom(|n| ping_pong_futex(n.max(1)))
    });
    g.bench_function("shmkit_blocking", |b| {
        b.iter_custom(|n| rtt_shmkit(true, n.max(1)))
    });
    g.finish();
    common::with_pin(Some(0), || {
        let mut g = c.benchmark_group("spsc_round_trip_pinned");
        g.bench_function("raw_futex_ping_pong", |b| {
            b.iter_custom(|n| ping_pong_futex(n.max(1)))
        });
        g.bench_function("shmkit_blocking", |b| {
            b.iter_custom(|n| rtt_shmkit(true, n.max(1)))
        });
        g.finish();
    });
}

/// `n` messages of `N` bytes through an `rtrb` ring between two threads.
fn rtrb_run<const N: usize>(n: u64) -> Duration {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(RING / N);
    let msg = [7u8; N];
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            for _ in 0..n {
                while tx.push(msg).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        for _ in 0..n {
            loop {
                if let Ok(m) = rx.pop() {
                    std::hint::black_box(m);
                    break;
                }
                std::hint::spin_loop();
            }
        }
    });
    t.elapsed()
}

fn in_process(c: &mut Criterion) {
    for size in [8usize, 64] {
        let mut g = c.benchmark_group(format!("spsc_in_process/{size}B"));
        g.throughput(Throughput::Elements(1));
        // rtrb the way its users move fixed-size messages: a ring of the
        // message type itself, a spin with a pause hint on full/empty.
        g.bench_function("rtrb", |b| {
            b.iter_custom(|n| match size {
                8 => rtrb_run::<8>(n),
                _ => rtrb_run::<64>(n),
            })
        });
        g.bench_function("shmkit_in_process", |b| {
            b.iter_custom(|n| {
                let ring = SpscRing::in_process(RING).expect("ring");
                let mut tx = ring.producer().expect("p");
                let mut rx = ring.consumer().expect("c");
                let msg = vec![7u8; size];
                let t = Instant::now();
                std::thread::scope(|s| {
                    s.spawn(move || {
                        for _ in 0..n {
                            while tx.try_push(&msg).is_err() {
                                std::hint::spin_loop();
                            }
                        }
                    });
                    let mut buf = Vec::with_capacity(size);
                    for _ in 0..n {
                        while rx.try_pop(&mut buf).is_err() {
                            std::hint::spin_loop();
                        }
                    }
                });
                t.elapsed()
            })
        });
        g.finish();
    }
}

/// One thread pushes and pops 8-byte messages on an in-process ring: the
/// per-message cost of the publish protocol itself (index stores, barriers,
/// waiter checks), with no cache line crossing CPUs, so it stays readable
/// on a loaded machine.
fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_single_thread");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push_pop_8B", |b| {
        let ring = SpscRing::in_process(4096).expect("ring");
        let mut tx = ring.producer().expect("p");
        let mut rx = ring.consumer().expect("c");
        let msg = [7u8; 8];
        let mut buf = [0u8; 8];
        b.iter(|| {
            tx.try_push(&msg).expect("push");
            std::hint::black_box(rx.try_pop_into(&mut buf).expect("pop"));
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, latency, in_process, single_thread);

fn main() {
    common::report_pingpongs("start", &[Placement::Unpinned]);
    benches();
    Criterion::default().configure_from_args().final_summary();
    common::report_pingpongs("end", &[Placement::Unpinned]);
}
