//! The platform layer: the only module that calls the operating system.
//!
//! Everything above it (segments, locks, queues) goes through these small,
//! documented wrappers: shared memory objects ([`shm`]), futex wait/wake
//! ([`futex`]), monotonic deadlines ([`clock`]) and process identity and
//! liveness ([`process`]). Linux is the first-class target.

pub mod clock;
pub mod futex;
pub mod process;
pub mod shm;

pub use clock::Deadline;
pub use process::{current_pid, process_alive};
