//! Cross-process tests of the pid-namespace guard and of pid reuse
//! (issue 10, items 5 and 6): children in new pid namespaces (a user
//! namespace plus a pid namespace, made with `unshare(2)` in a forked child
//! and entered by forking again), real segments, real locks.
//!
//! Where the machine does not let an unprivileged process create user and
//! pid namespaces, each namespace case prints `SKIP: <reason>` and does
//! nothing else.
//!
//! `cargo test --release --test xproc_ns [filter]`

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{fork, unique_name, Child, Exit};
use shmkit::os::process::{current_pid_namespace, process_start_time};
use shmkit::queue::MpmcQueue;
use shmkit::segment::{pid_scope, OpenOptions, PidScope};
use shmkit::sync::RLock;
use shmkit::{AttachError, Mutex, ShmBox, ShmValue, TryLockError};

/// Hang watchdog for polling loops (never a timing assertion).
const POLL_LIMIT: Duration = Duration::from_secs(60);

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    common::wait_until(POLL_LIMIT, what, cond);
}

/// Exit code of the in-between child when namespaces cannot be made.
const NO_NAMESPACES: i32 = 77;

/// Runs `f` as pid 1 of a new pid namespace (inside a new user namespace
/// that maps this uid and gid to themselves). The returned child is the
/// process in between, which exits with `f`'s code ([`NO_NAMESPACES`] if
/// the namespaces could not be made). Only call with no other threads.
fn in_new_pid_namespace(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    fork(move || {
        // SAFETY: this forked child is single-threaded (the test binary is
        // harness = false), as CLONE_NEWUSER requires.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) } != 0 {
            return NO_NAMESPACES;
        }
        if std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).is_err() {
            return NO_NAMESPACES;
        }
        let _ = std::fs::write("/proc/self/setgroups", "deny");
        let _ = std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"));
        let mut inner = fork(move || {
            // SAFETY: prctl with an integer argument: die with the parent
            // (the in-between process) so that nothing outlives the test.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            f()
        });
        match inner.wait(Duration::from_secs(600), "child in a new pid namespace") {
            Exit::Code(c) => c,
            Exit::Signal(s) => 100 + s,
        }
    })
}

/// Whether this machine lets us make pid namespaces; prints why not.
fn namespaces_or_skip(case: &str) -> bool {
    let mut probe = in_new_pid_namespace(|| if std::process::id() == 1 { 0 } else { 1 });
    match probe.wait(POLL_LIMIT, "namespace probe") {
        Exit::Code(0) => true,
        other => {
            println!(
                "SKIP: {case}: cannot create an unprivileged user + pid namespace here \
                 (unshare(CLONE_NEWUSER | CLONE_NEWPID) probe ended {other:?}); \
                 check kernel.unprivileged_userns_clone / user.max_user_namespaces"
            );
            false
        }
    }
}

/// A word in a shared anonymous mapping (inherited by forked children,
/// whatever their namespace) for the handshakes of these tests.
fn flag() -> ShmBox<ShmValue<u64>> {
    ShmBox::<ShmValue<u64>>::anonymous(0).unwrap()
}

fn foreign() -> OpenOptions {
    OpenOptions::new().foreign_pid_namespace(true)
}

/// Attaching from another pid namespace is refused with the new error
/// unless the caller opts in; with the opt-in it attaches, and the
/// segment records the foreign attacher (its creator's processes then stop
/// judging pids on it).
fn foreign_attach_needs_opt_in() {
    if !namespaces_or_skip("foreign_attach_needs_opt_in") {
        return;
    }
    let name = unique_name("ns-refuse");
    let m = ShmBox::<Mutex<u64>>::create(&name, 5).unwrap();
    let at = &*m as *const Mutex<u64> as *const u8;
    assert_eq!(pid_scope(at), PidScope::Local);
    let ours = current_pid_namespace();
    assert_ne!(ours, 0, "this test needs /proc");
    let seen = flag();
    let mut kid = in_new_pid_namespace(|| {
        match ShmBox::<Mutex<u64>>::open(&name) {
            Err(AttachError::ForeignPidNamespace {
                segment,
                ours: theirs,
            }) => {
                if segment != ours || theirs == ours || theirs != current_pid_namespace() {
                    return 2;
                }
            }
            Err(e) => {
                eprintln!("child: unexpected error {e}");
                return 3;
            }
            Ok(_) => return 4,
        }
        let Ok(m) = ShmBox::<Mutex<u64>>::open_with(&name, &foreign()) else {
            return 5;
        };
        if pid_scope(&*m as *const Mutex<u64> as *const u8) != PidScope::Foreign {
            return 6;
        }
        seen.store(*m.lock().unwrap());
        0
    });
    kid.join_ok("attach from another pid namespace");
    assert_eq!(seen.load(), 5, "the opted-in child read the value");
    assert_eq!(
        pid_scope(at),
        PidScope::CreatorOnly,
        "after a foreign attach the creator's own process judges no holder pids"
    );
}

