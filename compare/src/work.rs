//! The workloads, generic over the ends in [`crate::chans`]: one-way
//! throughput, round trips, and the checks that every message arrived
//! exactly once and in order.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::chans::{Rx, Tx};
use crate::sys::{wait_at_least, Child, Ctl, Placement, SharedCtl};

/// Where the peer end runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A forked process (real separate address spaces).
    Process,
    /// A thread of this process (the in-process ceiling).
    Thread,
}

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Messages per second delivered.
    pub msgs_per_s: f64,
    /// Fraction of sent messages not delivered (lossy systems only).
    pub loss: f64,
}

fn consume<R: Rx>(rx: &mut R, count: u64, size: usize, ctl: &Ctl) {
    let mut errors = 0;
    let mut sum = 0u64;
    let debug = std::env::var_os("SHMKIT_COMPARE_DEBUG").is_some();
    for i in 0..count {
        let (seq, len) = rx.recv();
        if len != size || (size >= 8 && seq != i) {
            if debug && errors < 5 {
                eprintln!("\nconsume: message {i}: seq {seq}, len {len} (want {size})");
            }
            errors += 1;
        }
        sum = sum.wrapping_add(seq);
    }
    ctl.errors.fetch_add(errors, Ordering::Relaxed);
    ctl.seq_sum.fetch_add(sum, Ordering::Relaxed);
    ctl.received.fetch_add(count, Ordering::Relaxed);
    ctl.done.fetch_add(1, Ordering::Release);
}

fn check(ctl: &Ctl, count: u64, size: usize) -> Result<(), String> {
    let received = ctl.received.load(Ordering::Acquire);
    let errors = ctl.errors.load(Ordering::Acquire);
    if received != count || errors != 0 {
        return Err(format!(
            "delivery check failed: {received} of {count} received, {errors} out of order or wrong length"
        ));
    }
    if size >= 8 {
        let want = (0..count).fold(0u64, |a, s| a.wrapping_add(s));
        if ctl.seq_sum.load(Ordering::Acquire) != want {
            return Err("delivery check failed: sequence sum differs".into());
        }
    }
    Ok(())
}

/// Sends `count` messages of `size` bytes from this process to a peer and
/// times it from the peer's ready signal to its last receive.
pub fn throughput<T: Tx, R: Rx>(
    peer: Peer,
    placement: Placement,
    count: u64,
    size: usize,
    mk_tx: impl FnOnce() -> T,
    mk_rx: impl FnOnce() -> R + Send,
) -> Result<Rate, String> {
    let ctl = SharedCtl::new();
    placement.enter_driver();
    let run = |ctl: &Ctl, tx: &mut T| {
        wait_at_least(&ctl.ready, 1);
        let t0 = Instant::now();
        for i in 0..count {
            tx.send(i);
        }
        wait_at_least(&ctl.done, 1);
        t0.elapsed()
    };
    let elapsed = match peer {
        Peer::Process => {
            let child = Child::fork(|| {
                placement.enter_peer();
                let mut rx = mk_rx();
                ctl.ready.store(1, Ordering::Release);
                consume(&mut rx, count, size, &ctl);
            });
            let mut tx = mk_tx();
            let e = run(&ctl, &mut tx);
            child.join()?;
            e
        }
        Peer::Thread => std::thread::scope(|s| {
            let c: &Ctl = &ctl;
            let h = s.spawn(move || {
                placement.enter_peer();
                let mut rx = mk_rx();
                c.ready.store(1, Ordering::Release);
                consume(&mut rx, count, size, c);
            });
            let mut tx = mk_tx();
            let e = run(c, &mut tx);
            h.join().map_err(|_| "peer thread panicked".to_string())?;
            Ok::<_, String>(e)
        })?,
    };
    placement.leave();
    check(&ctl, count, size)?;
    Ok(Rate {
        msgs_per_s: count as f64 / elapsed.as_secs_f64(),
        loss: 0.0,
    })
}

