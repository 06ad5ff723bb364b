//! Runs the pool/executor seed ports and checks what the library did:
//! every task ran exactly once, results in the order the API promises,
//! values handed between workers; `common::run_example` also checks the
//! exit code and that no worker outlived the example.

mod common;

use common::run_example;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_owned).collect()
}

/// Two rounds for each item: every task ran exactly once.
fn rounds(items: &[u32]) -> Vec<String> {
    let mut want = Vec::new();
    for item in items {
        for r in 0..2 {
            want.push(format!("Executing task {item}, round {r}"));
        }
    }
    sorted(want)
}

/// 001-3, commented variant: `apply_async`, `close`, `join`, `get`.
#[test]
fn pool_apply_async() {
    let r = run_example("pool_apply_async", &[]);
    assert_eq!(r.lines(), ["sub_progress success", "3"]);
}

/// 001-3, commented variant: `imap` yields in input order.
#[test]
fn pool_imap_keeps_input_order() {
    let r = run_example("pool_imap", &[]);
    let results: Vec<&str> = r
        .lines()
        .into_iter()
        .filter(|l| l.ends_with("sleep success"))
        .collect();
    assert_eq!(
        results,
        ["1 sleep success", "5 sleep success", "3 sleep success"]
    );
    assert_eq!(r.count("sub_progress success"), 3);
}

/// 001-3: `imap_unordered` yields in completion order.
#[test]
fn pool_imap_unordered_completion_order() {
    let r = run_example("pool_imap_unordered", &[]);
    let results: Vec<&str> = r
        .lines()
        .into_iter()
        .filter(|l| l.ends_with("sleep success"))
        .collect();
    // Sleeps of 40, 200 and 120 ms on three workers finish 1, 3, 5.
    assert_eq!(
        results,
        ["1 sleep success", "3 sleep success", "5 sleep success"]
    );
    assert_eq!(r.count("sub_progress success"), 3);
}

/// 000-4: both submitted tasks ran to the end before `shutdown` returned.
#[test]
fn executor_submit() {
    let r = run_example("executor_submit", &[]);
    assert_eq!(r.count("Process 1 working---kobe"), 6);
    assert_eq!(r.count("Process 2 studying---james"), 5);
    let l = r.lines();
    assert_eq!(l.len(), 12, "{}", r.stdout);
    assert!(l[11].starts_with("Execution time:"));
}

/// 000-5: a `map` whose results are never read still ran every task.
#[test]
fn executor_map_unread_runs_every_task() {
    let r = run_example("executor_map", &[]);
    assert_eq!(owned(r.sorted()), rounds(&[11, 6, 8, 24, 22]));
}

/// 000-6: the same inside a `with` block; the duration comes after all.
#[test]
fn executor_with_block() {
    let r = run_example("executor_with", &[]);
    let l = owned(r.lines());
    let (last, body) = l.split_last().unwrap();
    assert!(last.starts_with("Duration:"));
    assert_eq!(sorted(body.to_vec()), rounds(&[11, 22, 33]));
}

/// 000-7: the two tasks, running together, handed the number through the
/// queue in one order or the other; 266 either way.
#[test]
fn executor_queue_hands_the_value_over() {
    let r = run_example("executor_queue", &[]);
    let l = r.lines();
    let one_first = [
        "--------process_one-----number--- 200",
        "--------process_two-----number--- 266",
    ];
    let two_first = [
        "--------process_two-----number--- 166",
        "--------process_one-----number--- 266",
    ];
    assert!(l[..2] == one_first || l[..2] == two_first, "{l:?}");
    assert_eq!(l[2..], ["Main process value 266"]);
}

/// 001-5: the consumer got the producer's 'a' through the named queue.
#[test]
fn pool_queue_producer_consumer() {
    assert_eq!(run_example("pool_queue", &[]).lines(), ["a"]);
}

