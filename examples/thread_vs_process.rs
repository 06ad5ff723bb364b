//! Seed 002-1: five threads and then five processes each print their
//! kind and pid while holding a lock (a `std::sync::Mutex` for the threads,
//! a process-shared robust `shmkit::Mutex` for the processes). Every
//! thread prints the main program's pid; every process prints its own.
//!
//! Run: `cargo run --release --example thread_vs_process`

use std::sync::Arc;

use shmkit::process::{Process, Shared};
use shmkit::{Mutex, ShmBox};

fn worker(sign: &str, lock: &Mutex<u8>) {
    // A holder that died mid-print would leave the lock "poisoned"; the
    // printing is still safe to do.
    let _guard = lock.lock().unwrap_or_else(|died| died.into_inner());
    println!("{sign} {}", std::process::id());
}

fn process_worker(
    (sign, lock): (String, Shared<ShmBox<Mutex<u8>>>),
) -> Result<(), shmkit::AttachError> {
    let lock = lock.attach()?;
    worker(&sign, &lock);
    Ok(())
}

shmkit::entry! {
    static PROCESS_WORKER: Entry<(String, Shared<ShmBox<Mutex<u8>>>)> = process_worker;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    println!("Main: {}", std::process::id());

    // Multi-thread
    let lock = Arc::new(ShmBox::<Mutex<u8>>::anonymous(0)?);
    let record: Vec<_> = (0..5)
        .map(|_| {
            let lock = lock.clone();
            std::thread::spawn(move || worker("thread", &lock))
        })
        .collect();
    for thread in record {
        thread.join().map_err(|_| "a thread panicked")?;
    }

    // Multi-process
    let lock = ShmBox::<Mutex<u8>>::anonymous(0)?;
    let mut record = Vec::new();
    for _ in 0..5 {
        let args = ("process".to_owned(), Shared::new(&lock)?);
        record.push(Process::with_target(&PROCESS_WORKER, &args)?.start()?);
    }
    for process in &record {
        let status = process.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", process.name()).into());
        }
    }
    Ok(())
}
