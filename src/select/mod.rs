//! Waiting on many things at once: [`WaitSet`] / [`wait()`] (select),
//! [`ReadyFd`] (a file descriptor for epoll, mio or tokio's `AsyncFd`),
//! and the per-process waiter thread behind [`aio`](crate::aio).
//!
//! # What can be waited on
//!
//! Anything [`Selectable`]: SPSC [`Consumer`](crate::queue::Consumer)s,
//! [`MpmcReceiver`](crate::queue::MpmcReceiver)s, typed
//! [`Queue`](crate::Queue)s and [`PodQueue`](crate::queue::PodQueue)s
//! (their receiving side), [`JoinableQueue`](crate::JoinableQueue)s, pipe
//! [`Connection`](crate::queue::Connection)s, [`Event`](crate::Event)s,
//! [`Semaphore`](crate::Semaphore)s, [`Process`](crate::Process) handles
//! (exit) and pool results ([`AsyncResult`](crate::process::AsyncResult),
//! the executor's futures). A member is *ready* when its try-call would
//! not report "empty": a message is waiting ([`Ready::Item`]), or the
//! other side is gone, the queue was closed or the process ended
//! ([`Ready::Closed`]). The caller then takes the message with the normal
//! try-call (`try_recv`, `try_pop`, …): select never consumes anything,
//! so no message is lost to it.
//!
//! # How it parks (the protocol)
//!
//! Every blocking primitive in shmkit parks on a [`Notifier`] (a futex
//! word and a waiter count, in `sync::notifier`).
//! A selector does the same *register → re-check → sleep* on all of its
//! members' notifiers at once, after a short spin (the MPMC queue's
//! doubling backoff of `spin_loop` hints ending in `yield`s, re-checking
//! every member each round: a few microseconds, so that an answer that
//! comes that quickly costs no futex sleep and wake):
//!
//! 1. register as a waiter on every notifier (`prepare_wait`: waiter count
//!    `+1`, `SeqCst` fence, read the word), then, where `membarrier` is
//!    available, issue one process-wide barrier (the waiter's half of the
//!    queues' asymmetric handshake, in which a sender's fast path has no
//!    fence);
//! 2. re-check every member's readiness; if any is ready, deregister and
//!    return them;
//! 3. sleep with `futex_waitv` (Linux 5.16+) on all the words, each with
//!    the value read in step 1, until one is woken or changes, a liveness
//!    slice ends, or the deadline passes; deregister; go to 1.
//!
//! A sender publishes its message, then (fence) looks at the waiter count
//! and, if nonzero, bumps the word and wakes it. By the notifier's Dekker
//! pair, either the sender sees the selector's registration (and its bump
//! makes the `futex_waitv` return, whether the selector already sleeps or
//! not), or the selector's re-check sees the message. So no wake-up is
//! lost, on any of the words. `tests/loom_select.rs` checks this over two
//! and three words in every interleaving.
//!
//! A sender that dies sends no wake-up. As in every blocking receive, the
//! selector therefore wakes after liveness slices (1 ms, doubling to
//! 64 ms, counted from the last check whatever else woke it) and applies
//! the queues' disconnection rule to each member. Sets whose members all
//! announce every change ([`Event`](crate::Event),
//! [`Semaphore`](crate::Semaphore)) sleep straight to the deadline.
//! Processes and pool results have no futex word: alone (processes with
//! pidfds only) the selector sleeps in `poll(2)` on the pidfds; mixed with
//! others they are checked when a slice ends.
//!
//! Notifiers woken with `notify_one` (MPMC queues, semaphores) could hand
//! their one wake-up to a selector instead of a blocked receiver; a
//! selector that returns a member of that kind passes one wake-up on
//! ([`Selectable::after_ready`]), so the blocked receiver re-checks.
//!
//! # Kernel floor
//!
//! `futex_waitv` needs Linux 5.16. On older kernels (`ENOSYS`, detected
//! once) and for sets of more than [`WAITV_MAX`](crate::os::futex::WAITV_MAX)
//! words, the selector sleeps on the *first* word only, for the same
//! liveness slices (1 ms doubling to 64 ms), and re-checks every member
//! after each: still correct (nothing is lost), but a message on another
//! member may wait up to one slice. pidfds need 5.3; without them a
//! process is checked on slices.
//!
//! # Semantics
//!
//! "Ready" is a snapshot: with several receivers on one MPMC queue another
//! may take the message first, and the try-call then says `Empty` (wait
//! again). With one receiver per queue, each message makes its queue ready
//! exactly once until it is taken.

