//! Unit tests of the MPMC queue (threads and the heap backing; Miri runs
//! these).

use super::raw::{pack, MAX_CAPACITY, MAX_SLOT_SIZE};
use super::*;
use crate::error::AttachError;
use crate::os;
use crate::primitives::Ordering;
use crate::queue::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use std::collections::VecDeque;
use std::time::Duration;

#[cfg(miri)]
const N: u64 = 60;
#[cfg(not(miri))]
const N: u64 = 20_000;

fn mk(slot: usize, cap: usize) -> (MpmcQueue, MpmcSender, MpmcReceiver) {
    let q = MpmcQueue::in_process(slot, cap).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    (q, tx, rx)
}

#[test]
fn fifo_full_empty_too_large() {
    let (q, tx, rx) = mk(4, 4);
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
    for i in 0..4u8 {
        tx.try_send(&[i; 3][..=(i as usize % 3)]).unwrap();
    }
    assert_eq!(q.len(), 4);
    assert!(q.is_full());
    assert!(matches!(tx.try_send(b"x"), Err(TrySendError::Full(b"x"))));
    assert!(matches!(
        tx.try_send(b"12345"),
        Err(TrySendError::TooLarge(_))
    ));
    for i in 0..4u8 {
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, &[i; 3][..=(i as usize % 3)]);
    }
    assert!(q.is_empty());
    // Many laps.
    for i in 0..100u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        assert_eq!(rx.recv_with(|m| m.to_vec()).unwrap(), i.to_le_bytes());
    }
}

#[test]
fn bad_params_refused() {
    assert!(MpmcQueue::in_process(8, 0).is_err());
    assert!(MpmcQueue::in_process(8, MAX_CAPACITY + 1).is_err());
    assert!(MpmcQueue::in_process(0, 4).is_err());
    assert!(MpmcQueue::in_process(MAX_SLOT_SIZE + 1, 4).is_err());
}

/// Any capacity, exactly: a queue of `cap` slots takes `cap` messages and
/// refuses the next, lap after lap (positions skip the unused indices
/// between `cap` and the power-of-two lap).
#[test]
fn any_capacity_holds_exactly_that_many() {
    for cap in [1usize, 2, 3, 5, 7, 10, 30] {
        let (q, tx, rx) = mk(4, cap);
        assert_eq!(q.capacity(), cap);
        for lap in 0..3u32 {
            for i in 0..cap as u32 {
                tx.try_send(&(lap * 100 + i).to_le_bytes()).unwrap();
            }
            assert_eq!(q.len(), cap);
            assert!(q.is_full());
            assert!(
                matches!(tx.try_send(b"x"), Err(TrySendError::Full(_))),
                "cap {cap}"
            );
            // Half out, half in again: the ring wraps mid-lap.
            let half = cap.div_ceil(2) as u32;
            let mut buf = Vec::new();
            for i in 0..half {
                rx.try_recv(&mut buf).unwrap();
                assert_eq!(buf, (lap * 100 + i).to_le_bytes());
            }
            assert_eq!(q.len(), cap - half as usize);
            for i in 0..half {
                tx.try_send(&(lap * 100 + 50 + i).to_le_bytes()).unwrap();
            }
            assert!(matches!(tx.try_send(b"y"), Err(TrySendError::Full(_))));
            for i in half..cap as u32 {
                rx.try_recv(&mut buf).unwrap();
                assert_eq!(buf, (lap * 100 + i).to_le_bytes());
            }
            for i in 0..half {
                rx.try_recv(&mut buf).unwrap();
                assert_eq!(buf, (lap * 100 + 50 + i).to_le_bytes());
            }
            assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
            assert!(q.is_empty());
        }
    }
}

