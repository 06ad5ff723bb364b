//! Logging with process names (the seed's `log_to_stderr` program): every
//! line on stderr is prefixed with `[LEVEL/process name]`.
//!
//! Run: `cargo run --release --example logging`

use std::io::Write;

use shmkit::process::{self, Process};

fn worker(_: ()) {
    println!("Doing some work");
    let _ = std::io::stdout().flush();
}

shmkit::entry! { static WORKER: Entry<()> = worker; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Installed before init() so that a spawned child (which runs inside
    // init()) logs its start and exit too.
    process::log_to_stderr(tracing::Level::INFO);
    process::init();
    let p = Process::builder().spawn(&WORKER, &())?;
    p.join()?;
    Ok(())
}
