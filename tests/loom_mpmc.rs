//! Loom models of the MPMC queue: exactly-once delivery with contention on
//! both ends at capacity 2 (so positions wrap), at capacity 3 (not a power
//! of two: positions skip from 2 to 4, the lap of 4), and the park/wake
//! protocol (a lost wake-up shows up as a deadlock in the model), and the
//! recovery of a slot claimed by a receiver or a sender that died
//! (simulated processes of `shmkit::os::process::loom_liveness`).
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test --release --test loom_mpmc`
//!
//! Under loom `membarrier` is unavailable, so every endpoint sets the
//! queue's sticky `full_fence` word and the models check the symmetric
//! (fallback) wake-up handshake; the asymmetric one rests on the kernel's
//! barrier, argued in SAFETY.md and stress-tested across processes
//! (`xproc_spsc::park_wake_storm`).
#![cfg(loom)]

use std::panic::{catch_unwind, panic_any, AssertUnwindSafe};

use loom::thread;
use shmkit::os::process::loom_liveness as liveness;
use shmkit::queue::{MpmcQueue, RecvError, TryRecvError, TrySendError};

fn recv_u8(rx: &shmkit::queue::MpmcReceiver) -> Result<u8, RecvError> {
    rx.recv_with(|m| m[0])
}

/// Two producers race to send one value each while a consumer takes
/// them; `warm_up` values go through first, so the race starts at that
/// position: every value arrives exactly once.
fn two_producers_one_consumer(capacity: usize, warm_up: u8) {
    let q = MpmcQueue::in_process(1, capacity).unwrap();
    let rx = q.receiver().unwrap();
    let warm = q.sender().unwrap();
    for _ in 0..warm_up {
        warm.try_send(&[0]).unwrap();
        assert_eq!(recv_u8(&rx), Ok(0));
    }
    drop(warm);
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
}

#[test]
fn loom_two_producers_one_consumer() {
    loom::model(|| two_producers_one_consumer(2, 0));
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

/// Capacity 3: exactly 3 messages fit; a blocked sender is woken by
/// receives, and 5 values go through in order across the lap gap
/// (positions 0, 1, 2, 4, 5).
#[test]
fn loom_capacity_three_in_order() {
    loom::model(|| {
        let q = MpmcQueue::in_process(1, 3).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        for v in 1..=3u8 {
            tx.try_send(&[v]).unwrap();
        }
        assert!(matches!(tx.try_send(&[9]), Err(TrySendError::Full(_))));
        let t = thread::spawn(move || {
            for v in 4..=5u8 {
                tx.send(&[v]).unwrap();
            }
        });
        let got: Vec<u8> = (0..5).map(|_| recv_u8(&rx).unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        t.join().unwrap();
        assert_eq!(rx.try_recv_with(|m| m[0]), Err(TryRecvError::Disconnected));
    });
}

/// Capacity 3 with two producers racing for the slots around the lap gap
/// (after two values, head and tail are at position 2, so the race is for
/// positions 2 and 4) and a consumer: every value exactly once.
#[test]
fn loom_capacity_three_two_producers() {
    loom::model(|| two_producers_one_consumer(3, 2));
}

/// Silences the panic message of simulated crashes (`liveness::Crashed`);
/// every other panic still prints.
fn quiet_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<liveness::Crashed>().is_none() {
                default(info)
            }
        }));
    });
}

/// `recover_at` for a dead receiver's claim. A receiver process takes
/// message 1 and dies inside its `try_recv_with` closure, so the slot
/// stays claimed by a dead pid (its unwind frees nothing, as a SIGKILL
/// would). Then a sender process sends 2 and 3 — the second needs the
/// dead claim's slot for the next lap (`recover_tail`) — while this
/// process receives both, racing to recover the same slot from the head
/// side (`recover_head`). Exactly one recovery wins; every message
/// arrives exactly once (1 to the dead receiver, 2 and 3 here, in order)
/// and nothing is left behind. Without recovery the sender would block
/// forever: a deadlock in the model.
#[test]
fn loom_dead_receiver_claim_is_recovered() {
    quiet_crashes();
    loom::model(|| {
        liveness::become_process();
        let q = MpmcQueue::in_process(1, 2).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        tx.try_send(&[1]).unwrap();
        let dead = {
            let q = q.clone();
            thread::spawn(move || {
                liveness::become_process();
                let rx = q.receiver().unwrap();
                let mut seen = 0;
                let r = catch_unwind(AssertUnwindSafe(|| {
                    rx.try_recv_with(|m| {
                        seen = m[0];
                        liveness::die();
                        panic_any(liveness::Crashed)
                    })
                }));
                assert!(r.is_err(), "the receiver died in its closure");
                // A dead process runs no destructors: its registration
                // stays, naming a dead pid.
                std::mem::forget(rx);
                seen
            })
        };
        assert_eq!(dead.join().unwrap(), 1);
        let sender = {
            let q = q.clone();
            thread::spawn(move || {
                liveness::become_process();
                let tx = q.sender().unwrap();
                tx.send(&[2]).unwrap();
                tx.send(&[3]).unwrap();
            })
        };
        assert_eq!(recv_u8(&rx), Ok(2));
        assert_eq!(recv_u8(&rx), Ok(3));
        sender.join().unwrap();
        assert_eq!(rx.try_recv_with(|m| m[0]), Err(TryRecvError::Empty));
        assert!(q.is_empty());
        drop(tx);
    });
}

/// `recover_at` for a dead producer's claim. A sender process dies right
/// after claiming slot 0 for message 1 (before it even moved `tail`), so
/// the slot is claimed by a dead pid and never published. Another sender
/// process then sends 2 and 3 (helping `tail` past the dead claim; 3
/// needs slot 0 again, next lap) while this process receives: the dead
/// claim is turned into a skipped slot by whichever survivor gets there
/// first, consumers free it without returning anything, and exactly 2 and
/// 3 arrive, in order (1 was never sent: its `try_send` never returned).
#[test]
fn loom_dead_sender_claim_is_skipped() {
    quiet_crashes();
    loom::model(|| {
        liveness::become_process();
        let q = MpmcQueue::in_process(1, 2).unwrap();
        let rx = q.receiver().unwrap();
        // A live sender, so that the sending side is not gone (by the
        // registry's rule) between the death and the next registration.
        let keep = q.sender().unwrap();
        let dead = {
            let q = q.clone();
            thread::spawn(move || {
                liveness::become_process();
                let tx = q.sender().unwrap();
                liveness::arm_crash(0);
                let r = catch_unwind(AssertUnwindSafe(|| tx.try_send(&[1])));
                assert!(r.is_err(), "the sender died holding its claim");
                std::mem::forget(tx);
            })
        };
        dead.join().unwrap();
        let sender = {
            let q = q.clone();
            thread::spawn(move || {
                liveness::become_process();
                let tx = q.sender().unwrap();
                tx.send(&[2]).unwrap();
                tx.send(&[3]).unwrap();
            })
        };
        assert_eq!(recv_u8(&rx), Ok(2));
        assert_eq!(recv_u8(&rx), Ok(3));
        sender.join().unwrap();
        drop(keep);
        assert_eq!(rx.try_recv_with(|m| m[0]), Err(TryRecvError::Disconnected));
        assert!(q.is_empty());
    });
}
