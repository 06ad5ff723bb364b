//! Port of the seed's `pool.map(func, [11, 6, 8, 24, 22])` on a
//! `ProcessPoolExecutor(max_workers=3)`: each item runs two rounds.

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
    let pool = Executor::new(3)?;
    for r in pool.map(&FUNC, [11, 6, 8, 24, 22]) {
        r?;
    }
    Ok(())
}