#[test]
fn disconnect_after_drain_both_ways() {
    let (_q, tx, rx) = mk(8, 4);
    tx.send(b"last").unwrap();
    drop(tx);
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Ok(4));
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(&mut buf), Err(RecvError::Disconnected));

    let (_q, tx, rx) = mk(8, 2);
    rx.close();
    assert!(matches!(
        tx.try_send(b"a"),
        Err(TrySendError::Disconnected(_))
    ));
    assert!(matches!(tx.send(b"a"), Err(SendError::Disconnected(_))));
}

#[test]
fn timeouts() {
    let (_q, tx, rx) = mk(8, 2);
    let mut buf = Vec::new();
    assert_eq!(
        rx.recv_timeout(&mut buf, Duration::from_millis(2)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(b"1").unwrap();
    tx.send(b"2").unwrap();
    assert!(matches!(
        tx.send_timeout(b"3", Duration::from_millis(2)),
        Err(SendTimeoutError::Timeout(b"3"))
    ));
}

#[test]
fn corrupt_length_is_an_error_not_a_read() {
    let (q, tx, rx) = mk(8, 4);
    tx.send(b"good").unwrap();
    tx.send(b"next").unwrap();
    let (meta, _) = q.shared.raw.slot(0).unwrap();
    meta.len.store(9999, Ordering::Relaxed);
    let mut buf = Vec::new();
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(TryRecvError::Corrupt(_))
    ));
    assert_eq!(rx.try_recv(&mut buf), Ok(4));
    assert_eq!(buf, b"next");
}

#[test]
fn threads_every_message_exactly_once() {
    let q = MpmcQueue::in_process(8, 8).unwrap();
    let producers = 2u64;
    let consumers = 2;
    let got = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for p in 0..producers {
            let tx = q.sender().unwrap();
            s.spawn(move || {
                for i in 0..N {
                    tx.send(&(p * N + i).to_le_bytes()).unwrap();
                }
            });
        }
        for _ in 0..consumers {
            let rx = q.receiver().unwrap();
            let got = &got;
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut last = [None; 2];
                let mut b = Vec::new();
                loop {
                    match rx.recv(&mut b) {
                        Ok(8) => {
                            let v = u64::from_le_bytes(b[..8].try_into().unwrap());
                            // Per-producer order as seen by one consumer.
                            let p = (v / N) as usize;
                            if let Some(prev) = last[p] {
                                assert!(v > prev, "out of order: {v} after {prev}");
                            }
                            last[p] = Some(v);
                            mine.push(v);
                        }
                        Ok(n) => panic!("bad length {n}"),
                        Err(_) => break,
                    }
                }
                got.lock().unwrap().extend(mine);
            });
        }
    });
    let mut all = got.into_inner().unwrap();
    all.sort_unstable();
    let want: Vec<u64> = (0..producers * N).collect();
    assert_eq!(all.len(), want.len());
    assert_eq!(all, want);
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process to get a dead pid")]
fn dead_claimers_are_recovered() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    assert!(!os::process_alive(dead));

    // A producer died holding position 0; position 1 was published.
    let (q, tx, rx) = mk(8, 4);
    let raw = &q.shared.raw;
    raw.try_push(b"lost", dead).unwrap();
    raw.slot(0)
        .unwrap()
        .0
        .stamp
        .store(pack(0, dead), Ordering::Release); // unpublish
    tx.send(b"kept").unwrap();
    let mut buf = Vec::new();
    // Seen as in flight until the liveness check runs.
    assert!(raw.recover_head());
    assert_eq!(rx.recv(&mut buf), Ok(4));
    assert_eq!(buf, b"kept");
    assert!(q.is_empty());

    // A consumer died holding a message; producers fill the ring and
    // recover its slot when they reach it.
    let (q, tx, rx) = mk(8, 2);
    let raw = &q.shared.raw;
    tx.send(b"a").unwrap();
    let pos = raw.hdr().head.0.load(Ordering::Relaxed);
    raw.slot(pos)
        .unwrap()
        .0
        .stamp
        .store(pack(pos as u32 + 1, dead), Ordering::Release);
    raw.hdr().head.0.store(pos + 1, Ordering::Relaxed);
    tx.send(b"b").unwrap();
    // Full: slot 0 is held by the dead consumer. send() recovers it.
    tx.send_timeout(b"c", Duration::from_secs(10)).unwrap();
    assert_eq!(rx.recv(&mut buf), Ok(1));
    assert_eq!(buf, b"b");
    assert_eq!(rx.recv(&mut buf), Ok(1));
    assert_eq!(buf, b"c");

    // A consumer died after claiming, before moving head.
    let (q, tx, rx) = mk(8, 2);
    let raw = &q.shared.raw;
    tx.send(b"x").unwrap();
    tx.send(b"y").unwrap();
    raw.slot(0)
        .unwrap()
        .0
        .stamp
        .store(pack(1, dead), Ordering::Release);
    assert_eq!(rx.recv(&mut buf), Ok(1)); // helps head past it
    assert_eq!(buf, b"y");
    tx.send_timeout(b"z", Duration::from_secs(10)).unwrap();
    assert_eq!(rx.recv(&mut buf), Ok(1));
    assert_eq!(buf, b"z");
}

