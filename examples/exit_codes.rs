//! Seed 004-5: exit codes of children (the seed's exit_error / exit_ok / return_value /
//! raises / terminated table): 1, 0, 0, 1 (a panic, message reported), -15.
//!
//! Run: `cargo run --release --example exit_codes`

use std::time::Duration;

use shmkit::process::Process;

fn exit_error(_: ()) {
    std::process::exit(1);
}

fn exit_ok(_: ()) {}

fn return_value(_: ()) {
    // Python ignores a target's return value. In shmkit an `i32` returned
    // by an entry *is* the exit code, so this entry computes and drops it.
    let _value = 1;
}

fn raises(_: ()) {
    panic!("There was an error!");
}

fn terminated(_: ()) {
    std::thread::sleep(Duration::from_secs(30));
}

shmkit::entry! {
    static EXIT_ERROR: Entry<()> = exit_error;
    static EXIT_OK: Entry<()> = exit_ok;
    static RETURN_VALUE: Entry<()> = return_value;
    static RAISES: Entry<()> = raises;
    static TERMINATED: Entry<()> = terminated;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let mut jobs = Vec::new();
    for (name, f) in [
        ("exit_error", &EXIT_ERROR),
        ("exit_ok", &EXIT_OK),
        ("return_value", &RETURN_VALUE),
        ("raises", &RAISES),
        ("terminated", &TERMINATED),
    ] {
        println!("Starting process for {name}");
        jobs.push(Process::builder().name(name).spawn(f, &())?);
    }
    jobs.last().expect("five jobs").terminate()?;
    for j in &jobs {
        let status = j.join()?;
        match status.panic_message() {
            Some(msg) => println!(
                "{}.exitcode = {} (panicked: {msg})",
                j.name(),
                status.exitcode()
            ),
            None => println!("{}.exitcode = {}", j.name(), status.exitcode()),
        }
    }
    Ok(())
}
