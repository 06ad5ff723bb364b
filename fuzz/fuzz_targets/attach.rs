//! Fuzz target `attach`: the fuzzer's bytes become the whole image of an
//! anonymous segment (header and body), which is then attached as every
//! sync type. Attaching must fail with an `AttachError` or succeed; on
//! success the object is *used* with non-blocking or bounded operations
//! only. Nothing may panic, crash or hang.
//!
//! `cd fuzz && cargo +nightly fuzz run attach -- -max_total_time=60`
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::segment::{OpenOptions, HEADER_SIZE};
use shmkit::{Barrier, Event, Mutex, Segment, Semaphore, ShmArray, ShmBox, ShmValue, TryLockError};

/// Keep waits tiny: a zero ready word makes attach wait this long.
const TINY: Duration = Duration::from_millis(1);
/// Largest image (bigger inputs are truncated).
const MAX_IMAGE: usize = 1 << 16;

fn opts() -> OpenOptions {
    OpenOptions::new().ready_timeout(TINY)
}

/// A second mapping of the same memfd (so each attach gets its own
/// `Segment`, all seeing the same bytes).
fn remap(seg: &Segment) -> Option<Segment> {
    let file = seg.file().try_clone().ok()?;
    Segment::from_file(file, None).ok()
}

fn use_event(seg: &Segment) {
    let Some(s) = remap(seg) else { return };
    let Ok(e) = ShmBox::<Event>::from_segment(s, &opts()) else {
        return;
    };
    let _ = e.is_set();
    e.set();
    assert!(e.is_set());
    assert!(e.wait_timeout(TINY));
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait_timeout(Duration::ZERO));
}

fn use_semaphore(seg: &Segment) {
    let Some(s) = remap(seg) else { return };
    let Ok(sem) = ShmBox::<Semaphore>::from_segment(s, &opts()) else {
        return;
    };
    let before = sem.value();
    if sem.try_acquire() {
        assert_eq!(sem.value(), before - 1);
        sem.release().expect("returning the unit just taken");
    }
    if sem.acquire_timeout(TINY) {
        sem.release().expect("returning the unit just taken");
    }
    let _ = sem.release();
}

fn use_barrier(seg: &Segment) {
    let Some(s) = remap(seg) else { return };
    let Ok(b) = ShmBox::<Barrier>::from_segment(s, &opts()) else {
        return;
    };
    let n = b.parties();
    assert!(n > 0, "validate refuses zero parties");
    let broken = b.is_broken();
    let r = b.wait_timeout(TINY);
    if n == 1 && !broken {
        assert!(r.is_ok_and(|r| r.is_leader()));
    }
    b.reset();
    let _ = (b.n_waiting(), b.is_broken());
}

fn use_mutex(seg: &Segment) {
    let Some(s) = remap(seg) else { return };
    let Ok(m) = ShmBox::<Mutex<u64>>::from_segment(s, &opts()) else {
        return;
    };
    let _ = (m.is_locked(), m.raw().owner(), m.raw().is_consistent());
    match m.try_lock() {
        Ok(mut g) => *g = g.wrapping_add(1),
        Err(TryLockError::OwnerDied(e)) => {
            let mut g = e.into_inner();
            *g = 0;
            g.mark_consistent();
        }
        Err(TryLockError::WouldBlock) | Err(TryLockError::TimedOut) => {}
    }
    match m.lock_timeout(TINY) {
        Ok(mut g) => *g = g.wrapping_add(1),
        Err(TryLockError::OwnerDied(e)) => e.into_inner().mark_consistent(),
        Err(_) => {}
    };
}

fn use_value(seg: &Segment) {
    let Some(s) = remap(seg) else { return };
    let Ok(v) = ShmBox::<ShmValue<u64>>::from_segment(s, &opts()) else {
        return;
    };
    let x = v.load();
    assert_eq!(v.fetch_add(3), x);
    assert_eq!(
        v.compare_exchange(x.wrapping_add(3), 9),
        Ok(x.wrapping_add(3))
    );
    assert_eq!(v.swap(x), 9);
}

