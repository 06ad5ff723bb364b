//! Seed 001-4 under the spawn start method: a `Queue(10)` passed as an
//! argument to a producer and a consumer process, like Python's
//! `Process(target=f, args=(queue,))`. The producer puts `'a'` and
//! sleeps, the consumer sleeps, gets and prints it; the parent joins both.
//! Sleeps of 2 s are 200 ms here.
//!
//! The children are fresh executions of this binary: the anonymous queue
//! reaches them as a [`Shared`] argument (its memory is handed over as an
//! inherited descriptor), and each child attaches to it. For the fork
//! variant, where children inherit the queue itself, see
//! `queue_two_processes.rs`.
//!
//! Run: `cargo run --release --example queue_two_processes_spawn`

use std::time::Duration;

use shmkit::process::{self, Process, Shared};
use shmkit::queue::Queue;

type Error = Box<dyn std::error::Error>;

fn producer(queue: Shared<Queue<String>>) -> Result<(), Error> {
    let queue = queue.attach()?;
    queue.put("a".to_owned()).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn consumer(queue: Shared<Queue<String>>) -> Result<(), Error> {
    let queue = queue.attach()?;
    std::thread::sleep(Duration::from_millis(200));
    let data = queue.get()?;
    println!("{data}");
    Ok(())
}

shmkit::entry! {
    static PRODUCER: Entry<Shared<Queue<String>>> = producer;
    static CONSUMER: Entry<Shared<Queue<String>>> = consumer;
}

fn main() -> Result<(), Error> {
    process::init();
    let queue = Queue::<String>::anonymous(64, 10)?;

    let my_producer = Process::builder().spawn(&PRODUCER, &Shared::new(&queue)?)?;
    let my_consumer = Process::builder().spawn(&CONSUMER, &Shared::new(&queue)?)?;

    for p in [&my_producer, &my_consumer] {
        let status = p.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", p.name()).into());
        }
    }
    Ok(())
}
