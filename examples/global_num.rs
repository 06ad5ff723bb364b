//! Seed 003-1: processes are spatially isolated. A forked child sets the
//! global `num` to 3 and prints it; after `join()` the parent's `num` is
//! still 100. Shared state needs a shared segment.
//!
//! Run: `cargo run --release --example global_num`

use std::sync::atomic::{AtomicI64, Ordering};

use shmkit::process;

static NUM: AtomicI64 = AtomicI64::new(100);

fn f1() {
    NUM.store(3, Ordering::Relaxed);
    println!("{}", NUM.load(Ordering::Relaxed)); // Result 3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // A forked child starts with a *copy* of the parent's memory.
    let p = process::fork(f1)?;
    p.join()?;
    println!("{}", NUM.load(Ordering::Relaxed)); // Result 100
    Ok(())
}
