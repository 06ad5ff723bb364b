//! Unit tests of the SPSC ring (threads and the heap backing; Miri runs
//! these).

use super::ring::{self, RingHeader};
use super::*;
use crate::error::AttachError;
use crate::primitives::Ordering;
use crate::queue::error::{
    RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use std::time::Duration;

fn pair(cap: usize) -> (SpscRing, Producer, Consumer) {
    let r = SpscRing::in_process(cap).unwrap();
    let p = r.producer().unwrap();
    let c = r.consumer().unwrap();
    (r, p, c)
}

#[test]
fn layout_is_pinned() {
    assert_eq!(std::mem::size_of::<RingHeader>(), RING_HEADER_SIZE);
    assert_eq!(std::mem::offset_of!(RingHeader, cons), 128);
    assert_eq!(std::mem::offset_of!(RingHeader, notify), 256);
    assert_eq!(std::mem::offset_of!(RingHeader, peers), 384);
    // The embedded layout documented at `SpscRing::embedded_size`.
    assert_eq!(SpscRing::LAYOUT_VERSION, 2);
    assert_eq!(SpscRing::EMBED_ALIGN, 128);
    assert_eq!(SpscRing::embedded_size(1024).unwrap(), 512 + 1024);
    let h = RingHeader::new();
    let base = &h as *const RingHeader as usize;
    let at = |p: *const u8| p as usize - base;
    assert_eq!(at(&h.prod.pos as *const _ as *const u8), 0);
    assert_eq!(at(&h.prod.frames as *const _ as *const u8), 8);
    assert_eq!(at(&h.cons.pos as *const _ as *const u8), 128);
    assert_eq!(at(&h.cons.frames as *const _ as *const u8), 136);
    assert_eq!(at(&h.notify.data as *const _ as *const u8), 256);
    assert_eq!(at(&h.notify.space as *const _ as *const u8), 264);
    assert_eq!(at(&h.notify.full_fence as *const _ as *const u8), 272);
    assert_eq!(std::mem::size_of::<ring::PeerLine>(), 32);
}

#[test]
fn embedded_ring_refuses_bad_memory_and_corrupt_indices() {
    #[repr(C, align(128))]
    struct Block([u8; 512 + 64]);
    let mut mem = Box::new(Block([0; 512 + 64]));
    let (ptr, len) = (mem.0.as_mut_ptr(), mem.0.len());
    // SAFETY: for every call below, `mem` is owned here, 128-aligned, and
    // outlives every ring made from it; sizes and alignment are checked.
    unsafe {
        assert!(SpscRing::init_in(ptr, len - 1, 64).is_err(), "too small");
        assert!(
            SpscRing::init_in(ptr.add(8), len - 8, 32).is_err(),
            "misaligned"
        );
        assert!(
            SpscRing::init_in(ptr, len, 48).is_err(),
            "not a power of two"
        );
        SpscRing::init_in(ptr, len, 64).unwrap();
        assert!(matches!(
            SpscRing::from_raw(ptr, len - 1, 64),
            Err(AttachError::TooSmall { .. })
        ));
        let ring = SpscRing::from_raw(ptr, len, 64).unwrap();
        let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
        tx.push(b"abc").unwrap();
        let mut buf = Vec::new();
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, b"abc");
        drop((tx, rx, ring));
        // A hostile tail (more committed bytes than the capacity).
        (ptr as *mut u64).write(4096);
        assert!(matches!(
            SpscRing::from_raw(ptr, len, 64),
            Err(AttachError::Corrupt(_))
        ));
    }
}

