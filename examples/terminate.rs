//! Seed 004-4 (terminate a process): the process object is printed before
//! `start()`, while running, right after `terminate()` and after `join()`;
//! its exit code is then -15 (SIGTERM). Every `<Process ...>` text and
//! every `true`/`false` is what the library reports.
//!
//! Run: `cargo run --release --example terminate`

use std::time::Duration;

use shmkit::process::Process;

fn slow_worker(_: ()) {
    println!("Starting worker");
    std::thread::sleep(Duration::from_millis(100));
    println!("Finished worker");
}

shmkit::entry! { static SLOW_WORKER: Entry<()> = slow_worker; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let p = Process::with_target(&SLOW_WORKER, &())?;
    println!("BEFORE: {p} {}", p.is_alive());
    let p = p.start()?;
    println!("DURING: {p} {}", p.is_alive());
    p.terminate()?;
    // May still be alive for an instant: the signal is asynchronous.
    println!("TERMINATED: {p} {}", p.is_alive());
    p.join()?;
    println!("JOINED: {p} {}", p.is_alive());
    if let Some(code) = p.exitcode() {
        println!("exitcode = {code}");
    }
    Ok(())
}
