//! Seed 000-7: a `Manager().Queue()` holding 100 is shared by two tasks of
//! a `ProcessPoolExecutor(max_workers=3)` submitted together: each takes
//! the number, adds to it (+100, +66) and puts it back, so the value is
//! handed from one worker to the other while both run; the main process
//! then reads 266. Which task takes the number first is up to the
//! scheduler (the seed's output shows one order: 200, then 266). The queue
//! is a named shmkit `Queue<i64>`; the tasks receive its name.
//!
//! Run: `cargo run --release --example executor_queue`

use shmkit::process::{self, Executor};
use shmkit::queue::Queue;

fn process_one(queue: String) {
    let queue = Queue::<i64>::open(&queue).expect("open queue");
    let num = queue.get().expect("get") + 100;
    println!("--------process_one-----number--- {num}");
    queue.put(num).expect("put");
}

fn process_two(queue: String) {
    let queue = Queue::<i64>::open(&queue).expect("open queue");
    let num = queue.get().expect("get") + 66;
    println!("--------process_two-----number--- {num}");
    queue.put(num).expect("put");
}

shmkit::task! {
    static PROCESS_ONE: Task<String, ()> = process_one;
    static PROCESS_TWO: Task<String, ()> = process_two;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let initial_value = 100;
    let name = format!("shmkit-example-queue-{}", std::process::id());
    let queue = Queue::<i64>::create(&name, 16, 4)?; // unlinked on drop
    queue.put(initial_value).map_err(|e| e.to_string())?;
    {
        let executor = Executor::new(3)?;
        executor.submit(&PROCESS_ONE, name.clone())?;
        executor.submit(&PROCESS_TWO, name.clone())?;
    } // leaving the `with` block waits for both
    let final_value = queue.get()?;
    println!("Main process value {final_value}");
    Ok(())
}
