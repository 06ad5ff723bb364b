//! Cross-process tests of the MPMC queue family: real `fork`, real
//! segments, real `SIGKILL`. A `harness = false` binary (fork needs a
//! single-threaded process); every case runs under a hang watchdog.

// The shared harness is foundation code; silence lints newer than it.
#[allow(clippy::all, unknown_lints, function_casts_as_integer)]
mod common;

use std::time::Duration;

use common::{fork, run, unique_name, Exit, Rng};
use serde::{Deserialize, Serialize};
use shmkit::queue::{
    GetError, JoinableQueue, MpmcQueue, Queue, RecvError, RecvTimeoutError, TryRecvError,
    TrySendError,
};
use shmkit::{ShmArray, ShmBox, ShmValue};

const LONG: Duration = Duration::from_secs(60);

fn lock_counts(a: &ShmArray<u8>) -> shmkit::sync::ArrayGuard<'_, u8> {
    match a.lock() {
        Ok(g) => g,
        // A killed consumer may have held the lock: its data is single
        // byte stores, consistent either way.
        Err(e) => {
            let g = e.into_inner();
            g.mark_consistent();
            g
        }
    }
}

/// 4 producer processes x 4 consumer processes: the received multiset is
/// exactly the sent one, and each consumer sees each producer in order.
fn four_by_four_exactly_once() {
    const PER: u64 = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let q = MpmcQueue::create(&unique_name("mpmc44"), 8, 64).unwrap();
    let seen = ShmArray::<u8>::anonymous((4 * PER) as usize).unwrap();
    // The parent holds the sending side open until every producer has
    // registered: otherwise, on a loaded machine, one producer could send
    // everything and leave before another registered, and the receivers
    // would rightly see every (registered) sender gone.
    let keep = q.sender().unwrap();
    let registered = ShmArray::<u8>::anonymous(4).unwrap();
    let mut kids = Vec::new();
    for p in 0..4u64 {
        let (q, registered) = (q.clone(), &registered);
        kids.push(fork(move || {
            let tx = q.sender().unwrap();
            lock_counts(registered)[p as usize] = 1;
            for i in 0..PER {
                tx.send(&(p * PER + i).to_le_bytes()).unwrap();
            }
            0
        }));
    }
    for _ in 0..4 {
        let (q, seen) = (q.clone(), &seen);
        kids.push(fork(move || {
            let rx = q.receiver().unwrap();
            let mut last = [u64::MAX; 4];
            let mut got = Vec::new();
            let mut buf = Vec::new();
            loop {
                match rx.recv(&mut buf) {
                    Ok(8) => {
                        let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                        let p = (v / PER) as usize;
                        if last[p] != u64::MAX && v <= last[p] {
                            return 2; // out of order for one producer
                        }
                        last[p] = v;
                        got.push(v);
                    }
                    Ok(_) => return 3,
                    Err(RecvError::Disconnected) => break,
                    Err(RecvError::Corrupt(_)) => return 4,
                }
            }
            let mut g = lock_counts(seen);
            for v in got {
                g[v as usize] = g[v as usize].saturating_add(1);
            }
            0
        }));
    }
    common::wait_until(LONG, "producers registered", || {
        lock_counts(&registered).iter().all(|&r| r == 1)
    });
    drop(keep);
    for k in &mut kids {
        k.join_ok("4x4 peer");
    }
    let counts = seen.to_vec();
    let bad: Vec<_> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c != 1)
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "messages not received exactly once: {bad:?}"
    );
    assert!(q.is_empty());
}

