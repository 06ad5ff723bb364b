//! Unwinding through user code (issue #10, item 2): a closure that panics
//! while the crate holds a claim or a grant must leave the queue usable,
//! here and in other processes. Each case panics in one API, then another
//! process (real `fork`) uses the same queue and checks that every message
//! arrives exactly once. Also: `process::fork` refuses while an SPSC grant
//! is alive. A `harness = false` binary (fork needs a single thread).
//!
//! The sibling cases for locks, the dict and the pool live next to those
//! objects' other cross-process tests (`xproc_sync`:
//! `panic_under_a_lock_releases_it`; `xproc_dict`:
//! `panic_in_dict_closures_does_not_wedge`; `xproc_pool`:
//! `panic_is_an_error_and_worker_keeps_serving`).

// The shared harness is foundation code; silence lints newer than it.
#[allow(clippy::all, unknown_lints, function_casts_as_integer)]
mod common;

use std::time::Duration;

use common::{fork, run, Exit};
use shmkit::queue::{Consumer, MpmcQueue, MpmcReceiver, SpscRing, TryRecvError};
use shmkit::SpawnError;

/// Hang watchdog for a child's blocking call (a wedged queue fails the
/// case with an exit code instead of hanging it); never a timing claim.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f`, which must panic, with the panic message silenced.
fn expect_panic<R>(what: &str, f: impl FnOnce() -> R) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    assert!(r.is_err(), "{what} should have panicked");
}

fn msg(i: u64) -> [u8; 8] {
    i.to_le_bytes()
}

/// A receive call that hands the message to a closure, here one that
/// panics.
type RecvWith = fn(&MpmcReceiver, &mut dyn FnMut(&[u8]));

/// Fills a queue, lets `recv` panic on the oldest message, then a child
/// process sends one more message — into the very slot the closure held,
/// as the producers wrap to it — and drains the queue: messages 1..=CAP,
/// each exactly once, in order. Before the fix the slot stayed claimed by
/// a live pid and the child's send blocked forever with `len() == CAP-1`.
fn mpmc_case(what: &str, recv: RecvWith) {
    const CAP: u64 = 4;
    let q = MpmcQueue::anonymous(8, CAP as usize).unwrap();
    let tx = q.sender().unwrap();
    let rx = q.receiver().unwrap();
    for i in 0..CAP {
        tx.send(&msg(i)).unwrap();
    }
    let mut seen = None;
    expect_panic(what, || {
        recv(&rx, &mut |m| {
            seen = Some(m.to_vec());
            panic!("boom in {what}")
        })
    });
    assert_eq!(seen.as_deref(), Some(&msg(0)[..]), "{what}: oldest message");
    assert_eq!(q.len(), CAP as usize - 1, "{what}: the message was taken");

    let mut kid = fork(|| {
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        if tx.send_timeout(&msg(CAP), WATCHDOG).is_err() {
            return 2; // the slot is still claimed: the queue is wedged
        }
        let mut buf = Vec::new();
        for want in 1..=CAP {
            match rx.recv_timeout(&mut buf, WATCHDOG) {
                Ok(8) if buf == msg(want) => {}
                _ => return 3,
            }
        }
        match rx.try_recv(&mut buf) {
            Err(TryRecvError::Empty) => 0,
            _ => 4,
        }
    });
    kid.join_ok(what);
    // And this process's handles still work.
    tx.send(&msg(7)).unwrap();
    assert_eq!(rx.try_recv_with(<[u8]>::to_vec), Ok(msg(7).to_vec()));
    assert!(q.is_empty());
}

fn mpmc_try_recv_with_panic_frees_the_slot() {
    mpmc_case("try_recv_with", |rx, f| {
        let _ = rx.try_recv_with(f);
    });
}

fn mpmc_recv_with_panic_frees_the_slot() {
    mpmc_case("recv_with", |rx, f| {
        let _ = rx.recv_with(f);
    });
}

fn mpmc_recv_deadline_with_panic_frees_the_slot() {
    mpmc_case("recv_deadline_with", |rx, f| {
        let _ = rx.recv_deadline_with(Some(shmkit::os::Deadline::after(WATCHDOG)), f);
    });
}

