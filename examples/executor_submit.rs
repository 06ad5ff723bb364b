//! Seed 000-4: port of the seed's `ProcessPoolExecutor(max_workers=5)` with
//! `submit(task, 'kobe')`, `submit(study, 'james')` and `shutdown()`.

use std::time::{Duration, Instant};

use shmkit::process::{self, Executor};

fn task(name: String) {
    for _ in 0..6 {
        println!("Process 1 working---{name}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn study(name: String) {
    for _ in 0..5 {
        println!("Process 2 studying---{name}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

shmkit::task! {
    static TASK: Task<String, ()> = task;
    static STUDY: Task<String, ()> = study;
}

fn main() -> Result<(), process::TaskError> {
    process::init();
    let pool = Executor::new(5)?;
    let start = Instant::now();
    let a = pool.submit(&TASK, "kobe".to_string())?;
    let b = pool.submit(&STUDY, "james".to_string())?;
    pool.shutdown(true, false); // wait for every task
    a.result()?;
    b.result()?;
    println!("Execution time: {:.2?}", start.elapsed());
    Ok(())
}
