//! Runs the MPMC-queue examples (ports of the seeds' queue programs) and
//! checks their output: exact lines where the output is deterministic,
//! sets and orderings where processes interleave.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> Vec<String> {
    // <target>/<profile>/deps/<test> -> <target>/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe.parent().unwrap().parent().unwrap().join("examples");
    let out = Command::new(dir.join(name))
        .output()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    assert!(out.status.success(), "{name} failed: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn queue_basic_prints_the_list() {
    assert_eq!(example("queue_basic"), ["[42, None, 'hello']"]);
}

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
    assert_eq!(example("queue_timeout_nowait"), want);
}

#[test]
fn joinable_queue_baozi() {
    let out = example("joinable_queue");
    let baked: Vec<String> = (0..10)
        .map(|i| format!("Big stuffed bun{i} Number Fresh baked"))
        .collect();
    let eaten: Vec<String> = (0..10)
        .map(|i| format!("Big stuffed bun{i} Number Be eaten"))
        .collect();
    let got_baked: Vec<String> = out
        .iter()
        .filter(|l| l.ends_with("Fresh baked"))
        .cloned()
        .collect();
    let got_eaten: Vec<String> = out
        .iter()
        .filter(|l| l.ends_with("Be eaten"))
        .cloned()
        .collect();
    assert_eq!(got_baked, baked, "baked in order");
    assert_eq!(got_eaten, eaten, "eaten in order (one consumer)");
    assert_eq!(out.len(), 22, "{out:#?}");
    // join() returned only after every bun was eaten; main ends last.
    let done = out
        .iter()
        .position(|l| l == "All the tasks have been dealt with")
        .unwrap();
    let last_eaten = out.iter().rposition(|l| l.ends_with("Be eaten")).unwrap();
    assert!(done > last_eaten, "{out:#?}");
    assert_eq!(out.last().unwrap(), "End of main process");
}

#[test]
fn queue_poison_pill_consumers() {
    let out = example("queue_poison_pill");
    assert_eq!(out[0], "Creating 4 consumers");
    let exiting: Vec<String> = out
        .iter()
        .filter(|l| l.ends_with(": Exiting"))
        .cloned()
        .collect();
    assert_eq!(
        sorted(exiting),
        (1..=4)
            .map(|i| format!("Consumer-{i}: Exiting"))
            .collect::<Vec<_>>()
    );
    let tasks: Vec<String> = out
        .iter()
        .filter(|l| l.starts_with("Consumer-") && !l.ends_with("Exiting"))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(
        sorted(tasks),
        sorted((0..10).map(|i| format!("{i} * {i}")).collect())
    );
    let results: Vec<String> = out
        .iter()
        .filter(|l| l.starts_with("Result: "))
        .cloned()
        .collect();
    assert_eq!(
        sorted(results),
        sorted(
            (0..10u64)
                .map(|i| format!("Result: {i} * {i} = {}", i * i))
                .collect()
        )
    );
    // Results are printed after join(), i.e. after every task line.
    let first_result = out.iter().position(|l| l.starts_with("Result: ")).unwrap();
    let last_task = out
        .iter()
        .rposition(|l| l.starts_with("Consumer-") && !l.ends_with("Exiting"))
        .unwrap();
    assert!(first_result > last_task);
    assert_eq!(out.len(), 1 + 4 + 10 + 10);
}

#[test]
fn queue_lock_workers_every_line_once_and_whole() {
    let lines = example("queue_lock_workers");
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
