//! loom models of the SPSC ring: index hand-over (order and content of
//! frames across wrap-around and pad markers) and the park/wake protocol
//! (no lost wake-up). Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_spsc`.
//!
//! Under loom `membarrier` is unavailable, so every endpoint sets the
//! ring's sticky `full_fence` word and the models check the symmetric
//! (fallback) wake-up handshake; the asymmetric one rests on the kernel's
//! barrier, argued in SAFETY.md and stress-tested across processes
//! (`xproc_spsc::park_wake_storm`).
#![cfg(loom)]

use loom::thread;
use shmkit::queue::{RecvError, SpscRing, TryRecvError, TrySendError};

/// Non-blocking: 3 frames through a 16-byte ring (each frame is 8 or 16
/// bytes, so the ring wraps and fills); the consumer sees them in order.
#[test]
fn loom_try_push_pop_order() {
    loom::model(|| {
        let ring = SpscRing::in_process(16).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let frames: [&[u8]; 3] = [b"ab", b"cdefghij", b"k"];
        let t = thread::spawn(move || {
            for f in frames {
                loop {
                    match tx.try_push(f) {
                        Ok(()) => break,
                        Err(TrySendError::Full(_)) => thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            tx
        });
        let mut buf = Vec::new();
        for f in frames {
            loop {
                match rx.try_pop(&mut buf) {
                    Ok(()) => break,
                    Err(TryRecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert_eq!(buf, f);
        }
        drop(t.join().unwrap());
    });
}

/// Blocking: the consumer parks on the data notifier; the producer's pushes
/// must wake it (a lost wake-up deadlocks the model).
#[test]
fn loom_blocking_no_lost_wakeup() {
    loom::model(|| {
        let ring = SpscRing::in_process(16).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let t = thread::spawn(move || {
            tx.push(b"1234").unwrap();
            tx.push(b"56789").unwrap();
            tx.close();
        });
        let mut buf = Vec::new();
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, b"1234");
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, b"56789");
        assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
        t.join().unwrap();
    });
}

/// Blocking producer on a full ring is woken by the consumer's release.
#[test]
fn loom_full_ring_wakes_producer() {
    loom::model(|| {
        let ring = SpscRing::in_process(16).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        tx.try_push(&[1; 12]).unwrap(); // fills the ring
        let t = thread::spawn(move || {
            tx.push(&[2; 12]).unwrap();
        });
        let mut buf = Vec::new();
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, [1; 12]);
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, [2; 12]);
        t.join().unwrap();
    });
}
