//! Seed 001-5: port of the seed's `Manager().Queue()` with `pool.apply_async(producer)`
//! and `pool.apply_async(consumer)`: the consumer blocks until the
//! producer's 'a' arrives. The queue is a named shmkit `Queue<String>`.

use std::time::Duration;

use shmkit::process::{self, Pool};
use shmkit::queue::Queue;

fn producer(queue: String) {
    let queue = Queue::<String>::open(&queue).expect("open queue");
    queue.put("a".to_string()).expect("put");
    std::thread::sleep(Duration::from_millis(20));
}

fn consumer(queue: String) {
    let queue = Queue::<String>::open(&queue).expect("open queue");
    std::thread::sleep(Duration::from_millis(20));
    let data = queue.get().expect("get");
    println!("{data}");
}

shmkit::task! {
    static PRODUCER: Task<String, ()> = producer;
    static CONSUMER: Task<String, ()> = consumer;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let name = format!("shmkit-example-poolq-{}", std::process::id());
    // Created (and held) by the parent: the consumer's get() waits for
    // the producer's put even if it runs first.
    let _queue = Queue::<String>::create(&name, 64, 8)?;
    let pool = Pool::new(2)?;
    let p = pool.apply_async(&PRODUCER, name.clone())?;
    let c = pool.apply_async(&CONSUMER, name.clone())?;
    pool.close();
    pool.join();
    p.get()?;
    c.get()?;
    Ok(())
}
