//! Seed 004-1: five processes, each started with its number and printing
//! `Worker: N`. The seed never joins them: the exit hook that `init()`
//! installed waits for all five before the program ends.
//!
//! Run: `cargo run --release --example simple_workers`

use shmkit::process::Process;

fn worker(num: u32) {
    println!("Worker: {num}");
}

shmkit::entry! { static WORKER: Entry<u32> = worker; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let mut jobs = Vec::new();
    for i in 0..5 {
        let p = Process::with_target(&WORKER, &i)?;
        jobs.push(p.start()?);
    }
    Ok(())
}
