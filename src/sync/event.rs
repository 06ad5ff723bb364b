//! [`Event`]: a process-shared flag that processes can wait on (Python's
//! `multiprocessing.Event`).

use std::time::Duration;

use super::notifier::Notifier;
use crate::os::Deadline;
use crate::primitives::{AtomicU32, Ordering};
use crate::segment::{ObjectKind, ShmObject};

/// A settable, clearable flag with blocking waits.
///
/// Layout: `#[repr(C)]` `{ flag: u32 (0 clear, nonzero set), pad: u32,
/// notifier: Notifier }`, 16 bytes; all-zero is a clear event.
///
/// ```
/// use shmkit::Event;
/// use std::time::Duration;
///
/// let e = Event::new();
/// assert!(!e.wait_timeout(Duration::from_millis(1)));
/// std::thread::scope(|s| {
///     s.spawn(|| e.set());
///     e.wait();
/// });
/// assert!(e.is_set());
/// e.clear();
/// assert!(!e.is_set());
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct Event {
    flag: AtomicU32,
    _pad: AtomicU32,
    notifier: Notifier,
}

// SAFETY: atomics only; any bit pattern is valid (nonzero flag = set).
unsafe impl ShmObject for Event {
    const KIND: ObjectKind = ObjectKind::EVENT;
    type Init = ();
    unsafe fn init_in_place(ptr: *mut Self, _: ()) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(Event::new()) }
    }
}

impl Event {
    /// A clear event.
    pub fn new() -> Self {
        Self {
            flag: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            notifier: Notifier::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.flag.store(1, Ordering::Release);
        self.notifier.notify_all();
    }

    /// The notifier waiters sleep on (select's hook).
    pub(crate) fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire) != 0
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        let _ = self
            .notifier
            .wait_until(None, || self.is_set().then_some(()));
    }

    /// Blocks for at most `timeout`; returns whether the flag is set
    /// (Python's `Event.wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Deadline::after(timeout))
    }

    /// Blocks until the flag is set or `deadline` passes.
    pub fn wait_deadline(&self, deadline: Deadline) -> bool {
        self.notifier
            .wait_until(Some(deadline), || self.is_set().then_some(()))
            .is_some()
    }
}
