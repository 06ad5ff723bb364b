//! What waiting on many things costs: a round trip to an echo process
//! (it receives on `ping` with a blocking `recv` and answers on `pong`)
//! where the bench process waits for the answer in four ways, interleaved
//! in one run:
//!
//! * `blocking`: `pong.recv()`, the plain blocking call (spin, then park);
//! * `select`: `shmkit::select::select` over `pong` and an idle queue,
//!   then `try_recv` (parks in `futex_waitv` on both words);
//! * `ready_fd`: `epoll_wait` on a `ReadyFd` over the same two queues, then
//!   `try_recv` and `rearm` (the waiter thread parks and writes the
//!   eventfd);
//! * `async`: `pong.recv_async()` on a minimal executor (the waiter thread
//!   wakes the task).
//!
//! The cache-line ping-pong is printed at the start and the end: this
//! VM's CPUs flip between a fast and a slow state, and the figures only
//! compare within one state.
//!
//! Run: `cargo bench --bench select -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{Peer, Placement};
use criterion::Criterion;
use rustix::event::epoll;
use shmkit::select::{select, ReadyFd};
use shmkit::Queue;

/// Wakes the thread blocked in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `fut` on this thread, parking in between.
fn block_on<F: Future>(waker: &Waker, fut: F) -> F::Output {
    let mut cx = Context::from_waker(waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn main() {
    common::report_pingpongs("start", &[Placement::Unpinned]);
    let ping = Queue::<u64>::anonymous(16, 64).unwrap();
    let pong = Queue::<u64>::anonymous(16, 64).unwrap();
    let idle = Queue::<u64>::anonymous(16, 64).unwrap();
    // The echo peer, forked before the waiter thread starts.
    let echo = Peer::fork(|| {
        while let Ok(v) = ping.recv() {
            if v == u64::MAX {
                return;
            }
            pong.send(v).unwrap();
        }
    });
    let fd = ReadyFd::new(&[&pong, &idle]).unwrap();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(
        &ep,
        &fd,
        epoll::EventData::new_u64(0),
        epoll::EventFlags::IN,
    )
    .unwrap();
    let mut events = [MaybeUninit::<epoll::Event>::uninit(); 4];

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for round in 1..=2 {
        let mut g = c.benchmark_group(format!("select_round_trip/round{round}"));
        g.bench_function("blocking", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    ping.send(i).unwrap();
                    assert_eq!(pong.recv(), Ok(i));
                }
                t.elapsed()
            })
        });
        g.bench_function("select", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    ping.send(i).unwrap();
                    loop {
                        let _ = select(&[&pong, &idle], None);
                        if let Ok(v) = pong.try_recv() {
                            assert_eq!(v, i);
                            break;
                        }
                    }
                }
                t.elapsed()
            })
        });
        g.bench_function("ready_fd", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    ping.send(i).unwrap();
                    loop {
                        epoll::wait(&ep, &mut events, None).unwrap();
                        let got = pong.try_recv();
                        fd.rearm();
                        if let Ok(v) = got {
                            assert_eq!(v, i);
                            break;
                        }
                    }
                }
                t.elapsed()
            })
        });
        g.bench_function("async", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    ping.send(i).unwrap();
                    assert_eq!(block_on(&waker, pong.recv_async()), Ok(i));
                }
                t.elapsed()
            })
        });
        g.finish();
    }
    c.final_summary();
    drop(fd);
    ping.send(u64::MAX).unwrap();
    echo.join();
    common::report_pingpongs("end", &[Placement::Unpinned]);
}
