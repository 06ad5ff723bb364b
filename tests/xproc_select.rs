//! Cross-process tests of `shmkit::select` (WaitSet / wait), `ReadyFd`
//! and the `aio` futures: real `fork`, real segments, real `SIGKILL`. A
//! `harness = false` binary (fork needs a single-threaded process); every
//! case runs under a hang watchdog. The cases that start the waiter
//! thread (`ReadyFd`, async) come last and fork before starting it.

// The shared harness is foundation code; silence lints newer than it.
#[allow(clippy::all, unknown_lints, function_casts_as_integer)]
mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::{fork, run, Rng};
use shmkit::queue::{GetError, MpmcQueue, Pipe, RecvError, SpscRing, TryRecvError};
use shmkit::select::{select, Ready, ReadyFd, Selected, WaitSet};
use shmkit::{Event, Queue, ShmBox};

/// Messages per sender.
const PER: u64 = if cfg!(debug_assertions) {
    2_000
} else {
    20_000
};

/// Pauses now and then, so the selector also sleeps between messages.
fn jitter(rng: &mut Rng) {
    if rng.below(64) == 0 {
        std::thread::sleep(Duration::from_micros(rng.below(300)));
    }
}

/// Four sender processes on four different objects (two typed queues, an
/// SPSC ring, a pipe). Each readiness report is followed by exactly one
/// try-call, which must deliver: so every message is reported exactly
/// once, and every message is received exactly once, in order.
fn many_senders_each_message_reported_once() {
    let qa = Queue::<u64>::anonymous(16, 8).unwrap();
    let qb = Queue::<u64>::anonymous(16, 8).unwrap();
    let ring = SpscRing::anonymous(256).unwrap();
    let mut rx = ring.consumer().unwrap();
    let (mut pa, mut pb) = Pipe::duplex_with_capacity(256).unwrap();
    // The child's end stays alive here too: dropped in the parent before
    // the child's first use, it would read as disconnected until then.
    let pb_child = &mut pb;
    let mut kids = Vec::new();
    for (k, q) in [&qa, &qb].into_iter().enumerate() {
        kids.push(fork(move || {
            let mut rng = Rng::new(k as u64 + 1);
            for i in 0..PER {
                q.send(i).unwrap();
                jitter(&mut rng);
            }
            0
        }));
    }
    kids.push(fork(|| {
        let mut tx = ring.producer().unwrap();
        let mut rng = Rng::new(3);
        for i in 0..PER {
            tx.push(&i.to_le_bytes()).unwrap();
            jitter(&mut rng);
        }
        0
    }));
    kids.push(fork(move || {
        let pb = pb_child;
        let mut rng = Rng::new(4);
        for i in 0..PER {
            pb.send(&i.to_le_bytes()).unwrap();
            jitter(&mut rng);
        }
        // Stay until the parent has read everything (EOF is not tested here).
        let _ = pb.recv();
        0
    }));
    let mut next = [0u64; 4];
    let mut reports = 0u64;
    let mut buf = Vec::new();
    while next.iter().any(|&n| n < PER) {
        // Members still expecting messages (a finished sender's ring reads
        // `Closed` once drained, which would end every select at once).
        let members: [&dyn shmkit::Selectable; 4] = [&qa, &qb, &rx, &pa];
        let open: Vec<usize> = (0..4).filter(|&i| next[i] < PER).collect();
        let subset: Vec<&dyn shmkit::Selectable> = open.iter().map(|&i| members[i]).collect();
        let ready = select(&subset, None);
        assert!(
            !ready.is_empty(),
            "select without a deadline returned nothing"
        );
        for Selected { index, ready } in ready {
            let index = open[index];
            assert_eq!(ready, Ready::Item, "member {index} reported {ready:?}");
            reports += 1;
            let v = match index {
                0 => qa
                    .try_recv()
                    .expect("typed queue a: reported ready, try_recv failed"),
                1 => qb
                    .try_recv()
                    .expect("typed queue b: reported ready, try_recv failed"),
                2 => {
                    rx.try_pop(&mut buf)
                        .expect("ring: reported ready, try_pop failed");
                    u64::from_le_bytes(buf[..8].try_into().unwrap())
                }
                _ => {
                    let m = pa
                        .try_recv()
                        .expect("pipe: reported ready, try_recv failed");
                    u64::from_le_bytes(m[..8].try_into().unwrap())
                }
            };
            assert_eq!(v, next[index], "member {index}: out of order or duplicated");
            next[index] += 1;
        }
    }
    assert_eq!(reports, 4 * PER);
    assert_eq!(qa.try_recv(), Err(GetError::Empty));
    assert_eq!(qb.try_recv(), Err(GetError::Empty));
    pa.send(b"done").unwrap();
    for mut k in kids {
        k.join_ok("sender");
    }
}

