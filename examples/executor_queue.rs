//! Port of the seed's `Manager().Queue()` shared by two executor tasks:
//! 100 → process_one (+100) → process_two (+66) → main prints 266. The
//! queue is a named shmkit `Queue<i64>`; tasks receive its name.

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
    let name = format!("shmkit-example-queue-{}", std::process::id());
    let queue = Queue::<i64>::create(&name, 16, 4)?; // unlinked on drop
    queue.put(100).map_err(|e| e.to_string())?;
    {
        let executor = Executor::new(3)?;
        // Run them one after the other so the value passes through both.
        executor.submit(&PROCESS_ONE, name.clone())?.result()?;
        executor.submit(&PROCESS_TWO, name.clone())?.result()?;
    }
    let final_value = queue.get()?;
    println!("Main process value {final_value}");
    Ok(())
}
