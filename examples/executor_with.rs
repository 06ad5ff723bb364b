//! Seed 000-6: `with ProcessPoolExecutor(max_workers=2) as executor:
//! executor.map(func, [11, 22, 33])`, results unread, then the duration.
//! The `with` block is a scope: `map` has submitted all three items, and
//! dropping the executor at the end of the block waits for them and stops
//! the workers. Sleeps of 0.25 s are 25 ms here.
//!
//! Run: `cargo run --release --example executor_with`

use std::time::{Duration, Instant};

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
    let start_time = Instant::now();
    {
        let executor = Executor::new(2)?;
        executor.map(&FUNC, [11, 22, 33], None, None)?;
    } // the end of the `with` block: shutdown(wait=True)
    println!("Duration: {:.2?}", start_time.elapsed());
    Ok(())
}