/// A sender SIGKILLed while the selector sleeps (an MPMC sender and an
/// SPSC producer, each killed by a sibling) is reported `Closed`, and the
/// try-call then says `Disconnected`: no hang.
fn sender_killed_while_selector_sleeps_is_reported() {
    let q = MpmcQueue::anonymous(8, 4).unwrap();
    let qrx = q.receiver().unwrap();
    let ring = SpscRing::anonymous(256).unwrap();
    let mut rx = ring.consumer().unwrap();
    let ev = ShmBox::<Event>::anonymous(()).unwrap();
    let mut mpmc_sender = fork(|| {
        let tx = q.sender().unwrap();
        tx.send(b"one").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut ring_sender = fork(|| {
        let mut tx = ring.producer().unwrap();
        tx.push(b"one").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let pids = [mpmc_sender.pid, ring_sender.pid];
    // The killer waits for the go (both first messages taken), gives the
    // selector time to fall asleep, then kills both senders.
    let mut killer = fork(|| {
        ev.wait();
        std::thread::sleep(Duration::from_millis(30));
        for pid in pids {
            // SAFETY: kill(2) on a sibling test process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        0
    });
    let mut buf = Vec::new();
    let mut got = 0;
    while got < 2 {
        for s in select(&[&qrx, &rx], None) {
            assert_eq!(s.ready, Ready::Item);
            match s.index {
                0 => qrx.try_recv(&mut buf).map(|_| ()).unwrap(),
                _ => rx.try_pop(&mut buf).unwrap(),
            }
            assert_eq!(buf, b"one");
            got += 1;
        }
    }
    // The children are the only senders (they registered on first use).
    ev.set();
    let mut closed = [false; 2];
    while !closed.iter().all(|&c| c) {
        for s in select(&[&qrx, &rx], None) {
            assert_eq!(
                s.ready,
                Ready::Closed,
                "member {} reported {:?}",
                s.index,
                s.ready
            );
            closed[s.index] = true;
        }
    }
    killer.join_ok("killer");
    mpmc_sender.kill();
    ring_sender.kill();
    assert_eq!(
        rx.try_pop(&mut buf),
        Err(TryRecvError::Disconnected),
        "ring: Closed reported but try_pop disagrees"
    );
    let mut last = Ok(0);
    for _ in 0..1_000 {
        // The receiver's own disconnect check is rate-limited (1 ms).
        last = qrx.try_recv(&mut buf);
        if last == Err(TryRecvError::Disconnected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(last, Err(TryRecvError::Disconnected));
}

/// Process exit is readiness: a child that ends is reported `Closed`
/// while another keeps running, next to an event that is never set.
fn process_exit_is_readiness() {
    let go = ShmBox::<Event>::anonymous(()).unwrap();
    let never = Event::new();
    let first = shmkit::fork(|| {
        go.wait();
        3
    })
    .unwrap();
    let second = shmkit::fork(|| {
        std::thread::sleep(Duration::from_secs(600));
        0
    })
    .unwrap();
    let mut set = WaitSet::new();
    set.add(&first);
    set.add(&second);
    set.add(&never);
    assert!(set.poll().is_empty());
    go.set();
    let ready = set.wait();
    assert_eq!(
        ready,
        vec![Selected {
            index: 0,
            ready: Ready::Closed
        }]
    );
    assert_eq!(first.exitcode(), Some(3));
    second.kill().unwrap();
    // Processes only: the selector sleeps in poll(2) on the pidfd.
    assert_eq!(shmkit::wait(&[&second], None), vec![0]);
    let ready = shmkit::wait(&[&second, &never], None);
    assert_eq!(ready, vec![0]);
    assert!(second.exit_status().is_some());
}

/// A ReadyFd over two typed queues and a pipe, fed by three processes:
/// poll(2) on the fd, take what is ready, re-arm; every message arrives
/// exactly once. (Starts the waiter thread: forks first.)
fn ready_fd_across_processes() {
    let qa = Queue::<u64>::anonymous(16, 8).unwrap();
    let qb = Queue::<u64>::anonymous(16, 8).unwrap();
    let (mut pa, mut pb) = Pipe::duplex_with_capacity(256).unwrap();
    // The child's end stays alive here too: dropped in the parent before
    // the child's first use, it would read as disconnected until then.
    let pb_child = &mut pb;
    let mut kids = Vec::new();
    for (k, q) in [&qa, &qb].into_iter().enumerate() {
        kids.push(fork(move || {
            let mut rng = Rng::new(10 + k as u64);
            for i in 0..PER {
                q.send(i).unwrap();
                jitter(&mut rng);
            }
            0
        }));
    }
    kids.push(fork(move || {
        let pb = pb_child;
        let mut rng = Rng::new(12);
        for i in 0..PER {
            pb.send(&i.to_le_bytes()).unwrap();
            jitter(&mut rng);
        }
        let _ = pb.recv();
        0
    }));
    let fd = ReadyFd::new(&[&qa, &qb, &pa]).unwrap();
    let mut next = [0u64; 3];
    while next.iter().any(|&n| n < PER) {
        {
            let mut p = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            rustix::event::poll(&mut p, None).unwrap();
        }
        // Drain everything ready, then re-arm.
        loop {
            let mut any = false;
            while let Ok(v) = qa.try_recv() {
                assert_eq!(v, next[0]);
                next[0] += 1;
                any = true;
            }
            while let Ok(v) = qb.try_recv() {
                assert_eq!(v, next[1]);
                next[1] += 1;
                any = true;
            }
            while let Ok(m) = pa.try_recv() {
                assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), next[2]);
                next[2] += 1;
                any = true;
            }
            if !any {
                break;
            }
        }
        fd.rearm();
    }
    pa.send(b"done").unwrap();
    for mut k in kids {
        k.join_ok("sender");
    }
}

/// Wakes the thread that blocks in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: runs `fut` to completion on this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Async receive from a typed queue and a pipe filled by other processes,
/// an async send into a full queue drained by another process, and an
/// async join of that process. (The first case to start the waiter
/// thread: `shmkit::fork` refuses once it runs.)
fn async_across_processes() {
    let q = Queue::<u64>::anonymous(16, 4).unwrap();
    let back = Queue::<u64>::anonymous(16, 2).unwrap();
    let (mut pa, mut pb) = Pipe::duplex_with_capacity(256).unwrap();
    // The child's end stays alive here too: dropped in the parent before
    // the child's first use, it would read as disconnected until then.
    let pb_child = &mut pb;
    let qr = &q;
    let mut sender = fork(move || {
        let pb = pb_child;
        let q = qr;
        let mut rng = Rng::new(20);
        for i in 0..PER {
            q.send(i).unwrap();
            pb.send(&i.to_le_bytes()).unwrap();
            jitter(&mut rng);
        }
        let _ = pb.recv();
        0
    });
    let drainer = shmkit::fork(|| {
        let mut sum = 0;
        for _ in 0..PER {
            sum += back.recv().unwrap();
        }
        i32::from(sum == PER * (PER - 1) / 2)
    })
    .unwrap();
    // A ready operation completes in its first poll, without the waiter
    // thread (this process is still single-threaded afterwards).
    let ready = Queue::<u64>::anonymous(16, 2).unwrap();
    block_on(ready.send_async(5)).unwrap();
    assert_eq!(block_on(ready.recv_async()), Ok(5));
    assert_eq!(shmkit::process::thread_count().unwrap(), 1);
    block_on(async {
        for i in 0..PER {
            assert_eq!(q.recv_async().await, Ok(i));
            let m = pa.recv_async().await.unwrap();
            assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), i);
            back.send_async(i).await.unwrap();
        }
        assert_eq!(drainer.join_async().await.unwrap().exitcode(), 1);
    });
    pa.send(b"done").unwrap();
    sender.join_ok("sender");
    assert_eq!(
        block_on(pa.recv_async()),
        Err(RecvError::Disconnected),
        "the pipe's other end exited: end-of-file"
    );
}

shmkit::task! {
    static SQUARE: Task<u64, u64> = |x| x * x;
}

/// Pool results in a select, then awaited: `AsyncResult::get_async` and
/// the executor's `result_async`. (Runs last: the pool starts threads.)
fn pool_results_are_selectable_and_awaitable() {
    let pool = shmkit::Pool::new(2).unwrap();
    let results: Vec<_> = (0..8u64)
        .map(|i| pool.apply_async(&SQUARE, i).unwrap())
        .collect();
    let mut done = [false; 8];
    while !done.iter().all(|&d| d) {
        let open: Vec<usize> = (0..8).filter(|&i| !done[i]).collect();
        let members: Vec<&dyn shmkit::Selectable> = open
            .iter()
            .map(|&i| &results[i] as &dyn shmkit::Selectable)
            .collect();
        for s in select(&members, None) {
            assert_eq!(s.ready, Ready::Item);
            assert!(results[open[s.index]].ready(), "reported ready, not ready");
            done[open[s.index]] = true;
        }
    }
    for (i, r) in results.iter().enumerate() {
        assert_eq!(block_on(r.get_async()).unwrap(), (i * i) as u64);
    }
    let late = pool.apply_async(&SQUARE, 12).unwrap();
    assert_eq!(block_on(late.get_async()).unwrap(), 144);
    let ex = shmkit::Executor::new(1).unwrap();
    let f = ex.submit(&SQUARE, 9).unwrap();
    assert_eq!(block_on(f.result_async()).unwrap(), 81);
}

fn main() {
    shmkit::init();
    run(
        &[
            (
                "many_senders_each_message_reported_once",
                many_senders_each_message_reported_once,
            ),
            (
                "sender_killed_while_selector_sleeps_is_reported",
                sender_killed_while_selector_sleeps_is_reported,
            ),
            ("process_exit_is_readiness", process_exit_is_readiness),
            // Starts the waiter thread: shmkit::fork refuses from here on.
            ("async_across_processes", async_across_processes),
            ("ready_fd_across_processes", ready_fd_across_processes),
            (
                "pool_results_are_selectable_and_awaitable",
                pool_results_are_selectable_and_awaitable,
            ),
        ],
        120,
    );
}
