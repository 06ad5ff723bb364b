//! Port of the seed's `add_data(p_dict, key, value)` example: two processes
//! each put one entry into a shared dict; the parent prints the dict.
//! Prints `{'number1': 25, 'number2': 30}`.
//!
//! Run: `cargo run --release --example dict_add_data`

use shmkit::{DictConfig, ShmDict, ShmMap};

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

fn add_data(p_dict: &ShmMap<String, i32>, key: &str, value: i32) {
    p_dict.insert(&key.to_string(), &value).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let progress_dict: ShmMap<String, i32> =
        ShmMap::new(ShmDict::anonymous(DictConfig::new(16, 4096))?);
    let first = fork_child(|| add_data(&progress_dict, "number1", 25));
    let second = fork_child(|| add_data(&progress_dict, "number2", 30));
    wait(first);
    wait(second);
    let mut entries = progress_dict.to_vec()?;
    entries.sort();
    let body: Vec<String> = entries.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    println!("{{{}}}", body.join(", "));
    Ok(())
}