#[derive(Debug, Clone)]
enum Op {
    Send(Vec<u8>),
    Recv,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Op::Send),
        Just(Op::Recv),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        // No regression files: Miri isolates the file system.
        failure_persistence: None,
        ..Default::default()
    })]
    #[test]
    fn matches_vecdeque_model(ops in proptest::collection::vec(op(), 0..200), cap in 1usize..10) {
        let (q, tx, rx) = mk(10, cap);
        let mut model = VecDeque::new();
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Send(m) => {
                    let r = tx.try_send(&m);
                    if m.len() > 10 {
                        proptest::prop_assert!(matches!(r, Err(TrySendError::TooLarge(_))));
                    } else if model.len() == cap {
                        proptest::prop_assert!(matches!(r, Err(TrySendError::Full(_))));
                    } else {
                        proptest::prop_assert!(r.is_ok());
                        model.push_back(m);
                    }
                }
                Op::Recv => match model.pop_front() {
                    Some(m) => {
                        proptest::prop_assert_eq!(rx.try_recv(&mut buf), Ok(m.len()));
                        proptest::prop_assert_eq!(&buf, &m);
                    }
                    None => proptest::prop_assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty)),
                },
            }
            proptest::prop_assert_eq!(q.len(), model.len());
        }
    }
}

#[test]
fn layout_is_pinned() {
    use super::raw::{layout, Control, QueueHeader, LAYOUT_TAG, MAX_PEERS};
    assert_eq!(LAYOUT_TAG, 4);
    assert_eq!(std::mem::offset_of!(Control, full_fence), 28);
    assert_eq!(std::mem::size_of::<QueueHeader>(), 384);
    assert_eq!(std::mem::offset_of!(QueueHeader, head), 128);
    assert_eq!(std::mem::offset_of!(QueueHeader, ctl), 256);
    assert_eq!(std::mem::size_of::<Control>(), 56);
    let l = layout(10, 3, MAX_PEERS).unwrap();
    assert_eq!(l.senders, 384);
    assert_eq!(l.receivers, 384 + 8 * MAX_PEERS);
    assert_eq!(l.slots, 384 + 16 * MAX_PEERS);
    assert_eq!(l.stride, 16 + 16);
    assert_eq!(l.slots + 3 * l.stride, 1504);
    assert_eq!(l.size, 1536, "rounded up to the header's alignment");
    // The embedded layout documented at `MpmcQueue::embedded_size`.
    assert_eq!(MpmcQueue::LAYOUT_VERSION, 4);
    assert_eq!(MpmcQueue::EMBED_ALIGN, 128);
    assert_eq!(MpmcQueue::embedded_size(10, 3).unwrap(), l.size);
}

