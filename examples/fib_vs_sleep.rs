//! Port of the seed's CPU-bound vs IO-bound comparison: `fib(25..35)`
//! through `ProcessPoolExecutor(3)` + `as_completed`, then `random_sleep`
//! over `[small] * N`. Prints each result and the elapsed times.

use std::time::{Duration, Instant};

use shmkit::process::{self, as_completed, Executor};

fn fib(n: u32) -> u64 {
    if n <= 2 {
        return 1;
    }
    fib(n - 1) + fib(n - 2)
}

fn random_sleep(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

shmkit::task! {
    static FIB: Task<u32, u64> = fib;
    static RANDOM_SLEEP: Task<u64, u64> = random_sleep;
}

fn main() -> Result<(), process::TaskError> {
    process::init();
    let executor = Executor::new(3)?;

    let all_task = (25..35)
        .map(|n| executor.submit(&FIB, n))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for future in as_completed(&all_task) {
        println!("exe result:{}", future.result()?);
    }
    println!("cpu-bound elapsed: {:.2?}", start.elapsed());

    let all_task = [20u64; 12]
        .iter()
        .map(|&ms| executor.submit(&RANDOM_SLEEP, ms))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for future in as_completed(&all_task) {
        println!("sleep result:{}", future.result()?);
    }
    println!("io-bound elapsed: {:.2?}", start.elapsed());
    Ok(())
}
