//! Cross-process tests of the process layer: spawn (re-exec), fork, exit
//! statuses, signals, daemon children, start-up errors and segment handoff.
//!
//! `harness = false`: `main` calls `shmkit::process::init()` first (so this
//! binary can be re-executed as a child), then runs the cases one after
//! another on the main thread with `common::run`.

mod common;

use std::time::Duration;

use shmkit::os::process_alive;
use shmkit::process::{self, current_process, ExitStatus, Process, Shared, SpawnError};
use shmkit::{Mutex, ShmBox, ShmValue};

// ----------------------------------------------------------------- entries

fn sum_code((a, b, word): (i32, i32, String)) -> i32 {
    if word != "hi" {
        return 99;
    }
    a + b
}

fn name_is(expected: String) -> bool {
    current_process().name() == expected && current_process().pid() == std::process::id()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn die_by(sig: i32) -> i32 {
    // SAFETY: sends a signal to this very process.
    unsafe { libc::kill(libc::getpid(), sig) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn boom(n: u32) {
    panic!("boom {n}");
}

fn add_named((name, n): (String, u32)) -> Result<(), shmkit::AttachError> {
    let counter = ShmBox::<Mutex<u64>>::open(&name)?;
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
    Ok(())
}

fn add_shared((counter, n): (Shared<ShmBox<Mutex<u64>>>, u32)) -> Result<(), shmkit::AttachError> {
    let counter = counter.attach()?;
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
    Ok(())
}

shmkit::entry! {
    static SUM_CODE: Entry<(i32, i32, String)> = sum_code;
    static NAME_IS: Entry<String> = name_is;
    static SLEEP_MS: Entry<u64> = sleep_ms;
    static DIE_BY: Entry<i32> = die_by;
    static BOOM: Entry<u32> = boom;
    static ADD_NAMED: Entry<(String, u32)> = add_named;
    static ADD_SHARED: Entry<(Shared<ShmBox<Mutex<u64>>>, u32)> = add_shared;
}

const LONG: Duration = Duration::from_secs(60);

use common::wait_until;

// ------------------------------------------------------------------- cases

fn spawn_join_with_args_and_exit_code() {
    let p = Process::builder()
        .spawn(&SUM_CODE, &(20, 22, "hi".to_owned()))
        .unwrap();
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    assert_eq!(p.join().unwrap(), ExitStatus::Code(42));
    assert_eq!(p.exitcode(), Some(42));
    assert!(!p.is_alive());

    let named = Process::builder()
        .name("worker 1")
        .spawn(&NAME_IS, &"worker 1".to_owned())
        .unwrap();
    assert_eq!(named.name(), "worker 1");
    assert_eq!(
        named.join().unwrap(),
        ExitStatus::Code(0),
        "child sees its name"
    );
}

fn exit_status_code_signal_panic() {
    let code = Process::builder()
        .spawn(&SUM_CODE, &(1, 2, "hi".into()))
        .unwrap();
    let sig = Process::builder().spawn(&DIE_BY, &libc::SIGUSR1).unwrap();
    let panicked = Process::builder().spawn(&BOOM, &7).unwrap();
    assert_eq!(code.join().unwrap(), ExitStatus::Code(3));
    assert_eq!(sig.join().unwrap(), ExitStatus::Signal(libc::SIGUSR1));
    assert_eq!(sig.exitcode(), Some(-libc::SIGUSR1));
    let st = panicked.join().unwrap();
    assert_eq!(st, ExitStatus::Panicked("boom 7".into()));
    assert_eq!(st.panic_message(), Some("boom 7"));
    assert_eq!(st.exitcode(), 1);
}

fn terminate_and_kill() {
    let t = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    let k = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    assert!(t.is_alive() && k.is_alive());
    assert_eq!(t.exitcode(), None);
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(t.join().unwrap(), ExitStatus::Signal(15));
    assert_eq!(k.join().unwrap(), ExitStatus::Signal(9));
    assert_eq!(t.exitcode(), Some(-15));
    assert_eq!(k.exitcode(), Some(-9));
    assert!(!t.is_alive() && !k.is_alive());
    // Signalling a reaped child is a no-op, not an error.
    t.terminate().unwrap();
    k.kill().unwrap();
}

fn join_timeout_none_then_some() {
    let p = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Signal(9)));
}

fn unknown_entry_bad_args_version_mismatch_are_parent_errors() {
    match Process::builder().spawn_raw("xproc_process::NO_SUCH_ENTRY", &[]) {
        Err(SpawnError::UnknownEntry(name)) => assert_eq!(name, "xproc_process::NO_SUCH_ENTRY"),
        other => panic!("expected UnknownEntry, got {other:?}"),
    }
    // (i32, i32, String) cannot decode from a truncated varint.
    match Process::builder().spawn_raw(SUM_CODE.name(), &[0xff, 0xff]) {
        Err(SpawnError::BadArgs { entry, .. }) => assert_eq!(entry, SUM_CODE.name()),
        other => panic!("expected BadArgs, got {other:?}"),
    }
    match Process::builder()
        .__protocol("shmkit-0.0.0/spawn-0")
        .spawn(&SLEEP_MS, &0)
    {
        Err(SpawnError::VersionMismatch { parent, child }) => {
            assert_eq!(parent, "shmkit-0.0.0/spawn-0");
            assert_eq!(child, process::PROTOCOL);
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

/// An intermediate process spawns a daemon child, then is killed with
/// `sig`; the daemon must die too.
fn daemon_dies_with_parent(sig: i32) {
    let slot = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut middle = common::fork(|| {
        let d = Process::builder()
            .name("daemon")
            .daemon(true)
            .spawn(&SLEEP_MS, &600_000)
            .unwrap();
        slot.store(d.pid());
        std::mem::forget(d); // keep it running until our death takes it
        std::thread::sleep(Duration::from_secs(600));
        0
    });
    wait_until(LONG, "intermediate never reported its daemon", || {
        slot.load() != 0
    });
    let daemon = slot.load();
    assert!(process_alive(daemon));
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(middle.pid, sig) };
    assert_eq!(middle.wait(LONG, "intermediate"), common::Exit::Signal(sig));
    wait_until(LONG, "daemon child outlived its parent", || {
        !process_alive(daemon)
    });
}

fn daemon_dies_when_parent_sigkilled() {
    daemon_dies_with_parent(libc::SIGKILL);
}

fn daemon_dies_when_parent_sigtermed() {
    daemon_dies_with_parent(libc::SIGTERM);
}

fn dropping_a_daemon_handle_kills_it() {
    let d = Process::builder()
        .daemon(true)
        .spawn(&SLEEP_MS, &600_000)
        .unwrap();
    let pid = d.pid();
    assert!(process_alive(pid));
    drop(d);
    assert!(!process_alive(pid));
    // A non-daemon handle is just dropped; the child finishes on its own.
    let n = Process::builder().spawn(&SLEEP_MS, &1).unwrap();
    let pid = n.pid();
    drop(n);
    wait_until(LONG, "non-daemon child did not finish", || {
        !process_alive(pid)
    });
}

fn named_box_handed_to_four_children() {
    let name = common::unique_name("proc-named");
    let counter = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Process::builder()
                .spawn(&ADD_NAMED, &(name.clone(), 1000))
                .unwrap()
        })
        .collect();
    for k in &kids {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(*counter.lock().unwrap(), 4000);
}

fn anonymous_segment_handed_by_fd() {
    let counter = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let shared = Shared::new(&counter).unwrap();
            Process::builder()
                .spawn(&ADD_SHARED, &(shared, 1000))
                .unwrap()
        })
        .collect();
    for k in &kids {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(*counter.lock().unwrap(), 4000);
}

fn fork_variant() {
    let hits = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|i| {
            Process::builder()
                .name(format!("forked {i}"))
                .fork(|| {
                    for _ in 0..1000 {
                        *hits.lock().unwrap() += 1;
                    }
                    assert_eq!(current_process().name(), format!("forked {i}"));
                    i
                })
                .unwrap()
        })
        .collect();
    for (i, k) in kids.iter().enumerate() {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(i as i32));
    }
    assert_eq!(*hits.lock().unwrap(), 4000);

    let p = process::fork(|| -> i32 { panic!("forked boom") }).unwrap();
    assert_eq!(
        p.join().unwrap(),
        ExitStatus::Panicked("forked boom".into())
    );
    let t = process::fork(|| std::thread::sleep(Duration::from_secs(600))).unwrap();
    t.terminate().unwrap();
    assert_eq!(t.join().unwrap().exitcode(), -15);
}

