//! The seed's `Manager().dict()` counter done right: 10 processes each
//! decrement `num` from 100 with one atomic `update` — no external lock,
//! no lost update. Prints 90.
//!
//! Run: `cargo run --release --example dict_update`

use shmkit::process;
use shmkit::{DictConfig, ShmDict};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let d = ShmDict::anonymous(DictConfig::new(16, 4096))?;
    d.insert(b"num", &100i64.to_le_bytes())?;
    let kids = (0..10)
        .map(|_| {
            process::fork(|| {
                // The read, the decrement and the write happen under the
                // key's stripe lock: m_d['num'] -= 1, atomically.
                d.update(b"num", |old| {
                    let n = i64::from_le_bytes(old?.try_into().ok()?);
                    Some((n - 1).to_le_bytes().to_vec())
                })
                .unwrap();
                // Or, for integers: d.fetch_add_i64(b"num", -1)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in kids {
        let status = child.join()?;
        assert!(status.success(), "child failed: {status}");
    }
    println!("{}", d.get_i64(b"num")?.unwrap_or_default());
    Ok(())
}
