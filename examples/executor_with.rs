//! Port of the seed's `with ProcessPoolExecutor(max_workers=2) as
//! executor: executor.map(func, [11, 22, 33])`: the `with` block is a
//! scope; dropping the executor waits for the work and stops the workers.

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
    let start = Instant::now();
    {
        let executor = Executor::new(2)?;
        for r in executor.map(&FUNC, [11, 22, 33]) {
            r?;
        }
    } // shutdown(wait = true) here
    println!("Duration: {:.2?}", start.elapsed());
    Ok(())
}
