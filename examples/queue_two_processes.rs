//! Seed 001-4: a `Queue(10)` handed to a producer and a consumer process;
//! the producer puts `'a'` and sleeps, the consumer sleeps, gets and
//! prints it; the parent joins both. Sleeps of 2 s are 200 ms here. The
//! children are forked, so both inherit the queue, like Python's
//! `args=(queue,)` under the fork start method.
//!
//! Run: `cargo run --release --example queue_two_processes`

use std::time::Duration;

use shmkit::process;
use shmkit::queue::Queue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let queue = Queue::<String>::anonymous(64, 10)?;

    let my_producer = process::fork(|| -> Result<(), String> {
        queue.put("a".to_owned()).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    })?;
    let my_consumer = process::fork(|| -> Result<(), String> {
        std::thread::sleep(Duration::from_millis(200));
        let data = queue.get().map_err(|e| e.to_string())?;
        println!("{data}");
        Ok(())
    })?;

    for p in [&my_producer, &my_consumer] {
        let status = p.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", p.name()).into());
        }
    }
    Ok(())
}
