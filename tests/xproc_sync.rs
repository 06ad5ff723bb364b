//! Cross-process tests of the sync layer: real `fork`, real segments, real
//! `SIGKILL`. A `harness = false` binary (forking needs a single-threaded
//! process); cases run one after another under a hang watchdog.
//!
//! `cargo test --release --test xproc_sync [filter]`

mod common;

use std::time::{Duration, Instant};

use common::{fork, unique_name, Child};
use shmkit::sync::{BarrierWaitError, BrokenBarrierError, Lock, LockTimedOut, RLock};
use shmkit::{
    Barrier, Condvar, Event, Mutex, Segment, Semaphore, ShmArray, ShmBox, ShmValue, SpawnError,
    TryLockError,
};

/// Hang watchdog for polling loops (never a timing assertion).
const POLL_LIMIT: Duration = Duration::from_secs(60);

/// Polls `cond` until it holds; panics after [`POLL_LIMIT`] (a hang).
fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    common::wait_until(POLL_LIMIT, what, cond);
}

/// The scheduler state letter of `pid` (`S` = sleeping, e.g. in a futex).
fn proc_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_ascii_whitespace().next()?.chars().next()
}

/// Waits until `pid` is asleep (parked on a futex, in our use).
fn wait_asleep(pid: i32, what: &str) {
    wait_for(what, || proc_state(pid) == Some('S'));
}

/// Sleeps forever (until killed).
fn park_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn lock_counter(m: &Mutex<u64>) -> shmkit::MutexGuard<'_, u64> {
    m.lock().expect("nobody dies in this test")
}

/// Children call this first: count in, then spin until the parent opens
/// the gate, so that all of them contend from the start.
fn start_together(gate: &ShmValue<u32>) {
    gate.fetch_add(1);
    while gate.load() < GATE_OPEN {
        std::hint::spin_loop();
    }
}

const GATE_OPEN: u32 = 1 << 20;

fn open_gate(gate: &ShmValue<u32>) {
    wait_for("every child to reach the start gate", || {
        gate.load() == PROCS as u32
    });
    gate.store(GATE_OPEN);
}

const PROCS: usize = 8;
const INCREMENTS: u64 = 10_000;

fn mutex_counter_inherited() {
    let name = unique_name("mtx-inh");
    let m = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let gate = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..PROCS)
        .map(|_| {
            let (m, gate) = (&m, &gate);
            fork(move || {
                start_together(gate);
                for _ in 0..INCREMENTS {
                    *lock_counter(m) += 1;
                }
                0
            })
        })
        .collect();
    open_gate(&gate);
    for k in &mut kids {
        k.join_ok("incrementer");
    }
    assert_eq!(*lock_counter(&m), PROCS as u64 * INCREMENTS);
}

fn mutex_counter_opened_by_name() {
    let name = unique_name("mtx-open");
    let m = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let gate = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..PROCS)
        .map(|_| {
            let (name, gate) = (name.clone(), &gate);
            fork(move || {
                let m = ShmBox::<Mutex<u64>>::open(&name).expect("child opens by name");
                assert!(!m.segment().is_owner());
                start_together(gate);
                for _ in 0..INCREMENTS {
                    *lock_counter(&m) += 1;
                }
                0
            })
        })
        .collect();
    open_gate(&gate);
    for k in &mut kids {
        k.join_ok("incrementer (opened by name)");
    }
    assert_eq!(*lock_counter(&m), PROCS as u64 * INCREMENTS);
}

const KILLS: u32 = 100;

/// Kills a child holding the lock `KILLS` times; each time the parent must
/// get `OwnerDied` with the child's write visible, then a clean lock after
/// `mark_consistent`. Returns the mean kill → recovered time.
fn kill_holder_loop(reap_before_lock: bool) -> Duration {
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let holding = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let mut total = Duration::ZERO;
    for i in 1..=u64::from(KILLS) {
        let marker = i * 1000 + 7;
        let mut child = {
            let (m, holding) = (&m, &holding);
            fork(move || {
                let mut g = m.lock().expect("the previous round left it consistent");
                *g = marker;
                holding.store(marker);
                // Killed here, lock held.
                park_forever()
            })
        };
        wait_for("the child to take the lock", || holding.load() == marker);
        let killed_at = Instant::now();
        if reap_before_lock {
            child.kill();
        } else {
            child.kill_no_reap();
        }
        let died = match m.lock() {
            Err(died) => died,
            Ok(_) => panic!("round {i}: lock after SIGKILL of the holder was clean"),
        };
        total += killed_at.elapsed();
        let g = died.into_inner();
        assert_eq!(*g, marker, "round {i}: the dead holder's write is visible");
        assert!(!m.raw().is_consistent());
        g.mark_consistent();
        drop(g);
        let g = m.lock().expect("clean after mark_consistent");
        assert_eq!(*g, marker);
        drop(g);
        assert!(!m.is_locked());
        // Reaps the zombie in the no-reap case.
        child.kill();
    }
    total / KILLS
}

