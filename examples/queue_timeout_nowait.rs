//! Port of the seed's `Queue` API tour: `put`/`get` with a timeout,
//! `put_nowait`/`get_nowait` raising `Full`/`Empty`, and
//! `qsize()`/`full()`/`empty()`.
//!
//! Run: `cargo run --release --example queue_timeout_nowait`

use std::time::Duration;

use shmkit::process;
use shmkit::queue::{GetError, Queue, SendTimeoutError, TrySendError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // Python's Queue(4): exactly four messages fit.
    let q = Queue::<String>::anonymous(64, 4)?;
    for i in 0..4 {
        q.put(format!("msg {i}")).map_err(|e| e.to_string())?;
    }
    println!(
        "qsize: {}, full: {}, empty: {}",
        q.qsize(),
        q.full(),
        q.empty()
    );
    match q.put_nowait("one more".into()) {
        Err(TrySendError::Full(v)) => println!("put_nowait({v:?}) -> queue.Full"),
        other => println!("unexpected: {other:?}"),
    }
    match q.put_timeout("late".into(), Duration::from_millis(20)) {
        Err(SendTimeoutError::Timeout(v)) => println!("put({v:?}, timeout=0.02) -> queue.Full"),
        other => println!("unexpected: {other:?}"),
    }
    while let Ok(m) = q.get_nowait() {
        println!("get_nowait -> {m:?}");
    }
    println!(
        "qsize: {}, full: {}, empty: {}",
        q.qsize(),
        q.full(),
        q.empty()
    );
    match q.get_nowait() {
        Err(GetError::Empty) => println!("get_nowait() -> queue.Empty"),
        other => println!("unexpected: {other:?}"),
    }
    match q.get_timeout(Duration::from_millis(20)) {
        Err(GetError::Timeout) => println!("get(timeout=0.02) -> queue.Empty"),
        other => println!("unexpected: {other:?}"),
    }

    // A child puts after a short pause; get(timeout) in the parent waits
    // for it.
    let child = process::fork(|| {
        std::thread::sleep(Duration::from_millis(30));
        q.put("hello from the child".into())
    })?;
    match q.get_timeout(Duration::from_secs(30)) {
        Ok(m) => println!("get(timeout=30) -> {m:?}"),
        Err(e) => println!("get(timeout=30) failed: {e}"),
    }
    let status = child.join()?;
    assert!(status.success(), "child failed: {status}");
    Ok(())
}
