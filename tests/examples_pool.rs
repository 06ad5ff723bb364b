//! Runs the pool/executor seed-port examples and checks what they print.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // <target>/<profile>/deps/<test> → <target>/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let profile = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    profile.join("examples").join(name)
}

fn run(name: &str) -> Vec<String> {
    let out = Command::new(example(name))
        .output()
        .unwrap_or_else(|e| panic!("running example {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.as_str() == what).count()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn pool_apply_async() {
    assert_eq!(run("pool_apply_async"), vec!["sub_progress success", "3"]);
}

#[test]
fn pool_imap_keeps_input_order() {
    let l = run("pool_imap");
    let results: Vec<&String> = l.iter().filter(|l| l.ends_with("sleep success")).collect();
    assert_eq!(
        results,
        ["1 sleep success", "5 sleep success", "3 sleep success"]
    );
    assert_eq!(count(&l, "sub_progress success"), 3);
}

#[test]
fn pool_imap_unordered_completion_order() {
    let l = run("pool_imap_unordered");
    let results: Vec<&String> = l.iter().filter(|l| l.ends_with("sleep success")).collect();
    // Sleeps of 40, 200 and 120 ms on three workers finish 1, 3, 5.
    assert_eq!(
        results,
        ["1 sleep success", "3 sleep success", "5 sleep success"]
    );
}

#[test]
fn executor_submit() {
    let l = run("executor_submit");
    assert_eq!(count(&l, "Process 1 working---kobe"), 6);
    assert_eq!(count(&l, "Process 2 studying---james"), 5);
    assert!(l.last().unwrap().starts_with("Execution time:"));
}

#[test]
fn executor_map_two_rounds_each() {
    let l = sorted(run("executor_map"));
    let mut want = Vec::new();
    for item in [11, 6, 8, 24, 22] {
        for r in 0..2 {
            want.push(format!("Executing task {item}, round {r}"));
        }
    }
    assert_eq!(l, sorted(want));
}

#[test]
fn executor_with_block() {
    let l = run("executor_with");
    let (last, body) = l.split_last().unwrap();
    assert!(last.starts_with("Duration:"));
    let mut want = Vec::new();
    for item in [11, 22, 33] {
        for r in 0..2 {
            want.push(format!("Executing task {item}, round {r}"));
        }
    }
    assert_eq!(sorted(body.to_vec()), sorted(want));
}

#[test]
fn executor_queue_passes_value_through() {
    assert_eq!(
        run("executor_queue"),
        vec![
            "--------process_one-----number--- 200",
            "--------process_two-----number--- 266",
            "Main process value 266",
        ]
    );
}

#[test]
fn pool_queue_producer_consumer() {
    assert_eq!(run("pool_queue"), vec!["a"]);
}

fn fib(n: u32) -> u64 {
    if n <= 2 {
        1
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn fib_vs_sleep_results() {
    let l = run("fib_vs_sleep");
    let fibs: Vec<String> = l
        .iter()
        .filter(|l| l.starts_with("exe result:"))
        .cloned()
        .collect();
    let want: Vec<String> = (25..35).map(|n| format!("exe result:{}", fib(n))).collect();
    assert_eq!(sorted(fibs), sorted(want));
    assert_eq!(count(&l, "sleep result:20"), 12);
    assert!(l.iter().any(|l| l.starts_with("cpu-bound elapsed:")));
    assert!(l.iter().any(|l| l.starts_with("io-bound elapsed:")));
}

#[test]
fn joinable_queue_every_item_once() {
    let l = run("joinable_queue_process");
    for j in 0..20 {
        assert_eq!(count(&l, &format!("【Produced data{j}】")), 5);
        assert_eq!(count(&l, &format!("Received data: Produced data{j}")), 5);
    }
    assert_eq!(
        l.iter()
            .filter(|l| l.starts_with("Main thread completed"))
            .count(),
        1
    );
}

#[test]
fn consumer_tasks_results_and_pills() {
    let l = run("consumer_tasks");
    let n: usize = l[0]
        .strip_prefix("Creating ")
        .and_then(|s| s.strip_suffix(" consumers"))
        .and_then(|s| s.parse().ok())
        .expect("consumer count line");
    assert_eq!(l.iter().filter(|l| l.ends_with(": Exiting")).count(), n);
    let results: Vec<String> = l
        .iter()
        .filter(|l| l.starts_with("Result: "))
        .cloned()
        .collect();
    let want: Vec<String> = (0..10)
        .map(|i| format!("Result: {i} * {i} = {}", i * i))
        .collect();
    assert_eq!(sorted(results), sorted(want));
}

#[test]
fn tour_shows_lock_event_queue_dict_and_pool() {
    let l = run("tour");
    assert!(l.contains(&"mutex counter after 4 x 10000 increments: 40000".to_owned()));
    assert!(l.contains(&"event woke 3 waiting processes".to_owned()));
    assert!(l
        .iter()
        .any(|x| x.contains("died holding the lock; recovered, value still 40000")));
    assert!(l.contains(&"queue delivered 6 messages: first (0, \"message 0\")".to_owned()));
    assert!(l.contains(&"dict: hits = 4000, 5 entries".to_owned()));
    assert!(l.contains(
        &"pool map of x*x over 1..=10: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]".to_owned()
    ));
}