#[cfg(not(loom))]
mod fd;
mod impls;
#[cfg(all(test, not(loom)))]
mod tests;
#[cfg(not(loom))]
pub(crate) mod watcher;

use std::time::Duration;

#[cfg(not(loom))]
pub use fd::{ReadyFd, Watchable};
#[cfg(not(loom))]
pub(crate) use impls::{MpmcWatch, PoolFuture};

use crate::os::{futex, Deadline};
use crate::primitives::{AtomicU32, Backoff, Spin};
use crate::sync::Notifier;

/// Why a member is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ready {
    /// Its try-call would deliver: a message is waiting, an event is set,
    /// a permit is free, a result has arrived.
    Item,
    /// Its try-call would report the end: the other side closed or is
    /// gone (and everything sent was taken), or the process ended.
    Closed,
}

/// One ready member of a [`WaitSet`]: its index (the order of
/// [`WaitSet::add`]) and why it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Selected {
    /// Which member (its [`WaitSet::add`] token, or its index in the slice
    /// given to [`wait()`]).
    pub index: usize,
    /// Why it is ready.
    pub ready: Ready,
}

/// Something a [`WaitSet`] can wait on. Implemented for the queue
/// receivers, pipes, events, semaphores, processes and pool results (see
/// the [module docs](self)); implement it for your own type over a
/// shmkit [`Notifier`] to mix it in.
///
/// ```
/// use shmkit::select::{Ready, Selectable};
/// use shmkit::sync::Notifier;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// /// A flag in process memory, announced through a notifier.
/// struct Flag {
///     set: AtomicBool,
///     notifier: Notifier,
/// }
///
/// impl Selectable for Flag {
///     fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
///         out.push(&self.notifier);
///     }
///     fn readiness(&self, _liveness: bool) -> Option<Ready> {
///         self.set.load(Ordering::Acquire).then_some(Ready::Item)
///     }
///     fn notifies_every_change(&self) -> bool {
///         true
///     }
/// }
///
/// let flag = Flag { set: AtomicBool::new(false), notifier: Notifier::new() };
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         flag.set.store(true, Ordering::Release);
///         flag.notifier.notify_all();
///     });
///     assert_eq!(shmkit::wait(&[&flag], None), vec![0]);
/// });
/// ```
pub trait Selectable {
    /// Pushes the notifiers on which every change that can make this
    /// member ready is announced (none for a member that is only checked
    /// when a slice ends, e.g. a process without a pidfd).
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>);

    /// Whether the member is ready now. Called while registered on its
    /// notifiers, so it must only *look* (never consume). With `liveness`
    /// (a slice ended) it may also run the syscalls that notice a dead
    /// peer.
    fn readiness(&self, liveness: bool) -> Option<Ready>;

    /// A file descriptor that turns readable when the member is ready
    /// (a process's pidfd), if any.
    fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// True if every change that makes the member ready is announced on
    /// its notifiers, even a peer's death (so no liveness slices are
    /// needed for it).
    fn notifies_every_change(&self) -> bool {
        false
    }

    /// Called once the member was reported ready. A member whose notifier
    /// is woken with `notify_one` passes one wake-up on here, in case the
    /// selector consumed the one meant for a blocked receiver.
    fn after_ready(&self) {}
}

