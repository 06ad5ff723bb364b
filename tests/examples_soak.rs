//! A 10-second smoke run of `examples/soak.rs` (the long run is
//! `cargo run --release --example soak -- --minutes 10`): every process
//! role runs and is SIGKILLed at random, and every end-of-run check of
//! what the library delivered passes.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // <target>/<profile>/deps/<test> -> <target>/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
    profile_dir.join("examples").join(name)
}

#[test]
fn soak_smoke_run_passes_every_check() {
    let out = Command::new(example("soak"))
        .args(["--seconds", "10"])
        .output()
        .expect("run examples/soak");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().any(|l| l.contains("s] delivered spsc")),
        "{text}"
    );
    for check in [
        "spsc  queue:",
        "mpmc  queue:",
        "typed queue:",
        "lock:",
        "dict:",
        "pool:",
        "rss:",
        "segments left in /dev/shm: 0",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "check {check:?} missing or failed:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(text.lines().last(), Some("RESULT: PASS"), "{text}");
    let killed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("soak: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("kill count line");
    assert!(killed > 0, "processes were killed during the run:\n{text}");
}
