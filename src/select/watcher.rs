//! The per-process waiter thread behind [`ReadyFd`](super::ReadyFd) and
//! the futures of [`aio`](crate::aio).
//!
//! # Design and cost
//!
//! One thread per process, started on the first registration (and again
//! in a forked child, which inherits no threads), runs the select loop of
//! the [module docs](super) over every *armed* entry: it registers on all
//! their notifiers, re-checks every entry, and sleeps in `futex_waitv` on
//! their words plus one process-local control word that a new
//! registration bumps. An entry whose probe turns ready *fires*: a
//! future's entry wakes its `Waker` and is done; a [`ReadyFd`](super::ReadyFd)'s
//! entry writes its eventfd and stays disarmed until the fd is re-armed.
//!
//! The send path pays nothing for this unless an entry is armed on its
//! notifier: a sender always reads the waiter count, and only a nonzero
//! count (someone, this thread included, is waiting) costs the
//! `futex_wake` syscall. A waiting future or fd costs one `futex_waitv`
//! wake-up of this thread plus a waker call (or an eventfd write) per
//! readiness change, and liveness slices (1 ms doubling to 64 ms) while a
//! queue entry is armed, as for a blocking receive. Entries with a `due`
//! time (process exit and pool results, which have no futex word) fire
//! when it passes; their futures re-arm with a doubling interval.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, OnceLock};
use std::task::Waker;

use super::{notifiers_of, sleep_on, Registered, Selectable, Selected, FIRST_SLICE, MAX_SLICE};
use crate::os::{current_pid, futex, Deadline};
use crate::primitives::{AtomicU32, Ordering};

/// An owned readiness probe.
pub(crate) type Probe = Box<dyn Selectable + Send + Sync>;

/// What an entry does when it fires.
enum Action {
    /// Wake a task (once).
    Wake(StdMutex<Option<Waker>>),
    /// Make an eventfd readable.
    Fd(OwnedFd),
}

/// One registration with the waiter thread.
pub(crate) struct Entry {
    probes: Vec<Probe>,
    /// Fire at this time even without readiness (poll-only awaitables).
    due: Option<Deadline>,
    action: Action,
    /// Watched by the thread (cleared when it fires).
    armed: std::sync::atomic::AtomicBool,
    /// Withdrawn by its owner; the thread forgets it.
    cancelled: std::sync::atomic::AtomicBool,
    /// The probes found ready when it last fired.
    fired: StdMutex<Vec<Selected>>,
}

impl Entry {
    /// A fresh, armed entry.
    fn new(probes: Vec<Probe>, due: Option<Deadline>, action: Action) -> Arc<Self> {
        Arc::new(Entry {
            probes,
            due,
            action,
            armed: true.into(),
            cancelled: false.into(),
            fired: StdMutex::new(Vec::new()),
        })
    }

    fn live(&self) -> bool {
        self.armed.load(std::sync::atomic::Ordering::Acquire)
            && !self.cancelled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Checks the probes; fires if one is ready (or the due time passed).
    fn check(&self, liveness: bool) -> bool {
        if !self.live() {
            return false;
        }
        let ready: Vec<Selected> = self
            .probes
            .iter()
            .enumerate()
            .filter_map(|(index, p)| p.readiness(liveness).map(|ready| Selected { index, ready }))
            .collect();
        if ready.is_empty() && !self.due.is_some_and(|d| d.has_passed()) {
            return false;
        }
        for s in &ready {
            self.probes[s.index].after_ready();
        }
        *lock(&self.fired) = ready;
        self.armed
            .store(false, std::sync::atomic::Ordering::Release);
        match &self.action {
            Action::Wake(w) => {
                // Taken out first: a waker that polls at once may update
                // the slot.
                let waker = lock(w).take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Action::Fd(fd) => {
                // A full counter (EAGAIN) is readable already.
                let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
            }
        }
        true
    }

    /// The probes, as the select helpers take them.
    fn members(&self) -> impl Iterator<Item = &dyn Selectable> {
        self.probes.iter().map(|p| &**p as &dyn Selectable)
    }
}

/// The process's registry and the thread's control word.
struct Hub {
    entries: StdMutex<Vec<Arc<Entry>>>,
    /// Bumped (and woken) on every registration or re-arm.
    ctl: AtomicU32,
    /// The process whose thread serves `entries` (0: none yet).
    pid: std::sync::atomic::AtomicU32,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        entries: StdMutex::new(Vec::new()),
        ctl: AtomicU32::new(0),
        pid: 0.into(),
    })
}

