//! Runs the process-layer seed ports in `examples/` and checks their
//! output. Lines whose order depends on scheduling are compared sorted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `<target>/<profile>/deps/<test>` → `<target>/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

/// Runs an example under a 120 s hang watchdog; returns (stdout, stderr).
fn run(name: &str) -> (String, String) {
    let path = example(name);
    let mut child = Command::new(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (cargo test builds examples first)",
                path.display()
            )
        });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                status.success(),
                "{name} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
            return (stdout, stderr);
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("watchdog: example {name} still running after 120 s; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn sorted(s: &str) -> Vec<&str> {
    let mut v = lines(s);
    v.sort_unstable();
    v
}

#[test]
fn process_basics() {
    let (out, _) = run("process_basics");
    let mut expected: Vec<String> = vec!["Main process completed".into()];
    expected.extend((0..6).map(|_| "------------------------hahaha".to_owned()));
    expected.extend((0..6).map(|i| format!("Main process {i} working")));
    expected.extend((0..5).map(|i| format!("Main process {i} studying")));
    expected.sort_unstable();
    assert_eq!(sorted(&out), expected);
    // Each child's own lines are in order.
    let working: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l.ends_with("working"))
        .collect();
    assert_eq!(
        working,
        (0..6)
            .map(|i| format!("Main process {i} working"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn spatial_isolation() {
    let (out, _) = run("spatial_isolation");
    let l = lines(&out);
    let mut first = l[..2].to_vec();
    first.sort_unstable();
    assert_eq!(first, ["study 10000", "task 1000"]);
    assert_eq!(l[2..], ["Main process completed 0", "3", "100"]);
}

#[test]
fn daemon() {
    let (out, _) = run("daemon");
    assert_eq!(
        sorted(&out),
        [
            "Exiting : non-daemon",
            "Starting: daemon",
            "Starting: non-daemon",
            "d.is_alive() true"
        ]
    );
    assert!(!out.contains("Exiting : daemon"));
}

#[test]
fn process_names() {
    let (out, _) = run("process_names");
    assert_eq!(
        sorted(&out),
        [
            "Process-3 Exiting",
            "Process-3 Starting",
            "my_service Exiting",
            "my_service Starting",
            "worker 1 Exiting",
            "worker 1 Starting"
        ]
    );
}

#[test]
fn terminate() {
    let (out, _) = run("terminate");
    // The child's "Starting worker" may or may not print before SIGTERM.
    let l: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| *l != "Starting worker")
        .collect();
    assert_eq!(l.len(), 4, "{out}");
    assert_eq!(l[0], "DURING: <Process(slow_worker, started)> true");
    assert!(
        l[1].starts_with("TERMINATED: <Process(slow_worker, "),
        "{}",
        l[1]
    );
    assert_eq!(l[2], "JOINED: <Process(slow_worker, stopped[-15])> false");
    assert_eq!(l[3], "exitcode = -15");
    assert!(!out.contains("Finished worker"));
}

#[test]
fn exit_codes() {
    let (out, err) = run("exit_codes");
    assert_eq!(
        lines(&out),
        [
            "Starting process for exit_error",
            "Starting process for exit_ok",
            "Starting process for return_value",
            "Starting process for raises",
            "Starting process for terminated",
            "exit_error.exitcode = 1",
            "exit_ok.exitcode = 0",
            "return_value.exitcode = 0",
            "raises.exitcode = 1 (panicked: There was an error!)",
            "terminated.exitcode = -15",
        ]
    );
    assert!(
        err.contains("There was an error!"),
        "the child's panic is printed too"
    );
}

#[test]
fn lock_counter() {
    let (out, _) = run("lock_counter");
    let l = lines(&out);
    assert_eq!(l.len(), 11, "{out}");
    assert_eq!(l[10], "num = 90");
    // Under the lock, the values are printed in decreasing order, once each.
    let values: Vec<i64> = l[..10]
        .iter()
        .map(|s| s.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(values, (90..100).rev().collect::<Vec<_>>());
    let mut names: Vec<_> = l[..10]
        .iter()
        .map(|s| s.split(' ').next().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 10, "ten distinct processes");
}

#[test]
fn event() {
    let (out, _) = run("event");
    let l = lines(&out);
    assert_eq!(
        sorted(&out),
        [
            "main: event is set",
            "main: waiting before calling Event.set()",
            "wait_for_event: e.is_set()-> true",
            "wait_for_event: starting",
            "wait_for_event_timeout: e.is_set()-> false",
            "wait_for_event_timeout: starting",
        ]
    );
    let pos = |s: &str| l.iter().position(|x| *x == s).unwrap();
    assert!(pos("wait_for_event_timeout: e.is_set()-> false") < pos("main: event is set"));
    // The blocked waiter's line may print before or after main's "event is
    // set" line (both run after set()), so only the timed-out waiter's
    // order is asserted.
}

#[test]
fn logging() {
    let (out, err) = run("logging");
    assert_eq!(lines(&out), ["Doing some work"]);
    assert_eq!(
        lines(&err),
        [
            "[INFO/Process-1] child process calling entry logging::WORKER",
            "[INFO/Process-1] process exiting with exitcode 0",
        ]
    );
}

#[test]
fn shared_value_array() {
    let (out, _) = run("shared_value_array");
    assert_eq!(
        lines(&out),
        ["3.1415927", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"]
    );
}
