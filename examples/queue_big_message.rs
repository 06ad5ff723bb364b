//! Messages of any size through `Queue::new()`, Python's `Queue()`: a
//! child puts a 4 MiB buffer between two small messages; the parent gets
//! all three in order and prints what it received. No sizes are chosen:
//! the big value spills into a segment of its own and takes one slot.
//!
//! Run: `cargo run --release --example queue_big_message`

use serde::{Deserialize, Serialize};
use shmkit::process;
use shmkit::queue::Queue;

#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    Note(String),
    Frame { id: u32, pixels: Vec<u8> },
}

/// FNV-1a over the bytes: what the parent reports about a frame.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let q = Queue::<Msg>::new()?;
    let child = process::fork(|| -> Result<(), Box<dyn std::error::Error>> {
        q.put(Msg::Note("start".into()))?;
        let pixels: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        q.put(Msg::Frame { id: 1, pixels })?;
        q.put(Msg::Note("end".into()))?;
        Ok(())
    })?;
    for _ in 0..3 {
        match q.get()? {
            Msg::Note(text) => println!("note {text}"),
            Msg::Frame { id, pixels } => println!(
                "frame {id}: {} bytes, checksum {:016x}",
                pixels.len(),
                checksum(&pixels)
            ),
        }
    }
    let status = child.join()?;
    assert!(status.success(), "child failed: {status}");
    Ok(())
}
