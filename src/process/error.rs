//! [`SpawnError`]: why starting a child process failed.

use std::io;

use super::handle::ExitStatus;

/// Why [`Builder::spawn`](super::Builder::spawn) or
/// [`fork`](super::fork()) could not start a child.
///
/// Every failure the child can detect before running its entry (unknown
/// entry, undecodable arguments, another shmkit version) is reported to the
/// parent over the status pipe and surfaces here, in the parent, instead of
/// as a silent child crash.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `shmkit::process::init()` was never called in this process. Spawning
    /// re-executes the current binary; without `init()` at the top of its
    /// `main` the child would run the parent's `main` again.
    #[error(
        "shmkit::process::init() was not called: call it first thing in main() before spawning"
    )]
    NotInitialized,
    /// The child binary has no entry registered under this name.
    #[error("unknown entry {0:?}: register it with shmkit::entry! in the binary that spawns")]
    UnknownEntry(String),
    /// The child could not decode the arguments (type mismatch between the
    /// parent's and the child's view of the entry, or a missing inherited
    /// descriptor).
    #[error("entry {entry:?} could not decode its arguments: {reason}")]
    BadArgs {
        /// The entry's name.
        entry: String,
        /// The decoder's message.
        reason: String,
    },
    /// Parent and child were built with different shmkit versions or spawn
    /// protocols.
    #[error("shmkit version mismatch: parent speaks {parent:?}, child speaks {child:?}; rebuild both with one shmkit")]
    VersionMismatch {
        /// The parent's protocol tag.
        parent: String,
        /// The child's protocol tag.
        child: String,
    },
    /// The child exited before completing the start handshake (for example
    /// it crashed in a static constructor, or its `main` does not call
    /// `init()` first).
    #[error("child exited during start-up with {0}; does its main() call shmkit::process::init() first?")]
    DiedDuringStartup(ExitStatus),
    /// The child did not complete the start handshake within the builder's
    /// start timeout; it was killed.
    #[error("child did not report start-up within {0:?}; it was killed")]
    StartTimeout(std::time::Duration),
    /// [`fork`](super::fork()) was called while other threads are alive.
    #[error("fork refused: this process has {0} threads; fork only from a single-threaded process (or spawn instead)")]
    MultiThreaded(usize),
    /// [`fork`](super::fork()) was called while this process holds shmkit
    /// guards or grants; the child would get copies of them.
    #[error("fork refused: this process holds {0} shmkit lock guard(s) or grant(s); drop them before forking (the child would share the lock's data unguarded)")]
    GuardHeld(usize),
    /// The arguments could not be serialised (for example an anonymous
    /// handle serialised outside of a spawn).
    #[error("could not serialise the entry's arguments: {0}")]
    Serialize(String),
    /// The child sent a malformed report over the status pipe.
    #[error("malformed start-up report from child: {0}")]
    Protocol(&'static str),
    /// The program is ending: the exit hook has started terminating and
    /// joining children, and no new child may start.
    #[error(
        "this process is exiting (its exit hook is joining its children); no new child can start"
    )]
    Exiting,
    /// An OS error (pipe, memfd, exec, pidfd).
    #[error("I/O error while spawning: {0}")]
    Io(#[from] io::Error),
}

impl From<crate::os::Errno> for SpawnError {
    fn from(e: crate::os::Errno) -> Self {
        SpawnError::Io(e.into())
    }
}
