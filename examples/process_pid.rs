//! Seed 001-2: `Process(target=get_html, args=(2,))`, `start()`, print the
//! child's pid, `join()`, then `main progress end`. The seed's 2 s sleep is
//! 200 ms here. (The seed also defines an unused `MyProgress` subclass; see
//! `process_subclass` for that.)
//!
//! Run: `cargo run --release --example process_pid`

use std::time::Duration;

use shmkit::process::Process;

fn get_html(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100 * n));
    println!("sub_progress success");
    n
}

shmkit::entry! {
    // Python ignores a target's return value; so does this entry (an
    // integer returned by an entry would become the exit code).
    static GET_HTML: Entry<u64> = |n| {
        get_html(n);
    };
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let progress = Process::with_target(&GET_HTML, &2)?;
    let progress = progress.start()?;
    println!("{}", progress.pid()); // the child's process id
    let status = progress.join()?;
    println!("main progress end");
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    Ok(())
}
