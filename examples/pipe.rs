//! The seed's `multiprocessing.Pipe` producer/consumer: the parent sends
//! `'a'` down a shmkit `Pipe`, the forked child receives it and prints it.
//!
//!     cargo run --release --example pipe

use shmkit::process;
use shmkit::queue::Pipe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let (mut send_end, mut recv_end) = Pipe::duplex()?;
    // Consumer: the forked child receives and prints.
    let consumer = process::fork(|| match recv_end.recv_value::<String>() {
        Ok(data) => {
            println!("{data}");
            0
        }
        Err(e) => {
            eprintln!("child: {e}");
            1
        }
    })?;
    // Producer: the parent's copy of the child's end is not used here.
    drop(recv_end);
    send_end.send_value("a")?;
    if !consumer.join()?.success() {
        return Err("consumer failed".into());
    }
    Ok(())
}
