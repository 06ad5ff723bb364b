//! Port of the seed's `Manager().dict()` + `Lock` example: 10 processes each
//! read `num`, decrement it and write it back while holding a shared lock;
//! the final value is 90. (The seed sleeps 0.1 s inside the lock; this port
//! sleeps 10 ms.) See `dict_update.rs` for the same without a lock.
//!
//! Run: `cargo run --release --example manager_dict`

use std::time::Duration;

use shmkit::{DictConfig, Mutex, ShmBox, ShmDict, ShmMap};

fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: this example is single-threaded when it forks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: exit the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn wait(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // m_d = m.dict({'num': 100}); l2 = Lock()
    let m_d: ShmMap<String, i64> = ShmMap::new(ShmDict::anonymous(DictConfig::new(16, 4096))?);
    m_d.insert(&"num".to_string(), &100)?;
    let l2 = ShmBox::<Mutex<u32>>::anonymous(0)?;

    let kids: Vec<_> = (0..10)
        .map(|_| {
            fork_child(|| {
                // with l2: tmp = m_d['num']; tmp -= 1; time.sleep(0.1); m_d['num'] = tmp
                let _guard = l2.lock().unwrap_or_else(|died| died.into_inner());
                let mut tmp = m_d.get(&"num".to_string()).unwrap().unwrap();
                tmp -= 1;
                std::thread::sleep(Duration::from_millis(10));
                m_d.insert(&"num".to_string(), &tmp).unwrap();
            })
        })
        .collect();
    kids.into_iter().for_each(wait);
    println!("{}", m_d.get(&"num".to_string())?.unwrap_or_default());
    Ok(())
}
