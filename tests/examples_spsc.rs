//! Runs the SPSC/Pipe examples and checks their output.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // <target>/<profile>/deps/<test> -> <target>/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    profile_dir.join("examples").join(name)
}

#[test]
fn pipe_example_prints_a() {
    let out = Command::new(example("pipe"))
        .output()
        .expect("run examples/pipe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
}

#[test]
fn throughput_example_reports_both_transports() {
    let out = Command::new(example("throughput"))
        .arg("2000")
        .output()
        .expect("run examples/throughput");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
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
