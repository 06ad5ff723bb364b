//! Seed 003-4, the `JoinableQueue(30)` producer/consumer ("baozi"): the
//! producer bakes buns, then `join()`s until the consumer has marked every
//! one done with `task_done()`; the consumer is a daemon that loops
//! forever, so the main process only joins the producer, and the exit hook
//! terminates the consumer when `main` returns. The seed's sleeps (0.2 s,
//! 0.5 s) are left out.
//!
//! Run: `cargo run --release --example joinable_queue`

use shmkit::process::{self, Process};
use shmkit::queue::JoinableQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let q = JoinableQueue::<String>::anonymous(64, 30)?;

    let producer = {
        let q = q.clone();
        process::fork(move || {
            for i in 0..10 {
                let s = format!("Big stuffed bun{i} Number");
                println!("{s} Fresh baked");
                q.put(s).expect("queue closed");
            }
            q.join(); // until task_done() was called once per bun
            println!("All the tasks have been dealt with");
        })?
    };
    let _consumer = {
        let q = q.clone();
        // A daemon: runs until the main process ends.
        Process::builder().daemon(true).fork(move || loop {
            match q.get() {
                Ok(baozi) => {
                    println!("{baozi} Be eaten");
                    q.task_done().expect("one task_done per get");
                }
                Err(_) => return,
            }
        })?
    };
    let status = producer.join()?;
    assert!(status.success(), "producer failed: {status}");
    println!("End of main process");
    // The daemon consumer ends with the main code (the exit hook).
    Ok(())
}