/// A lock held by a live process is not taken by a waiter in another pid
/// namespace, to which the holder's pid reads as "no such process": the
/// waiter times out, and the data stays the holder's.
fn live_holder_not_stolen_by_foreign_waiter() {
    if !namespaces_or_skip("live_holder_not_stolen_by_foreign_waiter") {
        return;
    }
    let name = unique_name("ns-steal-in");
    let m = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let mut g = m.lock().unwrap();
    *g = 41;
    let mut kid = in_new_pid_namespace(|| {
        let Ok(m) = ShmBox::<Mutex<u64>>::open_with(&name, &foreign()) else {
            return 2;
        };
        // Our parent's pid means nothing here.
        let owner = m.raw().owner().unwrap_or(0);
        if shmkit::os::process_alive(owner) {
            eprintln!("child: the holder's pid {owner} names a live process here too");
        }
        match m.lock_timeout(Duration::from_millis(300)) {
            Err(TryLockError::TimedOut) => {}
            Err(TryLockError::OwnerDied(_)) => return 10,
            Err(TryLockError::WouldBlock) => return 11,
            Ok(_) => return 12,
        }
        let code = match m.try_lock() {
            Err(TryLockError::WouldBlock) => 0,
            _ => 13,
        };
        code
    });
    kid.join_ok("foreign waiter times out");
    *g += 1;
    drop(g);
    assert_eq!(*m.lock().expect("nobody died"), 42);
}