fn kill_holder_100_reaped() {
    let mean = kill_holder_loop(true);
    println!("    info: {KILLS} kills (reaped), mean kill->OwnerDied recovery {mean:?}");
}

fn kill_holder_100_zombie() {
    let mean = kill_holder_loop(false);
    println!("    info: {KILLS} kills (zombie holder), mean kill->OwnerDied recovery {mean:?}");
}

/// The holder dies while two other processes are blocked in `lock()`:
/// exactly one of them gets `OwnerDied`, repairs, and the other then gets
/// a clean lock.
fn kill_holder_with_blocked_waiters() {
    const ROUNDS: u64 = 10;
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let holding = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let died = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let clean = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    for round in 1..=ROUNDS {
        died.store(0);
        clean.store(0);
        let marker = round * 100;
        let mut holder = {
            let (m, holding) = (&m, &holding);
            fork(move || {
                let mut g = m.lock().expect("consistent at round start");
                *g = marker;
                holding.store(marker);
                park_forever()
            })
        };
        wait_for("the holder to take the lock", || holding.load() == marker);
        let mut waiters: Vec<Child> = (0..2)
            .map(|_| {
                let (m, died, clean) = (&m, &died, &clean);
                fork(move || {
                    let mut g = match m.lock() {
                        Ok(g) => {
                            clean.fetch_add(1);
                            g
                        }
                        Err(e) => {
                            let g = e.into_inner();
                            died.fetch_add(1);
                            g.mark_consistent();
                            g
                        }
                    };
                    assert!(*g >= marker, "the dead holder's write is visible");
                    *g += 1;
                    0
                })
            })
            .collect();
        for w in &waiters {
            wait_asleep(w.pid, "a waiter to block in lock()");
        }
        holder.kill();
        for w in &mut waiters {
            w.join_ok("blocked waiter");
        }
        assert_eq!(died.load(), 1, "round {round}: exactly one waiter recovers");
        assert_eq!(
            clean.load(),
            1,
            "round {round}: the other gets a clean lock"
        );
        let g = m.lock().expect("consistent after the recovery");
        assert_eq!(*g, marker + 2);
    }
}

fn event_wakes_three_processes() {
    let e = ShmBox::<Event>::anonymous(()).unwrap();
    let woke = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..3)
        .map(|_| {
            let (e, woke) = (&e, &woke);
            fork(move || {
                e.wait();
                assert!(e.is_set());
                woke.fetch_add(1);
                0
            })
        })
        .collect();
    for k in &kids {
        wait_asleep(k.pid, "a child to block in Event::wait");
    }
    assert_eq!(woke.load(), 0, "nobody passes an unset event");
    e.set();
    for k in &mut kids {
        k.join_ok("event waiter");
    }
    assert_eq!(woke.load(), 3);
}

fn event_wait_timeout_unset() {
    let e = ShmBox::<Event>::anonymous(()).unwrap();
    let mut kid = {
        let e = &e;
        fork(move || {
            let timeout = Duration::from_millis(30);
            let start = Instant::now();
            let got = e.wait_timeout(timeout);
            // Correctness, not speed: it must not give up early.
            let elapsed = start.elapsed();
            assert!(!got, "unset event reported set");
            assert!(
                elapsed >= timeout,
                "returned after {elapsed:?} < {timeout:?}"
            );
            0
        })
    };
    kid.join_ok("timed event waiter");
    assert!(!e.wait_timeout(Duration::from_millis(5)));
    assert!(!e.is_set());
}

