//! Seed 004-13: a module-level `Queue(5)` handed to two processes; `startB`
//! puts `'hello world'` every 3 ticks, `startA` looks every tick and either
//! reports the queue empty or gets a message. The seed's loops never end
//! (and, as printed, it starts only processA although its text says both
//! run); this port starts both and stops after three messages, with ticks
//! of 20 ms instead of 1 s, so that it can run as a test.
//!
//! Run: `cargo run --release --example queue_ab`

use std::time::Duration;

use shmkit::process::{self, Process};
use shmkit::queue::Queue;

const TICK: Duration = Duration::from_millis(20);
const MESSAGES: usize = 3;

fn start_a(msg_queue: &Queue<String>) -> Result<(), String> {
    let mut got = 0;
    while got < MESSAGES {
        if msg_queue.empty() {
            println!("queue is empty {}", msg_queue.qsize());
        } else {
            let msg = msg_queue.get().map_err(|e| e.to_string())?;
            println!("get msg {msg}");
            got += 1;
        }
        std::thread::sleep(TICK);
    }
    Ok(())
}

fn start_b(msg_queue: &Queue<String>) -> Result<(), String> {
    for _ in 0..MESSAGES {
        msg_queue
            .put("hello world".to_owned())
            .map_err(|e| e.to_string())?;
        println!("put hello world queue size is {}", msg_queue.qsize());
        std::thread::sleep(3 * TICK);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let msg_queue = Queue::<String>::anonymous(64, 5)?;
    let process_a: Process = process::fork(|| start_a(&msg_queue))?;
    let process_b: Process = process::fork(|| start_b(&msg_queue))?;
    println!("processA start..");
    for p in [&process_a, &process_b] {
        let status = p.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", p.name()).into());
        }
    }
    Ok(())
}
