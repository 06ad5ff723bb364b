//! Spawning by re-executing the current binary, the child side of
//! [`init`], and the [`Builder`].

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering as StdOrdering};
use std::sync::{Mutex as StdMutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use serde::Serialize;

use super::entry::{lookup, Entry, Lookup};
use super::error::SpawnError;
use super::handle::Process;
use super::handoff;
use super::run::{class_name, RunEntry};
use super::status::{self, Read1, Report};
use super::unstarted::Unstarted;
use crate::os::{self, Deadline};

/// The spawn protocol tag; parent and child must agree on it exactly.
pub const PROTOCOL: &str = concat!("shmkit-", env!("CARGO_PKG_VERSION"), "/spawn-1");

const ENV_PROTO: &str = "SHMKIT_SPAWN_PROTOCOL";
const ENV_ENTRY: &str = "SHMKIT_SPAWN_ENTRY";
const ENV_FDS: &str = "SHMKIT_SPAWN_FDS";
const ENV_NAME: &str = "SHMKIT_SPAWN_NAME";
const ENV_PARENT: &str = "SHMKIT_SPAWN_PARENT";
const ENV_PARENT_NAME: &str = "SHMKIT_SPAWN_PARENT_NAME";

/// Exit code of a child that could not start its entry (after reporting
/// why to the parent).
pub const EXIT_START_FAILED: i32 = 70;
/// Exit code of a daemon child whose parent died before it started.
pub const EXIT_PARENT_GONE: i32 = 71;

/// Largest argument payload a child accepts (64 MiB).
const MAX_ARGS: u64 = 64 << 20;

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);
static CURRENT_NAME: StdMutex<Option<String>> = StdMutex::new(None);
/// The process that started this one through shmkit: (pid, name).
static PARENT: StdMutex<Option<(u32, String)>> = StdMutex::new(None);

/// Makes this binary able to spawn children and, when it *is* a spawned
/// child, runs the requested entry and exits.
///
/// Call it first thing in `main`, before any thread is started (it edits
/// the environment). In a parent it records that spawning is safe
/// (spawning without `init()` fails with [`SpawnError::NotInitialized`]
/// instead of re-running `main` in the child) and installs the exit hook
/// that, when the program ends, terminates daemon children still running
/// and joins the others, as Python does (see the [module docs](super)).
/// In a child it never returns: it reports start-up to the parent, runs
/// the entry, runs the same exit steps for its own children, and exits
/// with the entry's code (1 after a panic, whose message reaches the
/// parent).
///
/// ```
/// fn main() {
///     shmkit::process::init();
///     // ... the program, which may now spawn registered entries
/// }
/// # main();
/// ```
pub fn init() {
    INITIALIZED.store(true, StdOrdering::SeqCst);
    super::exit::install();
    if let Some(proto) = std::env::var_os(ENV_PROTO) {
        child_main(proto)
    }
}

/// Whether [`init`] has been called in this process (or in the process it
/// was forked from).
pub fn is_initialized() -> bool {
    INITIALIZED.load(StdOrdering::SeqCst)
}

/// Name and pid of the calling process (Python's `current_process()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
}

impl CurrentProcess {
    /// The name given by the parent (`"Process-N"` by default), or
    /// `"MainProcess"` in a process that was not started by shmkit.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// The calling process's name and pid.
///
/// ```
/// let me = shmkit::process::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    CurrentProcess {
        name: current_name(),
        pid: os::current_pid(),
    }
}

/// The process that started this one (Python's `parent_process()`): its
/// pid and name, as [`parent_process`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    name: String,
    pid: u32,
}

impl ParentProcess {
    /// The parent's name (`"MainProcess"` for a child of the main
    /// program, `"Process-1"` for a grandchild started by it, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the parent is still running. It is exact: a process whose
    /// parent exited is re-parented, so this compares the kernel's parent
    /// pid of this process with [`pid`](ParentProcess::pid) (no pid-reuse
    /// confusion).
    pub fn is_alive(&self) -> bool {
        std::os::unix::process::parent_id() == self.pid
    }
}

