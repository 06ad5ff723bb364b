//! Seed 001-6: `recevie_pipe, send_pipe = Pipe()`; a producer process
//! sends `'a'` on one end and sleeps, a consumer process sleeps, receives
//! on the other end and prints it; the parent joins both. Sleeps of 2 s
//! are 200 ms here; the seed's unused `Pool()` is left out.
//!
//! Run: `cargo run --release --example pipe`

use std::time::Duration;

use shmkit::process::{self, Process};
use shmkit::queue::{Connection, Pipe, PipeError};

fn producer(pipe: &mut Connection) -> Result<(), PipeError> {
    pipe.send_value("a")?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn consumer(pipe: &mut Connection) -> Result<(), PipeError> {
    std::thread::sleep(Duration::from_millis(200));
    let data: String = pipe.recv_value()?;
    println!("{data}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let (mut recevie_pipe, mut send_pipe) = Pipe::duplex()?;
    let my_producer: Process = process::fork(|| producer(&mut send_pipe))?;
    let my_consumer: Process = process::fork(|| consumer(&mut recevie_pipe))?;
    // Both ends now belong to the children; the parent lets go of its
    // copies.
    drop((recevie_pipe, send_pipe));
    for p in [&my_producer, &my_consumer] {
        let status = p.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", p.name()).into());
        }
    }
    Ok(())
}
