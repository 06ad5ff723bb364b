//! [`Process`]: a handle to a spawned or forked child, and its
//! [`ExitStatus`].

use std::fmt;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use super::status::{self, Read1, Report};
use crate::os::child::ChildHandle;
use crate::os::signal::{signal_name, Signal};
use crate::os::{self, Deadline};

/// How a child process ended.
///
/// ```
/// use shmkit::process::ExitStatus;
/// assert_eq!(ExitStatus::Code(3).exitcode(), 3);
/// assert_eq!(ExitStatus::Signal(15).exitcode(), -15); // Python's convention
/// assert_eq!(ExitStatus::Panicked("boom".into()).exitcode(), 1);
/// assert!(ExitStatus::Code(0).success());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// Its entry (or forked closure) panicked with this message; the
    /// process then exited with code 1 (or aborted, with `panic = "abort"`).
    Panicked(String),
}

impl ExitStatus {
    /// Python's `Process.exitcode`: the exit code, or minus the signal
    /// number; a panic counts as code 1 (an uncaught exception in Python).
    pub fn exitcode(&self) -> i32 {
        match self {
            ExitStatus::Code(c) => *c,
            ExitStatus::Signal(s) => -s,
            ExitStatus::Panicked(_) => 1,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The panic message, if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            ExitStatus::Panicked(m) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn from_wait(code: Option<i32>, signal: Option<i32>) -> Self {
        match (code, signal) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(s),
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Panicked(m) => write!(f, "panic: {m}"),
        }
    }
}

/// A child process started by [`Builder::spawn`](super::Builder::spawn),
/// [`Unstarted::start`](super::Unstarted::start) or
/// [`fork`](super::fork()) (Python's `multiprocessing.Process` after
/// `start()`).
///
/// Waiting uses a pidfd (opened while the child is still unreaped, so it
/// cannot refer to a recycled pid) and `waitid(P_PIDFD)`; signals go through
/// `pidfd_send_signal`. Kernels without pidfds fall back to `waitpid`/`kill`
/// on the pid, which is equally safe for an unreaped child of ours. All
/// methods take `&self`; a `Process` can be shared between threads (e.g. a
/// pool's monitor) and [`Process::pidfd`] lets a caller poll many children
/// at once for their deaths.
///
/// **Drop:** dropping the handle does not stop the child. As in Python, the
/// child stays recorded until it is reaped, and when this program ends the
/// exit hook installed by [`init()`](super::init) terminates the *daemon*
/// children that are still running and joins the others (see
/// [`active_children`](super::active_children) and the `exit` section of
/// the [module docs](super)). Only the process that started the child
/// signals or reaps it: a forked grandchild that inherited the handle never
/// does either.
///
/// Printed with `{}` it reads like Python's `repr`:
/// `<Process name='worker 1' pid=4242 parent=4200 started>`, then
/// `... stopped exitcode=-SIGTERM>` once it has ended (`daemon` is appended
/// for a daemon child; a handle inherited over fork prints `unknown`).
///
/// ```no_run
/// use shmkit::process::{ExitStatus, Process};
///
/// fn work(n: u32) -> i32 {
///     n as i32
/// }
/// shmkit::entry! { static WORK: Entry<u32> = work; }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     shmkit::process::init(); // first thing in main
///     let p = Process::builder().name("worker 1").spawn(&WORK, &7)?;
///     assert!(p.to_string().starts_with("<Process name='worker 1' pid="));
///     assert_eq!(p.join()?, ExitStatus::Code(7));
///     assert!(p.to_string().ends_with(" stopped exitcode=7>"));
///     Ok(())
/// }
/// ```
pub struct Process {
    child: Arc<Child>,
}

/// The state of one child, shared by its [`Process`] handle and the
/// registry the exit hook walks.
pub(crate) struct Child {
    pid: u32,
    name: String,
    /// Python's `type(self).__name__`: `Process`, or the short name of a
    /// [`Run`](super::Run) type.
    class: String,
    daemon: bool,
    /// The process that started the child (only it waits and signals).
    owner: u32,
    /// The pidfd (or pid) this process waits on and signals through.
    os: ChildHandle,
    /// Read end of the status pipe (non-blocking), for a panic report.
    status_pipe: StdMutex<Option<File>>,
    exit: StdMutex<Option<ExitStatus>>,
    reaped: AtomicBool,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.child;
        f.debug_struct("Process")
            .field("name", &c.name)
            .field("pid", &c.pid)
            .field("daemon", &c.daemon)
            .field("exit", &*c.exit.lock().unwrap_or_else(|e| e.into_inner()))
            .finish()
    }
}

