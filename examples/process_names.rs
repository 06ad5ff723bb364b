//! `current_process().name()` in named and default-named children (the
//! seed's `my_service` / `worker 1` / default-name program).
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
        .spawn(&MY_SERVICE, &())?;
    let worker_1 = Process::builder().name("worker 1").spawn(&WORKER, &())?;
    let worker_2 = Process::builder().spawn(&WORKER, &())?; // default name: Process-3
    for p in [worker_1, worker_2, service] {
        p.join()?;
    }
    Ok(())
}