fn fib(n: u32) -> u64 {
    if n <= 2 {
        1
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// The stdout lines of `r` that start with `prefix`, sorted.
fn sorted_lines_with(r: &common::ExampleRun, prefix: &str) -> Vec<String> {
    sorted(
        r.lines()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect(),
    )
}

/// `{prefix}{value}` for `fib(n)` over `fibs` and thirty 20 ms sleeps
/// (what one pool variant of 001-1 prints), sorted.
fn fib_and_sleep_results(prefix: &str, fibs: std::ops::Range<u32>) -> Vec<String> {
    let mut want: Vec<String> = fibs.map(|n| format!("{prefix}{}", fib(n))).collect();
    want.extend((0..30).map(|_| format!("{prefix}20")));
    sorted(want)
}

/// 001-1 and its three commented variants: every submitted future (and
/// every thread-pool item) completed once, with its value.
#[test]
fn fib_vs_sleep_results() {
    let r = run_example("fib_vs_sleep", &[]);
    assert_eq!(
        sorted_lines_with(&r, "exe result:"),
        fib_and_sleep_results("exe result:", 25..35)
    );
    assert_eq!(
        r.lines()
            .iter()
            .filter(|l| l.starts_with("cpu-bound elapsed:") || l.starts_with("io-bound elapsed:"))
            .count(),
        2
    );
    // The seed's commented ThreadPoolExecutor variants: fib(25..40) and
    // thirty sleeps, each value once.
    assert_eq!(
        sorted_lines_with(&r, "thread exe result:"),
        fib_and_sleep_results("thread exe result:", 25..40)
    );
}

/// 000-3: each of the 100 items was produced once and consumed once.
#[test]
fn joinable_queue_every_item_once() {
    let r = run_example("joinable_queue_process", &[]);
    for j in 0..20 {
        assert_eq!(r.count(&format!("【Produced data{j}】")), 5);
        assert_eq!(r.count(&format!("Received data: Produced data{j}")), 5);
    }
    let l = r.lines();
    assert_eq!(
        l.iter()
            .filter(|l| l.starts_with("Main thread completed"))
            .count(),
        1
    );
    // q.join() returned only after every item was received.
    let done = l
        .iter()
        .position(|l| *l == "Main thread completed")
        .unwrap();
    let last = l
        .iter()
        .rposition(|l| l.starts_with("Received data"))
        .unwrap();
    assert!(done > last);
}

/// 004-9 with a `Run` type: the library named the consumers
/// `Consumer-1..n`; every job ran once, every consumer took one pill.
#[test]
fn consumer_tasks_results_and_pills() {
    let r = run_example("consumer_tasks", &[]);
    let l = r.lines();
    let n: usize = l[0]
        .strip_prefix("Creating ")
        .and_then(|s| s.strip_suffix(" consumers"))
        .and_then(|s| s.parse().ok())
        .expect("consumer count line");
    let exiting: Vec<String> = l
        .iter()
        .filter(|l| l.ends_with(": Exiting"))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        sorted(exiting),
        sorted((1..=n).map(|i| format!("Consumer-{i}: Exiting")).collect())
    );
    let tasks: Vec<String> = l
        .iter()
        .filter(|l| l.starts_with("Consumer-") && !l.ends_with("Exiting"))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(
        sorted(tasks),
        sorted((0..10).map(|i| format!("{i} * {i}")).collect())
    );
    let results: Vec<String> = l
        .iter()
        .filter(|l| l.starts_with("Result: "))
        .map(|l| l.to_string())
        .collect();
    let want: Vec<String> = (0..10)
        .map(|i| format!("Result: {i} * {i} = {}", i * i))
        .collect();
    assert_eq!(sorted(results), sorted(want));
}

/// Not a seed program: the tour's lock, event, queue, dict and pool.
#[test]
fn tour_shows_lock_event_queue_dict_and_pool() {
    let r = run_example("tour", &[]);
    let l = r.lines();
    assert!(l.contains(&"mutex counter after 4 x 10000 increments: 40000"));
    assert!(l.contains(&"event woke 3 waiting processes"));
    assert!(l
        .iter()
        .any(|x| x.contains("died holding the lock; recovered, value still 40000")));
    assert!(l.contains(&"queue delivered 6 messages: first (0, \"message 0\")"));
    assert!(l.contains(&"dict: hits = 4000, 5 entries"));
    assert!(l.contains(&"pool map of x*x over 1..=10: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]"));
}
