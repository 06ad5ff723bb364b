//! Seed 000-2: processes do not share globals. Two spawned children each
//! add to their own copy of `n` and print it; the main process, which
//! joins neither (the exit hook waits for them), prints its own `n`: 0.
//! Shared state needs a shared segment.
//!
//! Run: `cargo run --release --example spatial_isolation`

use std::sync::atomic::{AtomicI64, Ordering};

use shmkit::process::Process;

static N: AtomicI64 = AtomicI64::new(0);

fn task(_: ()) {
    let n = 1000 + N.load(Ordering::Relaxed);
    N.store(n, Ordering::Relaxed);
    println!("task {n}");
}

fn study(_: ()) {
    let n = 10000 + N.load(Ordering::Relaxed);
    N.store(n, Ordering::Relaxed);
    println!("study {n}");
}

shmkit::entry! {
    static TASK: Entry<()> = task;
    static STUDY: Entry<()> = study;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let _p1 = Process::with_target(&TASK, &())?.start()?;
    let _p2 = Process::with_target(&STUDY, &())?.start()?;
    println!("Main process completed {}", N.load(Ordering::Relaxed));
    Ok(())
}
