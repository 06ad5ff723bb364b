//! Runs the MPMC-queue examples (ports of the seeds' queue programs) and
//! checks what the queues delivered: every message exactly once, in the
//! order the queue guarantees (FIFO per producer), and the errors it
//! reports; exact lines where the output is deterministic, sets where
//! processes interleave.

mod common;

use common::run_example;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn matching(lines: &[&str], f: impl Fn(&str) -> bool) -> Vec<String> {
    lines
        .iter()
        .filter(|l| f(l))
        .map(|l| l.to_string())
        .collect()
}

/// 004-11: the child's list arrived whole.
#[test]
fn queue_basic_prints_the_list() {
    assert_eq!(
        run_example("queue_basic", &[]).lines(),
        ["[42, None, 'hello']"]
    );
}

/// `Queue::new()` carried a 4 MiB value between two small ones, in
/// order and intact: the checksum is computed here from the bytes the
/// child built, not taken from the example.
#[test]
fn queue_big_message_arrives_intact() {
    let pixels: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let sum = pixels.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    assert_eq!(
        run_example("queue_big_message", &[]).lines(),
        [
            "note start".to_string(),
            format!("frame 1: {} bytes, checksum {sum:016x}", 4 << 20),
            "note end".to_string(),
        ]
    );
}

/// 001-4: the producer's 'a' reached the consumer process.
#[test]
fn queue_two_processes_delivers_a() {
    assert_eq!(run_example("queue_two_processes", &[]).lines(), ["a"]);
}

/// 001-4 under spawn: the queue passed as a spawned child's argument
/// carried the producer's 'a' to the consumer process.
#[test]
fn queue_two_processes_spawn_delivers_a() {
    assert_eq!(run_example("queue_two_processes_spawn", &[]).lines(), ["a"]);
}

/// 004-8: a user struct crossed the queue and the child's name is the
/// library's default.
#[test]
fn queue_custom_object_crosses_the_queue() {
    assert_eq!(
        run_example("queue_custom_object", &[]).lines(),
        ["Doing something fancy in Process-1 for Fancy Dan!"]
    );
}

/// 004-13 (bounded): three puts, three gets, each message once; the
/// size reported after a put is within the capacity.
#[test]
fn queue_ab_every_message_once() {
    let r = run_example("queue_ab", &[]);
    let l = r.lines();
    assert_eq!(r.count("processA start.."), 1);
    assert_eq!(r.count("get msg hello world"), 3);
    let puts = matching(&l, |x| x.starts_with("put hello world queue size is "));
    assert_eq!(puts.len(), 3, "{l:?}");
    for p in &puts {
        let n: usize = p.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((1..=5).contains(&n), "{p}");
    }
    let others = matching(&l, |x| {
        !x.starts_with("put hello world")
            && x != "get msg hello world"
            && x != "processA start.."
            && !x.starts_with("queue is empty ")
    });
    assert!(others.is_empty(), "{others:?}");
}

