//! The platform layer: the only module that calls the operating system.
//!
//! Everything above it (segments, locks, queues) goes through these small,
//! documented wrappers: shared memory objects ([`shm`]), futex wait/wake
//! ([`futex`]), monotonic deadlines ([`clock`]), process identity and
//! liveness ([`process`]) and the names in `/dev/shm` with their holders
//! ([`shm_names`]). Linux is the first-class target.
//!
//! Crate-internal wrappers serve the process layer: descriptors (`fd`),
//! forking and the die-with-parent set-up (`fork`), waiting for and
//! signalling children (`child`), signal names (`signal`), exit hooks
//! (`exit`), the usable CPU count (`cpu`), and the asymmetric barrier
//! the queues' wake-up handshake uses (`membarrier`).

pub(crate) mod child;
pub(crate) mod cpu;
pub(crate) mod exit;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod membarrier;
pub(crate) mod signal;

/// The errno type of the `rustix` calls behind these wrappers (for
/// conversions into shmkit's error types).
pub(crate) use rustix::io::Errno;

pub mod clock;
pub mod futex;
pub mod process;
pub mod shm;
pub mod shm_names;

pub use clock::Deadline;
pub use process::{current_pid, process_alive};