impl<S: Selectable + ?Sized> Selectable for &S {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        (**self).notifiers(out)
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        (**self).readiness(liveness)
    }
    fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (**self).pidfd()
    }
    fn notifies_every_change(&self) -> bool {
        (**self).notifies_every_change()
    }
    fn after_ready(&self) {
        (**self).after_ready()
    }
}

impl<S: Selectable + ?Sized> Selectable for std::sync::Arc<S> {
    fn notifiers<'a>(&'a self, out: &mut Vec<&'a Notifier>) {
        (**self).notifiers(out)
    }
    fn readiness(&self, liveness: bool) -> Option<Ready> {
        (**self).readiness(liveness)
    }
    fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        (**self).pidfd()
    }
    fn notifies_every_change(&self) -> bool {
        (**self).notifies_every_change()
    }
    fn after_ready(&self) {
        (**self).after_ready()
    }
}

/// A set of things to wait on together, like crossbeam's `Select` or
/// Python's `multiprocessing.connection.wait`, for objects in shared
/// memory. Members are borrowed; [`add`](Self::add) returns the index the
/// results use.
///
/// ```
/// use shmkit::select::{Ready, Selected, WaitSet};
/// use shmkit::Queue;
/// use std::time::Duration;
///
/// let a = Queue::<u32>::anonymous(16, 4)?;
/// let b = Queue::<String>::anonymous(64, 4)?;
/// b.send("hi".to_string()).unwrap();
///
/// let mut set = WaitSet::new();
/// let ia = set.add(&a);
/// let ib = set.add(&b);
/// let ready = set.wait_timeout(Duration::from_secs(5));
/// assert_eq!(ready, vec![Selected { index: ib, ready: Ready::Item }]);
/// assert_eq!(b.try_recv().unwrap(), "hi"); // take it with the try-call
/// assert!(set.poll().is_empty() && ia == 0);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Default)]
pub struct WaitSet<'a> {
    members: Vec<&'a dyn Selectable>,
}

impl std::fmt::Debug for WaitSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("members", &self.members.len())
            .finish()
    }
}

impl<'a> WaitSet<'a> {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            members: Vec::new(),
        }
    }

    /// Adds a member; returns its index in the results.
    pub fn add(&mut self, member: &'a dyn Selectable) -> usize {
        self.members.push(member);
        self.members.len() - 1
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members ready now (no waiting, no liveness syscalls).
    pub fn poll(&self) -> Vec<Selected> {
        scan(&self.members, false)
    }

    /// Waits until at least one member is ready; returns every member
    /// ready at that moment. An empty set returns at once.
    pub fn wait(&self) -> Vec<Selected> {
        self.wait_deadline(None)
    }

    /// [`wait`](Self::wait) for at most `timeout`; empty if none became
    /// ready in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Vec<Selected> {
        self.wait_deadline(Some(Deadline::after(timeout)))
    }

    /// [`wait`](Self::wait) until `deadline` (`None` = no deadline).
    pub fn wait_deadline(&self, deadline: Option<Deadline>) -> Vec<Selected> {
        select_loop(&self.members, deadline)
    }
}

/// Python's `multiprocessing.connection.wait(objects, timeout)`: waits
/// until at least one of `objects` is ready (or `timeout` passes, `None`
/// = forever) and returns the indices of those ready. Empty on timeout,
/// and at once for an empty slice.
///
/// ```
/// use shmkit::queue::Pipe;
/// use shmkit::Event;
/// use std::time::Duration;
///
/// let (mut a, b) = Pipe::in_process(256)?;
/// let ev = Event::new();
/// assert!(shmkit::wait(&[&b, &ev], Some(Duration::from_millis(1))).is_empty());
/// a.send(b"x").unwrap();
/// ev.set();
/// assert_eq!(shmkit::wait(&[&b, &ev], None), vec![0, 1]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn wait(objects: &[&dyn Selectable], timeout: Option<Duration>) -> Vec<usize> {
    let deadline = timeout.map(Deadline::after);
    select_loop(objects, deadline)
        .into_iter()
        .map(|s| s.index)
        .collect()
}

