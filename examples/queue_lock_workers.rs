//! Seed 002-3: port of the seed's Queue + Lock program: 10 "input" processes each put a
//! line with their pid and a timestamp into a bounded queue; 10 "output"
//! processes each take one line and print it while holding a shared lock so
//! the output is never interleaved. The queue is bounded (the seed's
//! `Queue(3)`), so input processes block until output processes make room.
//!
//! Run: `cargo run --release --example queue_lock_workers`

use std::time::{SystemTime, UNIX_EPOCH};

use shmkit::process::{self, Process};
use shmkit::queue::Queue;
use shmkit::{Mutex, ShmBox};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let queue = Queue::<String>::anonymous(128, 3)?;
    // shmkit queues report `Disconnected` once every process on the other
    // side has gone. Here input and output processes come and go one by
    // one, so the parent holds one endpoint of each side: a sender until
    // every input is done (the seed's queue.close()), a receiver until the
    // end.
    let keep_connected = queue.as_mpmc().sender()?;
    let _keep_receiving = queue.as_mpmc().receiver()?;
    let print_lock = ShmBox::<Mutex<u8>>::anonymous(0)?;

    let inputs: Vec<Process> = (0..10)
        .map(|_| {
            process::fork(|| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                let info = format!("{}(put):{:.6}", std::process::id(), now.as_secs_f64());
                queue.put(info).map_err(|_| "queue closed").unwrap();
            })
        })
        .collect::<Result<_, _>>()?;
    let outputs: Vec<Process> = (0..10)
        .map(|_| {
            process::fork(|| {
                let info = queue.get().expect("a line for every output process");
                let _guard = print_lock.lock().unwrap_or_else(|e| e.into_inner());
                println!("{}(get):{info}", std::process::id());
            })
        })
        .collect::<Result<_, _>>()?;

    for p in &inputs {
        assert!(p.join()?.success(), "input process {} failed", p.pid());
    }
    // No more items will come: the seed's queue.close().
    drop(keep_connected);
    for p in &outputs {
        assert!(p.join()?.success(), "output process {} failed", p.pid());
    }
    Ok(())
}
