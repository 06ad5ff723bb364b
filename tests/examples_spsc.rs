//! Runs the SPSC/Pipe examples and checks what crossed the pipes.

mod common;

use common::run_example;

/// 001-6: 'a' went from one child to the other through the pipe.
#[test]
fn pipe_between_two_children() {
    assert_eq!(run_example("pipe", &[]).lines(), ["a"]);
}

/// 002-2: both directions of the duplex pipe, in causal order.
#[test]
fn pipe_duplex_both_directions() {
    assert_eq!(
        run_example("pipe_duplex", &[]).lines(),
        ["proc2 rec: hello", "proc1 rec: hello, too"]
    );
}

/// Not a seed program: both transports are measured at every size.
#[test]
fn throughput_example_reports_both_transports() {
    let r = run_example("throughput", &["2000"]);
    let text = &r.stdout;
    assert!(
        text.contains("ping-pong (start)") && text.contains("ping-pong (end)"),
        "{text}"
    );
    for size in ["8", "64", "4096"] {
        for what in ["shmkit-spsc", "pipe", "ratio"] {
            let found = text
                .lines()
                .any(|l| l.starts_with(what) && l.contains(&format!("size={size:>6}")));
            assert!(found, "missing {what} size {size} in:\n{text}");
        }
    }
}

/// Not a seed program: rings and queues embedded in a memmap2 file
/// mapping by "another crate", produced in one process and consumed in
/// another, every message in order.
#[test]
fn embedded_queues_in_a_file_mapping_cross_processes() {
    let r = run_example("embed_memmap", &[]);
    let lines = r.lines();
    assert!(
        lines.contains(&"child: received 1000 frames and 1000 jobs in order"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("parent: sent 1000 frames and 1000 jobs; child exit status: 0")),
        "{lines:?}"
    );
}
