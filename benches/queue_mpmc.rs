//! MPMC queue throughput.
//!
//! * Cross-process: P producer × C consumer processes (P, C ∈ {1, 2, 4})
//!   moving 8- and 64-byte messages through an shmkit `MpmcQueue`, next to
//!   the same workload over a pipe (writes ≤ PIPE_BUF are atomic, so a
//!   pipe is a valid MPMC channel for fixed-size messages). The 1×1 case
//!   is also run pinned (every process on CPU 0).
//! * In-process: the same thread counts, shmkit `MpmcQueue::in_process`
//!   vs `crossbeam_queue::ArrayQueue`, interleaved per configuration.
//! * Typed, in-process 1×1 (`typed_1x1/…`): `Queue<u64>` (postcard) vs
//!   `PodQueue<u64>` at 8 B, and `Queue<Vec<u8>>` vs `PodQueue<[u8; 4096]>`
//!   at 4 KiB, each driven by blocking `send`/`recv`.
//!
//! A cache-line ping-pong between two processes is printed at the start
//! and the end: this VM's CPUs flip between a fast and a slow state, and
//! the ratio only means something next to it.
//!
//! Run: `cargo bench --bench queue_mpmc -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{Peer, Placement};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use shmkit::queue::{MpmcQueue, PodQueue, Queue};
use shmkit::{ShmBox, ShmValue};

const CAPACITY: usize = 1024;

/// Spread `total` over `n` workers.
fn share(total: u64, n: u64, i: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

/// Runs P producer and C consumer processes; `produce(count)` and
/// `consume(count)` run in the children after a start signal. Returns the
/// time from the start signal until every consumer is done.
fn run_processes(
    iters: u64,
    p: u64,
    c: u64,
    pinned: bool,
    produce: &dyn Fn(u64),
    consume: &dyn Fn(u64),
) -> Duration {
    let go = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let done = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let (go, done) = (&*go, &*done);
    let mut peers = Vec::new();
    for i in 0..p {
        peers.push(Peer::fork(|| {
            if pinned {
                common::pin(Some(0));
            }
            while go.load() == 0 {
                std::hint::spin_loop();
            }
            produce(share(iters, p, i));
        }));
    }
    for i in 0..c {
        peers.push(Peer::fork(|| {
            if pinned {
                common::pin(Some(0));
            }
            while go.load() == 0 {
                std::hint::spin_loop();
            }
            consume(share(iters, c, i));
            done.fetch_add(1);
        }));
    }
    let start = Instant::now();
    go.store(1);
    while done.load() < c {
        std::thread::yield_now();
    }
    let t = start.elapsed();
    peers.into_iter().for_each(Peer::join);
    t
}

fn shm_cross(iters: u64, p: u64, c: u64, size: usize, pinned: bool) -> Duration {
    let q = MpmcQueue::anonymous(size, CAPACITY).unwrap();
    // Endpoints made before forking: the children inherit them, so no side
    // looks disconnected while the other is still starting.
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let msg = vec![7u8; size];
    run_processes(
        iters,
        p,
        c,
        pinned,
        &|n| {
            for _ in 0..n {
                tx.send(&msg).unwrap();
            }
        },
        &|n| {
            for _ in 0..n {
                rx.recv_with(|m| black_box(m.len())).unwrap();
            }
        },
    )
}

fn pipe_cross(iters: u64, p: u64, c: u64, size: usize, pinned: bool) -> Duration {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let msg = vec![7u8; size];
    let t = run_processes(
        iters,
        p,
        c,
        pinned,
        &|n| {
            for _ in 0..n {
                // SAFETY: writing `size` bytes from a live buffer; writes of
                // at most PIPE_BUF bytes are atomic.
                let w = unsafe { libc::write(fds[1], msg.as_ptr().cast(), size) };
                assert_eq!(w as usize, size);
            }
        },
        &|n| {
            let mut buf = vec![0u8; size];
            for _ in 0..n {
                // SAFETY: reading into a live buffer of `size` bytes; all
                // writes are whole `size`-byte messages.
                let r = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), size) };
                assert_eq!(r as usize, size);
            }
        },
    );
    // SAFETY: closing our own descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    t
}