fn semaphore_limits_concurrency() {
    const UNITS: u32 = 2;
    const ITERS: u64 = 300;
    let s = ShmBox::<Semaphore>::anonymous((UNITS, Some(UNITS))).unwrap();
    let holders = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let max_seen = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let passes = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..6)
        .map(|_| {
            let (s, holders, max_seen, passes) = (&s, &holders, &max_seen, &passes);
            fork(move || {
                for _ in 0..ITERS {
                    s.acquire();
                    let now = holders.fetch_add(1) + 1;
                    let mut m = max_seen.load();
                    while now > m {
                        match max_seen.compare_exchange(m, now) {
                            Ok(_) => break,
                            Err(x) => m = x,
                        }
                    }
                    for _ in 0..50 {
                        std::hint::spin_loop();
                    }
                    passes.fetch_add(1);
                    holders.fetch_sub(1);
                    s.release().expect("never above the bound");
                }
                0
            })
        })
        .collect();
    for k in &mut kids {
        k.join_ok("semaphore user");
    }
    let max = max_seen.load();
    println!("    info: max concurrent holders {max} (limit {UNITS})");
    assert!(
        (1..=UNITS).contains(&max),
        "{max} holders of a {UNITS}-unit semaphore"
    );
    assert_eq!(passes.load(), 6 * ITERS);
    assert_eq!(holders.load(), 0);
    assert_eq!(s.value(), UNITS);
}

fn barrier_four_processes_rounds() {
    const ROUNDS: usize = 25;
    let b = ShmBox::<Barrier>::anonymous(4).unwrap();
    let arrived = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let leaders = ShmArray::<u32>::anonymous(ROUNDS).unwrap();
    let participant = |b: &Barrier, arrived: &ShmValue<u64>, leaders: &ShmArray<u32>| {
        for r in 0..ROUNDS {
            arrived.fetch_add(1);
            let res = b.wait().expect("nobody breaks the barrier");
            // Every participant of round r arrived before anyone left it;
            // fast ones may already have arrived for round r + 1.
            let a = arrived.load();
            let lo = 4 * (r as u64 + 1);
            assert!((lo..lo + 4).contains(&a), "round {r}: arrived {a}");
            if res.is_leader() {
                let mut g = leaders.lock().expect("nobody dies");
                g[r] += 1;
            }
        }
    };
    let mut kids: Vec<Child> = (0..3)
        .map(|_| {
            let (b, arrived, leaders) = (&b, &arrived, &leaders);
            fork(move || {
                participant(b, arrived, leaders);
                0
            })
        })
        .collect();
    participant(&b, &arrived, &leaders);
    for k in &mut kids {
        k.join_ok("barrier participant");
    }
    assert_eq!(leaders.to_vec(), vec![1; ROUNDS], "one leader per round");
    assert_eq!(arrived.load(), 4 * ROUNDS as u64);
}

fn condvar_ping_pong() {
    const TURNS: u64 = 1000;
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let cv = ShmBox::<Condvar>::anonymous(()).unwrap();
    let mut kid = {
        let (m, cv) = (&m, &cv);
        fork(move || {
            // The child moves odd → even.
            for _ in 0..TURNS {
                let mut g = cv.wait_while(lock_counter(m), |v| *v % 2 == 0).unwrap();
                *g += 1;
                drop(g);
                cv.notify_all();
            }
            0
        })
    };
    for _ in 0..TURNS {
        let mut g = cv.wait_while(lock_counter(&m), |v| *v % 2 == 1).unwrap();
        *g += 1;
        drop(g);
        cv.notify_all();
    }
    kid.join_ok("condvar partner");
    assert_eq!(*lock_counter(&m), 2 * TURNS);
}

fn shm_array_written_by_children() {
    const PER: usize = 500;
    let name = unique_name("array");
    let a = ShmArray::<u64>::create(&name, 4 * PER).unwrap();
    let mut kids: Vec<Child> = (0..4)
        .map(|k| {
            let (a, name) = (&a, name.clone());
            fork(move || {
                // Half the children use the inherited handle, half open it.
                let opened;
                let arr = if k % 2 == 0 {
                    a
                } else {
                    opened = ShmArray::<u64>::open(&name).expect("open by name");
                    &opened
                };
                for i in k * PER..(k + 1) * PER {
                    assert!(arr.set(i, (i as u64) * 3 + 1));
                }
                assert!(!arr.set(4 * PER, 0), "out of range is refused");
                assert_eq!(arr.get(4 * PER), None);
                0
            })
        })
        .collect();
    for k in &mut kids {
        k.join_ok("array writer");
    }
    let want: Vec<u64> = (0..4 * PER).map(|i| i as u64 * 3 + 1).collect();
    assert_eq!(a.to_vec(), want);
}

