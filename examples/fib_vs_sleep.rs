//! Seed 001-1, the CPU-bound vs IO-bound comparison: the seed's active
//! code runs `random_sleep` over `[2] * 30` through
//! `ProcessPoolExecutor(3)` + `as_completed` and prints each result; its
//! commented-out variant runs `fib(25..35)` the same way. This port runs
//! both (fib first), with sleeps of 20 ms instead of 2 s, and prints each
//! result and the elapsed times.

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

    let all_task = [20u64; 30]
        .iter()
        .map(|&ms| executor.submit(&RANDOM_SLEEP, ms))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for future in as_completed(&all_task) {
        println!("exe result:{}", future.result()?);
    }
    println!("io-bound elapsed: {:.2?}", start.elapsed());
    Ok(())
}
