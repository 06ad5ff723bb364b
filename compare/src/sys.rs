//! Process plumbing for the suite: a shared control block, forked peers,
//! CPU pinning, the cache-line ping-pong probe and the machine description.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Words both sides of a measurement see: in an anonymous shared mapping
/// (inherited over fork), or on the heap for thread peers.
#[repr(C)]
pub struct Ctl {
    /// Number of peers that have built their end and are waiting for `go`.
    pub ready: AtomicU64,
    /// Set by the driver when timing starts.
    pub go: AtomicU64,
    /// Number of peers that finished their part.
    pub done: AtomicU64,
    /// Messages the peers received.
    pub received: AtomicU64,
    /// Messages that arrived with the wrong sequence number or length.
    pub errors: AtomicU64,
    /// Sum of the sequence numbers received (checks exactly-once delivery).
    pub seq_sum: AtomicU64,
    /// A general-purpose counter (lock hand-off, dict).
    pub counter: AtomicU64,
}

/// An anonymous `MAP_SHARED` mapping holding one [`Ctl`], unmapped on drop.
pub struct SharedCtl {
    ptr: *mut Ctl,
}

impl SharedCtl {
    /// A fresh, zeroed control block.
    pub fn new() -> SharedCtl {
        SharedCtl {
            ptr: shared_map(4096).cast(),
        }
    }
}

impl std::ops::Deref for SharedCtl {
    type Target = Ctl;
    fn deref(&self) -> &Ctl {
        // SAFETY: the mapping is 4096 bytes, zeroed (all-zero atomics are
        // valid) and page-aligned, and lives until `self` is dropped.
        unsafe { &*self.ptr }
    }
}

impl Drop for SharedCtl {
    fn drop(&mut self) {
        // SAFETY: our own mapping of this length; no reference outlives self.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

/// A fresh anonymous shared mapping of `len` bytes (zeroed by the kernel).
pub fn shared_map(len: usize) -> *mut u8 {
    // SAFETY: anonymous shared mapping; the result is checked.
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
    assert!(
        p != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}

/// Waits until `a` reaches at least `want`, spinning with a pause hint and
/// yielding now and then (the peer may share this CPU). Panics after a
/// generous watchdog so a broken peer fails the run instead of hanging it.
pub fn wait_at_least(a: &AtomicU64, want: u64) {
    let start = Instant::now();
    let mut n = 0u32;
    while a.load(Ordering::Acquire) < want {
        n = n.wrapping_add(1);
        if n.is_multiple_of(64) {
            std::thread::yield_now();
            if start.elapsed() > Duration::from_secs(120) {
                panic!("watchdog: a peer did not report within 120 s");
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A forked child process; killed and reaped on drop if not joined.
pub struct Child(libc::pid_t);

impl Child {
    /// Forks; the child runs `f` and leaves with `_exit` (code 0, or 101 if
    /// `f` panicked) without running this process's destructors. Call only
    /// while this process has one thread.
    pub fn fork(f: impl FnOnce()) -> Child {
        let threads = thread_count();
        assert!(
            threads <= 1,
            "fork with {threads} threads alive: the child could deadlock"
        );
        // SAFETY: the suite forks only from its single main thread.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(()) => 0,
                Err(_) => 101,
            };
            // SAFETY: leave the child without unwinding into the parent's code.
            unsafe { libc::_exit(code) };
        }
        Child(pid)
    }

    /// Waits for the child; an error unless it exited with code 0.
    pub fn join(self) -> Result<(), String> {
        let pid = self.0;
        std::mem::forget(self);
        let mut status = 0;
        loop {
            // SAFETY: our own unreaped child; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("waitpid: {e}"));
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(format!("peer {pid} failed (wait status {status:#x})"))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // SAFETY: our own unreaped child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

/// Threads alive in this process (from /proc/self/status; 0 if unknown).
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Number of online CPUs.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread (and what it forks afterwards) to `cpu`, or to
/// every CPU with `None`. Returns false if the kernel refused.
pub fn pin(cpu: Option<usize>) -> bool {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = match cpu {
        Some(c) => c..c + 1,
        None => 0..online_cpus(),
    };
    for c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: `c` is below CPU_SETSIZE, so CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Where the two sides of a pair run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Driver on CPU 0, peer on CPU 1.
    Pinned,
}

impl Placement {
    /// Short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Pinned => "pinned",
        }
    }

    /// Pins the driver side (call before forking or spawning the peer).
    pub fn enter_driver(self) {
        if self == Placement::Pinned {
            pin(Some(0));
        }
    }

    /// Pins the peer side (call first thing in the peer).
    pub fn enter_peer(self) {
        if self == Placement::Pinned {
            pin(Some(1));
        }
    }

    /// Undoes the driver's pinning.
    pub fn leave(self) {
        if self == Placement::Pinned {
            pin(None);
        }
    }
}

/// The cache-line ping-pong probe: median nanoseconds for one round trip
/// of a single atomic bounced between this process and a forked peer
/// (spinning with a pause hint on both sides). This is the floor any
/// cross-process round trip on this machine, in its current state, pays.
pub fn pingpong_ns(rounds: u64, placement: Placement) -> f64 {
    let ctl = SharedCtl::new();
    placement.enter_driver();
    let line = &ctl.counter;
    let child = Child::fork(|| {
        placement.enter_peer();
        ctl.ready.store(1, Ordering::Release);
        for i in 0..rounds {
            while line.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            line.store(2 * i + 2, Ordering::Release);
        }
    });
    wait_at_least(&ctl.ready, 1);
    let mut samples = Vec::with_capacity(rounds as usize / 16 + 1);
    let mut t = Instant::now();
    for i in 0..rounds {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
        if i % 16 == 15 {
            let now = Instant::now();
            samples.push((now - t).as_nanos() as f64 / 16.0);
            t = now;
        }
    }
    let _ = child.join();
    placement.leave();
    median(&mut samples)
}

/// Median of `v` (sorted in place); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile of `v` (nearest rank; sorted in place); 0 if empty.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// What the report header says about the machine.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub python: Option<String>,
}

impl Machine {
    /// Reads /proc/cpuinfo, uname and `python3 --version`.
    pub fn probe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let python = std::process::Command::new("python3")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if s.is_empty() {
                    s = String::from_utf8_lossy(&o.stderr).trim().to_string();
                }
                s
            });
        Machine {
            cpu,
            cores: online_cpus(),
            kernel,
            python,
        }
    }
}
