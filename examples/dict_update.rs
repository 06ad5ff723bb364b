//! The seed's `Manager().dict()` counter done right: 10 processes each
//! decrement `num` from 100 with one atomic `update` — no external lock,
//! no lost update. Prints 90.
//!
//! Run: `cargo run --release --example dict_update`

use shmkit::{DictConfig, ShmDict};

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
    let d = ShmDict::anonymous(DictConfig::new(16, 4096))?;
    d.insert(b"num", &100i64.to_le_bytes())?;
    let kids: Vec<_> = (0..10)
        .map(|_| {
            fork_child(|| {
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
        .collect();
    kids.into_iter().for_each(wait);
    println!("{}", d.get_i64(b"num")?.unwrap_or_default());
    Ok(())
}
