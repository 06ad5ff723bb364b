//! Seed 003-3: port of the seed's `Manager().dict()` + `Lock` example: 10 processes each
//! read `num`, decrement it and write it back while holding a shared lock;
//! the final value is 90. (The seed sleeps 0.1 s inside the lock; this port
//! sleeps 10 ms.) See `dict_update.rs` for the same without a lock.
//!
//! Run: `cargo run --release --example manager_dict`

use std::time::Duration;

use shmkit::process;
use shmkit::{DictConfig, Mutex, ShmBox, ShmDict, ShmMap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // m_d = m.dict({'num': 100}); l2 = Lock()
    let m_d: ShmMap<String, i64> = ShmMap::new(ShmDict::anonymous(DictConfig::new(16, 4096))?);
    m_d.insert(&"num".to_string(), &100)?;
    let l2 = ShmBox::<Mutex<u32>>::anonymous(0)?;

    let kids = (0..10)
        .map(|_| {
            process::fork(|| {
                // with l2: tmp = m_d['num']; tmp -= 1; time.sleep(0.1); m_d['num'] = tmp
                let _guard = l2.lock().unwrap_or_else(|died| died.into_inner());
                let mut tmp = m_d.get(&"num".to_string()).unwrap().unwrap();
                tmp -= 1;
                std::thread::sleep(Duration::from_millis(10));
                m_d.insert(&"num".to_string(), &tmp).unwrap();
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in kids {
        let status = child.join()?;
        assert!(status.success(), "child failed: {status}");
    }
    println!("{}", m_d.get(&"num".to_string())?.unwrap_or_default());
    Ok(())
}