/// Python-like `repr`: `<Process name='worker 1' pid=42 parent=40 started>`.
impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.child;
        // Like Python's repr, printing polls (and reaps) the child.
        let (status, exit) = if !c.is_ours() {
            ("unknown", None)
        } else {
            match c.poll_exit() {
                Ok(Some(s)) => ("stopped", Some(s)),
                Ok(None) => ("started", None),
                Err(_) => ("unknown", None),
            }
        };
        write!(
            f,
            "<{} name='{}' pid={} parent={} {status}",
            c.class, c.name, c.pid, c.owner
        )?;
        if let Some(s) = exit {
            write!(f, " exitcode={}", exitcode_name(s.exitcode()))?;
        }
        if c.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

/// Python's `_exitcode_to_name`: `-SIGTERM` for a death by signal 15, the
/// number otherwise.
pub(crate) fn exitcode_name(code: i32) -> String {
    if code < 0 {
        if let Some(name) = signal_name(-code) {
            return format!("-{name}");
        }
    }
    code.to_string()
}

impl Process {
    /// A builder for a child process (name, daemon flag, start timeout).
    pub fn builder() -> super::Builder {
        super::Builder::new()
    }

    /// Python's `Process(target=entry, args=args)`: an unstarted process
    /// with the default options (name `Process-N`, not a daemon); see
    /// [`Unstarted`](super::Unstarted) and [`Builder::target`](super::Builder::target).
    pub fn with_target<A: serde::Serialize>(
        entry: &super::Entry<A>,
        args: &A,
    ) -> Result<super::Unstarted, super::SpawnError> {
        super::Builder::new().target(entry, args)
    }

    /// Wraps a just-started child and records it for the exit hook.
    pub(crate) fn new(
        pid: u32,
        name: String,
        class: String,
        daemon: bool,
        status_pipe: File,
    ) -> Self {
        // The child is ours and unreaped, so this pid cannot have been
        // reused: the pidfd names exactly our child.
        let handle = ChildHandle::new(pid);
        let _ = os::fd::set_nonblocking(&status_pipe);
        let child = Arc::new(Child {
            pid,
            name,
            class,
            daemon,
            owner: os::current_pid(),
            os: handle,
            status_pipe: StdMutex::new(Some(status_pipe)),
            exit: StdMutex::new(None),
            reaped: AtomicBool::new(false),
        });
        super::exit::register(&child);
        Process { child }
    }

    pub(crate) fn from_child(child: Arc<Child>) -> Self {
        Process { child }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// The pid of the process that started the child (Python's
    /// `parent=` in the repr).
    pub fn parent_pid(&self) -> u32 {
        self.child.owner
    }

    /// The child's name (as [`current_process`](super::current_process)
    /// reports it inside the child).
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// Whether the child is a daemon (terminated at this program's exit;
    /// killed by the kernel if this process dies).
    pub fn is_daemon(&self) -> bool {
        self.child.daemon
    }

    /// A pidfd for the child (readable once it has exited), to poll many
    /// children for death at once; `None` on kernels without pidfds.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.child.os.pidfd()
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn is_alive(&self) -> bool {
        matches!(self.child.poll_exit(), Ok(None))
    }

    /// The exit status if the child has ended (non-blocking; reaps it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child.poll_exit().ok().flatten()
    }

