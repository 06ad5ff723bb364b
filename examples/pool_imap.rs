//! Seed 001-3 (its commented-out `imap` variant): port of the seed's `for result in pool.imap(get_html, [1, 5, 3])`:
//! results come back in input order, whatever order they finish in.

use std::time::Duration;

use shmkit::process::{self, Pool};

fn get_html(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20 * n));
    println!("sub_progress success");
    n
}

shmkit::task! { static GET_HTML: Task<u64, u64> = get_html; }

fn main() -> Result<(), process::TaskError> {
    process::init();
    let pool = Pool::new(3)?;
    for result in pool.imap(&GET_HTML, [1, 5, 3], None) {
        println!("{} sleep success", result?);
    }
    Ok(())
}
