//! Seed 004-7: a subclass of `multiprocessing.Process` overriding `run()`.
//! Here `Worker` implements `shmkit::process::Run`; five of them are
//! started and joined, and each prints its default name, which the
//! library derives from the type, like Python's `Worker-1` … `Worker-5`.
//!
//! Run: `cargo run --release --example process_subclass`

use serde::{Deserialize, Serialize};
use shmkit::process::{current_process, Run};

#[derive(Serialize, Deserialize)]
struct Worker;

impl Run for Worker {
    fn run(self) {
        println!("In {}", current_process().name());
    }
}
shmkit::register_run!(Worker);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let p = Worker.into_process()?;
        jobs.push(p.start()?);
    }
    for j in &jobs {
        let status = j.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", j.name()).into());
        }
    }
    Ok(())
}
