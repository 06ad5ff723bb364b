//! Processes do not share globals: each child changes its own copy (the
//! seed's `n = 0` / `num = 100` programs). Shared state needs a segment.
//!
//! Run: `cargo run --release --example spatial_isolation`

use std::sync::atomic::{AtomicI64, Ordering};

use shmkit::process::{self, Process};

static N: AtomicI64 = AtomicI64::new(0);
static NUM: AtomicI64 = AtomicI64::new(100);

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
    // Spawned children (fresh executions of this binary).
    let p1 = Process::builder().spawn(&TASK, &())?;
    let p2 = Process::builder().spawn(&STUDY, &())?;
    p1.join()?;
    p2.join()?;
    println!("Main process completed {}", N.load(Ordering::Relaxed));

    // A forked child starts with a *copy* of the parent's memory.
    let p = process::fork(|| {
        NUM.store(3, Ordering::Relaxed);
        println!("{}", NUM.load(Ordering::Relaxed)); // 3
    })?;
    p.join()?;
    println!("{}", NUM.load(Ordering::Relaxed)); // still 100
    Ok(())
}