fn lock_timeout_while_live_child_holds() {
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let state = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kid = {
        let (m, state) = (&m, &state);
        fork(move || {
            let mut g = lock_counter(m);
            *g = 42;
            state.store(1);
            while state.load() != 2 {
                std::thread::sleep(Duration::from_micros(200));
            }
            drop(g);
            0
        })
    };
    wait_for("the child to hold the lock", || state.load() == 1);
    for _ in 0..3 {
        match m.lock_timeout(Duration::from_millis(20)) {
            Err(TryLockError::TimedOut) => {}
            other => panic!("expected TimedOut while a live child holds it, got {other:?}"),
        }
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    }
    assert_eq!(m.raw().owner(), Some(kid.pid as u32));
    state.store(2);
    kid.join_ok("holder");
    let g = m
        .lock_timeout(Duration::from_secs(30))
        .expect("free and clean");
    assert_eq!(*g, 42);
}

fn named_segment_unlinked_by_creator_not_child() {
    let name = unique_name("unlink");
    let ev = std::mem::ManuallyDrop::new(ShmBox::<Event>::create(&name, ()).unwrap());
    assert!(ev.segment().is_owner());
    let mut kid = {
        let (name, ev) = (name.clone(), &ev);
        fork(move || {
            assert!(
                !ev.segment().is_owner(),
                "a forked child is never the owner"
            );
            // As a child that owns an inherited handle would at exit:
            // SAFETY: fork gave the child its own copy of the parent's
            // memory; the child takes the inherited (owning) handle out of
            // its ManuallyDrop exactly once and drops it.
            let inherited: ShmBox<Event> = unsafe { std::ptr::read(&**ev) };
            drop(inherited);
            let opened = ShmBox::<Event>::open(&name).expect("name survives the child's drop");
            opened.set();
            drop(opened);
            assert!(matches!(
                Segment::create(&name, 4096),
                Err(shmkit::Error::AlreadyExists(_))
            ));
            0
        })
    };
    kid.join_ok("child dropping the inherited handle");
    assert!(ev.is_set());
    ShmBox::<Event>::open(&name).expect("name survives the child dropping the creator's handle");
    drop(std::mem::ManuallyDrop::into_inner(ev));
    match ShmBox::<Event>::open(&name) {
        Err(shmkit::AttachError::NotFound(_)) => {}
        other => panic!("expected NotFound after the creator dropped, got {other:?}"),
    }
}

// ---- Guards and fork (issue 10 item 1) ----

/// Asserts that `process::fork` refused because `n` guards are alive, and
/// that no child ran.
fn assert_refused(r: Result<shmkit::Process, SpawnError>, n: usize, what: &str) {
    match r {
        Err(SpawnError::GuardHeld(held)) => assert_eq!(held, n, "{what}"),
        Err(e) => panic!("{what}: expected GuardHeld({n}), got {e}"),
        Ok(p) => {
            let status = p.join();
            panic!("{what}: fork ran a child ({status:?}) while a guard was held")
        }
    }
}

/// The trigger: a child that borrows the parent's held guard and
/// increments through it, while the parent does locked increments. With
/// two processes writing through one lock the count fell short; `fork`
/// must refuse instead, and the count must be exact.
fn fork_refuses_while_mutex_guard_held() {
    const N: u64 = 200_000;
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let mut g = lock_counter(&m);
    let forked = shmkit::process::fork(|| {
        for _ in 0..N {
            *g += 1;
        }
        0
    });
    drop(g);
    for _ in 0..N {
        *lock_counter(&m) += 1;
    }
    assert_refused(forked, 1, "MutexGuard borrowed by the fork closure");
    assert_eq!(*lock_counter(&m), N);
    // Two guards (and an OwnerDied-wrapped one counts too).
    let m2 = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let (g1, g2) = (lock_counter(&m), lock_counter(&m2));
    assert_refused(shmkit::process::fork(|| 0), 2, "two guards");
    drop((g1, g2));
    // With every guard gone, fork works again.
    let p = shmkit::process::fork(|| *lock_counter(&m) == N).unwrap();
    assert_eq!(p.join().unwrap().exitcode(), 0);
}