#[cfg(not(loom))]
#[test]
fn embedded_queue_refuses_bad_memory_and_parameters() {
    let len = MpmcQueue::embedded_size(8, 4).unwrap();
    let layout = std::alloc::Layout::from_size_align(len + 128, 128).unwrap();
    // SAFETY: nonzero size; freed at the end of the test.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: for every call below, `ptr` is ours for `len + 128` bytes
    // and outlives every view; sizes and alignment are checked.
    unsafe {
        assert!(MpmcQueue::init_in(ptr, len - 1, 8, 4).is_err(), "too small");
        assert!(
            MpmcQueue::init_in(ptr.add(64), len, 8, 4).is_err(),
            "misaligned"
        );
        assert!(MpmcQueue::init_in(ptr, len, 8, 0).is_err(), "no capacity");
        MpmcQueue::init_in(ptr, len, 8, 4).unwrap();
        assert!(matches!(
            MpmcQueue::from_raw(ptr, len - 1, 8, 4),
            Err(AttachError::TooSmall { .. })
        ));
        {
            let q = MpmcQueue::from_raw(ptr, len, 8, 4).unwrap();
            let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
            for i in 0..4u8 {
                tx.send(&[i]).unwrap();
            }
            assert_eq!(q.len(), 4);
            let mut buf = Vec::new();
            for i in 0..4u8 {
                rx.recv(&mut buf).unwrap();
                assert_eq!(buf, [i]);
            }
        }
        // A hostile registry word (a pid above the kernel's limit) is
        // cleared on view, not trusted; a hostile slot length is Corrupt.
        let q = MpmcQueue::from_raw(ptr, len, 8, 4).unwrap();
        let tx = q.sender().unwrap();
        tx.send(b"x").unwrap();
        let slot0_len = ptr.add(384 + 16 * 64 + 8) as *mut u32;
        slot0_len.write(1 << 20);
        let rx = q.receiver().unwrap();
        let mut buf = Vec::new();
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(TryRecvError::Corrupt(_))
        ));
        drop((tx, rx, q));
        std::alloc::dealloc(ptr, layout);
    }
}

/// issue #10 item 11: positions near 2^64 (a hostile or very long-lived
/// queue) wrap to 0 with the sequence stamps, and every message arrives
/// once, in order, across the wrap.
#[test]
fn positions_wrap_at_u64_max() {
    for cap in [1usize, 3, 4] {
        let (q, tx, rx) = mk(8, cap);
        let raw = &q.shared.raw;
        let base: u64 = 0xFFFF_FFFF_FFFF_FFF8;
        assert_eq!(base % raw.lap, 0);
        for i in 0..cap {
            raw.slot(base + i as u64)
                .unwrap()
                .0
                .stamp
                .store(pack((base + i as u64) as u32, 0), Ordering::Relaxed);
        }
        raw.hdr().head.0.store(base, Ordering::Relaxed);
        raw.hdr().tail.0.store(base, Ordering::Relaxed);
        let mut buf = Vec::new();
        for i in 0..50u64 {
            tx.try_send(&i.to_le_bytes()).unwrap();
            assert_eq!(q.len(), 1);
            assert_eq!(rx.try_recv(&mut buf), Ok(8));
            assert_eq!(buf, i.to_le_bytes());
        }
        // Fill to capacity across the wrap, then drain.
        for i in 0..cap as u64 {
            tx.try_send(&i.to_le_bytes()).unwrap();
        }
        assert!(matches!(tx.try_send(b"x"), Err(TrySendError::Full(_))));
        assert_eq!(q.len(), cap);
        for i in 0..cap as u64 {
            assert_eq!(rx.try_recv(&mut buf), Ok(8));
            assert_eq!(buf, i.to_le_bytes());
        }
        assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
        assert!(raw.hdr().tail.0.load(Ordering::Relaxed) < base);
    }
}