/// The other direction: a process of the creator's namespace waits for a
/// lock held by a live process in another namespace whose pid, read here,
/// names no process. It must time out, not steal.
fn foreign_holder_not_stolen_by_creator_namespace() {
    if !namespaces_or_skip("foreign_holder_not_stolen_by_creator_namespace") {
        return;
    }
    // The holder will be the k-th process of its namespace, with pid k
    // there; pick a k that names no process here.
    let Some(k) = (2..4000u32).find(|&p| !shmkit::os::process_alive(p)) else {
        println!(
            "SKIP: foreign_holder_not_stolen_by_creator_namespace: pids 2..4000 all alive here"
        );
        return;
    };
    let name = unique_name("ns-steal-out");
    let m = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let state = flag();
    let mut kid = in_new_pid_namespace(|| {
        // Use up pids 2..k-1 with children that exit at once.
        for _ in 2..k {
            let mut c = fork(|| 0);
            c.join_ok("pid filler");
        }
        let mut holder = fork(|| {
            let Ok(m) = ShmBox::<Mutex<u64>>::open_with(&name, &foreign()) else {
                return 2;
            };
            let mut g = m.lock().unwrap();
            *g = 7;
            state.store(1);
            while state.load() != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            *g += 1;
            drop(g);
            0
        });
        holder.join_ok("holder in the other namespace");
        0
    });
    wait_for("the foreign holder to lock", || state.load() == 1);
    let owner = m.raw().owner().expect("held");
    if shmkit::os::process_alive(owner) {
        // Pids in the child namespace were not handed out in order.
        println!(
            "SKIP (partly): holder's pid {owner} (wanted {k}) names a live process here; \
             checking the timeout only"
        );
    }
    match m.lock_timeout(Duration::from_millis(300)) {
        Err(TryLockError::TimedOut) => {}
        Err(TryLockError::OwnerDied(_)) => panic!("stole a lock from a live foreign holder"),
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    state.store(2);
    kid.join_ok("foreign holder");
    let g = m.lock().expect("the holder unlocked normally");
    assert_eq!(*g, 8, "the holder's update is intact");
}

/// Two processes with the same pid, in two pid namespaces: one holds a
/// re-entrant lock, the other must not take it for its own.
fn equal_pids_in_two_namespaces_are_not_the_same_owner() {
    if !namespaces_or_skip("equal_pids_in_two_namespaces_are_not_the_same_owner") {
        return;
    }
    let name = unique_name("ns-rlock");
    let lock = RLock::create(&name).unwrap();
    // Touch the lock here first, so both children inherit whatever
    // per-thread state the parent has.
    drop(lock.acquire().unwrap());
    let state = flag();
    let mut holder = in_new_pid_namespace(|| {
        let Ok(l) = RLock::open_with(&name, &foreign()) else {
            return 2;
        };
        let _g = l.acquire().unwrap();
        state.store(1);
        while state.load() != 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    });
    wait_for("the first child to hold the lock", || state.load() == 1);
    let mut other = in_new_pid_namespace(|| {
        let Ok(l) = RLock::open_with(&name, &foreign()) else {
            return 2;
        };
        if l.owner() != Some(std::process::id()) {
            // The premise: the holder's pid equals ours (both are pid 1).
            return 3;
        }
        if l.is_owned_by_current_thread() {
            return 4;
        }
        let code = match l.try_acquire() {
            Err(TryLockError::WouldBlock) => 0,
            Ok(_) => 5,
            Err(_) => 6,
        };
        code
    });
    other.join_ok("same pid, other namespace");
    state.store(2);
    holder.join_ok("holder");
    assert!(!lock.is_locked());
}

/// A receiver in another pid namespace does not take the live sender of
/// the creator's namespace for dead: after draining, it times out instead
/// of reporting `Disconnected`.
fn live_sender_not_dead_to_foreign_receiver() {
    if !namespaces_or_skip("live_sender_not_dead_to_foreign_receiver") {
        return;
    }
    let name = unique_name("ns-queue");
    let q = MpmcQueue::create(&name, 8, 4).unwrap();
    let tx = q.sender().unwrap();
    tx.send(b"one").unwrap();
    let mut kid = in_new_pid_namespace(|| {
        let Ok(q) = MpmcQueue::open_with(&name, &foreign()) else {
            return 2;
        };
        let Ok(rx) = q.receiver() else {
            return 3;
        };
        let mut buf = Vec::new();
        match rx.recv_timeout(&mut buf, POLL_LIMIT) {
            Ok(_) if buf == b"one" => {}
            _ => return 4,
        }
        match rx.recv_timeout(&mut buf, Duration::from_millis(300)) {
            Err(shmkit::queue::RecvTimeoutError::Timeout) => 0,
            Err(shmkit::queue::RecvTimeoutError::Disconnected) => 10,
            _ => 11,
        }
    });
    kid.join_ok("foreign receiver");
    drop(tx);
}

/// In a pid namespace whose `/proc` is the parent's, a process's own start
/// time is its real one (so its attach-table entry names it correctly).
fn own_start_time_in_a_namespace_without_its_proc() {
    if !namespaces_or_skip("own_start_time_in_a_namespace_without_its_proc") {
        return;
    }
    let out = flag();
    let outer_pid = flag();
    let mut kid = in_new_pid_namespace(|| {
        // /proc is the parent namespace's: /proc/self/stat has our pid there.
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        if process_start_time(2).is_some() {
            // Another pid of ours cannot be looked up in a foreign /proc.
            return 2;
        }
        out.store(process_start_time(std::process::id()).unwrap_or(0));
        // Last: the parent reads `out` once it sees this.
        outer_pid.store(text.split(' ').next().unwrap().parse().unwrap());
        while out.load() != 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        0
    });
    wait_for("the child to report", || outer_pid.load() != 0);
    let here = process_start_time(outer_pid.load() as u32).unwrap();
    assert_eq!(out.load(), here, "the child's own start time");
    out.store(0);
    kid.join_ok("start time child");
}

/// Pid reuse (item 6): a queue whose recorded creator is a live pid with
/// another start time counts its creator as dead, so a receiver of a
/// queue nobody ever sent to gets `Disconnected`.
fn creator_with_another_start_time_is_dead() {
    let name = unique_name("ns-reuse");
    let q = MpmcQueue::create(&name, 8, 4).unwrap();
    let rx = q.receiver().unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        rx.recv_timeout(&mut buf, Duration::from_millis(20)),
        Err(shmkit::queue::RecvTimeoutError::Timeout)
    ));
    // Fake a pid reuse: the creator pid stays (ours, alive), its start
    // time becomes another process's.
    let seg = q.segment().unwrap();
    // SAFETY: offset 48 of the mapped header is the 8-aligned
    // `creator_start` word, an AtomicU64 in every process.
    let start = unsafe { &*(seg.as_ptr().add(48) as *const AtomicU64) };
    let real = start.load(Ordering::Relaxed);
    assert_eq!(Some(real), process_start_time(std::process::id()));
    start.store(real + 1, Ordering::Relaxed);
    assert!(matches!(
        rx.recv_timeout(&mut buf, Duration::from_secs(30)),
        Err(shmkit::queue::RecvTimeoutError::Disconnected)
    ));
    start.store(real, Ordering::Relaxed);
}

fn main() {
    common::run(
        &[
            ("foreign_attach_needs_opt_in", foreign_attach_needs_opt_in),
            (
                "live_holder_not_stolen_by_foreign_waiter",
                live_holder_not_stolen_by_foreign_waiter,
            ),
            (
                "foreign_holder_not_stolen_by_creator_namespace",
                foreign_holder_not_stolen_by_creator_namespace,
            ),
            (
                "equal_pids_in_two_namespaces_are_not_the_same_owner",
                equal_pids_in_two_namespaces_are_not_the_same_owner,
            ),
            (
                "live_sender_not_dead_to_foreign_receiver",
                live_sender_not_dead_to_foreign_receiver,
            ),
            (
                "own_start_time_in_a_namespace_without_its_proc",
                own_start_time_in_a_namespace_without_its_proc,
            ),
            (
                "creator_with_another_start_time_is_dead",
                creator_with_another_start_time_is_dead,
            ),
        ],
        120,
    );
}