fn fork_refuses_while_array_guard_or_condvar_condition_runs() {
    let a = ShmArray::<u64>::anonymous(4).unwrap();
    let g = a.lock().unwrap();
    assert_refused(shmkit::process::fork(|| g[0] == 0), 1, "ArrayGuard");
    drop(g);
    // A condvar condition runs with the mutex held.
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let cv = ShmBox::<Condvar>::anonymous(()).unwrap();
    let mut tried = None;
    let g = cv
        .wait_while(lock_counter(&m), |_| {
            tried = Some(shmkit::process::fork(|| 0));
            false
        })
        .unwrap();
    drop(g);
    assert_refused(tried.unwrap(), 1, "fork inside wait_while's condition");
    let p = shmkit::process::fork(|| 0).unwrap();
    assert_eq!(p.join().unwrap().exitcode(), 0);
}

/// Silences the default panic message in a child that is expected to
/// panic (the parent checks its exit code).
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// A guard copied into a child by a raw `libc::fork` (which bypasses the
/// `process::fork` check): dereferencing it panics in the child, and
/// dropping it there does not release the parent's lock.
fn guard_copied_by_raw_fork_refuses() {
    let m = ShmBox::<Mutex<u64>>::anonymous(5).unwrap();
    let a = ShmArray::<u64>::anonymous(2).unwrap();
    let mut g = lock_counter(&m);
    let mut ag = a.lock().unwrap();
    let me = std::process::id();

    let mut deref = fork(|| {
        quiet_panics();
        *g += 1; // panics: the guard was taken by the parent
        0
    });
    assert_eq!(
        deref.wait(POLL_LIMIT, "deref child"),
        common::Exit::Code(101),
        "MutexGuard deref in a forked child must panic"
    );
    let mut deref = fork(|| {
        quiet_panics();
        ag[0] = 9;
        0
    });
    assert_eq!(
        deref.wait(POLL_LIMIT, "array deref child"),
        common::Exit::Code(101),
        "ArrayGuard deref in a forked child must panic"
    );

    let mut dropper = fork(|| {
        // SAFETY: the child owns a private copy of the parent's memory;
        // it takes the copied guards out exactly once and drops them, as a
        // child that owned them would.
        let (copy, acopy) = unsafe { (std::ptr::read(&g), std::ptr::read(&ag)) };
        drop(copy);
        drop(acopy);
        // Still locked by the parent, which is alive.
        i32::from(!(m.is_locked() && m.raw().owner() == Some(me)))
    });
    dropper.join_ok("child dropping copies of the parent's guards");
    assert_eq!(
        m.raw().owner(),
        Some(me),
        "the parent still holds the mutex"
    );
    assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
    // The parent's guards still work and release normally.
    *g += 1;
    ag[1] = 3;
    drop((g, ag));
    assert_eq!(*lock_counter(&m), 6);
    assert_eq!(a.to_vec(), vec![0, 3]);
}

// ---- Panics in user code under a lock (issue 10 item 2) ----

/// Runs `f`, which must panic, with the panic message silenced.
fn expect_panic<R>(what: &str, f: impl FnOnce() -> R) {
    let hook = std::panic::take_hook();
    quiet_panics();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    assert!(r.is_err(), "{what} should have panicked");
}

/// In a child process, the mutex is free and clean.
fn child_locks_cleanly(m: &Mutex<u64>, what: &str) {
    let mut kid = fork(|| match m.lock_timeout(Duration::from_secs(30)) {
        Ok(mut g) => {
            *g += 1;
            0
        }
        Err(_) => 1,
    });
    kid.join_ok(what);
}

