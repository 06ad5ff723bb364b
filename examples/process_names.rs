//! Seed 004-2: `current_process().name()` in named and default-named
//! children. Three process objects are made (`my_service`, `worker 1`, and
//! one with the default name, which is `Process-3` because every process
//! object takes a number, named or not); they are started and never
//! joined: the exit hook waits for them. Sleeps of 2 s and 3 s are 20 ms
//! and 30 ms here.
//!
//! Run: `cargo run --release --example process_names`

use std::time::Duration;

use shmkit::process::{current_process, Process};

fn worker(_: ()) {
    let name = current_process().name().to_owned();
    println!("{name} Starting");
    std::thread::sleep(Duration::from_millis(20));
    println!("{name} Exiting");
}

fn my_service(_: ()) {
    let name = current_process().name().to_owned();
    println!("{name} Starting");
    std::thread::sleep(Duration::from_millis(30));
    println!("{name} Exiting");
}

shmkit::entry! {
    static WORKER: Entry<()> = worker;
    static MY_SERVICE: Entry<()> = my_service;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let service = Process::builder()
        .name("my_service")
        .target(&MY_SERVICE, &())?;
    let worker_1 = Process::builder().name("worker 1").target(&WORKER, &())?;
    let worker_2 = Process::with_target(&WORKER, &())?; // default name
    let _worker_1 = worker_1.start()?;
    let _worker_2 = worker_2.start()?;
    let _service = service.start()?;
    // Not joined, as in the seed: the exit hook waits for all three.
    Ok(())
}