/// A child takes over the consumer side (the parent dropped its
/// consumer) and must pop exactly `want`, then find the ring empty.
fn child_pops_exactly(ring: &SpscRing, want: &[u64], what: &str) {
    let mut kid = fork(|| {
        let mut rx: Consumer = ring.consumer().unwrap();
        let mut buf = Vec::new();
        for &w in want {
            match rx.pop_timeout(&mut buf, WATCHDOG) {
                Ok(()) if buf == msg(w) => {}
                Ok(()) => return 2, // a wrong (e.g. repeated) frame
                Err(_) => return 3,
            }
        }
        match rx.try_pop(&mut buf) {
            Err(TryRecvError::Empty) => 0,
            _ => 4,
        }
    });
    kid.join_ok(what);
}

/// A `ReadGrant` dropped by a panic's unwind consumes its frame: the next
/// consumer (another process) starts at the frame after it.
fn spsc_read_grant_dropped_by_panic() {
    let ring = SpscRing::anonymous(1024).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..4 {
        tx.push(&msg(i)).unwrap();
    }
    expect_panic("read grant", || {
        let g = rx.read().unwrap();
        assert_eq!(*g, msg(0));
        panic!("boom while reading in place")
    });
    drop(rx);
    child_pops_exactly(&ring, &[1, 2, 3], "consumer after a ReadGrant panic");
    tx.push(&msg(9)).unwrap();
    child_pops_exactly(&ring, &[9], "consumer after the first child");
}

/// `try_pop_batch` whose closure panics on the third frame: the three
/// frames handed to it count as popped and the head is published during
/// the unwind. Before the fix the head was never published, so the next
/// consumer received frames 0..3 a second time.
fn spsc_pop_batch_panic_publishes_the_head() {
    let ring = SpscRing::anonymous(1024).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    for i in 0..6 {
        tx.push(&msg(i)).unwrap();
    }
    let mut handed = Vec::new();
    expect_panic("try_pop_batch", || {
        rx.try_pop_batch(10, |m| {
            handed.push(m.to_vec());
            if handed.len() == 3 {
                panic!("boom in a batch")
            }
        })
    });
    assert_eq!(handed, [msg(0), msg(1), msg(2)].map(|m| m.to_vec()));
    assert_eq!(ring.len(), 3, "three frames were popped");
    drop(rx);
    child_pops_exactly(&ring, &[3, 4, 5], "consumer after a batch panic");
}

/// A `WriteGrant` dropped by a panic's unwind publishes nothing; the next
/// push lands where it would have, and the consumer (another process) sees
/// exactly the committed frames.
fn spsc_write_grant_dropped_by_panic() {
    let ring = SpscRing::anonymous(64).unwrap();
    let mut tx = ring.producer().unwrap();
    // Fill up to the wrap point so the grant's reservation wraps (and
    // writes a pad marker) before it panics.
    for i in 0..3 {
        tx.push(&msg(i)).unwrap();
    }
    {
        let mut rx = ring.consumer().unwrap();
        let mut buf = Vec::new();
        for i in 0..3 {
            rx.pop(&mut buf).unwrap();
            assert_eq!(buf, msg(i));
        }
    }
    expect_panic("write grant", || {
        let mut g = tx.reserve(24).unwrap();
        g[..8].copy_from_slice(&msg(66));
        panic!("boom while writing in place")
    });
    tx.push(&msg(3)).unwrap();
    tx.push(&msg(4)).unwrap();
    child_pops_exactly(&ring, &[3, 4], "consumer after a WriteGrant panic");
}

/// Asserts that `process::fork` refused because one guard or grant is
/// alive, and that no child ran.
fn assert_refused(r: Result<shmkit::Process, SpawnError>, what: &str) {
    match r {
        Err(SpawnError::GuardHeld(1)) => {}
        Err(e) => panic!("{what}: expected GuardHeld(1), got {e}"),
        Ok(p) => {
            let status = p.join();
            panic!("{what}: fork ran a child ({status:?}) while a grant was held")
        }
    }
}