fn panic_under_a_lock_releases_it() {
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let cv = ShmBox::<Condvar>::anonymous(()).unwrap();

    expect_panic("a panic while holding a guard", || {
        let _g = lock_counter(&m);
        panic!("boom under the mutex");
    });
    assert!(!m.is_locked());
    child_locks_cleanly(&m, "lock after a panic under the guard");

    expect_panic("a panicking wait_while condition", || {
        cv.wait_while(lock_counter(&m), |_| panic!("boom in the condition"))
    });
    assert!(!m.is_locked());
    child_locks_cleanly(&m, "lock after a panic in wait_while");

    // A condition that panics after a wake-up (the re-lock path).
    let parent = std::process::id() as i32;
    let mut notifier = fork(|| {
        wait_asleep(parent, "the parent to sleep in wait_while");
        *lock_counter(&m) += 100;
        cv.notify_all();
        0
    });
    expect_panic("a wait_while condition panicking after a wake-up", || {
        cv.wait_while(lock_counter(&m), |v| {
            assert!(*v < 100, "boom after the wake-up");
            true
        })
    });
    notifier.join_ok("notifier");
    assert!(!m.is_locked());
    child_locks_cleanly(&m, "lock after a panic in wait_while after a wake-up");

    expect_panic("a panicking wait_timeout_while condition", || {
        cv.wait_timeout_while(lock_counter(&m), Duration::from_secs(5), |_| {
            panic!("boom in the bounded condition")
        })
    });
    assert!(!m.is_locked());
    child_locks_cleanly(&m, "lock after a panic in wait_timeout_while");
    assert_eq!(*lock_counter(&m), 104);

    let a = ShmArray::<u64>::anonymous(1).unwrap();
    expect_panic("a panic while holding an array guard", || {
        let mut g = a.lock().unwrap();
        g[0] = 1;
        panic!("boom under the array lock");
    });
    let mut kid = fork(|| i32::from(a.get_timeout(0, Duration::from_secs(30)) != Ok(Some(1))));
    kid.join_ok("array read after a panic under its guard");
}

// ---- Bounded waits (issue 10 items 9, 10) ----

/// `Condvar::wait_timeout` while another process holds the mutex and
/// never lets go: the re-lock is bounded by the same deadline and reports
/// `TimedOut` (the lock is not held) instead of blocking forever.
///
/// The parent takes the mutex (released by the child's wait) and then
/// notifies, so the child always wakes with the mutex held by a live
/// process; the timeout only has to outlast that hand-over.
fn condvar_wait_timeout_bounded_when_mutex_holder_stuck() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let m = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let cv = ShmBox::<Condvar>::anonymous(()).unwrap();
    // 1: the child is about to wait; 3/4/5: its result.
    let state = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let result_code = |r: shmkit::sync::TimedWaitResult<shmkit::MutexGuard<'_, u64>>| match r {
        Err(TryLockError::TimedOut) => 3,
        Ok(_) => 4,
        Err(_) => 5,
    };
    for bounded_while in [false, true] {
        state.store(0);
        let mut waiter = fork(|| {
            let g = lock_counter(&m);
            state.store(1);
            let r = if bounded_while {
                cv.wait_timeout_while(g, TIMEOUT, |_| true)
            } else {
                cv.wait_timeout(g, TIMEOUT)
            };
            state.store(result_code(r));
            0
        });
        wait_for("the child to wait on the condvar", || state.load() == 1);
        // Blocks until the child's wait releases the mutex; then holds it.
        let g = lock_counter(&m);
        cv.notify_all();
        waiter.join_ok("condvar waiter (must return while the mutex is held)");
        assert_eq!(state.load(), 3, "expected TimedOut from the re-lock");
        assert_eq!(m.raw().owner(), Some(std::process::id()));
        drop(g);
    }
    // When the mutex comes back in time, the guard is returned.
    let g = lock_counter(&m);
    let (g, timed_out) = cv.wait_timeout(g, Duration::from_millis(5)).unwrap();
    assert!(timed_out);
    drop(g);
    assert!(!m.is_locked());
}

