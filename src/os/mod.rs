//! The platform layer: the only module that calls the operating system.
//!
//! Everything above it (segments, locks, queues) goes through these small,
//! documented wrappers: shared memory objects ([`shm`]), futex wait/wake
//! ([`futex`]), monotonic deadlines ([`clock`]), process identity and
//! liveness ([`process`]) and the names in `/dev/shm` with their holders
//! ([`shm_names`]). Linux is the first-class target.

pub mod clock;
pub mod futex;
pub mod process;
pub mod shm;
pub mod shm_names;

pub use clock::Deadline;
pub use process::{current_pid, process_alive};