/// The process that started this one through shmkit ([`spawn`](Builder::spawn),
/// [`fork`](crate::process::fork), a pool worker's pool), like Python's
/// `multiprocessing.parent_process()`; `None` in the main process (one not
/// started by shmkit).
///
/// ```
/// // The main program (here: this doctest) has no shmkit parent.
/// assert!(shmkit::process::parent_process().is_none());
/// ```
///
/// In a spawned child it names the parent:
///
/// ```no_run
/// use shmkit::process::{self, parent_process, Process};
///
/// fn child(_: ()) -> i32 {
///     let parent = parent_process().expect("started by shmkit");
///     assert_eq!(parent.name(), "MainProcess");
///     assert!(parent.is_alive());
///     0
/// }
/// shmkit::entry! { static CHILD: Entry<()> = child; }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     process::init();
///     let p = Process::builder().spawn(&CHILD, &())?;
///     assert_eq!(p.join()?.exitcode(), 0);
///     Ok(())
/// }
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    PARENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(|(pid, name)| ParentProcess { name, pid })
}

pub(crate) fn set_parent(pid: u32, name: String) {
    *PARENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, name));
}

pub(crate) fn current_name() -> String {
    CURRENT_NAME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| "MainProcess".to_owned())
}

pub(crate) fn set_current_name(name: &str) {
    *CURRENT_NAME.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_owned());
}

