//! Seed 001-3 (its commented-out `apply_async` variant): port of the seed's `pool.apply_async(get_html, args=(3,))`, `close`,
//! `join`, `result.get()` (sleeps scaled from seconds to tens of ms).

use std::time::Duration;

use shmkit::process::{self, cpu_count, Pool};

fn get_html(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10 * n));
    println!("sub_progress success");
    n
}

shmkit::task! { static GET_HTML: Task<u64, u64> = get_html; }

fn main() -> Result<(), process::TaskError> {
    process::init();
    let pool = Pool::new(cpu_count())?;
    let result = pool.apply_async(&GET_HTML, 3)?; // add one task
    pool.close(); // no new tasks
    pool.join(); // wait for the task to finish
    println!("{}", result.get()?);
    Ok(())
}
