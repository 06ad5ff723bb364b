//! Seed 000-5: `pool = ProcessPoolExecutor(max_workers=3)` and
//! `pool.map(func, [11, 6, 8, 24, 22])` whose results are never read, with
//! no `shutdown()`. `map` submits every item when it is called, so all five
//! run; dropping the executor at the end of `main` waits for them (Python
//! waits for them at interpreter exit). Sleeps of 0.25 s are 25 ms here.
//!
//! Run: `cargo run --release --example executor_map`

use std::time::Duration;

use shmkit::process::{self, Executor};

fn func(item: u32) {
    for i in 0..2 {
        println!("Executing task {item}, round {i}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

shmkit::task! { static FUNC: Task<u32, ()> = func; }

fn main() -> Result<(), process::TaskError> {
    process::init();
    // Create a process pool
    let pool = Executor::new(3)?;
    let data_list = [11, 6, 8, 24, 22]; // Test data
                                        // Submit multiple tasks to the process pool
    pool.map(&FUNC, data_list, None, None)?;
    Ok(())
}
