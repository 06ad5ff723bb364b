//! Shared benchmark support: the cache-line ping-pong that tells which state
//! this VM's vCPUs are in, CPU pinning, and forked peers.
//!
//! The VM's two vCPUs flip between a fast state (cache-line round trip
//! ~45 ns) and a slow one (~400 ns), which moves every cross-process figure
//! by 3–4×. Every benchmark prints [`report_pingpong`] at its start and end
//! so figures are only compared within one state.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pins the calling process (all its future threads) to `cpu`, or undoes
/// pinning with `None`. Returns false if the CPU does not exist.
pub fn pin(cpu: Option<usize>) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it;
    // sched_setaffinity(0, ..) affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                for c in 0..online_cpus() {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Number of online CPUs (not `available_parallelism`, which follows the
/// current affinity mask and so would make `pin(None)` unable to unpin).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// A forked peer process; killed and reaped on drop.
pub struct Peer(pub libc::pid_t);

impl Peer {
    /// Forks; the child runs `f` then `_exit(0)`. Call before any threads
    /// exist (criterion spawns none until measurement; fork early).
    pub fn fork(f: impl FnOnce()) -> Peer {
        // SAFETY: benchmarks fork while single-threaded.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            f();
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Peer(pid)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: our own unreaped child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// A shared anonymous mapping of `len` bytes (inherited over fork).
pub fn shared_bytes(len: usize) -> *mut u8 {
    // SAFETY: anonymous shared mapping; checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    p.cast()
}

/// Nanoseconds per cache-line round trip between two processes bouncing
/// one atomic (`rounds` round trips), with both processes on separate CPUs
/// if `pinned_apart`, else wherever the scheduler puts them.
pub fn pingpong_ns(rounds: u64, pinned_apart: bool) -> f64 {
    let line = shared_bytes(4096).cast::<AtomicU64>();
    // SAFETY: fresh zeroed shared mapping, aligned, lives until exit.
    let a: &'static AtomicU64 = unsafe { &*line };
    a.store(0, Ordering::SeqCst);
    let cpus = online_cpus();
    let peer = Peer::fork(move || {
        if pinned_apart && cpus > 1 {
            pin(Some(1));
        }
        let mut expect = 1;
        while expect < 2 * rounds {
            while a.load(Ordering::Acquire) != expect {
                std::hint::spin_loop();
            }
            a.store(expect + 1, Ordering::Release);
            expect += 2;
        }
    });
    if pinned_apart && cpus > 1 {
        pin(Some(0));
    }
    let start = Instant::now();
    let mut next = 0;
    while next < 2 * rounds {
        a.store(next + 1, Ordering::Release);
        while a.load(Ordering::Acquire) != next + 2 {
            std::hint::spin_loop();
        }
        next += 2;
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    pin(None);
    drop(peer);
    // SAFETY: unmapping the mapping created above; no references remain.
    unsafe { libc::munmap(line.cast(), 4096) };
    ns
}

/// Prints the ping-pong figure with a label ("start"/"end") and the state
/// it indicates, and returns it.
pub fn report_pingpong(label: &str) -> f64 {
    let ns = pingpong_ns(200_000, true);
    let state = if ns < 150.0 { "fast" } else { "slow" };
    println!("cache-line ping-pong ({label}): {ns:.0} ns/round trip [{state} vCPU state]");
    ns
}

/// Median of `samples` runs of `f` (each returning a rate or a time).
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Busy-waits `d` (for pacing without sleeping the CPU).
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}
