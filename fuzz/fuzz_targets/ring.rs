//! Fuzz the SPSC ring's consumer against hostile shared bytes: the input
//! overwrites the ring's indices, counters and frame buffer (as a peer or
//! a stranger with write access could), then a consumer attaches and reads.
//! Every outcome must be an error or a frame inside the buffer: never a
//! crash, a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmkit::queue::{SpscRing, TryPopIntoError};
use shmkit::segment::BODY_OFFSET;

const CAP: usize = 256;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let Ok(ring) = SpscRing::anonymous(CAP) else { return };
    let Some(seg) = ring.segment() else { return };
    let body = seg.as_ptr().wrapping_add(BODY_OFFSET);
    // Index lines: tail, pushed at 0..16; head, popped at 128..144.
    let word = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let (tail, head) = (word(0) & 0xffff, word(1) & 0xffff);
    let frames = &data[16..];
    // SAFETY: the writes stay inside the mapping (offsets below the body's
    // 512 + CAP bytes); no handle of this process reads concurrently.
    unsafe {
        (body as *mut u64).write_volatile(tail);
        (body.add(128) as *mut u64).write_volatile(head);
        let n = frames.len().min(CAP);
        std::ptr::copy_nonoverlapping(frames.as_ptr(), body.add(512), n);
    }
    let Ok(mut rx) = ring.consumer() else { return };
    let mut buf = Vec::new();
    let mut small = [0u8; 8];
    for i in 0..64 {
        let r = match i % 3 {
            0 => rx.try_pop(&mut buf).map(|_| buf.len()),
            1 => match rx.try_pop_into(&mut small) {
                Ok(n) => Ok(n),
                Err(TryPopIntoError::BufferTooSmall { needed }) => {
                    assert!(needed <= CAP);
                    Ok(needed)
                }
                Err(TryPopIntoError::Recv(e)) => Err(e),
            },
            _ => rx.read().map(|g| g.len()),
        };
        match r {
            Ok(n) => assert!(n <= CAP - 4),
            Err(_) => break,
        }
    }
});