/// A consumer SIGKILLed mid-receive, 100+ times, while another keeps
/// consuming: at most one message lost per kill, none duplicated.
fn consumer_sigkill_loop() {
    const KILLS: u32 = 120;
    const MAX: usize = 2_000_000;
    let q = MpmcQueue::anonymous(8, 16).unwrap();
    let seen = ShmArray::<u8>::anonymous(MAX).unwrap();
    let stop = ShmBox::<ShmValue<bool>>::anonymous(false).unwrap();
    let sent = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let record = |rx: &shmkit::queue::MpmcReceiver, seen: &ShmArray<u8>| -> bool {
        let mut buf = Vec::new();
        match rx.recv(&mut buf) {
            Ok(8) => {
                let v = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                let mut g = lock_counts(seen);
                g[v] = g[v].saturating_add(1);
                true
            }
            _ => false,
        }
    };
    let mut producer = {
        let (q, stop, sent) = (q.clone(), &stop, &sent);
        fork(move || {
            let tx = q.sender().unwrap();
            let mut i = 0u64;
            while !stop.load() && (i as usize) < MAX {
                if tx
                    .send_timeout(&i.to_le_bytes(), Duration::from_millis(50))
                    .is_ok()
                {
                    i += 1;
                    sent.store(i);
                }
            }
            0
        })
    };
    let mut steady = {
        let (q, seen) = (q.clone(), &seen);
        fork(move || {
            let rx = q.receiver().unwrap();
            while record(&rx, seen) {
                // Leave room for the victim to win slots too.
                std::thread::yield_now();
            }
            0
        })
    };
    let mut rng = Rng::new(0xC0FFEE);
    for _ in 0..KILLS {
        let (q, seen) = (q.clone(), &seen);
        let mut victim = fork(move || {
            let rx = q.receiver().unwrap();
            while record(&rx, seen) {}
            0
        });
        std::thread::sleep(Duration::from_micros(200 + rng.below(1500)));
        victim.kill();
    }
    stop.store(true);
    producer.join_ok("producer");
    steady.join_ok("steady consumer");
    let n = sent.load() as usize;
    assert!(n > 0);
    let counts = seen.to_vec();
    let dup = counts[..n].iter().filter(|&&c| c > 1).count();
    let lost = counts[..n].iter().filter(|&&c| c == 0).count();
    assert_eq!(dup, 0, "duplicated messages");
    assert!(lost <= KILLS as usize, "{lost} lost for {KILLS} kills");
    assert!(counts[n..].iter().all(|&c| c == 0));
    println!("    consumer kills: {KILLS}, messages {n}, lost {lost}");
}

