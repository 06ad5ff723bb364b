//! The `aio` futures and `AsyncReadyFd` on a real tokio runtime (feature
//! `tokio`), plus the `tokio_serve` example. Senders are threads here;
//! `tests/xproc_select.rs` runs the futures across processes.

// The shared harness is foundation code; silence lints newer than it.
#[allow(clippy::all, unknown_lints, function_casts_as_integer)]
mod common;

use std::collections::BTreeSet;

use shmkit::aio::AsyncReadyFd;
use shmkit::queue::{GetError, MpmcQueue, Pipe, RecvError, SendError, SpscRing};
use shmkit::select::Ready;
use shmkit::Queue;

const N: u64 = if cfg!(debug_assertions) {
    2_000
} else {
    20_000
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Two queues, two sender threads, one task receiving from both with
/// `tokio::select!`: every value exactly once, in order per queue.
#[test]
fn recv_async_from_two_queues() {
    let a = Queue::<u64>::anonymous(16, 4).unwrap();
    let b = Queue::<u64>::anonymous(16, 4).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| (0..N).for_each(|i| a.send(i).unwrap()));
        s.spawn(|| (0..N).for_each(|i| b.send(i).unwrap()));
        runtime().block_on(async {
            let mut next = [0u64; 2];
            while next != [N, N] {
                tokio::select! {
                    r = a.recv_async(), if next[0] < N => {
                        assert_eq!(r, Ok(next[0]));
                        next[0] += 1;
                    }
                    r = b.recv_async(), if next[1] < N => {
                        assert_eq!(r, Ok(next[1]));
                        next[1] += 1;
                    }
                }
            }
        });
    });
    assert_eq!(a.try_recv(), Err(GetError::Empty));
}

/// A full queue: `send_async` waits for room while a thread drains, and
/// every value arrives once; after `close` it gives the value back.
#[test]
fn send_async_waits_for_room() {
    let q = Queue::<u64>::anonymous(16, 2).unwrap();
    std::thread::scope(|s| {
        let drain = s.spawn(|| (0..N).map(|_| q.recv().unwrap()).collect::<Vec<_>>());
        runtime().block_on(async {
            for i in 0..N {
                q.send_async(i).await.unwrap();
            }
        });
        assert_eq!(drain.join().unwrap(), (0..N).collect::<Vec<_>>());
    });
    q.close();
    let r = runtime().block_on(q.send_async(7));
    assert!(matches!(r, Err(SendError::Disconnected(7))));
}

/// Byte queues (MPMC and SPSC) and a pipe, async on both ends, ending
/// with `Disconnected` once the sending end is dropped.
#[test]
fn byte_queues_and_pipe_async() {
    let rt = runtime();
    let q = MpmcQueue::anonymous(8, 4).unwrap();
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    let recv = rt.spawn(async move {
        let mut got = Vec::new();
        loop {
            match rx.recv_async().await {
                Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
                Err(RecvError::Disconnected) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    });
    rt.block_on(async {
        for i in 0..N {
            tx.send_async(&i.to_le_bytes()).await.unwrap();
        }
    });
    drop(tx);
    assert_eq!(rt.block_on(recv).unwrap(), (0..N).collect::<Vec<_>>());

    let ring = SpscRing::in_process(128).unwrap();
    let (mut p, mut c) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let pop = rt.spawn(async move {
        let mut got = Vec::new();
        while let Ok(m) = c.pop_async().await {
            got.push(m);
        }
        got
    });
    rt.block_on(async {
        for i in 0..N {
            p.push_async(&i.to_le_bytes()[..(i % 8) as usize + 1])
                .await
                .unwrap();
        }
    });
    drop(p);
    let got = rt.block_on(pop).unwrap();
    assert_eq!(got.len() as u64, N);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m[..], (i as u64).to_le_bytes()[..(i % 8) + 1]);
    }

    let (mut a, mut b) = Pipe::in_process(128).unwrap();
    let echo = rt.spawn(async move {
        while let Ok(m) = b.recv_async().await {
            b.send_async(&m).await.unwrap();
        }
    });
    rt.block_on(async {
        for i in 0..N {
            a.send_async(&i.to_le_bytes()).await.unwrap();
            assert_eq!(a.recv_async().await.unwrap(), i.to_le_bytes());
        }
    });
    a.close();
    rt.block_on(echo).unwrap();
}

/// `AsyncReadyFd` over two queues: one task waits on both through tokio's
/// reactor; every value arrives once.
#[test]
fn async_ready_fd_over_two_queues() {
    let a = Queue::<u64>::anonymous(16, 4).unwrap();
    let b = Queue::<u64>::anonymous(16, 4).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| (0..N).for_each(|i| a.send(i).unwrap()));
        s.spawn(|| (0..N).for_each(|i| b.send(N + i).unwrap()));
        runtime().block_on(async {
            let fd = AsyncReadyFd::new(&[&a, &b]).unwrap();
            let mut seen = BTreeSet::new();
            while (seen.len() as u64) < 2 * N {
                let ready = fd.ready().await.unwrap();
                assert!(ready.iter().all(|s| s.ready == Ready::Item));
                for q in [&a, &b] {
                    while let Ok(v) = q.try_recv() {
                        assert!(seen.insert(v), "{v} received twice");
                    }
                }
            }
        });
    });
}

/// The example: a forked producer fills two queues, a tokio task serves
/// them over TCP; the client gets every value.
#[test]
fn tokio_serve_example() {
    let run = common::run_example("tokio_serve", &[]);
    let mut expected = vec![
        "client got: number 1",
        "client got: number 4",
        "client got: number 9",
        "client got: number 16",
        "client got: number 25",
        "client got: word alpha",
        "client got: word beta",
        "client got: word gamma",
        "producer exit code: 0",
    ];
    expected.sort_unstable();
    assert_eq!(run.sorted(), expected);
}
