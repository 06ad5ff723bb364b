//! The fuzzer writes the dict segment's bytes (the body, and optionally the
//! header's parameter words); attaching and operating must return values
//! or errors — never crash, panic or hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::segment::OpenOptions;
use shmkit::{DictConfig, ShmDict};

fuzz_target!(|data: &[u8]| {
    let cfg = DictConfig::new(16, 1024).stripes(2);
    let d = ShmDict::anonymous(cfg).unwrap();
    let seg = d.segment().unwrap();
    let (base, len) = (seg.as_ptr(), seg.len());
    let (head, body) = data.split_at(data.len().min(1));
    // First byte: whether to also scribble on the header's params (64..128).
    let start = if head.first().is_some_and(|b| b & 1 == 1) { 64 } else { 128 };
    for (i, b) in body.iter().enumerate() {
        let at = start + i;
        if at >= len {
            break;
        }
        // SAFETY: `at` < the mapping's length; the dict is not in use.
        unsafe { base.add(at).write(*b) };
    }
    let file = seg.file().try_clone().unwrap();
    let seg2 = shmkit::Segment::from_file(file, None).unwrap();
    let opts = OpenOptions::new().ready_timeout(Duration::from_millis(1));
    let Ok(mut a) = ShmDict::from_segment(seg2, &opts) else { return };
    // A lock word naming a live pid (even ours) must not hang the target.
    a.set_lock_timeout(Some(Duration::from_millis(1)));
    let _ = a.get(b"a");
    let _ = a.get_with(b"number1", |v| v.len());
    let _ = a.insert(b"a", b"value");
    let _ = a.update(b"b", |v| Some(v.map_or(vec![1], |v| v.to_vec())));
    let _ = a.fetch_add_i64(b"n", 1);
    let _ = a.remove(b"a");
    let _ = a.iter().count();
    let _ = a.keys();
    let _ = a.snapshot();
    let _ = a.verify();
    let _ = a.len();
    let _ = a.clear();
    let _ = a.insert(b"after", b"clear");
});
