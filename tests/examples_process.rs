//! Runs the process-layer seed ports in `examples/` and checks what the
//! library did: exit codes, names and reprs it produced, what crossed
//! between processes, the orders it guarantees, and (in
//! `common::run_example`, for every example) that no child outlived its
//! parent. Lines whose order depends on scheduling are compared as sets.

mod common;

use common::run_example;

fn strings(v: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    v.into_iter().map(Into::into).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v
}

/// 000-1: no join in main; the exit hook waits for both children.
#[test]
fn process_basics() {
    let r = run_example("process_basics", &[]);
    let mut expected = strings(["Main process completed"]);
    expected.extend((0..6).map(|_| "------------------------hahaha".to_owned()));
    expected.extend((0..6).map(|i| format!("Main process {i} working")));
    expected.extend((0..5).map(|i| format!("Main process {i} studying")));
    assert_eq!(strings(r.sorted()), sorted(expected));
    // Each child's own lines are in order.
    let working: Vec<_> = r
        .lines()
        .into_iter()
        .filter(|l| l.ends_with("working"))
        .collect();
    let want: Vec<String> = (0..6)
        .map(|i| format!("Main process {i} working"))
        .collect();
    assert_eq!(working, want);
}

/// 000-2: each child changed its own copy of `n`.
#[test]
fn spatial_isolation() {
    let r = run_example("spatial_isolation", &[]);
    assert_eq!(
        r.sorted(),
        ["Main process completed 0", "study 10000", "task 1000"]
    );
}

/// 003-1: the forked child's write did not reach the parent.
#[test]
fn global_num() {
    assert_eq!(run_example("global_num", &[]).lines(), ["3", "100"]);
}

/// 001-2: the pid printed is the child's; join returned after it printed.
#[test]
fn process_pid() {
    let r = run_example("process_pid", &[]);
    let l = r.lines();
    assert_eq!(l.len(), 3, "{}", r.stdout);
    let pid: u32 = l[0].parse().expect("a pid");
    assert_ne!(pid, r.pid);
    assert_eq!(l[1..], ["sub_progress success", "main progress end"]);
}

