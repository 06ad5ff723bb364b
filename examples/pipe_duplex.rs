//! Seed 002-2: a duplex `Pipe()`; `proc1` gets one end, sends `'hello'`
//! and prints what comes back; `proc2` gets the other end, prints what it
//! received and answers `'hello, too'`. The parent only creates the pipe,
//! hands its ends over (forked children inherit them) and joins.
//!
//! Run: `cargo run --release --example pipe_duplex`

use shmkit::process::{self, Process};
use shmkit::queue::{Connection, Pipe, PipeError};

fn proc1(pipe: &mut Connection) -> Result<(), PipeError> {
    pipe.send_value("hello")?;
    println!("proc1 rec: {}", pipe.recv_value::<String>()?);
    Ok(())
}

fn proc2(pipe: &mut Connection) -> Result<(), PipeError> {
    println!("proc2 rec: {}", pipe.recv_value::<String>()?);
    pipe.send_value("hello, too")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let (mut end0, mut end1) = Pipe::duplex()?;
    let p1: Process = process::fork(|| proc1(&mut end0))?;
    let p2: Process = process::fork(|| proc2(&mut end1))?;
    // The parent does not use either end; like the seed's parent, which
    // keeps `pipe` alive until it exits, it holds its copies until both
    // children are joined. (Dropping them right after the forks could read
    // as end-of-file to a child whose peer has not used its end yet: see
    // "Ownership across fork" in the pipe module docs.)
    for p in [&p1, &p2] {
        let status = p.join()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", p.name()).into());
        }
    }
    drop((end0, end1));
    Ok(())
}
