//! Seed 004-12 (a `threading` program): three threads take words from a
//! `Queue(10)` guarded by a lock until an exit flag is set; the main thread
//! fills the queue, waits until it is empty, sets the flag and joins them.
//! The queue is shmkit's MPMC queue in heap memory (`Queue::in_process`),
//! the lock a `std::sync::Mutex`. The seed's 1 s sleeps are 10 ms here.
//!
//! Run: `cargo run --release --example thread_queue`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmkit::queue::Queue;

static EXIT_FLAG: AtomicBool = AtomicBool::new(false);

fn process_data(thread_name: &str, q: &Queue<String>, queue_lock: &Mutex<()>) {
    while !EXIT_FLAG.load(Ordering::SeqCst) {
        let guard = queue_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !q.empty() {
            let data = q.get_nowait().expect("not empty under the lock");
            drop(guard);
            println!("{thread_name} processing {data}");
        } else {
            drop(guard);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let thread_list = ["Thread-1", "Thread-2", "Thread-3"];
    let name_list = ["One", "Two", "Three", "Four", "Five"];
    let queue_lock = Arc::new(Mutex::new(()));
    let work_queue = Queue::<String>::in_process(64, 10)?;
    // Create new threads
    let mut threads = Vec::new();
    for t_name in thread_list {
        let (q, lock) = (work_queue.clone(), queue_lock.clone());
        threads.push(std::thread::spawn(move || {
            println!("Starting {t_name}");
            process_data(t_name, &q, &lock);
            println!("Exiting {t_name}");
        }));
    }
    // Fill the queue
    {
        let _guard = queue_lock.lock().unwrap_or_else(|e| e.into_inner());
        for word in name_list {
            work_queue.put(word.to_owned()).map_err(|e| e.to_string())?;
        }
    }
    // Wait for queue to empty
    while !work_queue.empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Notify threads it's time to exit
    EXIT_FLAG.store(true, Ordering::SeqCst);
    // Wait for all threads to complete
    for t in threads {
        t.join().map_err(|_| "a thread panicked")?;
    }
    println!("Exiting Main Thread");
    Ok(())
}