#[test]
fn push_pop_in_order_with_wrap() {
    let (_r, mut p, mut c) = pair(64);
    let mut buf = Vec::new();
    for i in 0..500u32 {
        let len = (i % 23) as usize;
        let msg: Vec<u8> = (0..len).map(|k| (i as u8).wrapping_add(k as u8)).collect();
        p.try_push(&msg).unwrap();
        assert_eq!(p.len(), 1);
        c.try_pop(&mut buf).unwrap();
        assert_eq!(buf, msg);
    }
    assert_eq!(c.try_pop(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn exact_fit_and_too_large() {
    let (r, mut p, mut c) = pair(16);
    assert_eq!(r.max_message_len(), 12);
    assert!(matches!(
        p.try_push(&[0; 13]),
        Err(TrySendError::TooLarge(_))
    ));
    p.try_push(&[7; 12]).unwrap();
    assert!(p.is_full());
    assert!(matches!(p.try_push(&[]), Err(TrySendError::Full(_))));
    let mut b = Vec::new();
    c.try_pop(&mut b).unwrap();
    assert_eq!(b, [7; 12]);
    // Now at offset 0 again (16 % 16): another exact fit.
    p.try_push(&[8; 12]).unwrap();
    c.try_pop(&mut b).unwrap();
    assert_eq!(b, [8; 12]);
}

#[test]
fn pad_published_when_frame_needs_start() {
    let (_r, mut p, mut c) = pair(32);
    let mut b = Vec::new();
    p.try_push(&[1; 12]).unwrap(); // 16 bytes at 0
    c.try_pop(&mut b).unwrap(); // head = 16
    p.try_push(&[2; 4]).unwrap(); // 8 bytes at 16; tail = 24
                                  // A 24-byte frame does not fit in the 8 bytes before the end, and
                                  // pad + frame (32) exceeds the free 24: the pad alone is published.
    assert!(matches!(p.try_push(&[3; 20]), Err(TrySendError::Full(_))));
    c.try_pop(&mut b).unwrap();
    assert_eq!(b, [2; 4]);
    // The consumer skipped the pad on its way: the frame now fits at 0.
    assert_eq!(c.try_pop(&mut b), Err(TryRecvError::Empty));
    p.try_push(&[3; 20]).unwrap();
    c.try_pop(&mut b).unwrap();
    assert_eq!(b, [3; 20]);
    assert_eq!(c.len(), 0);
}

#[test]
fn try_pop_into_too_small_keeps_frame() {
    let (_r, mut p, mut c) = pair(64);
    p.try_push(b"hello").unwrap();
    let mut small = [0u8; 2];
    assert_eq!(
        c.try_pop_into(&mut small),
        Err(TryPopIntoError::BufferTooSmall { needed: 5 })
    );
    let mut big = [0u8; 8];
    assert_eq!(c.try_pop_into(&mut big), Ok(5));
    assert_eq!(&big[..5], b"hello");
}

#[test]
fn grants_and_batches() {
    let (_r, mut p, mut c) = pair(128);
    {
        // Dropped at the end of this block without commit: nothing is
        // published.
        let _g = p.reserve(10).unwrap();
    }
    assert!(c.is_empty());
    let mut g = p.reserve(10).unwrap();
    g[..3].copy_from_slice(b"abc");
    g.commit(3);
    assert_eq!(p.push_batch(&[b"x", b"yy", b"zzz"]), 3);
    assert_eq!(c.len(), 4);
    let g = c.read().unwrap();
    assert_eq!(&*g, b"abc");
    g.release();
    let mut seen = Vec::new();
    assert_eq!(c.try_pop_batch(10, |f| seen.push(f.to_vec())), Ok(3));
    assert_eq!(seen, vec![b"x".to_vec(), b"yy".to_vec(), b"zzz".to_vec()]);
    assert_eq!(c.len(), 0);
}

#[test]
fn one_producer_one_consumer() {
    let r = SpscRing::in_process(64).unwrap();
    let p = r.producer().unwrap();
    assert!(matches!(r.producer(), Err(EndpointError::AlreadyTaken(..))));
    drop(p);
    let _p2 = r.producer().unwrap();
    let _c = r.consumer().unwrap();
    assert!(matches!(r.consumer(), Err(EndpointError::AlreadyTaken(..))));
}

#[test]
fn close_then_drain_then_disconnected() {
    let (_r, mut p, mut c) = pair(64);
    p.try_push(b"last").unwrap();
    p.close();
    let mut b = Vec::new();
    c.pop(&mut b).unwrap();
    assert_eq!(b, b"last");
    assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
    c.close();
    assert!(matches!(
        p.try_push(b"x"),
        Err(TrySendError::Disconnected(_))
    ));
}

#[test]
fn dropped_producer_disconnects_blocked_consumer() {
    let (_r, p, mut c) = pair(64);
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut p = p;
            p.push(b"one").unwrap();
            drop(p);
        });
        let mut b = Vec::new();
        c.pop(&mut b).unwrap();
        assert_eq!(b, b"one");
        assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
    });
}

#[test]
fn threads_blocking_transfer() {
    let n: u32 = if cfg!(miri) { 200 } else { 100_000 };
    let (_r, mut p, mut c) = pair(256);
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n {
                let len = (i % 37) as usize + 4;
                let mut m = vec![(i % 251) as u8; len];
                m[..4].copy_from_slice(&i.to_le_bytes());
                p.push(&m).unwrap();
            }
        });
        let mut b = Vec::new();
        for i in 0..n {
            c.pop(&mut b).unwrap();
            assert_eq!(b.len(), (i % 37) as usize + 4);
            assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), i);
            assert!(b[4..].iter().all(|&x| x == (i % 251) as u8));
        }
        assert_eq!(c.pop(&mut b), Err(RecvError::Disconnected));
    });
}

