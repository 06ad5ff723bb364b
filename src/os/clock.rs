//! Absolute `CLOCK_MONOTONIC` deadlines.
//!
//! Every blocking call in shmkit takes an absolute deadline rather than a
//! relative timeout, so retrying after `EINTR` or a spurious wake-up never
//! extends the total wait.

use std::time::Duration;

/// A point in time on the `CLOCK_MONOTONIC` clock, in nanoseconds.
///
/// ```
/// use shmkit::os::Deadline;
/// use std::time::Duration;
///
/// let d = Deadline::after(Duration::from_millis(10));
/// assert!(!d.has_passed() || d.remaining() == Duration::ZERO);
/// assert!(Deadline::after(Duration::ZERO).has_passed());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    nanos: u64,
}

impl Deadline {
    /// The current monotonic time.
    pub fn now() -> Self {
        Self {
            nanos: monotonic_nanos(),
        }
    }

    /// `timeout` from now (saturating: a huge timeout means "practically
    /// never").
    pub fn after(timeout: Duration) -> Self {
        let add = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Self {
            nanos: monotonic_nanos().saturating_add(add),
        }
    }

    /// Whether the deadline is at or before the current time.
    pub fn has_passed(&self) -> bool {
        monotonic_nanos() >= self.nanos
    }

    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(monotonic_nanos()))
    }

    /// The earlier of two deadlines; `None` means "no deadline".
    pub fn earliest(a: Option<Deadline>, b: Deadline) -> Deadline {
        match a {
            Some(a) if a < b => a,
            _ => b,
        }
    }

    /// Nanoseconds since the monotonic clock's epoch (boot, on Linux).
    pub fn as_nanos(&self) -> u64 {
        self.nanos
    }

    pub(crate) fn to_timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: (self.nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (self.nanos % 1_000_000_000) as libc::c_long,
        }
    }
}

#[cfg(not(loom))]
fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always
    // available on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Under loom there is no time: deadlines never pass, and timed waits behave
/// like untimed ones (models only use untimed operations).
#[cfg(loom)]
fn monotonic_nanos() -> u64 {
    0
}
