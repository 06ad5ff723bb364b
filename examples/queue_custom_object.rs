//! Seed 004-8: an instance of a user type (`MyFancyClass('Fancy Dan')`) is
//! put on a queue by the parent and taken by a child process, which calls
//! its method. The value travels serialised (serde/postcard) through
//! shared memory, as Python's travels pickled through a pipe.
//!
//! The seed's `queue.close()` and `queue.join_thread()` have no
//! counterpart here: Python's `close()` tells the queue that this process
//! will send no more (here the parent's sending handles go when it drops
//! them), and `join_thread()` waits for the feeder thread that pickles and
//! writes behind a `put`; shmkit's `put` has written the message into the
//! shared segment before it returns, so there is no thread to wait for.
//!
//! Run: `cargo run --release --example queue_custom_object`

use serde::{Deserialize, Serialize};
use shmkit::process::{self, current_process};
use shmkit::queue::Queue;

#[derive(Serialize, Deserialize)]
struct MyFancyClass {
    name: String,
}

impl MyFancyClass {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    fn do_something(&self) {
        let proc_name = current_process().name().to_owned();
        println!("Doing something fancy in {proc_name} for {}!", self.name);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let queue = Queue::<MyFancyClass>::anonymous(256, 16)?;
    let p = process::fork(|| -> Result<(), String> {
        let obj = queue.get().map_err(|e| e.to_string())?;
        obj.do_something();
        Ok(())
    })?;
    queue
        .put(MyFancyClass::new("Fancy Dan"))
        .map_err(|e| e.to_string())?;
    // Wait for the worker to finish
    let status = p.join()?;
    if !status.success() {
        return Err(format!("worker failed: {status}").into());
    }
    Ok(())
}
