//! Seed 004-6 (`multiprocessing.log_to_stderr()` + `get_logger()` at
//! `INFO`): every line on stderr is written by shmkit's process layer,
//! prefixed with `[LEVEL/process name]` — the child's start, its shutdown
//! and exit lines, and the main process's `process shutting down` from the
//! exit hook that `init()` installed.
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
    // Before init(), so that a spawned child (which runs inside init())
    // logs too.
    process::log_to_stderr(tracing::Level::INFO);
    process::init();
    let p = Process::with_target(&WORKER, &())?.start()?;
    p.join()?;
    Ok(())
}