/// A producer SIGKILLed mid-send, 200+ times: no wedge; every send that
/// returned Ok is received exactly once and in order per producer.
fn producer_sigkill_loop() {
    const KILLS: usize = 220;
    let q = MpmcQueue::anonymous(16, 8).unwrap();
    let acked = ShmArray::<u64>::anonymous(KILLS).unwrap();
    let received = ShmArray::<u64>::anonymous(KILLS).unwrap();
    let tx_parent = q.sender().unwrap(); // keeps the sending side alive
    let mut consumer = {
        let (q, received) = (q.clone(), &received);
        fork(move || {
            let rx = q.receiver().unwrap();
            let mut next = vec![0u64; KILLS];
            let mut buf = Vec::new();
            loop {
                match rx.recv(&mut buf) {
                    Ok(16) => {
                        let k = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                        let seq = u64::from_le_bytes(buf[8..].try_into().unwrap());
                        if k >= KILLS || seq != next[k] {
                            return 2; // duplicate, gap or reorder
                        }
                        next[k] += 1;
                    }
                    Ok(_) => return 3,
                    Err(_) => break,
                }
            }
            for (k, n) in next.iter().enumerate() {
                received.set(k, *n);
            }
            0
        })
    };
    let mut rng = Rng::new(42);
    for k in 0..KILLS {
        let (q, acked) = (q.clone(), &acked);
        let mut victim = fork(move || {
            let tx = q.sender().unwrap();
            let mut msg = [0u8; 16];
            msg[..8].copy_from_slice(&(k as u64).to_le_bytes());
            for seq in 0u64.. {
                msg[8..].copy_from_slice(&seq.to_le_bytes());
                if tx.send(&msg).is_err() {
                    return 1;
                }
                acked.set(k, seq + 1);
            }
            0
        });
        std::thread::sleep(Duration::from_micros(100 + rng.below(1000)));
        victim.kill();
    }
    // No wedge: a last message still goes through, then close.
    let mut last = [0u8; 16];
    last[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    tx_parent.close();
    drop(tx_parent);
    assert_eq!(consumer.wait(LONG, "consumer"), Exit::Code(0));
    let (acked, received) = (acked.to_vec(), received.to_vec());
    for k in 0..KILLS {
        assert!(
            received[k] == acked[k] || received[k] == acked[k] + 1,
            "producer {k}: {} acked, {} received",
            acked[k],
            received[k]
        );
    }
    let total: u64 = received.iter().sum();
    println!("    producer kills: {KILLS}, messages received {total}");
}

/// Receivers blocked in `recv` get `Disconnected` when the only sender
/// process is SIGKILLed, after draining what it committed.
fn receivers_disconnect_when_sender_dies() {
    let q = MpmcQueue::anonymous(8, 8).unwrap();
    let got = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let mut sender = {
        let q = q.clone();
        fork(move || {
            let tx = q.sender().unwrap();
            for i in 0..3u64 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let mut receivers: Vec<_> = (0..2)
        .map(|_| {
            let (q, got) = (q.clone(), &got);
            fork(move || {
                let rx = q.receiver().unwrap();
                let mut buf = Vec::new();
                loop {
                    match rx.recv(&mut buf) {
                        Ok(_) => {
                            got.fetch_add(1);
                        }
                        Err(RecvError::Disconnected) => return 0,
                        Err(_) => return 2,
                    }
                }
            })
        })
        .collect();
    while got.load() < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    sender.kill_no_reap(); // a zombie counts as dead
    for r in &mut receivers {
        r.join_ok("receiver");
    }
    sender.kill();
    assert_eq!(got.load(), 3);
}

/// JoinableQueue: join() in the parent returns once children have marked
/// every item done.
fn joinable_join_across_processes() {
    let q = JoinableQueue::<u64, shmkit::queue::PodCodec>::anonymous_pod(16).unwrap();
    let sum = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| {
            let (q, sum) = (q.clone(), &sum);
            fork(move || loop {
                match q.get() {
                    Ok(v) => {
                        sum.fetch_add(v);
                        q.task_done().unwrap();
                    }
                    Err(GetError::Disconnected) => return 0,
                    Err(_) => return 2,
                }
            })
        })
        .collect();
    for v in 1..=200u64 {
        q.put(v).unwrap();
    }
    q.join();
    // Every task_done happened after its item was added to the sum.
    assert_eq!(sum.load(), 200 * 201 / 2);
    assert_eq!(q.unfinished(), 0);
    q.close();
    for mut k in kids {
        k.join_ok("joinable consumer");
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Job {
    id: u32,
    name: String,
    data: Vec<i64>,
    note: Option<String>,
}

/// Typed queue (postcard) by name across processes, both directions.
fn typed_queue_across_processes() {
    let name = unique_name("typed");
    let jobs = Queue::<Job>::create(&name, 256, 8).unwrap();
    let name2 = unique_name("typed-back");
    let back = Queue::<u64, shmkit::queue::PodCodec>::create(&name2, 8).unwrap();
    let mut child = {
        let (name, name2) = (name.clone(), name2.clone());
        fork(move || {
            let jobs = Queue::<Job>::open(&name).unwrap();
            let back = Queue::<u64, shmkit::queue::PodCodec>::open(&name2).unwrap();
            let mut total = 0u64;
            while let Ok(j) = jobs.get() {
                total += j.data.iter().sum::<i64>() as u64 + j.id as u64;
            }
            back.put(total).unwrap();
            0
        })
    };
    let mut want = 0u64;
    for id in 0..50u32 {
        let j = Job {
            id,
            name: format!("job {id}"),
            data: (0..id as i64).collect(),
            note: (id % 2 == 0).then(|| "even".into()),
        };
        want += j.data.iter().sum::<i64>() as u64 + id as u64;
        jobs.put(j).unwrap();
    }
    let huge = Job {
        id: 0,
        name: "x".repeat(1000),
        data: vec![],
        note: None,
    };
    // Larger than a slot: it spills and arrives like any job (adding 0).
    jobs.put(huge).unwrap();
    jobs.close();
    assert_eq!(back.get_timeout(LONG), Ok(want));
    child.join_ok("typed child");
    // Attach checks: wrong kind and wrong Pod size are refused.
    assert!(JoinableQueue::<Job>::open(&name).is_err());
    assert!(Queue::<u32, shmkit::queue::PodCodec>::open(&name2).is_err());
    // The parent created `back`, so it could still send: not
    // disconnected until it closes it.
    assert_eq!(back.get_nowait(), Err(GetError::Empty));
    back.close();
    assert_eq!(back.get_nowait(), Err(GetError::Disconnected));
    let _ = TryRecvError::Empty;
}

/// The registry's rule 3 for MPMC queues, raw and typed: a receiver of a
/// named queue whose creator dies (exits, or is SIGKILLed) before any
/// sender registered gets `Disconnected` instead of hanging; while the
/// creator lives it waits.
fn creator_dies_before_first_send() {
    for (typed, kill) in [(false, false), (false, true), (true, false), (true, true)] {
        let name = unique_name("mpmc-creator");
        let state = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
        let mut creator = fork(|| {
            let _raw;
            let _typed;
            if typed {
                _typed = Queue::<u64>::create(&name, 16, 3).unwrap();
            } else {
                _raw = MpmcQueue::create(&name, 16, 3).unwrap();
            }
            state.store(1); // created
            while state.load() != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if kill {
                // SAFETY: raising a signal on ourselves.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            // Exit without unlinking (the parent cleans up).
            0
        });
        common::wait_until(LONG, "queue created", || state.load() == 1);
        if typed {
            let q = Queue::<u64>::open(&name).unwrap();
            assert_eq!(
                q.get_timeout(Duration::from_millis(30)),
                Err(GetError::Timeout),
                "the creator is alive and could still send"
            );
            state.store(2);
            assert_eq!(q.get(), Err(GetError::Disconnected));
        } else {
            let rx = MpmcQueue::open(&name).unwrap().receiver().unwrap();
            let mut buf = Vec::new();
            assert_eq!(
                rx.recv_timeout(&mut buf, Duration::from_millis(30)),
                Err(RecvTimeoutError::Timeout),
                "the creator is alive and could still send"
            );
            state.store(2);
            assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));
        }
        let want = if kill { Exit::Signal(9) } else { Exit::Code(0) };
        assert_eq!(creator.wait(LONG, "creator"), want);
        let _ = shmkit::Segment::unlink(&name);
    }
}

/// Issue 14's `get()` while a live process could still send: producers
/// forked with clones of the parent's typed queue come and go one by one;
/// the parent's `get()` between one producer's exit and the next one's
/// first `put()` blocks (it returned `Disconnected` before the creating
/// handle counted as a sender), and a queue of capacity 3 holds exactly 3.
fn typed_get_blocks_between_producers() {
    let q = Queue::<u64>::anonymous(16, 3).unwrap();
    let go = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut first = {
        let q = q.clone();
        fork(move || {
            for v in 1..=3 {
                q.put_nowait(v).unwrap();
            }
            // Exactly three fit.
            assert!(matches!(q.put_nowait(4), Err(TrySendError::Full(4))));
            0
        })
    };
    let mut second = {
        let (q, go) = (q.clone(), &go);
        fork(move || {
            while go.load() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            q.put(4).unwrap();
            0
        })
    };
    first.join_ok("first producer");
    for v in 1..=3 {
        assert_eq!(q.get(), Ok(v));
    }
    // The first producer is gone and the second has not sent yet.
    assert_eq!(
        q.get_timeout(Duration::from_millis(50)),
        Err(GetError::Timeout)
    );
    go.store(1);
    assert_eq!(q.get_timeout(LONG), Ok(4));
    second.join_ok("second producer");
}

fn main() {
    run(
        &[
            ("four_by_four_exactly_once", four_by_four_exactly_once),
            ("consumer_sigkill_loop", consumer_sigkill_loop),
            ("producer_sigkill_loop", producer_sigkill_loop),
            (
                "receivers_disconnect_when_sender_dies",
                receivers_disconnect_when_sender_dies,
            ),
            (
                "joinable_join_across_processes",
                joinable_join_across_processes,
            ),
            ("typed_queue_across_processes", typed_queue_across_processes),
            (
                "creator_dies_before_first_send",
                creator_dies_before_first_send,
            ),
            (
                "typed_get_blocks_between_producers",
                typed_get_blocks_between_producers,
            ),
        ],
        120,
    );
}
