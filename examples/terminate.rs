//! Terminating a child (the seed's BEFORE / DURING / TERMINATED / JOINED
//! program): after `terminate()` the child is only known to be gone once
//! joined; its exit code is then -15 (SIGTERM).
//!
//! Run: `cargo run --release --example terminate`

use std::time::Duration;

use shmkit::process::Process;

fn slow_worker(_: ()) {
    println!("Starting worker");
    std::thread::sleep(Duration::from_secs(30));
    println!("Finished worker");
}

shmkit::entry! { static SLOW_WORKER: Entry<()> = slow_worker; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let builder = Process::builder().name("slow_worker");
    let p = builder.spawn(&SLOW_WORKER, &())?;
    println!("DURING: {p} {}", p.is_alive());
    p.terminate()?;
    // May still be alive for an instant: the signal is asynchronous.
    println!("TERMINATED: {p} {}", p.is_alive());
    p.join()?;
    println!("JOINED: {p} {}", p.is_alive());
    println!("exitcode = {}", p.exitcode().unwrap_or(0));
    Ok(())
}