/// A std mutex guard, poison ignored (the data stays consistent: every
/// critical section is a push, a retain or a take).
fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `entry` and makes the thread look at it.
fn add(entry: Arc<Entry>) {
    let hub = hub();
    let mut list = lock(&hub.entries);
    let me = current_pid();
    if hub.pid.load(std::sync::atomic::Ordering::Relaxed) != me {
        // First use in this process (or a forked child, which inherited
        // its parent's entries but not its thread).
        list.clear();
        hub.pid.store(me, std::sync::atomic::Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("shmkit-waiter".into())
            .spawn(run);
        if let Err(e) = spawned {
            tracing::error!("shmkit: cannot start the waiter thread: {e}");
        }
    }
    list.push(entry);
    drop(list);
    kick();
}

/// Wakes the thread so it rebuilds its set.
fn kick() {
    let hub = hub();
    hub.ctl.fetch_add(1, Ordering::SeqCst);
    futex::wake(&hub.ctl, 1);
}

/// The thread's loop (see the module docs).
fn run() {
    let hub = hub();
    let mut slice = FIRST_SLICE;
    let mut fallback = FIRST_SLICE;
    let mut next_check = Deadline::after(slice);
    let mut liveness = false;
    loop {
        let ctl_key = hub.ctl.load(Ordering::SeqCst);
        let snapshot: Vec<Arc<Entry>> = {
            let mut list = lock(&hub.entries);
            list.retain(|e| !e.cancelled.load(std::sync::atomic::Ordering::Acquire));
            list.iter().filter(|e| e.live()).cloned().collect()
        };
        if snapshot.is_empty() {
            futex::wait(&hub.ctl, ctl_key, None);
            continue;
        }
        let notifiers = notifiers_of(snapshot.iter().flat_map(|e| e.members()));
        let reg = Registered::new(&notifiers);
        let mut fired = false;
        for e in &snapshot {
            fired |= e.check(liveness);
        }
        if liveness {
            slice = (slice * 2).min(MAX_SLICE);
            next_check = Deadline::after(slice);
        }
        if fired {
            drop(reg);
            liveness = false;
            continue;
        }
        let sliced = snapshot
            .iter()
            .any(|e| e.members().any(|m| !m.notifies_every_change()));
        let mut until = sliced.then_some(next_check);
        for d in snapshot.iter().filter_map(|e| e.due) {
            until = Some(Deadline::earliest(until, d));
        }
        let mut keys = reg.keys.clone();
        keys.push((&hub.ctl, ctl_key));
        sleep_on(&keys, until, &mut fallback);
        drop(reg);
        drop(snapshot);
        liveness = sliced && next_check.has_passed();
    }
}

/// A future's registration: wakes its task once a probe is ready (or
/// `due` passes). Dropping it withdraws it.
pub(crate) struct WakerRegistration {
    entry: Arc<Entry>,
}

impl WakerRegistration {
    /// Registers `probe` (or none: a pure timer) to wake `waker`.
    pub(crate) fn new(probe: Option<Probe>, due: Option<Deadline>, waker: &Waker) -> Self {
        let entry = Entry::new(
            probe.into_iter().collect(),
            due,
            Action::Wake(StdMutex::new(Some(waker.clone()))),
        );
        add(entry.clone());
        WakerRegistration { entry }
    }

    /// Whether it is still waiting (it has not fired).
    pub(crate) fn is_pending(&self) -> bool {
        self.entry.live()
    }

    /// Wakes `waker` instead of the one registered before.
    pub(crate) fn update(&self, waker: &Waker) {
        if let Action::Wake(w) = &self.entry.action {
            let mut slot = lock(w);
            if !slot.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
    }
}

impl Drop for WakerRegistration {
    fn drop(&mut self) {
        withdraw(&self.entry);
    }
}

/// Marks `entry` cancelled; wakes the thread if it may be sleeping on it
/// (so it deregisters from the entry's notifiers promptly).
fn withdraw(entry: &Entry) {
    let was_live = entry.live();
    entry
        .cancelled
        .store(true, std::sync::atomic::Ordering::Release);
    if was_live {
        kick();
    }
}

/// A [`ReadyFd`](super::ReadyFd)'s registration: an eventfd written when
/// any probe turns ready.
pub(crate) struct FdRegistration {
    entry: Arc<Entry>,
}

impl FdRegistration {
    /// Registers `probes` to make a new eventfd readable.
    pub(crate) fn new(probes: Vec<Probe>) -> std::io::Result<Self> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let entry = Entry::new(probes, None, Action::Fd(fd));
        add(entry.clone());
        Ok(FdRegistration { entry })
    }

    /// The eventfd.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.entry.action {
            Action::Fd(fd) => fd.as_fd(),
            // Unreachable: an FdRegistration is built with an fd.
            Action::Wake(_) => unreachable!("fd registration without an fd"),
        }
    }

    /// Drains the eventfd and arms the entry again; the thread re-checks
    /// every probe before it sleeps.
    pub(crate) fn rearm(&self) {
        let mut buf = [0u8; 8];
        // EAGAIN: nothing to drain.
        let _ = rustix::io::read(self.fd(), &mut buf);
        lock(&self.entry.fired).clear();
        self.entry
            .armed
            .store(true, std::sync::atomic::Ordering::Release);
        kick();
    }

    /// What the thread found ready when the fd last fired, and what is
    /// ready now (look only).
    pub(crate) fn ready(&self) -> Vec<Selected> {
        let mut out = lock(&self.entry.fired).clone();
        for (index, p) in self.entry.probes.iter().enumerate() {
            if out.iter().any(|s| s.index == index) {
                continue;
            }
            if let Some(ready) = p.readiness(false) {
                out.push(Selected { index, ready });
            }
        }
        out.sort_by_key(|s| s.index);
        out
    }
}

impl Drop for FdRegistration {
    fn drop(&mut self) {
        withdraw(&self.entry);
    }
}
