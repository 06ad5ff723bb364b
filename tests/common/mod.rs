//! Shared support for cross-process tests.
//!
//! Cross-process tests fork. Forking a multi-threaded process can deadlock
//! the child (a lock another thread held stays locked forever), so these
//! tests live in `harness = false` binaries that run their cases one after
//! another on the main thread, with no other threads alive. [`run`] is that
//! tiny harness: it takes an optional name filter from argv, runs each
//! case under a SIGALRM hang watchdog, and prints libtest-style lines and a
//! final `N passed, N failed` summary.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A forked child process.
pub struct Child {
    pub pid: i32,
    reaped: Option<i32>,
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Forks; the child runs `f` and exits with its return value (101 if it
/// panics). Only call with no other threads alive.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: the test binaries using this are harness=false and
    // single-threaded, so the child inherits no lock held by another thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leave the child without running the parent's atexit
        // handlers or destructors (which would e.g. unlink segments twice).
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: None }
}

fn decode(status: i32) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    }
}

impl Child {
    /// Waits for the child, at most `limit` (a hang watchdog, not a
    /// timing assertion): on expiry the child is killed and the test fails
    /// with `what` in the message.
    pub fn wait(&mut self, limit: Duration, what: &str) -> Exit {
        if let Some(s) = self.reaped {
            return decode(s);
        }
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = Some(status);
                return decode(status);
            }
            assert!(
                r == 0,
                "waitpid failed: {}",
                std::io::Error::last_os_error()
            );
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "watchdog: child {} ({what}) still running after {limit:?}; killed it",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits and asserts a clean exit (code 0).
    pub fn join_ok(&mut self, what: &str) {
        let e = self.wait(Duration::from_secs(120), what);
        assert_eq!(e, Exit::Code(0), "child {} ({what}) failed", self.pid);
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        // SAFETY: signalling our own unreaped child; its pid cannot have
        // been reused before we reap it.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: as above.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.reaped = Some(status);
    }

    /// SIGKILLs the child but leaves it a zombie (unreaped), as when the
    /// dead process's parent is not the one waiting for the lock.
    pub fn kill_no_reap(&mut self) {
        // SAFETY: as for kill.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill();
        }
    }
}

/// Polls `cond` every 100 µs until it holds; panics with `what` after
/// `limit`. A hang watchdog for cross-process handshakes, never a timing
/// assertion.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "watchdog: gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A segment name unique to this process and call.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "shmkit-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Small deterministic PRNG (xorshift64*) for randomised kill points.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

extern "C" fn on_alarm(_: libc::c_int) {
    let msg = b"\nwatchdog: a test case hung past its limit; aborting the test binary\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(3);
    }
}

/// Runs `cases` in order (those whose name contains argv's first non-flag
/// argument, if any), each under a `watchdog_secs` SIGALRM hang watchdog.
/// Prints `test NAME ... ok|FAILED` and `N passed, N failed`; exits
/// non-zero if any case failed.
pub fn run(cases: &[(&str, fn())], watchdog_secs: u32) {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // SAFETY: installing a plain signal handler for SIGALRM.
    unsafe { libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t) };
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        // SAFETY: alarm only arms a timer.
        unsafe { libc::alarm(watchdog_secs) };
        let start = Instant::now();
        let ok = std::panic::catch_unwind(*case).is_ok();
        // SAFETY: disarm.
        unsafe { libc::alarm(0) };
        if ok {
            passed += 1;
            println!("test {name} ... ok ({:.2?})", start.elapsed());
        } else {
            failed += 1;
            println!("test {name} ... FAILED");
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// What an example printed, and its pid.
pub struct ExampleRun {
    pub stdout: String,
    pub stderr: String,
    pub pid: u32,
}

impl ExampleRun {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The stdout lines, sorted (for output whose order depends on
    /// scheduling).
    pub fn sorted(&self) -> Vec<&str> {
        let mut v = self.lines();
        v.sort_unstable();
        v
    }

    /// How many stdout lines equal `line`.
    pub fn count(&self, line: &str) -> usize {
        self.stdout.lines().filter(|l| *l == line).count()
    }
}

/// `<target>/<profile>/deps/<test>` → `<target>/<profile>/examples/<name>`.
pub fn example_path(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

/// Runs an example (built by `cargo test`) with `args` in a process group
/// of its own, under a 120 s hang watchdog, and checks what every example
/// must do: exit with code 0, and leave no process behind — every child it
/// started was joined (or terminated, for a daemon) before it exited.
/// Returns what it printed.
pub fn run_example(name: &str, args: &[&str]) -> ExampleRun {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let path = example_path(name);
    let mut child = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (cargo test builds the examples first)",
                path.display()
            )
        });
    let pid = child.id();
    // Readers on threads, so a chatty example never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let kill_group = || {
        // SAFETY: signals the process group this function created.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            kill_group();
            let _ = child.wait();
            panic!("watchdog: example {name} still running after 120 s; killed its process group");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Right after the example's exit, its group must be empty: a process
    // still in it is a child the example neither joined nor terminated.
    // SAFETY: signal 0 only checks whether the group has a member.
    let leftover = unsafe { libc::kill(-(pid as i32), 0) } == 0;
    if leftover {
        kill_group();
    }
    let stdout = String::from_utf8_lossy(&out_t.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().expect("stderr reader")).into_owned();
    assert!(
        status.success(),
        "example {name} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !leftover,
        "example {name} exited leaving a child process running\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    ExampleRun {
        stdout,
        stderr,
        pid,
    }
}
