//! Shared benchmark support: the cache-line ping-pong that tells which state
//! this VM's vCPUs are in, CPU pinning, and forked peers.
//!
//! The VM's two vCPUs flip between a fast state (cache-line round trip
//! ~45 ns) and a slow one (~400 ns), which moves every cross-process figure
//! by 3–4×. Every benchmark prints [`report_pingpong`] (or
//! [`report_pingpongs`] for the placements it measures in) at its start and
//! end so figures are only compared within one state.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pins the calling process (all its future threads, and children forked
/// afterwards) to `cpu`, or undoes pinning with `None` (every CPU; the
/// kernel keeps only those this process may use). Returns false if the CPU
/// does not exist.
pub fn pin(cpu: Option<usize>) -> bool {
    let mut set = empty_cpu_set();
    match cpu {
        // SAFETY: CPU_SET only writes inside `set` (bounds-checked: a `c`
        // beyond CPU_SETSIZE panics).
        Some(c) => unsafe { libc::CPU_SET(c, &mut set) },
        None => {
            for c in 0..libc::CPU_SETSIZE as usize {
                // SAFETY: as above; `c` is within CPU_SETSIZE.
                unsafe { libc::CPU_SET(c, &mut set) };
            }
        }
    }
    set_affinity(&set)
}

fn empty_cpu_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    unsafe { std::mem::zeroed() }
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// Runs `f` pinned to `cpu` (children forked inside inherit it) and then
/// restores the affinity this process had before; with `None`, just runs
/// `f`.
pub fn with_pin<R>(cpu: Option<usize>, f: impl FnOnce() -> R) -> R {
    let Some(cpu) = cpu else {
        return f();
    };
    let mut saved = empty_cpu_set();
    // SAFETY: `saved` is a valid out-buffer of the size passed.
    let got = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) == 0
    };
    assert!(
        got,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    assert!(pin(Some(cpu)), "cannot pin to CPU {cpu}");
    let r = f();
    set_affinity(&saved);
    r
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
    /// Forks; the child runs `f` then `_exit(0)` (`_exit(101)` if `f`
    /// panics, rather than unwinding into the parent's code). Fork only
    /// while single-threaded: criterion (without rayon) runs benchmarks on
    /// the main thread; in-process benchmarks join their threads first.
    pub fn fork(f: impl FnOnce()) -> Peer {
        // SAFETY: benchmarks fork while single-threaded.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(()) => 0,
                Err(_) => 101,
            };
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        Peer(pid)
    }

    /// Waits for the peer to finish on its own; panics unless it exited
    /// with code 0.
    pub fn join(self) {
        let pid = self.0;
        // Reaped here, so Drop must not signal the pid again.
        std::mem::forget(self);
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own unreaped child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid: {e}");
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "bench peer {pid} failed (wait status {status:#x})"
        );
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

/// Where the two processes of a ping-pong run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them (no affinity change).
    Unpinned,
    /// This process on CPU 0, the peer on CPU 1 (unpinned on one CPU).
    Apart,
    /// Both on CPU 0: every hand-off is a context switch.
    Together,
}

impl Placement {
    /// A short name for reports.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Apart => "pinned apart",
            Placement::Together => "pinned (1 CPU)",
        }
    }
}

/// Waits until `a` holds `want`: spins, or yields when both sides share
/// one CPU (where spinning would only burn the peer's time slice).
fn wait_for(a: &AtomicU64, want: u64, together: bool) {
    while a.load(Ordering::Acquire) != want {
        if together {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Time for `rounds` round trips of one atomic bounced between this
/// process and a forked peer placed as `placement`. Timing starts once the
/// peer is running (and placed), so small `rounds` do not measure fork.
pub fn pingpong(rounds: u64, placement: Placement) -> Duration {
    let mem = shared_bytes(4096);
    // SAFETY: fresh zeroed shared mapping, page-aligned, unmapped below
    // after the peer is gone; offsets 0 and 128 are 8-aligned, in bounds.
    let (a, ready) = unsafe {
        (
            &*mem.cast::<AtomicU64>(),
            &*mem.add(128).cast::<AtomicU64>(),
        )
    };
    let apart = placement == Placement::Apart && online_cpus() > 1;
    let together = placement == Placement::Together;
    let run = || {
        let peer = Peer::fork(move || {
            if apart {
                pin(Some(1));
            }
            ready.store(1, Ordering::Release);
            for i in 0..rounds {
                wait_for(a, 2 * i + 1, together);
                a.store(2 * i + 2, Ordering::Release);
            }
        });
        wait_for(ready, 1, true);
        let start = Instant::now();
        for i in 0..rounds {
            a.store(2 * i + 1, Ordering::Release);
            wait_for(a, 2 * i + 2, together);
        }
        let took = start.elapsed();
        peer.join();
        took
    };
    let took = match placement {
        Placement::Unpinned => run(),
        Placement::Apart if !apart => run(),
        Placement::Apart | Placement::Together => with_pin(Some(0), run),
    };
    // SAFETY: unmapping the mapping created above; the peer is reaped and
    // `a`/`ready` are not used past this point.
    unsafe { libc::munmap(mem.cast(), 4096) };
    took
}

/// Nanoseconds per cache-line round trip between two processes bouncing
/// one atomic (`rounds` round trips), with both processes on separate CPUs
/// if `pinned_apart`, else wherever the scheduler puts them.
pub fn pingpong_ns(rounds: u64, pinned_apart: bool) -> f64 {
    let placement = if pinned_apart {
        Placement::Apart
    } else {
        Placement::Unpinned
    };
    pingpong(rounds, placement).as_nanos() as f64 / rounds as f64
}

/// Prints the ping-pong figure with a label ("start"/"end") and the state
/// it indicates, and returns it.
pub fn report_pingpong(label: &str) -> f64 {
    report_pingpongs(label, &[Placement::Apart])[0]
}

/// Prints, on one line, the ping-pong figure (ns per round trip) for each
/// of `placements` with a label ("start"/"end") and the vCPU state the
/// first cross-CPU figure indicates; returns the figures in order.
pub fn report_pingpongs(label: &str, placements: &[Placement]) -> Vec<f64> {
    let figures: Vec<f64> = placements
        .iter()
        .map(|&p| {
            // A context switch per hand-off: fewer rounds when together.
            let rounds = if p == Placement::Together {
                20_000
            } else {
                200_000
            };
            pingpong(rounds, p).as_nanos() as f64 / rounds as f64
        })
        .collect();
    let parts: Vec<String> = placements
        .iter()
        .zip(&figures)
        .map(|(p, ns)| format!("{} {ns:.0} ns/round trip", p.label()))
        .collect();
    let state = placements
        .iter()
        .zip(&figures)
        .find(|(p, _)| **p != Placement::Together)
        .map_or("", |(_, &ns)| {
            if ns < 150.0 {
                " [fast vCPU state]"
            } else {
                " [slow vCPU state]"
            }
        });
    println!(
        "cache-line ping-pong ({label}): {}{state}",
        parts.join(", ")
    );
    figures
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