fn fork_refuses_with_other_threads() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || rx.recv());
    match process::fork(|| 0) {
        Err(SpawnError::MultiThreaded(n)) => assert!(n >= 2),
        other => panic!("expected MultiThreaded, got {other:?}"),
    }
    drop(tx);
    let _ = th.join();
    // Spawning (re-exec) works with threads alive.
}

fn main() {
    shmkit::process::init();
    common::run(
        &[
            (
                "spawn_join_with_args_and_exit_code",
                spawn_join_with_args_and_exit_code,
            ),
            (
                "exit_status_code_signal_panic",
                exit_status_code_signal_panic,
            ),
            ("terminate_and_kill", terminate_and_kill),
            ("join_timeout_none_then_some", join_timeout_none_then_some),
            (
                "unknown_entry_bad_args_version_mismatch_are_parent_errors",
                unknown_entry_bad_args_version_mismatch_are_parent_errors,
            ),
            (
                "daemon_dies_when_parent_sigkilled",
                daemon_dies_when_parent_sigkilled,
            ),
            (
                "daemon_dies_when_parent_sigtermed",
                daemon_dies_when_parent_sigtermed,
            ),
            (
                "dropping_a_daemon_handle_kills_it",
                dropping_a_daemon_handle_kills_it,
            ),
            (
                "named_box_handed_to_four_children",
                named_box_handed_to_four_children,
            ),
            (
                "anonymous_segment_handed_by_fd",
                anonymous_segment_handed_by_fd,
            ),
            ("fork_variant", fork_variant),
            (
                "fork_refuses_with_other_threads",
                fork_refuses_with_other_threads,
            ),
        ],
        120,
    );
}