/// [`wait()`] with an absolute deadline (`None` = forever), returning why
/// each member is ready. For members whose try-calls take `&mut` (SPSC
/// consumers, pipe [`Connection`](crate::queue::Connection)s) call this
/// (or [`wait()`]) each round instead of keeping a [`WaitSet`], so the
/// borrow ends before the try-call.
///
/// ```
/// use shmkit::queue::SpscRing;
/// use shmkit::select::{select, Ready, Selected};
///
/// let ring = SpscRing::in_process(256)?;
/// let (mut tx, mut rx) = (ring.producer()?, ring.consumer()?);
/// tx.try_push(b"a").unwrap();
/// assert_eq!(select(&[&rx], None), vec![Selected { index: 0, ready: Ready::Item }]);
/// let mut buf = Vec::new();
/// rx.try_pop(&mut buf).unwrap();
/// drop(tx); // the producer is gone: end of stream
/// assert_eq!(select(&[&rx], None)[0].ready, Ready::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn select(objects: &[&dyn Selectable], deadline: Option<Deadline>) -> Vec<Selected> {
    select_loop(objects, deadline)
}

/// Every member ready now.
fn scan(members: &[&dyn Selectable], liveness: bool) -> Vec<Selected> {
    members
        .iter()
        .enumerate()
        .filter_map(|(index, m)| m.readiness(liveness).map(|ready| Selected { index, ready }))
        .collect()
}

/// The notifiers of `members`, each once.
pub(crate) fn notifiers_of<'a>(
    members: impl Iterator<Item = &'a dyn Selectable>,
) -> Vec<&'a Notifier> {
    let mut out = Vec::new();
    for m in members {
        m.notifiers(&mut out);
    }
    out.sort_by_key(|n| *n as *const Notifier as usize);
    out.dedup_by_key(|n| *n as *const Notifier as usize);
    out
}

/// A registration on several notifiers at once; dropping it deregisters
/// from all of them (every exit path, a panicking readiness check
/// included).
pub(crate) struct Registered<'a> {
    notifiers: &'a [&'a Notifier],
    pub(crate) keys: Vec<(&'a AtomicU32, u32)>,
}

impl<'a> Registered<'a> {
    /// Registers on each notifier (`prepare_wait`).
    pub(crate) fn new(notifiers: &'a [&'a Notifier]) -> Self {
        let mut keys = Vec::with_capacity(notifiers.len() + 1);
        for n in notifiers {
            keys.push((n.word(), n.prepare_wait()));
        }
        // The queues publish with a release store and a relaxed look at
        // the waiter count when the process-wide barrier is available
        // (the asymmetric handshake of `sync::notifier`): a waiter must
        // then issue the barrier between registering and re-checking, or
        // a publish racing the re-check could miss both this registration
        // and the selector miss the message. One barrier covers every
        // notifier registered above.
        if crate::os::membarrier::supported() {
            let _ = crate::os::membarrier::heavy_barrier();
        }
        Registered { notifiers, keys }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        for n in self.notifiers {
            n.cancel_wait();
        }
    }
}

/// Liveness slices: 1 ms doubling to 64 ms (the queues' rule).
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(1);
/// The longest liveness slice.
pub(crate) const MAX_SLICE: Duration = Duration::from_millis(64);