/// 004-12 (threads): each word processed once; every thread started and
/// exited; the main thread last.
#[test]
fn thread_queue_each_word_once() {
    let r = run_example("thread_queue", &[]);
    let l = r.lines();
    let words: Vec<String> = matching(&l, |x| x.contains(" processing "))
        .iter()
        .map(|x| x.rsplit(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        sorted(words),
        sorted(
            ["One", "Two", "Three", "Four", "Five"]
                .map(String::from)
                .to_vec()
        )
    );
    for t in ["Thread-1", "Thread-2", "Thread-3"] {
        assert_eq!(r.count(&format!("Starting {t}")), 1);
        assert_eq!(r.count(&format!("Exiting {t}")), 1);
    }
    assert_eq!(l.last(), Some(&"Exiting Main Thread"));
    assert_eq!(l.len(), 5 + 3 + 3 + 1);
}

/// The 003 Queue listing: Full/Empty/timeouts and the counts the queue
/// reported.
#[test]
fn queue_timeout_nowait_output() {
    let want = [
        "qsize: 4, full: true, empty: false",
        "put_nowait(\"one more\") -> queue.Full",
        "put(\"late\", timeout=0.02) -> queue.Full",
        "get_nowait -> \"msg 0\"",
        "get_nowait -> \"msg 1\"",
        "get_nowait -> \"msg 2\"",
        "get_nowait -> \"msg 3\"",
        "qsize: 0, full: false, empty: true",
        "get_nowait() -> queue.Empty",
        "get(timeout=0.02) -> queue.Empty",
        "get(timeout=30) -> \"hello from the child\"",
    ];
    assert_eq!(run_example("queue_timeout_nowait", &[]).lines(), want);
}

/// 003-4: buns in order (one producer, one consumer), `join()` returned
/// after the last `task_done()`, and the daemon consumer was terminated at
/// exit (`run_example` saw no process left).
#[test]
fn joinable_queue_baozi() {
    let r = run_example("joinable_queue", &[]);
    let out = r.lines();
    let baked: Vec<String> = (0..10)
        .map(|i| format!("Big stuffed bun{i} Number Fresh baked"))
        .collect();
    let eaten: Vec<String> = (0..10)
        .map(|i| format!("Big stuffed bun{i} Number Be eaten"))
        .collect();
    assert_eq!(matching(&out, |l| l.ends_with("Fresh baked")), baked);
    assert_eq!(matching(&out, |l| l.ends_with("Be eaten")), eaten);
    assert_eq!(out.len(), 22, "{out:#?}");
    let done = out
        .iter()
        .position(|l| *l == "All the tasks have been dealt with")
        .unwrap();
    let last_eaten = out.iter().rposition(|l| l.ends_with("Be eaten")).unwrap();
    assert!(done > last_eaten, "{out:#?}");
    assert_eq!(out.last(), Some(&"End of main process"));
}

/// 004-9 (forked form): every task once, one pill per consumer, results
/// after `join()`.
#[test]
fn queue_poison_pill_consumers() {
    let r = run_example("queue_poison_pill", &[]);
    let out = r.lines();
    assert_eq!(out[0], "Creating 4 consumers");
    let exiting = matching(&out, |l| l.ends_with(": Exiting"));
    assert_eq!(exiting.len(), 4);
    let mut names: Vec<&str> = exiting
        .iter()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 4, "four distinct consumers: {exiting:?}");
    assert!(names.iter().all(|n| n.starts_with("Process-")), "{names:?}");
    let is_task = |l: &str| l.starts_with("Process-") && !l.ends_with("Exiting");
    let tasks: Vec<String> = matching(&out, is_task)
        .iter()
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(
        sorted(tasks),
        sorted((0..10).map(|i| format!("{i} * {i}")).collect())
    );
    let results = matching(&out, |l| l.starts_with("Result: "));
    assert_eq!(
        sorted(results),
        sorted(
            (0..10u64)
                .map(|i| format!("Result: {i} * {i} = {}", i * i))
                .collect()
        )
    );
    let first_result = out.iter().position(|l| l.starts_with("Result: ")).unwrap();
    let last_task = out.iter().rposition(|l| is_task(l)).unwrap();
    assert!(first_result > last_task);
    assert_eq!(out.len(), 1 + 4 + 10 + 10);
}

/// 002-3: ten lines, each from a different input process, none torn.
#[test]
fn queue_lock_workers_every_line_once_and_whole() {
    let r = run_example("queue_lock_workers", &[]);
    let lines = r.lines();
    assert_eq!(lines.len(), 10, "{lines:?}");
    let mut putters: Vec<&str> = Vec::new();
    for l in &lines {
        // "<getter pid>(get):<putter pid>(put):<time>", never interleaved.
        let (getter, rest) = l.split_once("(get):").expect("get marker");
        let (putter, time) = rest.split_once("(put):").expect("put marker");
        assert!(
            getter.parse::<u32>().is_ok() && putter.parse::<u32>().is_ok(),
            "{l}"
        );
        assert!(time.parse::<f64>().is_ok(), "{l}");
        putters.push(putter);
    }
    putters.sort();
    putters.dedup();
    assert_eq!(putters.len(), 10, "each input process's line arrives once");
}