#[test]
fn timeouts() {
    let (_r, mut p, mut c) = pair(16);
    let mut b = Vec::new();
    assert_eq!(
        c.pop_timeout(&mut b, Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    );
    p.try_push(&[1; 12]).unwrap();
    assert!(matches!(
        p.push_timeout(&[1; 4], Duration::from_millis(5)),
        Err(SendTimeoutError::Timeout(_))
    ));
}

#[test]
fn corrupt_indices_and_lengths_are_errors() {
    let (r, mut p, mut c) = pair(64);
    p.try_push(b"abcdef").unwrap();
    let h = r.ring.hdr();
    // A length past the committed bytes.
    r.ring.write_len(0, 1000);
    let mut b = Vec::new();
    assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
    // tail - head > capacity.
    h.prod.pos.store(1 << 20, Ordering::Release);
    c.cur.tail_cache = c.cur.head;
    assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
    // misaligned tail
    h.prod.pos.store(12, Ordering::Release);
    assert!(matches!(c.try_pop(&mut b), Err(TryRecvError::Corrupt(_))));
}

/// Sets the shared counters before any endpoint loads them.
fn ring_with_counters(cap: usize, pos: u64, pushed: u64, popped: u64) -> SpscRing {
    let r = SpscRing::in_process(cap).unwrap();
    let h = r.ring.hdr();
    h.prod.pos.store(pos, Ordering::Relaxed);
    h.cons.pos.store(pos, Ordering::Relaxed);
    h.prod.frames.store(pushed, Ordering::Relaxed);
    h.cons.frames.store(popped, Ordering::Relaxed);
    r
}

/// issue #10 item 11: frame counters at `u64::MAX` wrap (no overflow panic
/// in a debug build) and `len` stays right across the wrap.
#[test]
fn frame_counters_wrap_at_u64_max() {
    let r = ring_with_counters(64, 0, u64::MAX, u64::MAX);
    let (mut p, mut c) = (r.producer().unwrap(), r.consumer().unwrap());
    let mut buf = Vec::new();
    for i in 0..3u8 {
        p.try_push(&[i; 5]).unwrap();
        assert_eq!(r.len(), 1);
        c.try_pop(&mut buf).unwrap();
        assert_eq!(buf, [i; 5]);
        assert_eq!(r.len(), 0);
    }
    // Batches and grants take the same arithmetic.
    assert_eq!(p.push_batch(&[b"ab", b"cd"]), 2);
    assert_eq!(r.len(), 2);
    let mut g = p.reserve(3).unwrap();
    g.copy_from_slice(b"xyz");
    g.commit(3);
    let mut got = Vec::new();
    assert_eq!(c.try_pop_batch(8, |m| got.push(m.to_vec())), Ok(3));
    assert_eq!(got, [&b"ab"[..], b"cd", b"xyz"]);
    assert_eq!(r.len(), 0);
}

/// issue #10 item 11: byte positions just below 2^64 wrap to 0 (a pad
/// marker and frames straddle the wrap) and every frame arrives intact.
#[test]
fn positions_wrap_at_u64_max() {
    let r = ring_with_counters(64, 0xFFFF_FFFF_FFFF_FFF8, 0, 0);
    let (mut p, mut c) = (r.producer().unwrap(), r.consumer().unwrap());
    let mut buf = Vec::new();
    for i in 0..40u8 {
        let msg = vec![i; (i % 13) as usize];
        p.try_push(&msg).unwrap();
        c.try_pop(&mut buf).unwrap();
        assert_eq!(buf, msg);
    }
    assert_eq!(c.try_pop(&mut buf), Err(TryRecvError::Empty));
    let tail = r.ring.hdr().prod.pos.load(Ordering::Relaxed);
    assert!(tail < 0xFFFF_FFFF_FFFF_FFF8, "the tail wrapped past 2^64");
}

/// A hostile frame count cannot make `len` report more frames than the
/// ring can hold.
#[test]
fn hostile_frame_counts_bound_len() {
    let r = ring_with_counters(64, 0, 5, u64::MAX - 100);
    assert_eq!(r.len(), 64 / 8);
}