fn use_array(seg: &Segment, image: &[u8]) {
    let Some(s) = remap(seg) else { return };
    let Ok(a) = ShmArray::<u32>::from_segment(s, &opts()) else {
        return;
    };
    // The array only has blocking lock operations: use them only when the
    // lock word is free or names a dead process (recovered within one
    // park slice). A word naming a live process would block: skip.
    let body = u64::from_le_bytes(image[24..32].try_into().unwrap()) as usize;
    let word = u32::from_le_bytes(image[body..body + 4].try_into().unwrap());
    let owner = word & !(1 << 31);
    if owner != 0 && shmkit::os::process_alive(owner) {
        return;
    }
    let len = a.len();
    let all = a.to_vec();
    assert_eq!(all.len(), len);
    if len > 0 {
        assert_eq!(a.get(0), Some(all[0]));
        assert!(a.set(len - 1, 7));
        assert_eq!(a.get(len - 1), Some(7));
    }
    assert_eq!(a.get(len), None);
    assert!(!a.set(len, 1));
}

/// The bytes of a freshly created, valid segment holding object `which`
/// (so the fuzzer starts near valid images instead of having to discover
/// the header, the ready word and the type parameters).
fn template(which: u8, arg: u8) -> Option<Vec<u8>> {
    fn bytes(seg: &Segment) -> Vec<u8> {
        // SAFETY: the mapping is `len` bytes and this process is its only
        // user; we copy it out.
        unsafe { std::slice::from_raw_parts(seg.as_ptr(), seg.len()) }.to_vec()
    }
    let n = u32::from(arg % 5);
    Some(match which % 6 {
        0 => bytes(ShmBox::<Event>::anonymous(()).ok()?.segment()),
        1 => bytes(
            ShmBox::<Semaphore>::anonymous((n, Some(n + 1)))
                .ok()?
                .segment(),
        ),
        2 => bytes(ShmBox::<Barrier>::anonymous(n).ok()?.segment()),
        3 => bytes(
            ShmBox::<Mutex<u64>>::anonymous(u64::from(arg))
                .ok()?
                .segment(),
        ),
        4 => bytes(
            ShmBox::<ShmValue<u64>>::anonymous(u64::from(arg))
                .ok()?
                .segment(),
        ),
        _ => {
            let init: Vec<u32> = (0..u32::from(arg % 17)).collect();
            bytes(ShmArray::<u32>::anonymous_from(&init).ok()?.segment())
        }
    })
}

/// Builds the segment image from the fuzzer's input. First byte < 128:
/// the rest of the input *is* the image. Otherwise: a valid template
/// (`data[1]` picks the type, `data[2]` a size/count), patched by the rest
/// of the input read as `(offset: u16 LE, byte)` triples.
fn build_image(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode < 128 {
        let raw = &rest[..rest.len().min(MAX_IMAGE)];
        let mut image = raw.to_vec();
        image.resize(raw.len().max(HEADER_SIZE), 0);
        return Some(image);
    }
    let (which, arg) = (*rest.first()?, *rest.get(1).unwrap_or(&0));
    let mut image = template(which, arg)?;
    for patch in rest.get(2..)?.chunks_exact(3) {
        let off = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % image.len();
        image[off] = patch[2];
    }
    Some(image)
}

fuzz_target!(|data: &[u8]| {
    let Some(image) = build_image(data) else {
        return;
    };
    let Ok(seg) = Segment::anonymous(image.len()) else {
        return;
    };
    // SAFETY: the fresh mapping is `image.len()` bytes and unshared.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), seg.as_ptr(), image.len()) };
    use_event(&seg);
    use_semaphore(&seg);
    use_barrier(&seg);
    use_mutex(&seg);
    use_value(&seg);
    use_array(&seg, &image);
});
