//! A short tour of shmkit: processes sharing a robust lock, an event and a
//! counter through shared memory, a queue between processes, a shared
//! dictionary, and a pool of worker processes.
//!
//! Run: `cargo run --release --example tour`

use shmkit::process::{Pool, Process};
use shmkit::queue::Queue;
use shmkit::{DictConfig, Event, Mutex, ShmBox, ShmDict, ShmValue};

shmkit::task! {
    static SQUARE: Task<u64, u64> = |x| x * x;
}

/// Forks a child running `f`; the child exits 0 when `f` returns.
fn fork_child(f: impl FnOnce()) -> Process {
    shmkit::process::fork(f).expect("fork")
}

/// Joins a child and insists it succeeded.
fn wait(p: Process) {
    let status = p.join().expect("join");
    assert!(status.success(), "child {} failed: {status:?}", p.pid());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Pool workers re-execute this binary: init() runs them.
    shmkit::process::init();

    // 1. A robust mutex around a counter: 4 processes x 10,000 increments.
    let counter = ShmBox::<Mutex<u64>>::anonymous(0)?;
    let kids: Vec<_> = (0..4)
        .map(|_| {
            fork_child(|| {
                for _ in 0..10_000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    kids.into_iter().for_each(wait);
    println!(
        "mutex counter after 4 x 10000 increments: {}",
        *counter.lock().unwrap()
    );

    // 2. A lock holder is SIGKILLed; the next locker is told, and recovers.
    let holder = fork_child(|| {
        let _guard = counter.lock().unwrap();
        // SAFETY: kill ourselves while holding the lock.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
    let pid = holder.pid();
    let status = holder.join()?;
    assert_eq!(status.exitcode(), -9, "the holder was SIGKILLed");
    match counter.lock() {
        Ok(_) => println!("unexpected: no owner-died report"),
        Err(died) => {
            let guard = died.into_inner();
            println!(
                "holder {pid} died holding the lock; recovered, value still {}",
                *guard
            );
            guard.mark_consistent();
        }
    }

    // 3. An event set by one process wakes waiters in three others, which
    //    count themselves in a lock-free shared value.
    let event = ShmBox::<Event>::anonymous(())?;
    let woke = ShmBox::<ShmValue<u32>>::anonymous(0)?;
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            fork_child(|| {
                event.wait();
                woke.fetch_add(1);
            })
        })
        .collect();
    let setter = fork_child(|| event.set());
    wait(setter);
    waiters.into_iter().for_each(wait);
    println!("event woke {} waiting processes", woke.load());

    // 4. A typed queue: two producer processes, the parent consumes.
    let queue = Queue::<(u32, String)>::anonymous(64, 8)?;
    // The parent holds a sender while it reads, so the queue counts as
    // connected even before the children's first put.
    let keep_connected = queue.as_mpmc().sender()?;
    let producers: Vec<_> = (0..2u32)
        .map(|p| {
            let queue = queue.clone();
            fork_child(move || {
                for i in 0..3 {
                    queue.put((p, format!("message {i}"))).unwrap();
                }
            })
        })
        .collect();
    let mut got: Vec<(u32, String)> = (0..6).map(|_| queue.get().unwrap()).collect();
    producers.into_iter().for_each(wait);
    drop(keep_connected);
    got.sort();
    println!("queue delivered {} messages: first {:?}", got.len(), got[0]);

    // 5. A shared dict, no server process: 4 processes bump one counter
    //    atomically and each records its own entry.
    let dict = ShmDict::anonymous(DictConfig::new(64, 16 * 1024))?;
    let workers: Vec<_> = (0..4u32)
        .map(|w| {
            let dict = &dict;
            fork_child(move || {
                for _ in 0..1000 {
                    dict.fetch_add_i64(b"hits", 1).unwrap();
                }
                let key = format!("worker-{w}");
                dict.insert(key.as_bytes(), b"done").unwrap();
            })
        })
        .collect();
    workers.into_iter().for_each(wait);
    println!(
        "dict: hits = {}, {} entries",
        dict.get_i64(b"hits")?.unwrap_or(0),
        dict.len()
    );

    // 6. A pool of worker processes: map a registered task.
    let pool = Pool::new(2)?;
    let squares = pool.map(&SQUARE, 1..=10u64, None)?;
    println!("pool map of x*x over 1..=10: {squares:?}");
    pool.close();
    pool.join();
    Ok(())
}
