//! Port of the seed's `JoinableQueue` producer/consumer ("baozi"): the
//! producer bakes buns, then `join()`s until the consumer has marked every
//! one done with `task_done()`; the consumer is a daemon the main process
//! ends when the producer is finished.
//!
//! Run: `cargo run --release --example joinable_queue`

use shmkit::queue::JoinableQueue;

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

fn main() -> Result<(), shmkit::Error> {
    // JoinableQueue(30) in the seed; 32 slots of up to 64 bytes here.
    let q = JoinableQueue::<String>::anonymous(64, 32)?;

    let producer = {
        let q = q.clone();
        fork_child(move || {
            for i in 0..10 {
                let s = format!("Big stuffed bun{i} Number");
                println!("{s} Fresh baked");
                q.put(s).expect("queue closed");
            }
            q.join(); // until task_done() was called once per bun
            println!("All the tasks have been dealt with");
        })
    };
    let consumer = {
        let q = q.clone();
        fork_child(move || loop {
            // A daemon: runs until the main process kills it.
            match q.get() {
                Ok(baozi) => {
                    println!("{baozi} Be eaten");
                    q.task_done().expect("one task_done per get");
                }
                Err(_) => return,
            }
        })
    };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(producer, &mut status, 0) };
    println!("End of main process");
    // The daemon consumer dies with the main process.
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(consumer, libc::SIGKILL);
        libc::waitpid(consumer, &mut status, 0);
    }
    Ok(())
}