/// `process::fork` refuses while a `ReadGrant` or `WriteGrant` is alive
/// (the child would share the borrowed ring bytes), and a grant copied by
/// a raw `libc::fork` refuses to lend its bytes in the child. Before the
/// fix, fork ran the child and the copy read the parent's frame.
/// A slice lent by an MPMC `*_with` is shared memory borrowed for the
/// call: `shmkit::process::fork` from inside the closure is refused, and
/// the message still counts as received exactly once.
fn fork_refuses_inside_mpmc_recv_with() {
    let q = MpmcQueue::anonymous(16, 4).unwrap();
    let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
    tx.send(&msg(7)).unwrap();
    let refused = rx
        .try_recv_with(|m| {
            let r = shmkit::process::fork(|| m.len() == 8);
            r.is_err()
        })
        .unwrap();
    assert!(refused, "fork inside try_recv_with is refused");
    tx.send(&msg(8)).unwrap();
    let refused = rx
        .recv_with(|m| shmkit::process::fork(|| m[0] == 8).is_err())
        .unwrap();
    assert!(refused, "fork inside recv_with is refused");
    // Outside the closure fork works again, and nothing was left behind.
    let p = shmkit::process::fork(|| 0).unwrap();
    assert_eq!(p.join().unwrap().exitcode(), 0);
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Err(TryRecvError::Empty));
}

fn fork_refuses_while_spsc_grant_alive() {
    let ring = SpscRing::anonymous(256).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.push(&msg(1)).unwrap();
    let g = rx.read().unwrap();
    assert_refused(shmkit::process::fork(|| g.len() == 8), "ReadGrant");
    let mut copy = fork(|| {
        std::panic::set_hook(Box::new(|_| {}));
        i32::from(g[0]) // panics: the grant belongs to the parent
    });
    assert_eq!(copy.wait(WATCHDOG, "ReadGrant copy"), Exit::Code(101));
    assert_eq!(*g, msg(1), "the parent's grant is intact");
    drop(g);
    let mut w = tx.reserve(8).unwrap();
    assert_refused(shmkit::process::fork(|| w.len() == 8), "WriteGrant");
    let mut copy = fork(|| {
        std::panic::set_hook(Box::new(|_| {}));
        w[0] = 5; // panics: the grant belongs to the parent
        0
    });
    assert_eq!(copy.wait(WATCHDOG, "WriteGrant copy"), Exit::Code(101));
    w.copy_from_slice(&msg(2));
    w.commit(8);
    // With every grant gone, fork works again.
    let p = shmkit::process::fork(|| 0).unwrap();
    assert_eq!(p.join().unwrap().exitcode(), 0);
    let mut buf = Vec::new();
    rx.try_pop(&mut buf).unwrap();
    assert_eq!(buf, msg(2), "frame 1 was consumed exactly once");
    assert_eq!(rx.try_pop(&mut buf), Err(TryRecvError::Empty));
}

fn main() {
    run(
        &[
            (
                "mpmc_try_recv_with_panic_frees_the_slot",
                mpmc_try_recv_with_panic_frees_the_slot,
            ),
            (
                "mpmc_recv_with_panic_frees_the_slot",
                mpmc_recv_with_panic_frees_the_slot,
            ),
            (
                "mpmc_recv_deadline_with_panic_frees_the_slot",
                mpmc_recv_deadline_with_panic_frees_the_slot,
            ),
            (
                "spsc_read_grant_dropped_by_panic",
                spsc_read_grant_dropped_by_panic,
            ),
            (
                "spsc_pop_batch_panic_publishes_the_head",
                spsc_pop_batch_panic_publishes_the_head,
            ),
            (
                "spsc_write_grant_dropped_by_panic",
                spsc_write_grant_dropped_by_panic,
            ),
            (
                "fork_refuses_while_spsc_grant_alive",
                fork_refuses_while_spsc_grant_alive,
            ),
            (
                "fork_refuses_inside_mpmc_recv_with",
                fork_refuses_inside_mpmc_recv_with,
            ),
        ],
        120,
    );
}