/// Configures and starts a child process: Python's `Process(name=...,
/// daemon=...)` followed by `start()`.
///
/// ```no_run
/// use shmkit::process::Process;
///
/// fn nap(ms: u64) {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
/// }
/// shmkit::entry! { static NAP: Entry<u64> = nap; }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     shmkit::process::init();
///     let p = Process::builder().name("sleeper").daemon(true).spawn(&NAP, &50)?;
///     assert!(p.join()?.success());
///     let q = Process::builder().name("forked").fork(|| 3)?;
///     assert_eq!(q.join()?.exitcode(), 3);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    start_timeout: Duration,
    protocol: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// Defaults: name `Process-N` (N counts every child this process
    /// starts, named or not, as in Python), not a daemon, 60 s start timeout.
    pub fn new() -> Self {
        Self {
            name: None,
            daemon: false,
            start_timeout: Duration::from_secs(60),
            protocol: None,
        }
    }

    /// The child's name (what `current_process().name()` returns in it).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon child ends with its parent: the exit hook installed by
    /// [`init`] terminates it when the program ends (see the
    /// [module docs](super)), and it gets `PR_SET_PDEATHSIG` = SIGKILL for
    /// any other death of the parent (and exits at once if the parent
    /// already died before that was set). Dropping its [`Process`] does
    /// not stop it. Note that Linux delivers the death signal when the
    /// *thread* that started the child exits; start daemon children from a
    /// long-lived thread (e.g. main).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// How long [`spawn`](Builder::spawn) waits for the child's start-up
    /// report before killing it ([`SpawnError::StartTimeout`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Test hook: announce another protocol tag to the child.
    #[doc(hidden)]
    pub fn __protocol(mut self, tag: &str) -> Self {
        self.protocol = Some(tag.to_owned());
        self
    }

    /// The child's name: the builder's, or `{class}-N`. Like Python, every
    /// process object consumes a number, named or not.
    fn take_name(&self, class: &str) -> String {
        let n = NEXT_CHILD.fetch_add(1, StdOrdering::Relaxed);
        self.name.clone().unwrap_or_else(|| format!("{class}-{n}"))
    }

    pub(crate) fn is_daemon(&self) -> bool {
        self.daemon
    }

    pub(crate) fn child_name(&self) -> String {
        self.take_name("Process")
    }

    /// An unstarted process that will run `entry(args)` (Python's
    /// `Process(target=entry, args=args)`, with this builder's name, daemon
    /// flag and start timeout). The name is fixed now; the arguments are
    /// encoded now (a [`Shared`](super::Shared) handle inside them keeps
    /// its segment's descriptor until the start). See [`Unstarted`].
    pub fn target<A: Serialize>(
        &self,
        entry: &Entry<A>,
        args: &A,
    ) -> Result<Unstarted, SpawnError> {
        self.unstarted("Process", entry.name(), args)
    }

    /// An unstarted process that will run `value.run()` (Python's
    /// instance of a `Process` subclass); its default name is the type's
    /// short name and the process counter, e.g. `Worker-2`. See [`Run`](super::Run).
    pub fn runnable<T: RunEntry>(&self, value: &T) -> Result<Unstarted, SpawnError> {
        self.unstarted(class_name::<T>(), T::ENTRY, value)
    }

    fn unstarted<A: Serialize>(
        &self,
        class: &str,
        entry: &'static str,
        args: &A,
    ) -> Result<Unstarted, SpawnError> {
        let (bytes, fds) = handoff::encode_args(args).map_err(SpawnError::Serialize)?;
        Ok(Unstarted {
            builder: self.clone(),
            name: self.take_name(class),
            class: class.to_owned(),
            parent: os::current_pid(),
            entry,
            args: bytes,
            fds,
        })
    }

    /// Starts a child running `entry(args)` by re-executing this binary
    /// (`/proc/self/exe`), and waits for its start-up handshake: an
    /// unknown entry, undecodable arguments or a shmkit version mismatch
    /// is an error here, in the parent.
    pub fn spawn<A: Serialize>(&self, entry: &Entry<A>, args: &A) -> Result<Process, SpawnError> {
        let (bytes, fds) = handoff::encode_args(args).map_err(SpawnError::Serialize)?;
        self.spawn_inner(
            self.child_name(),
            "Process".into(),
            entry.name(),
            &bytes,
            fds,
        )
    }

    /// Untyped spawn: runs the entry registered as `entry` with an already
    /// serialised (postcard) argument payload. For layers built on this one
    /// (pools) and for tests; prefer [`spawn`](Builder::spawn).
    pub fn spawn_raw(&self, entry: &str, args: &[u8]) -> Result<Process, SpawnError> {
        self.spawn_inner(self.child_name(), "Process".into(), entry, args, Vec::new())
    }

    pub(crate) fn spawn_inner(
        &self,
        name: String,
        class: String,
        entry: &str,
        args: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<Process, SpawnError> {
        if !is_initialized() {
            return Err(SpawnError::NotInitialized);
        }
        if super::exit::is_exiting() {
            return Err(SpawnError::Exiting);
        }
        let mut args_file = os::fd::memfd_cloexec("shmkit-spawn-args")?;
        args_file.write_all(args)?;
        let (status_r, status_w) = os::fd::pipe_cloexec()?;

        let mut inherit: Vec<RawFd> = vec![args_file.as_raw_fd(), status_w.as_raw_fd()];
        inherit.extend(fds.iter().map(|f| f.as_raw_fd()));
        let fd_list = inherit
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(",");

        let mut cmd = Command::new("/proc/self/exe");
        if let Some(arg0) = std::env::args_os().next() {
            cmd.arg0(arg0);
        }
        cmd.env(ENV_PROTO, self.protocol.as_deref().unwrap_or(PROTOCOL))
            .env(ENV_ENTRY, entry)
            .env(ENV_FDS, fd_list)
            .env(ENV_NAME, &name)
            .env(ENV_PARENT, os::current_pid().to_string())
            .env(ENV_PARENT_NAME, current_name());
        let daemon = self.daemon;
        let parent = os::current_pid();
        // The hook runs in the forked child before exec and allocates nothing.
        // SAFETY: only async-signal-safe calls (`clear_cloexec_raw`: fcntl;
        // `die_with_parent`: prctl, getppid, _exit) on integers captured by value.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherit {
                    os::fd::clear_cloexec_raw(fd)?;
                }
                if daemon {
                    os::fork::die_with_parent(parent, EXIT_PARENT_GONE);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        drop(child); // std's handle does not wait or kill on drop
        drop((args_file, status_w, fds)); // the child has its own copies
        tracing::debug!(pid, %name, entry, "spawned child process");

        let mut status_r = File::from(status_r);
        let first = read_handshake(&mut status_r, self.start_timeout);
        let process = Process::new(pid, name, class, daemon, status_r);
        let err = match first {
            Some(Read1::Report(Report::Started)) => return Ok(process),
            Some(Read1::Report(Report::UnknownEntry(e))) => SpawnError::UnknownEntry(e),
            Some(Read1::Report(Report::BadArgs(reason))) => SpawnError::BadArgs {
                entry: entry.to_owned(),
                reason,
            },
            Some(Read1::Report(Report::VersionMismatch(child))) => SpawnError::VersionMismatch {
                parent: self.protocol.clone().unwrap_or_else(|| PROTOCOL.to_owned()),
                child,
            },
            Some(Read1::Report(Report::Panicked(_))) => {
                SpawnError::Protocol("panic report before start")
            }
            Some(Read1::Bad(what)) => SpawnError::Protocol(what),
            Some(Read1::Eof) | Some(Read1::WouldBlock) => {
                let status = match process.join_timeout(self.start_timeout)? {
                    Some(s) => s,
                    None => {
                        process.kill()?;
                        process.join()?
                    }
                };
                return Err(SpawnError::DiedDuringStartup(status));
            }
            None => {
                process.kill()?;
                process.join()?;
                return Err(SpawnError::StartTimeout(self.start_timeout));
            }
        };
        // The child exits right after reporting; reap it (bounded).
        if process.join_timeout(self.start_timeout)?.is_none() {
            process.kill()?;
            process.join()?;
        }
        Err(err)
    }
}

