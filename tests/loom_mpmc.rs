//! Loom models of the MPMC queue: exactly-once delivery with contention on
//! both ends at capacity 2 (so positions wrap), and the park/wake protocol
//! (a lost wake-up shows up as a deadlock in the model).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test --release --test loom_mpmc`
#![cfg(loom)]

use loom::thread;
use shmkit::queue::{MpmcQueue, RecvError, TryRecvError};

fn recv_u8(rx: &shmkit::queue::MpmcReceiver) -> Result<u8, RecvError> {
    rx.recv_with(|m| m[0])
}

#[test]
fn loom_two_producers_one_consumer() {
    loom::model(|| {
        let q = MpmcQueue::in_process(1, 2).unwrap();
        let rx = q.receiver().unwrap();
        // Register both senders before either can finish and leave.
        let txs = [(1u8, q.sender().unwrap()), (2u8, q.sender().unwrap())];
        let producers: Vec<_> = txs
            .into_iter()
            .map(|(v, tx)| thread::spawn(move || tx.send(&[v]).unwrap()))
            .collect();
        let mut got = vec![recv_u8(&rx).unwrap(), recv_u8(&rx).unwrap()];
        for p in producers {
            p.join().unwrap();
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_eq!(rx.try_recv_with(|m| m[0]), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn loom_one_producer_two_consumers() {
    loom::model(|| {
        let q = MpmcQueue::in_process(1, 2).unwrap();
        let tx = q.sender().unwrap();
        let rxs = [q.receiver().unwrap(), q.receiver().unwrap()];
        let consumers: Vec<_> = rxs
            .into_iter()
            .map(|rx| {
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        match recv_u8(&rx) {
                            Ok(v) => mine.push(v),
                            Err(RecvError::Disconnected) => break,
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        for v in 1..=2u8 {
            tx.send(&[v]).unwrap();
        }
        drop(tx); // receivers drain, then see Disconnected
        let mut all: Vec<u8> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn loom_blocked_sender_is_woken() {
    loom::model(|| {
        let q = MpmcQueue::in_process(1, 2).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        tx.send(&[1]).unwrap();
        tx.send(&[2]).unwrap();
        // Full: this sender must park and be woken by the receive.
        let t = thread::spawn(move || tx.send(&[3]).unwrap());
        assert_eq!(recv_u8(&rx), Ok(1));
        t.join().unwrap();
        assert_eq!(recv_u8(&rx), Ok(2));
        assert_eq!(recv_u8(&rx), Ok(3));
    });
}
