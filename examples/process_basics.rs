//! Two child processes working while the parent keeps going (the seed's
//! `task`/`study` program, with 1 s sleeps scaled down to 50 ms).
//!
//! Run: `cargo run --release --example process_basics`

use std::time::Duration;

use shmkit::process::Process;

const TICK: Duration = Duration::from_millis(50);

fn task(_: ()) {
    for i in 0..6 {
        println!("Main process {i} working");
        std::thread::sleep(TICK);
    }
}

fn study(_: ()) {
    for i in 0..5 {
        println!("Main process {i} studying");
        std::thread::sleep(TICK);
    }
}

shmkit::entry! {
    static TASK: Entry<()> = task;
    static STUDY: Entry<()> = study;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let p1 = Process::builder().spawn(&TASK, &())?;
    let p2 = Process::builder().spawn(&STUDY, &())?;
    println!("Main process completed");
    for _ in 0..6 {
        println!("------------------------hahaha");
        std::thread::sleep(TICK);
    }
    // Python joins non-daemon children at exit; here it is explicit.
    p1.join()?;
    p2.join()?;
    Ok(())
}
