//! Runs the dict examples that port seed programs and checks their output.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // <target>/<profile>/deps/<test> -> <target>/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

fn run(name: &str) -> String {
    let out = Command::new(example(name)).output().unwrap_or_else(|e| {
        panic!("running example {name}: {e} (cargo test builds examples first)")
    });
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn manager_dict_with_lock_ends_at_90() {
    assert_eq!(run("manager_dict").trim(), "90");
}

#[test]
fn dict_update_without_lock_ends_at_90() {
    assert_eq!(run("dict_update").trim(), "90");
}

#[test]
fn add_data_prints_both_entries() {
    assert_eq!(
        run("dict_add_data").trim(),
        "{'number1': 25, 'number2': 30}"
    );
}
