//! Fuzz target `mpmc`: hostile bytes in an MPMC queue's segment. The input
//! first picks how to scribble: either the documented hot words (`tail`,
//! `head`, and every slot's stamp and length, as a peer with write access
//! could set them, any value up to `u64::MAX`), or a raw copy over the
//! body from offset 0 (control block and peer tables included), or the
//! same after also overwriting the header's parameter words. A second
//! mapping then attaches and the rest of the input drives non-blocking
//! and bounded sends and receives. Every call must return a value or an
//! error: never crash, panic (overflow checks on with `-a`) or hang.
//!
//! `cd fuzz && cargo +nightly fuzz run -a mpmc -- -max_total_time=60`
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::queue::MpmcQueue;
use shmkit::segment::{OpenOptions, BODY_OFFSET};
use shmkit::Segment;

const SLOT: usize = 16;
const CAP: usize = 4;
/// Body offsets from `queue/mpmc/raw.rs`'s layout table: tail at 0, head
/// at 128, slots at 1408 (after 64 + 64 peer slots of 8 bytes from 384),
/// each `16 + SLOT` bytes: stamp u64, len u32, pad u32, payload.
const TAIL: usize = 0;
const HEAD: usize = 128;
const SLOTS: usize = 384 + 2 * 64 * 8;
const STRIDE: usize = 16 + SLOT;
/// Offset of the header's parameter words.
const PARAMS: usize = 64;
const TINY: Duration = Duration::from_millis(1);

/// Writes `bytes` at `at` in the mapping, clipped to its end.
fn scribble(seg: &Segment, at: usize, bytes: &[u8]) {
    let len = seg.len();
    if at >= len {
        return;
    }
    let n = bytes.len().min(len - at);
    // SAFETY: `at + n <= len`, inside the mapping; no handle of this
    // process reads the segment while we write.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.as_ptr().add(at), n) };
}

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    let src = data.get(i * 8..i * 8 + 8).unwrap_or(&[]);
    b[..src.len()].copy_from_slice(src);
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(q) = MpmcQueue::anonymous(SLOT, CAP) else {
        return;
    };
    let Some(seg) = q.segment() else { return };
    // The first 64 bytes (or fewer) are the image; the rest drives ops.
    let (image, ops) = rest.split_at(rest.len().min(64));
    let body = BODY_OFFSET;
    match mode % 3 {
        0 => {
            scribble(seg, body + TAIL, &word(image, 0).to_le_bytes());
            scribble(seg, body + HEAD, &word(image, 1).to_le_bytes());
            for i in 0..CAP {
                let w = word(image, 2 + i);
                scribble(seg, body + SLOTS + i * STRIDE, &w.to_le_bytes());
                let len = (word(image, 6) >> (16 * i)) as u16;
                // Lengths past the slot size, up to u32::MAX.
                let len = u32::from(len).wrapping_mul(0x1_0001);
                scribble(seg, body + SLOTS + i * STRIDE + 8, &len.to_le_bytes());
            }
        }
        1 => scribble(seg, body, image),
        _ => {
            scribble(seg, PARAMS, &image[..image.len().min(32)]);
            scribble(seg, body, image.get(32..).unwrap_or(&[]));
        }
    }
    let Ok(file) = seg.file().try_clone() else { return };
    let Ok(seg2) = Segment::from_file(file, None) else { return };
    let opts = OpenOptions::new().ready_timeout(TINY);
    let Ok(a) = MpmcQueue::from_segment(seg2, &opts) else {
        return;
    };
    let (cap, slot) = (a.capacity(), a.slot_size());
    let _ = (a.len(), a.is_empty(), a.is_full());
    assert!(a.len() <= cap);
    let (Ok(tx), Ok(rx)) = (a.sender(), a.receiver()) else {
        return;
    };
    let mut buf = Vec::new();
    for (i, &b) in ops.iter().enumerate().take(64) {
        let msg = [b; 40];
        let n = usize::from(b >> 2) % 24;
        match b % 5 {
            0 => {
                let _ = tx.try_send(&msg[..n]);
            }
            1 => {
                if let Ok(len) = rx.try_recv(&mut buf) {
                    assert!(len <= slot && len == buf.len());
                }
            }
            2 => {
                let _ = rx.try_recv_with(|m| assert!(m.len() <= slot));
            }
            3 => {
                let _ = tx.send_timeout(&msg[..n], TINY);
            }
            _ => {
                if let Ok(len) = rx.recv_timeout(&mut buf, TINY) {
                    assert!(len <= slot);
                }
            }
        }
        if i % 8 == 7 {
            assert!(a.len() <= cap);
        }
    }
});