/// Sleeps on `keys` until one is woken or changes, or `until`. Returns
/// false if `until` passed (or the fallback slice ran out) without a
/// wake-up. Where `futex_waitv` is unavailable (or for more than 128
/// words) it sleeps on the first word only, for at most `*fallback`
/// (doubled, up to [`MAX_SLICE`], after each slice that runs out; back to
/// [`FIRST_SLICE`] after a wake-up), and the caller re-checks everything.
pub(crate) fn sleep_on(
    keys: &[(&AtomicU32, u32)],
    until: Option<Deadline>,
    fallback: &mut Duration,
) -> bool {
    let Some(&(first, key)) = keys.first() else {
        match until {
            Some(d) => std::thread::sleep(d.remaining()),
            None => return true,
        }
        return false;
    };
    match futex::wait_any(keys, until) {
        Some(futex::WaitOutcome::TimedOut) => false,
        Some(_) => true,
        None => {
            let slice = Deadline::earliest(until, Deadline::after(*fallback));
            let woken = futex::wait(first, key, Some(slice)) != futex::WaitOutcome::TimedOut;
            *fallback = if woken {
                FIRST_SLICE
            } else {
                (*fallback * 2).min(MAX_SLICE)
            };
            woken
        }
    }
}

/// Sleeps in `poll(2)` on `fds` until one is readable or `until`.
#[cfg(not(loom))]
fn poll_fds(fds: &[std::os::fd::BorrowedFd<'_>], until: Option<Deadline>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let timeout = until.map(|d| {
        let r = d.remaining();
        Timespec {
            tv_sec: r.as_secs() as _,
            tv_nsec: r.subsec_nanos() as _,
        }
    });
    // EINTR and errors read as a wake-up: the caller re-checks.
    let _ = poll(&mut pfds, timeout.as_ref());
}

/// The select loop behind [`WaitSet`], [`wait()`] and [`select()`].
fn select_loop(members: &[&dyn Selectable], deadline: Option<Deadline>) -> Vec<Selected> {
    let ready = scan(members, false);
    if !ready.is_empty() || members.is_empty() {
        return finish(members, ready);
    }
    // Spin briefly before registering anywhere, as the MPMC queue's own
    // blocking calls do: a peer that answers within a few microseconds
    // is then seen without a futex sleep and the ~20 µs cross-CPU wake
    // that ends it (the backoff ends in two `yield`s, for a peer that
    // shares this CPU).
    let mut backoff = Backoff::new();
    while backoff.spin() {
        let ready = scan(members, false);
        if !ready.is_empty() {
            return finish(members, ready);
        }
        if deadline.is_some_and(|d| d.has_passed()) {
            return Vec::new();
        }
    }
    let notifiers = notifiers_of(members.iter().copied());
    let sliced = !members.iter().all(|m| m.notifies_every_change());
    #[cfg(not(loom))]
    let fds: Vec<_> = members.iter().filter_map(|m| m.pidfd()).collect();
    #[cfg(not(loom))]
    let only_fds = notifiers.is_empty() && fds.len() == members.len();
    let mut slice = FIRST_SLICE;
    let mut fallback = FIRST_SLICE;
    let mut next_check = Deadline::after(slice);
    let mut liveness = false;
    loop {
        let reg = Registered::new(&notifiers);
        let ready = scan(members, liveness);
        if !ready.is_empty() {
            drop(reg);
            return finish(members, ready);
        }
        if liveness {
            slice = (slice * 2).min(MAX_SLICE);
            next_check = Deadline::after(slice);
        }
        if deadline.is_some_and(|d| d.has_passed()) {
            return Vec::new();
        }
        #[cfg(not(loom))]
        if only_fds {
            drop(reg);
            poll_fds(&fds, deadline);
            liveness = true;
            continue;
        }
        let until = if sliced {
            Some(Deadline::earliest(deadline, next_check))
        } else {
            deadline
        };
        sleep_on(&reg.keys, until, &mut fallback);
        drop(reg);
        liveness = sliced && next_check.has_passed();
    }
}

/// Lets each ready member pass a wake-up on, then returns `ready`.
fn finish(members: &[&dyn Selectable], ready: Vec<Selected>) -> Vec<Selected> {
    for s in &ready {
        members[s.index].after_ready();
    }
    ready
}
