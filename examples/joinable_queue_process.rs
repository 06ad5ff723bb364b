//! Seed 000-3: port of the seed's JoinableQueue example: one producer process puts
//! 5 × 20 items, three consumer processes `get(timeout)` and `task_done`
//! until the queue stays empty, and the main process `join`s the queue.

use std::time::{Duration, Instant};

use shmkit::process::{self, Process};
use shmkit::queue::JoinableQueue;

fn producer(name: String) {
    let queue = JoinableQueue::<String>::open(&name).expect("open queue");
    for _ in 0..5 {
        for j in 0..20 {
            queue.put(format!("Produced data{j}")).expect("put");
            println!("【Produced data{j}】");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn consumer(name: String) {
    let queue = JoinableQueue::<String>::open(&name).expect("open queue");
    loop {
        for _ in 0..4 {
            match queue.get_timeout(Duration::from_millis(200)) {
                Ok(data) => {
                    println!("Received data: {data}");
                    queue.task_done().expect("task_done");
                }
                Err(_) => return,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

shmkit::entry! {
    static PRODUCER: Entry<String> = producer;
    static CONSUMER: Entry<String> = consumer;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let name = format!("shmkit-example-jq-{}", std::process::id());
    let q = JoinableQueue::<String>::create(&name, 64, 128)?;
    // Counts as a sender until the producer has started.
    let keep_connected = q.as_queue().as_mpmc().sender()?;
    let start = Instant::now();
    let p = Process::builder().spawn(&PRODUCER, &name)?;
    let consumers = (0..3)
        .map(|_| Process::builder().spawn(&CONSUMER, &name))
        .collect::<Result<Vec<_>, _>>()?;
    p.join()?;
    drop(keep_connected);
    for c in &consumers {
        c.join()?;
    }
    q.join(); // every item was marked done
    println!("Main thread completed");
    println!("Execution time: {:.2?}", start.elapsed());
    Ok(())
}
