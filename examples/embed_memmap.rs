//! Embedding shmkit queues in memory another crate manages: a file
//! mapping made with `memmap2`, laid out by "the other crate" as its own
//! 128-byte header, an SPSC ring and an MPMC queue. The parent initialises
//! the file and produces; a second process (this program re-executed with
//! `child PATH`) maps the same file, checks the header, views both queues
//! with `from_raw` and consumes.
//!
//! `cargo run --release --example embed_memmap`

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use memmap2::MmapMut;
use shmkit::queue::{MpmcQueue, SpscRing};

/// The other crate's own header: magic, then the shmkit layout versions it
/// was written under, then the queues' parameters.
const MAGIC: u64 = u64::from_le_bytes(*b"EMBEDv01");
const HEADER: usize = 128;
const RING_CAP: usize = 4096;
const SLOT: usize = 32;
const SLOTS: usize = 8;
const MESSAGES: u64 = 1000;

/// Offsets of the two queues in the file (each aligned as shmkit asks).
fn offsets() -> (usize, usize, usize) {
    let ring_at = HEADER.next_multiple_of(SpscRing::EMBED_ALIGN);
    let ring_len = SpscRing::embedded_size(RING_CAP).expect("ring size");
    let queue_at = (ring_at + ring_len).next_multiple_of(MpmcQueue::EMBED_ALIGN);
    let queue_len = MpmcQueue::embedded_size(SLOT, SLOTS).expect("queue size");
    (ring_at, queue_at, queue_at + queue_len)
}

fn map(path: &Path, len: usize, create: bool) -> std::io::Result<MmapMut> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)?;
    if create {
        file.set_len(len as u64)?;
    }
    // SAFETY: the file is this program's; both processes access the shared
    // bytes only through shmkit's queues (atomics and checked copies) and
    // the header words below, written before the child starts.
    unsafe { MmapMut::map_mut(&file) }
}

fn header(m: &MmapMut) -> [u64; 4] {
    std::array::from_fn(|i| u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().unwrap()))
}

fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let (ring_at, queue_at, len) = offsets();
    let path = std::env::temp_dir().join(format!("shmkit-embed-{}.bin", std::process::id()));
    let mut m = map(&path, len, true)?;
    let words = [
        MAGIC,
        u64::from(SpscRing::LAYOUT_VERSION),
        u64::from(MpmcQueue::LAYOUT_VERSION),
        RING_CAP as u64,
    ];
    for (i, w) in words.iter().enumerate() {
        m[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let base = m.as_mut_ptr();
    // SAFETY: the mapping is `len` bytes, page-aligned at `base`, and the
    // offsets are aligned as shmkit asks; nobody else maps the file yet.
    // The views below are dropped before `m` is unmapped.
    let (ring, queue) = unsafe {
        SpscRing::init_in(base.add(ring_at), queue_at - ring_at, RING_CAP)?;
        MpmcQueue::init_in(base.add(queue_at), len - queue_at, SLOT, SLOTS)?;
        (
            SpscRing::from_raw(base.add(ring_at), queue_at - ring_at, RING_CAP)?,
            MpmcQueue::from_raw(base.add(queue_at), len - queue_at, SLOT, SLOTS)?,
        )
    };
    let mut child = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(&path)
        .spawn()?;
    let mut tx = ring.producer()?;
    let sender = queue.sender()?;
    for i in 0..MESSAGES {
        tx.push(&i.to_le_bytes())
            .map_err(|e| format!("push: {e:?}"))?;
        let job = format!("job {i}");
        sender
            .send(job.as_bytes())
            .map_err(|e| format!("send: {e:?}"))?;
    }
    drop((tx, sender));
    let status = child.wait()?;
    drop((ring, queue));
    drop(m);
    std::fs::remove_file(&path)?;
    println!("parent: sent {MESSAGES} frames and {MESSAGES} jobs; child {status}");
    if !status.success() {
        return Err("child failed".into());
    }
    Ok(())
}

fn child(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let (ring_at, queue_at, len) = offsets();
    let mut m = map(path, len, false)?;
    if m.len() < len {
        return Err("file shorter than the layout".into());
    }
    let h = header(&m);
    if h[0] != MAGIC
        || h[1] != u64::from(SpscRing::LAYOUT_VERSION)
        || h[2] != u64::from(MpmcQueue::LAYOUT_VERSION)
        || h[3] != RING_CAP as u64
    {
        return Err(format!("unexpected header {h:?}").into());
    }
    let base = m.as_mut_ptr();
    // SAFETY: the mapping holds `len` bytes (checked) and stays mapped until
    // the views are dropped at the end of this function.
    let (ring, queue) = unsafe {
        (
            SpscRing::from_raw(base.add(ring_at), queue_at - ring_at, RING_CAP)?,
            MpmcQueue::from_raw(base.add(queue_at), len - queue_at, SLOT, SLOTS)?,
        )
    };
    let mut rx = ring.consumer()?;
    let receiver = queue.receiver()?;
    let (mut frames, mut jobs) = (0u64, 0u64);
    let mut buf = Vec::new();
    let limit = Duration::from_secs(30);
    while frames < MESSAGES || jobs < MESSAGES {
        if frames < MESSAGES {
            rx.pop_timeout(&mut buf, limit)?;
            if buf != frames.to_le_bytes() {
                return Err(format!("frame {frames} out of order: {buf:?}").into());
            }
            frames += 1;
        }
        if jobs < MESSAGES {
            receiver.recv_timeout(&mut buf, limit)?;
            if buf != format!("job {jobs}").as_bytes() {
                return Err(format!("job {jobs} out of order").into());
            }
            jobs += 1;
        }
    }
    println!("child: received {frames} frames and {jobs} jobs in order");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => child(Path::new(&args[2])),
        _ => parent(),
    }
}