    /// Python's `exitcode`: `None` while running, else
    /// [`ExitStatus::exitcode`].
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(|s| s.exitcode())
    }

    /// Blocks until the child ends and returns how.
    pub fn join(&self) -> std::io::Result<ExitStatus> {
        self.child.join()
    }

    /// Waits at most `timeout` for the child to end; `None` if it is still
    /// running.
    pub fn join_timeout(&self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        self.child.join_timeout(timeout)
    }

    /// Sends SIGTERM (Python's `terminate()`). A child that already ended
    /// is not an error.
    pub fn terminate(&self) -> std::io::Result<()> {
        self.child.terminate()
    }

    /// Sends SIGKILL (Python's `kill()`).
    pub fn kill(&self) -> std::io::Result<()> {
        self.child.kill()
    }
}

impl Child {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn daemon(&self) -> bool {
        self.daemon
    }

    /// Whether this process started the child (and so may wait for it).
    pub(crate) fn is_ours(&self) -> bool {
        self.owner == os::current_pid()
    }

    pub(crate) fn is_reaped(&self) -> bool {
        self.reaped.load(Ordering::Acquire)
    }

    pub(crate) fn join(&self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.poll_exit()? {
                return Ok(s);
            }
            self.os.wait_exit(None);
        }
    }

    pub(crate) fn join_timeout(&self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(s) = self.poll_exit()? {
                return Ok(Some(s));
            }
            if deadline.remaining().is_zero() {
                return Ok(None);
            }
            self.os.wait_exit(Some(deadline));
        }
    }

    pub(crate) fn terminate(&self) -> std::io::Result<()> {
        self.signal(Signal::Terminate)
    }

    pub(crate) fn kill(&self) -> std::io::Result<()> {
        self.signal(Signal::Kill)
    }

    /// Sends `signal` to the child unless it has been reaped.
    fn signal(&self, signal: Signal) -> std::io::Result<()> {
        if !self.is_ours() {
            return Err(std::io::Error::other(
                "a Process handle inherited over fork cannot signal its child",
            ));
        }
        // Hold the reap lock so the pid cannot be reaped (and reused)
        // between the check and the signal.
        let exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_some() {
            return Ok(());
        }
        self.os.signal(signal)
    }

    /// Reaps the child if it has exited (non-blocking); its status once
    /// it has.
    pub(crate) fn poll_exit(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*exit {
            return Ok(Some(s.clone()));
        }
        if !self.is_ours() {
            return Err(std::io::Error::other(
                "a Process handle inherited over fork cannot wait for its child",
            ));
        }
        let Some(exit_info) = self.os.try_reap()? else {
            return Ok(None);
        };
        let status = ExitStatus::from_wait(exit_info.code, exit_info.signal);
        let status = match self.panic_report() {
            Some(msg) => ExitStatus::Panicked(msg),
            None => status,
        };
        tracing::debug!(pid = self.pid, name = %self.name, %status, "child process ended");
        *exit = Some(status.clone());
        self.reaped.store(true, Ordering::Release);
        Ok(Some(status))
    }

    /// Reads what the child left in the status pipe after it exited: a
    /// `Panicked` report, if any.
    fn panic_report(&self) -> Option<String> {
        let mut pipe = self.status_pipe.lock().unwrap_or_else(|e| e.into_inner());
        let file = pipe.as_mut()?;
        let mut msg = None;
        // Bounded: a well-behaved child writes at most two frames.
        for _ in 0..8 {
            match status::recv(file) {
                Read1::Report(Report::Panicked(m)) => msg = Some(m),
                Read1::Report(_) => {}
                Read1::Eof | Read1::WouldBlock | Read1::Bad(_) => break,
            }
        }
        *pipe = None;
        msg
    }
}