/// 002-1: threads share the main pid; five processes have five others.
#[test]
fn thread_vs_process() {
    let r = run_example("thread_vs_process", &[]);
    let l = r.lines();
    assert_eq!(l.len(), 11, "{}", r.stdout);
    assert_eq!(l[0], format!("Main: {}", r.pid));
    for line in &l[1..6] {
        assert_eq!(*line, format!("thread {}", r.pid));
    }
    let mut pids: Vec<u32> = l[6..]
        .iter()
        .map(|x| {
            x.strip_prefix("process ")
                .expect("a process line")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(pids.iter().all(|&p| p != r.pid));
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 5, "five distinct processes");
}

/// 003-2 as written: the daemon was terminated at the end of main (its
/// line never prints), the normal child was joined (its line came, and
/// `run_example` saw no process left behind).
#[test]
fn daemon_no_join() {
    let r = run_example("daemon_no_join", &[]);
    assert_eq!(
        r.lines(),
        ["End of main process", "Code for normal subprocesses"]
    );
}

/// 004-1: five unjoined workers all ran (joined by the exit hook).
#[test]
fn simple_workers() {
    let r = run_example("simple_workers", &[]);
    let want: Vec<String> = (0..5).map(|i| format!("Worker: {i}")).collect();
    assert_eq!(strings(r.sorted()), want);
}

/// 004-2: the names the library gave (Process-3 is the third object).
#[test]
fn process_names() {
    let r = run_example("process_names", &[]);
    assert_eq!(
        r.sorted(),
        [
            "Process-3 Exiting",
            "Process-3 Starting",
            "my_service Exiting",
            "my_service Starting",
            "worker 1 Exiting",
            "worker 1 Starting"
        ]
    );
    for name in ["Process-3", "my_service", "worker 1"] {
        let l = r.lines();
        let start = l.iter().position(|x| *x == format!("{name} Starting"));
        let end = l.iter().position(|x| *x == format!("{name} Exiting"));
        assert!(start < end, "{name}: {l:?}");
    }
}

/// 004-3: the daemon was alive when asked, and terminated at exit.
#[test]
fn daemon() {
    let r = run_example("daemon", &[]);
    assert_eq!(
        r.sorted(),
        [
            "Exiting : non-daemon",
            "Starting: daemon",
            "Starting: non-daemon",
            "d.is_alive() true"
        ]
    );
    let l = r.lines();
    let pos = |s: &str| l.iter().position(|x| *x == s).unwrap();
    assert!(pos("Starting: daemon") < pos("d.is_alive() true"));
}

/// 004-4: the library's reprs before start, while running, after join,
/// and the SIGTERM exit code.
#[test]
fn terminate() {
    let r = run_example("terminate", &[]);
    // The child's "Starting worker" may or may not print before SIGTERM.
    let l: Vec<_> = r
        .lines()
        .into_iter()
        .filter(|l| *l != "Starting worker")
        .collect();
    assert_eq!(l.len(), 5, "{}", r.stdout);
    let parent = r.pid;
    assert_eq!(
        l[0],
        format!("BEFORE: <Process name='Process-1' parent={parent} initial> false")
    );
    let pid: u32 = l[1]
        .strip_prefix("DURING: <Process name='Process-1' pid=")
        .and_then(|s| s.split(' ').next())
        .expect("DURING repr with a pid")
        .parse()
        .unwrap();
    assert_eq!(
        l[1],
        format!("DURING: <Process name='Process-1' pid={pid} parent={parent} started> true")
    );
    // Right after terminate() the child may or may not have died yet.
    assert!(
        l[2] == format!("TERMINATED: <Process name='Process-1' pid={pid} parent={parent} started> true")
            || l[2]
                == format!(
                    "TERMINATED: <Process name='Process-1' pid={pid} parent={parent} stopped exitcode=-SIGTERM> false"
                ),
        "{}",
        l[2]
    );
    assert_eq!(
        l[3],
        format!(
            "JOINED: <Process name='Process-1' pid={pid} parent={parent} stopped exitcode=-SIGTERM> false"
        )
    );
    assert_eq!(l[4], "exitcode = -15");
    assert_eq!(r.count("Finished worker"), 0);
}

/// 004-5: exit codes and the panic message, as the library reported them.
#[test]
fn exit_codes() {
    let r = run_example("exit_codes", &[]);
    assert_eq!(
        r.lines(),
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
        r.stderr.contains("There was an error!"),
        "the child's panic is printed too"
    );
}

/// 004-6: every stderr line is one the library logged, in the order the
/// child's bootstrap and the exit hooks log them.
#[test]
fn logging() {
    let r = run_example("logging", &[]);
    assert_eq!(r.lines(), ["Doing some work"]);
    assert_eq!(
        r.stderr.lines().collect::<Vec<_>>(),
        [
            "[INFO/Process-1] child process calling entry logging::WORKER",
            "[INFO/Process-1] process shutting down",
            "[INFO/Process-1] process exiting with exitcode 0",
            "[INFO/MainProcess] process shutting down",
        ]
    );
}

/// 004-7: the library named the Run-type processes Worker-1..Worker-5.
#[test]
fn process_subclass() {
    let r = run_example("process_subclass", &[]);
    let want: Vec<String> = (1..=5).map(|i| format!("In Worker-{i}")).collect();
    assert_eq!(strings(r.sorted()), want);
}

/// 004-10: the timed waiter gave up (false) before the event was set; the
/// blocked waiter saw it set.
#[test]
fn event() {
    let r = run_example("event", &[]);
    let l = r.lines();
    assert_eq!(
        r.sorted(),
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
}

/// Not a seed program: ten processes under a robust lock, 100 → 90.
#[test]
fn lock_counter() {
    let r = run_example("lock_counter", &[]);
    let l = r.lines();
    assert_eq!(l.len(), 11, "{}", r.stdout);
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

/// Not a seed program (Python's docs): a shared Value and Array.
#[test]
fn shared_value_array() {
    let r = run_example("shared_value_array", &[]);
    assert_eq!(
        r.lines(),
        ["3.1415927", "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"]
    );
}
