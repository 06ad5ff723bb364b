//! Seed 001-1, the CPU-bound vs IO-bound comparison: the seed's active
//! code runs `random_sleep` over `[2] * 30` through
//! `ProcessPoolExecutor(3)` + `as_completed` and prints each result; its
//! three commented-out variants run `fib(25..35)` through the same process
//! pool, and `fib(25..40)` and `random_sleep([2] * 30)` through a
//! `ThreadPoolExecutor(3)`. This port runs all four (the process pool is
//! shmkit's `Executor`; the thread pool is three scoped std threads
//! taking items in order, which is all a thread pool needs inside one
//! process), with sleeps of 20 ms instead of 2 s, and prints each result
//! as it completes and the elapsed times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
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

    // The two ThreadPoolExecutor(3) variants.
    let start = Instant::now();
    thread_pool(3, (25..40).collect(), fib);
    println!("threads cpu-bound elapsed: {:.2?}", start.elapsed());
    let start = Instant::now();
    thread_pool(3, vec![20u64; 30], random_sleep);
    println!("threads io-bound elapsed: {:.2?}", start.elapsed());
    Ok(())
}

/// `ThreadPoolExecutor(workers)` + `as_completed`: runs `f` over `items`
/// on `workers` threads and prints each result as it completes.
fn thread_pool<A: Copy + Send + Sync, R: std::fmt::Display + Send>(
    workers: usize,
    items: Vec<A>,
    f: fn(A) -> R,
) {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (tx, next, items) = (tx.clone(), &next, &items);
            s.spawn(move || {
                while let Some(&item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if tx.send(f(item)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            println!("thread exe result:{result}");
        }
    });
}
