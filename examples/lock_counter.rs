//! Ten processes decrement a shared counter under a robust process-shared
//! lock (the seed's Manager dict + Lock program, and the Lock-around-print
//! one): 100 → 90, and every line is printed while holding the lock.
//!
//! Run: `cargo run --release --example lock_counter`

use std::time::Duration;

use shmkit::process::{current_process, Process, Shared};
use shmkit::{Mutex, ShmBox};

fn f1(num: Shared<ShmBox<Mutex<i64>>>) -> Result<(), shmkit::AttachError> {
    let num = num.attach()?;
    let mut guard = num.lock().unwrap_or_else(|died| died.into_inner());
    let mut tmp = *guard;
    tmp -= 1;
    std::thread::sleep(Duration::from_millis(10)); // the seed's sleep(0.1), scaled
    *guard = tmp;
    // Printing under the lock keeps lines from interleaving.
    println!("{} set num to {tmp}", current_process().name());
    Ok(())
}

shmkit::entry! { static F1: Entry<Shared<ShmBox<Mutex<i64>>>> = f1; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let num = ShmBox::<Mutex<i64>>::anonymous(100)?;
    let mut p_list = Vec::new();
    for _ in 0..10 {
        p_list.push(Process::builder().spawn(&F1, &Shared::new(&num)?)?);
    }
    for p in &p_list {
        p.join()?;
    }
    println!(
        "num = {}",
        *num.lock().unwrap_or_else(|died| died.into_inner())
    );
    Ok(())
}
