//! [`Unstarted`]: a process object before `start()` (Python's
//! `p = Process(target=f, args=(...))`).

use std::fmt;
use std::os::fd::OwnedFd;

use super::error::SpawnError;
use super::handle::Process;
use super::spawn::Builder;

/// A configured child process that has not been started yet: Python's
/// `Process` object between construction and `start()`.
///
/// It already has its name (the default `Process-N` or `TypeName-N` takes
/// its number when the object is made, as in Python), its parent (this
/// process) and its encoded arguments; it has no pid and no exit code, and
/// it is not alive. [`start`](Unstarted::start) turns it into a running
/// [`Process`]. Dropping it starts nothing.
///
/// Make one with [`Process::with_target`], [`Builder::target`],
/// [`Run::into_process`](super::Run::into_process) or
/// [`Builder::runnable`].
///
/// ```no_run
/// use shmkit::process::Process;
///
/// fn slow_worker(_: ()) {
///     std::thread::sleep(std::time::Duration::from_secs(30));
/// }
/// shmkit::entry! { static SLOW_WORKER: Entry<()> = slow_worker; }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     shmkit::process::init();
///     let p = Process::with_target(&SLOW_WORKER, &())?;
///     let me = std::process::id();
///     assert_eq!(p.to_string(), format!("<Process name='Process-1' parent={me} initial>"));
///     assert!(!p.is_alive() && p.pid().is_none() && p.exitcode().is_none());
///     let p = p.start()?;
///     assert!(p.is_alive());
///     p.terminate()?;
///     assert_eq!(p.join()?.exitcode(), -15);
///     Ok(())
/// }
/// ```
pub struct Unstarted {
    pub(crate) builder: Builder,
    pub(crate) name: String,
    pub(crate) class: String,
    pub(crate) parent: u32,
    pub(crate) entry: &'static str,
    pub(crate) args: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl fmt::Debug for Unstarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unstarted")
            .field("name", &self.name)
            .field("class", &self.class)
            .field("entry", &self.entry)
            .field("daemon", &self.builder.is_daemon())
            .finish_non_exhaustive()
    }
}

/// Python-like `repr`: `<Process name='Process-1' parent=4200 initial>`.
impl fmt::Display for Unstarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<{} name='{}' parent={} initial",
            self.class, self.name, self.parent
        )?;
        if self.builder.is_daemon() {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

impl Unstarted {
    /// The name the child will have.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the child before it starts (Python's `p.name = ...`).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the child will be a daemon.
    pub fn is_daemon(&self) -> bool {
        self.builder.is_daemon()
    }

    /// Sets the daemon flag before the child starts (Python's
    /// `p.daemon = True`); see [`Builder::daemon`].
    pub fn set_daemon(&mut self, daemon: bool) {
        self.builder = self.builder.clone().daemon(daemon);
    }

    /// The entry the child will run.
    pub fn entry(&self) -> &'static str {
        self.entry
    }

    /// The pid of this process, which will be the child's parent.
    pub fn parent_pid(&self) -> u32 {
        self.parent
    }

    /// Always `None`: the process has not started.
    pub fn pid(&self) -> Option<u32> {
        None
    }

    /// Always `false`: the process has not started.
    pub fn is_alive(&self) -> bool {
        false
    }

    /// Always `None`: the process has not started.
    pub fn exitcode(&self) -> Option<i32> {
        None
    }

    /// Starts the child (Python's `start()`) and waits for its start-up
    /// handshake, exactly as [`Builder::spawn`] does.
    pub fn start(self) -> Result<Process, SpawnError> {
        self.builder
            .spawn_inner(self.name, self.class, self.entry, &self.args, self.fds)
    }
}