/// Round trips of 8-byte messages: this process sends on its `Tx`, the
/// peer echoes on its own, and each round trip is timed alone. Returns the
/// `n` samples in nanoseconds (after `warmup` untimed ones).
pub fn roundtrip<T: Tx, R: Rx, T2: Tx, R2: Rx>(
    peer: Peer,
    placement: Placement,
    n: u64,
    warmup: u64,
    mk_here: impl FnOnce() -> (T, R),
    mk_peer: impl FnOnce() -> (T2, R2) + Send,
) -> Result<Vec<f64>, String> {
    let ctl = SharedCtl::new();
    placement.enter_driver();
    let total = n + warmup;
    let echo = |ctl: &Ctl, (mut tx, mut rx): (T2, R2)| {
        ctl.ready.store(1, Ordering::Release);
        let mut errors = 0;
        for i in 0..total {
            let (seq, _) = rx.recv();
            if seq != i {
                errors += 1;
            }
            tx.send(seq);
        }
        ctl.errors.fetch_add(errors, Ordering::Relaxed);
        ctl.done.fetch_add(1, Ordering::Release);
    };
    let drive = |ctl: &Ctl, (mut tx, mut rx): (T, R)| {
        wait_at_least(&ctl.ready, 1);
        let mut samples = Vec::with_capacity(n as usize);
        let mut errors = 0;
        for i in 0..total {
            let t0 = Instant::now();
            tx.send(i);
            let (seq, _) = rx.recv();
            let dt = t0.elapsed();
            if seq != i {
                errors += 1;
            }
            if i >= warmup {
                samples.push(dt.as_nanos() as f64);
            }
        }
        wait_at_least(&ctl.done, 1);
        ctl.errors.fetch_add(errors, Ordering::Relaxed);
        samples
    };
    let samples = match peer {
        Peer::Process => {
            let child = Child::fork(|| {
                placement.enter_peer();
                echo(&ctl, mk_peer());
            });
            let s = drive(&ctl, mk_here());
            child.join()?;
            s
        }
        Peer::Thread => std::thread::scope(|s| {
            let c: &Ctl = &ctl;
            let h = s.spawn(move || {
                placement.enter_peer();
                echo(c, mk_peer());
            });
            let r = drive(c, mk_here());
            h.join().map_err(|_| "peer thread panicked".to_string())?;
            Ok::<_, String>(r)
        })?,
    };
    placement.leave();
    let errors = ctl.errors.load(Ordering::Acquire);
    if errors != 0 {
        return Err(format!("round trip: {errors} replies out of order"));
    }
    Ok(samples)
}

/// iceoryx2 with safe overflow: the publisher never waits, the subscriber
/// polls until the publisher is done and its buffer is empty. Reports the
/// delivered rate and the measured loss.
pub fn iox_lossy(
    placement: Placement,
    count: u64,
    size: usize,
    buffer: usize,
) -> Result<Rate, String> {
    use crate::chans::iox::{Delivery, IoxRx, IoxTx};
    let name = crate::chans::unique_name("shmkit-compare-lossy");
    let ctl = SharedCtl::new();
    placement.enter_driver();
    let child = Child::fork(|| {
        placement.enter_peer();
        let mut rx = IoxRx::new(&name, Delivery::Lossy, buffer, true);
        ctl.ready.store(1, Ordering::Release);
        let (mut got, mut errors, mut last) = (0u64, 0u64, None::<u64>);
        loop {
            match rx.try_recv() {
                Some((seq, len)) => {
                    got += 1;
                    if len != size || last.is_some_and(|l| size >= 8 && seq <= l) {
                        errors += 1;
                    }
                    last = Some(seq);
                }
                None => {
                    if ctl.go.load(Ordering::Acquire) == 1 {
                        // The publisher is done; drain what is left.
                        while let Some((_, len)) = rx.try_recv() {
                            got += 1;
                            if len != size {
                                errors += 1;
                            }
                        }
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
        }
        ctl.received.store(got, Ordering::Relaxed);
        ctl.errors.store(errors, Ordering::Relaxed);
        ctl.done.store(1, Ordering::Release);
    });
    let mut tx = IoxTx::new(&name, size, Delivery::Lossy, buffer);
    wait_at_least(&ctl.ready, 1);
    let t0 = Instant::now();
    for i in 0..count {
        tx.send(i);
    }
    ctl.go.store(1, Ordering::Release);
    wait_at_least(&ctl.done, 1);
    let elapsed = t0.elapsed();
    child.join()?;
    placement.leave();
    let got = ctl.received.load(Ordering::Acquire);
    let errors = ctl.errors.load(Ordering::Acquire);
    if errors != 0 || got > count {
        return Err(format!(
            "lossy iceoryx2: {errors} bad samples, {got} of {count}"
        ));
    }
    Ok(Rate {
        msgs_per_s: got as f64 / elapsed.as_secs_f64(),
        loss: 1.0 - got as f64 / count as f64,
    })
}
