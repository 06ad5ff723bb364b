//! Seed 000-1: two child processes (`task`, `study`) work while the main
//! process prints and keeps going; nothing is joined — the exit hook that
//! `init()` installed waits for both children when `main` returns, as
//! Python does. Sleeps of 1 s are 50 ms here.
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
    let p1 = Process::with_target(&TASK, &())?;
    let p2 = Process::with_target(&STUDY, &())?;
    let _p1 = p1.start()?;
    let _p2 = p2.start()?;
    println!("Main process completed");
    for _ in 0..6 {
        println!("------------------------hahaha");
        std::thread::sleep(TICK);
    }
    Ok(())
}