/// A `ShmArray` whose lock a live process holds and never releases: the
/// bounded forms give up; after that process dies they recover it.
fn array_bounded_forms_with_a_stuck_holder() {
    let a = ShmArray::<u32>::anonymous_from(&[1, 2, 3]).unwrap();
    let held = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut holder = fork(|| {
        let mut g = a.lock().unwrap();
        g[0] = 10;
        held.store(1);
        park_forever()
    });
    wait_for("the child to hold the array lock", || held.load() == 1);
    let t = Duration::from_millis(20);
    assert_eq!(a.get_timeout(0, t), Err(LockTimedOut));
    assert_eq!(a.set_timeout(0, 7, t), Err(LockTimedOut));
    assert_eq!(a.to_vec_timeout(t), Err(LockTimedOut));
    assert!(matches!(a.lock_timeout(t), Err(TryLockError::TimedOut)));
    assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
    holder.kill();
    // Dead holder: recovered, with its write visible.
    assert_eq!(a.get_timeout(0, Duration::from_secs(30)), Ok(Some(10)));
    match a.try_lock() {
        Err(TryLockError::OwnerDied(d)) => d.into_inner().mark_consistent(),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(a.to_vec_timeout(t), Ok(vec![10, 2, 3]));
    assert!(a.try_lock().is_ok());
}

/// A child holds a named `Lock` (opened by name) and is SIGKILLed: the
/// parent's next `acquire` gets `OwnerDied`, then clean guards after
/// `mark_consistent`.
fn lock_holder_killed_next_acquirer_gets_owner_died() {
    let name = unique_name("lock");
    let lock = Lock::create(&name).unwrap();
    let holding = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut child = {
        let (name, holding) = (name.clone(), &holding);
        fork(move || {
            let lock = Lock::open(&name).expect("child opens the lock by name");
            let g = lock.acquire().expect("fresh lock");
            holding.store(1);
            let _keep = g;
            park_forever()
        })
    };
    wait_for("the child to hold the lock", || holding.load() == 1);
    assert_eq!(lock.owner(), Some(child.pid as u32));
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
    child.kill();
    let g = match lock.acquire() {
        Err(died) => died.into_inner(),
        Ok(_) => panic!("acquire after SIGKILL of the holder was clean"),
    };
    assert!(!lock.is_consistent());
    g.mark_consistent();
    g.release();
    let g = lock.acquire().expect("clean after mark_consistent");
    assert_eq!(lock.owner(), Some(std::process::id()));
    drop(g);
    assert!(!lock.is_locked());
}

/// Owner = process + thread: a forked child's main thread carries the same
/// thread token as the parent's, yet the parent cannot re-enter the
/// child's hold. Killed at depth 3, the child's lock is recovered by the
/// parent at depth 1 (`OwnerDied`), and re-entered cleanly afterwards.
fn rlock_owner_is_process_and_thread_and_recovers_from_death() {
    let lock = RLock::anonymous().unwrap();
    let holding = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut child = {
        let (lock, holding) = (&lock, &holding);
        fork(move || {
            let a = lock.acquire().expect("fresh");
            let b = lock.acquire().expect("re-entry by the owner");
            let c = lock.try_acquire().expect("re-entry never blocks");
            assert_eq!(lock.depth(), 3);
            holding.store(1);
            let _keep = (a, b, c);
            park_forever()
        })
    };
    wait_for("the child to hold the rlock", || holding.load() == 1);
    assert!(!lock.is_owned_by_current_thread());
    assert_eq!(lock.depth(), 0);
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(5)),
        Err(TryLockError::TimedOut)
    ));
    child.kill();
    let outer = match lock.acquire() {
        Err(died) => died.into_inner(),
        Ok(_) => panic!("acquire after SIGKILL of the owner was clean"),
    };
    assert_eq!(
        lock.depth(),
        1,
        "recovered at depth 1, not the dead owner's 3"
    );
    outer.mark_consistent();
    let inner = lock.acquire().expect("re-entry after recovery");
    assert_eq!(lock.depth(), 2);
    drop(inner);
    drop(outer);
    assert!(!lock.is_locked());
    let mut second = {
        let lock = &lock;
        fork(move || {
            let g = lock.acquire().expect("consistent again");
            assert_eq!(lock.depth(), 1);
            drop(g);
            0
        })
    };
    second.join_ok("child taking the recovered rlock");
}