/// Waits (at most `timeout`) for the first status frame; `None` on timeout.
fn read_handshake(pipe: &mut File, timeout: Duration) -> Option<Read1> {
    let deadline = Deadline::after(timeout);
    loop {
        if deadline.has_passed() {
            return None;
        }
        match os::fd::wait_readable(&*pipe, Some(deadline)) {
            Ok(false) => continue,
            Ok(true) => return Some(status::recv(pipe)),
            Err(_) => return Some(Read1::Bad("poll on status pipe failed")),
        }
    }
}

// ---------------------------------------------------------------------
// Child side.

/// Where the panic hook reports the entry thread's panic.
static STATUS_FD: AtomicI32 = AtomicI32::new(-1);
static ENTRY_THREAD: OnceLock<ThreadId> = OnceLock::new();

fn child_main(proto: OsString) -> ! {
    let entry = std::env::var(ENV_ENTRY).unwrap_or_default();
    let name = std::env::var(ENV_NAME).unwrap_or_else(|_| "Process-?".to_owned());
    let fd_list = std::env::var(ENV_FDS).unwrap_or_default();
    let parent_pid = std::env::var(ENV_PARENT).ok().and_then(|p| p.parse().ok());
    let parent_name = std::env::var(ENV_PARENT_NAME).unwrap_or_else(|_| "MainProcess".to_owned());
    for var in [
        ENV_PROTO,
        ENV_ENTRY,
        ENV_FDS,
        ENV_NAME,
        ENV_PARENT,
        ENV_PARENT_NAME,
    ] {
        std::env::remove_var(var);
    }
    let parsed: Option<Vec<RawFd>> = fd_list.split(',').map(|s| s.parse().ok()).collect();
    let Some(raw) =
        parsed.filter(|v| v.len() >= 2 && v.iter().all(|&fd| fd >= 0 && os::fd::is_open(fd)))
    else {
        eprintln!("shmkit: {ENV_PROTO} is set but {ENV_FDS} is not valid; was this binary started by shmkit?");
        std::process::exit(EXIT_START_FAILED);
    };
    let mut owned: Vec<OwnedFd> = raw
        .iter()
        // SAFETY: the parent made exactly these fds inheritable for this child
        // and listed them; they are open (checked above) and nothing else in
        // this process (at the start of main) owns them.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in &owned {
        // Our own children must not inherit them.
        let _ = os::fd::set_cloexec(fd);
    }
    let handoff_fds = owned.split_off(2);
    let mut status_pipe = File::from(owned.pop().expect("two fds checked above"));
    let mut args_file = File::from(owned.pop().expect("two fds checked above"));
    set_current_name(&name);
    if let Some(pid) = parent_pid {
        set_parent(pid, parent_name);
    }

    let fail = |pipe: &mut File, report: Report| -> ! {
        status::send(pipe, &report);
        std::process::exit(EXIT_START_FAILED)
    };
    if proto.to_str() != Some(PROTOCOL) {
        fail(
            &mut status_pipe,
            Report::VersionMismatch(PROTOCOL.to_owned()),
        );
    }
    let prepare = match lookup(&entry) {
        Lookup::Found(p) => p,
        Lookup::Unknown | Lookup::Duplicate => fail(&mut status_pipe, Report::UnknownEntry(entry)),
    };
    let mut bytes = Vec::new();
    let read = args_file
        .rewind()
        .and_then(|()| (&mut args_file).take(MAX_ARGS).read_to_end(&mut bytes));
    if let Err(e) = read {
        fail(
            &mut status_pipe,
            Report::BadArgs(format!("reading the argument memfd: {e}")),
        );
    }
    drop(args_file);
    handoff::set_inherited(handoff_fds);
    let prepared = match prepare(&bytes) {
        Ok(p) => p,
        Err(reason) => fail(&mut status_pipe, Report::BadArgs(reason)),
    };
    status::send(&mut status_pipe, &Report::Started);
    tracing::info!("child process calling entry {entry}");
    let code = run_guarded(prepared, status_pipe);
    // Python's child bootstrap: the exit steps (terminate daemon children,
    // join the others) run before the exit line.
    super::exit::shutdown();
    tracing::info!("process exiting with exitcode {code}");
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// Runs a child's entry with panic reporting: a panic on this thread sends
/// `Panicked(message)` over `status_pipe` (from the panic hook, so it also
/// works with `panic = "abort"`) and yields exit code 1.
pub(crate) fn run_guarded(f: impl FnOnce() -> i32, status_pipe: File) -> i32 {
    let _ = ENTRY_THREAD.set(std::thread::current().id());
    STATUS_FD.store(status_pipe.as_raw_fd(), StdOrdering::SeqCst);
    install_panic_hook();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    STATUS_FD.store(-1, StdOrdering::SeqCst);
    drop(status_pipe);
    result.unwrap_or(1)
}

/// The message of a panic payload (`&str` or `String`; anything else is
/// `Box<dyn Any>`, as std prints it).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let fd = STATUS_FD.load(StdOrdering::SeqCst);
            if fd >= 0 && ENTRY_THREAD.get() == Some(&std::thread::current().id()) {
                let msg = panic_message(info.payload());
                // SAFETY: `fd` is the status pipe owned by `run_guarded`'s
                // `File`, alive while STATUS_FD is non-negative; the
                // ManuallyDrop keeps this temporary from closing it.
                let mut pipe = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
                status::send(&mut pipe, &Report::Panicked(msg));
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "would exec")]
    fn spawning_without_init_is_refused_not_recursive() {
        // No unit test calls init(): a libtest binary cannot be re-executed
        // as a child, and spawning says so instead of re-running the suite.
        assert!(!is_initialized());
        assert!(matches!(
            Builder::new().spawn_raw("anything", &[]),
            Err(SpawnError::NotInitialized)
        ));
    }
}
