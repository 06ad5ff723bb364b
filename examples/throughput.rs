//! Cross-process throughput of a shmkit `SpscRing` next to a pipe(2), for a
//! few message sizes, plus the cache-line ping-pong of this machine (two
//! processes bouncing one atomic) at the start and the end.
//!
//!     cargo run --release --example throughput [messages]

use std::time::{Duration, Instant};

use shmkit::process::{self, Process};
use shmkit::queue::SpscRing;
use shmkit::{ShmBox, ShmValue};

/// Forks a child running `f` (panics if fork fails).
fn fork_child(f: impl FnOnce()) -> Process {
    process::fork(f).expect("fork")
}

/// Waits for a child; a failed child fails the program.
fn reap(child: Process) {
    let status = child.join().expect("join");
    assert!(status.success(), "child failed: {status}");
}

/// Round-trip time of one atomic bounced between two processes.
fn ping_pong() -> Duration {
    let rounds = 100_000u64;
    let v = ShmBox::<ShmValue<u64>>::anonymous(0).expect("segment");
    let child = fork_child(|| {
        for i in 0..rounds {
            while v.load() != 2 * i + 1 {
                std::hint::spin_loop();
            }
            v.store(2 * i + 2);
        }
    });
    let t = Instant::now();
    for i in 0..rounds {
        v.store(2 * i + 1);
        while v.load() != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let d = t.elapsed() / rounds as u32;
    reap(child);
    d
}

fn shmkit_spsc(size: usize, n: u64) -> Duration {
    let ring = SpscRing::anonymous(1 << 20).expect("ring");
    let child = fork_child(|| {
        let mut tx = ring.producer().expect("producer");
        let msg = vec![7u8; size];
        for _ in 0..n {
            tx.push(&msg).expect("push");
        }
    });
    let mut rx = ring.consumer().expect("consumer");
    let mut got = 0u64;
    let t = Instant::now();
    while got < n {
        match rx.read_blocking(None) {
            Ok(g) => {
                assert_eq!(g.len(), size);
                got += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let d = t.elapsed();
    reap(child);
    d
}

fn pipe(size: usize, n: u64) -> Duration {
    let mut fds = [0; 2];
    // SAFETY: valid array of two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let child = fork_child(|| {
        let msg = vec![7u8; size];
        for _ in 0..n {
            let mut off = 0;
            while off < size {
                // SAFETY: writing from a live buffer.
                let w = unsafe { libc::write(fds[1], msg[off..].as_ptr().cast(), size - off) };
                assert!(w > 0);
                off += w as usize;
            }
        }
    });
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    for _ in 0..n {
        let mut off = 0;
        while off < size {
            // SAFETY: reading into a live buffer.
            let r = unsafe { libc::read(fds[0], buf[off..].as_mut_ptr().cast(), size - off) };
            assert!(r > 0);
            off += r as usize;
        }
    }
    let d = t.elapsed();
    reap(child);
    // SAFETY: our fd.
    unsafe { libc::close(fds[0]) };
    d
}

fn report(what: &str, size: usize, n: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64().max(1e-9);
    let msgs = n as f64 / secs;
    println!(
        "{what:<12} size={size:>6} msgs/s={msgs:>12.0} MB/s={:>9.1}",
        msgs * size as f64 / 1e6
    );
    msgs
}

fn main() {
    process::init();
    let base: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!("ping-pong (start): {:?} per round trip", ping_pong());
    for size in [8usize, 64, 4096] {
        let n = if size >= 4096 { base / 10 } else { base }.max(1);
        let s = report("shmkit-spsc", size, n, shmkit_spsc(size, n));
        let p = report("pipe", size, n, pipe(size, n));
        println!("ratio        size={size:>6} spsc/pipe={:.1}x", s / p);
    }
    println!("ping-pong (end): {:?} per round trip", ping_pong());
}
