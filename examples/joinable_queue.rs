//! Port of the seed's `JoinableQueue` producer/consumer ("baozi"): the
//! producer bakes buns, then `join()`s until the consumer has marked every
//! one done with `task_done()`; the consumer is a daemon the main process
//! ends when the producer is finished.
//!
//! Run: `cargo run --release --example joinable_queue`

use shmkit::process::{self, Process};
use shmkit::queue::JoinableQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // JoinableQueue(30) in the seed; 32 slots of up to 64 bytes here.
    let q = JoinableQueue::<String>::anonymous(64, 32)?;

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
    let consumer = {
        let q = q.clone();
        // A daemon: runs until the main process kills it (or dies).
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
    // The daemon consumer dies with the main process.
    consumer.kill()?;
    consumer.join()?;
    Ok(())
}