/// Two processes wait at a 4-party barrier; one of them is SIGKILLed while
/// waiting. The survivor must not hang: it gets `BrokenBarrierError`, and
/// so does everyone after, until `reset`.
fn barrier_waiter_killed_breaks_it() {
    let b = ShmBox::<Barrier>::anonymous(4).unwrap();
    let outcome = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut survivor = {
        let (b, outcome) = (&b, &outcome);
        fork(move || {
            let r = b.wait();
            outcome.store(if r == Err(BrokenBarrierError) { 1 } else { 2 });
            0
        })
    };
    let mut victim = {
        let b = &b;
        fork(move || {
            let _ = b.wait();
            0
        })
    };
    wait_for("both children to wait", || b.n_waiting() == 2);
    wait_asleep(victim.pid, "the victim to sleep in the barrier");
    victim.kill();
    survivor.join_ok("surviving waiter");
    assert_eq!(outcome.load(), 1, "the survivor got BrokenBarrierError");
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BrokenBarrierError));
    b.reset();
    assert!(!b.is_broken());
    // Usable again, with the dead process forgotten.
    let mut kids: Vec<Child> = (0..3)
        .map(|_| {
            let b = &b;
            fork(move || {
                b.wait_timeout(POLL_LIMIT)
                    .expect("a full round after reset");
                0
            })
        })
        .collect();
    b.wait_timeout(POLL_LIMIT)
        .expect("a full round after reset");
    for k in &mut kids {
        k.join_ok("participant after reset");
    }
}

/// Python's `wait(timeout)`: the timed-out process breaks the barrier for
/// a waiter in another process.
fn barrier_timeout_in_one_process_breaks_the_other() {
    let b = ShmBox::<Barrier>::anonymous(3).unwrap();
    let outcome = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut waiter = {
        let (b, outcome) = (&b, &outcome);
        fork(move || {
            let r = b.wait();
            outcome.store(if r == Err(BrokenBarrierError) { 1 } else { 2 });
            0
        })
    };
    wait_for("the child to wait", || b.n_waiting() == 1);
    assert_eq!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(BarrierWaitError::TimedOut)
    );
    waiter.join_ok("waiter of the broken round");
    assert_eq!(outcome.load(), 1);
}

fn main() {
    common::run(
        &[
            ("mutex_counter_inherited", mutex_counter_inherited),
            ("mutex_counter_opened_by_name", mutex_counter_opened_by_name),
            ("kill_holder_100_reaped", kill_holder_100_reaped),
            ("kill_holder_100_zombie", kill_holder_100_zombie),
            (
                "kill_holder_with_blocked_waiters",
                kill_holder_with_blocked_waiters,
            ),
            ("event_wakes_three_processes", event_wakes_three_processes),
            ("event_wait_timeout_unset", event_wait_timeout_unset),
            ("semaphore_limits_concurrency", semaphore_limits_concurrency),
            (
                "barrier_four_processes_rounds",
                barrier_four_processes_rounds,
            ),
            ("condvar_ping_pong", condvar_ping_pong),
            (
                "shm_array_written_by_children",
                shm_array_written_by_children,
            ),
            (
                "lock_timeout_while_live_child_holds",
                lock_timeout_while_live_child_holds,
            ),
            (
                "named_segment_unlinked_by_creator_not_child",
                named_segment_unlinked_by_creator_not_child,
            ),
            (
                "fork_refuses_while_mutex_guard_held",
                fork_refuses_while_mutex_guard_held,
            ),
            (
                "fork_refuses_while_array_guard_or_condvar_condition_runs",
                fork_refuses_while_array_guard_or_condvar_condition_runs,
            ),
            (
                "guard_copied_by_raw_fork_refuses",
                guard_copied_by_raw_fork_refuses,
            ),
            (
                "panic_under_a_lock_releases_it",
                panic_under_a_lock_releases_it,
            ),
            (
                "condvar_wait_timeout_bounded_when_mutex_holder_stuck",
                condvar_wait_timeout_bounded_when_mutex_holder_stuck,
            ),
            (
                "array_bounded_forms_with_a_stuck_holder",
                array_bounded_forms_with_a_stuck_holder,
            ),
            (
                "lock_holder_killed_next_acquirer_gets_owner_died",
                lock_holder_killed_next_acquirer_gets_owner_died,
            ),
            (
                "rlock_owner_is_process_and_thread_and_recovers_from_death",
                rlock_owner_is_process_and_thread_and_recovers_from_death,
            ),
            (
                "barrier_waiter_killed_breaks_it",
                barrier_waiter_killed_breaks_it,
            ),
            (
                "barrier_timeout_in_one_process_breaks_the_other",
                barrier_timeout_in_one_process_breaks_the_other,
            ),
        ],
        120,
    );
}