fn threads(
    iters: u64,
    p: u64,
    c: u64,
    produce: &(dyn Fn(u64) + Sync),
    consume: &(dyn Fn(u64) + Sync),
) -> Duration {
    let barrier = Barrier::new((p + c + 1) as usize);
    let start = std::thread::scope(|s| {
        for i in 0..p {
            let b = &barrier;
            s.spawn(move || {
                b.wait();
                produce(share(iters, p, i));
            });
        }
        for i in 0..c {
            let b = &barrier;
            s.spawn(move || {
                b.wait();
                consume(share(iters, c, i));
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

fn shm_threads(iters: u64, p: u64, c: u64) -> Duration {
    let q = MpmcQueue::in_process(8, CAPACITY).unwrap();
    // One registration per side for the whole run (threads share a pid).
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    threads(
        iters,
        p,
        c,
        &|n| {
            for i in 0..n {
                tx.send(&i.to_le_bytes()).unwrap();
            }
        },
        &|n| {
            for _ in 0..n {
                rx.recv_with(|m| black_box(m[0])).unwrap();
            }
        },
    )
}

/// The same algorithm driven like the crossbeam loop below (non-blocking
/// calls, `yield_now` on full/empty): separates the algorithm's cost from
/// the spin-then-park strategy of `send`/`recv`.
fn shm_threads_try(iters: u64, p: u64, c: u64) -> Duration {
    let q = MpmcQueue::in_process(8, CAPACITY).unwrap();
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    threads(
        iters,
        p,
        c,
        &|n| {
            for i in 0..n {
                let b = i.to_le_bytes();
                while tx.try_send(&b).is_err() {
                    std::thread::yield_now();
                }
            }
        },
        &|n| {
            for _ in 0..n {
                while rx.try_recv_with(|m| black_box(m[0])).is_err() {
                    std::thread::yield_now();
                }
            }
        },
    )
}

fn crossbeam_threads(iters: u64, p: u64, c: u64) -> Duration {
    let q = ArrayQueue::<u64>::new(CAPACITY);
    threads(
        iters,
        p,
        c,
        &|n| {
            for i in 0..n {
                let mut v = i;
                while let Err(back) = q.push(v) {
                    v = back;
                    std::thread::yield_now();
                }
            }
        },
        &|n| {
            for _ in 0..n {
                loop {
                    if let Some(v) = q.pop() {
                        black_box(v);
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        },
    )
}

/// One producer thread and one consumer thread over a typed queue.
fn typed_1x1(iters: u64, send: &(dyn Fn(u64) + Sync), recv: &(dyn Fn() + Sync)) -> Duration {
    threads(iters, 1, 1, &|n| (0..n).for_each(send), &|n| {
        (0..n).for_each(|_| recv())
    })
}

fn typed(c: &mut Criterion) {
    let mut g = c.benchmark_group("typed_1x1");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("postcard_u64_8B", |b| {
        b.iter_custom(|n| {
            let q = Queue::<u64>::in_process(16, CAPACITY).unwrap();
            typed_1x1(n, &|i| q.send(i).unwrap(), &|| {
                black_box(q.recv().unwrap());
            })
        })
    });
    g.bench_function("pod_u64_8B", |b| {
        b.iter_custom(|n| {
            let q = PodQueue::<u64>::in_process(CAPACITY).unwrap();
            typed_1x1(n, &|i| q.send(i).unwrap(), &|| {
                black_box(q.recv().unwrap());
            })
        })
    });
    g.bench_function("postcard_vec_4KiB", |b| {
        b.iter_custom(|n| {
            let q = Queue::<Vec<u8>>::in_process(4096 + 8, 64).unwrap();
            let msg = vec![7u8; 4096];
            typed_1x1(n, &|_| q.send(msg.clone()).unwrap(), &|| {
                black_box(q.recv().unwrap());
            })
        })
    });
    g.bench_function("pod_array_4KiB", |b| {
        b.iter_custom(|n| {
            let q = PodQueue::<[u8; 4096]>::in_process(64).unwrap();
            let msg = [7u8; 4096];
            typed_1x1(n, &|_| q.send(msg).unwrap(), &|| {
                black_box(q.recv().unwrap());
            })
        })
    });
    g.finish();
}

const COUNTS: [u64; 3] = [1, 2, 4];

fn bench(c: &mut Criterion) {
    common::report_pingpongs("start", &[Placement::Unpinned]);

    for size in [8usize, 64] {
        let mut g = c.benchmark_group(format!("cross_process_{size}B"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(1));
        for p in COUNTS {
            for k in COUNTS {
                let id = format!("{p}x{k}");
                g.bench_function(BenchmarkId::new("shmkit_mpmc", &id), |b| {
                    b.iter_custom(|n| shm_cross(n, p, k, size, false))
                });
                g.bench_function(BenchmarkId::new("pipe", &id), |b| {
                    b.iter_custom(|n| pipe_cross(n, p, k, size, false))
                });
            }
        }
        g.bench_function(BenchmarkId::new("shmkit_mpmc", "1x1_pinned"), |b| {
            b.iter_custom(|n| shm_cross(n, 1, 1, size, true))
        });
        g.bench_function(BenchmarkId::new("pipe", "1x1_pinned"), |b| {
            b.iter_custom(|n| pipe_cross(n, 1, 1, size, true))
        });
        g.finish();
    }

    let mut g = c.benchmark_group("in_process_8B");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    for p in COUNTS {
        for k in COUNTS {
            let id = format!("{p}x{k}");
            g.bench_function(BenchmarkId::new("shmkit_mpmc", &id), |b| {
                b.iter_custom(|n| shm_threads(n, p, k))
            });
            g.bench_function(BenchmarkId::new("shmkit_mpmc_try", &id), |b| {
                b.iter_custom(|n| shm_threads_try(n, p, k))
            });
            g.bench_function(BenchmarkId::new("crossbeam_array_queue", &id), |b| {
                b.iter_custom(|n| crossbeam_threads(n, p, k))
            });
        }
    }
    g.finish();

    common::report_pingpongs("end", &[Placement::Unpinned]);
}

/// One thread sends and receives 8-byte messages on an in-process queue
/// (and the same on crossbeam's `ArrayQueue`): the per-message cost of the
/// protocol with no cache line crossing CPUs.
fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_single_thread");
    g.throughput(Throughput::Elements(1));
    g.bench_function("shmkit_send_recv_8B", |b| {
        let q = MpmcQueue::in_process(8, CAPACITY).unwrap();
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        b.iter(|| {
            tx.try_send(&[7u8; 8]).unwrap();
            black_box(rx.try_recv_with(|m| m[0]).unwrap());
        })
    });
    g.bench_function("crossbeam_push_pop_8B", |b| {
        let q = ArrayQueue::<u64>::new(CAPACITY);
        b.iter(|| {
            q.push(7).unwrap();
            black_box(q.pop().unwrap());
        })
    });
    g.bench_function("typed_postcard_u64", |b| {
        let q = Queue::<u64>::in_process(16, CAPACITY).unwrap();
        b.iter(|| {
            q.try_send(7).unwrap();
            black_box(q.try_recv().unwrap());
        })
    });
    g.bench_function("typed_pod_u64", |b| {
        let q = PodQueue::<u64>::in_process(CAPACITY).unwrap();
        b.iter(|| {
            q.try_send(7).unwrap();
            black_box(q.try_recv().unwrap());
        })
    });
    g.bench_function("typed_postcard_vec_4KiB", |b| {
        let q = Queue::<Vec<u8>>::in_process(4096 + 8, 64).unwrap();
        let msg = vec![7u8; 4096];
        b.iter(|| {
            q.try_send(msg.clone()).unwrap();
            black_box(q.try_recv().unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench, typed, single_thread);
criterion_main!(benches);
