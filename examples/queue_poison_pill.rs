//! Seed 004-9 again, with forked children instead of a `Run` type (see
//! `consumer_tasks` for the subclass form): consumers take `Task`s from a
//! joinable task queue, compute `a * b`, put the answer on a result queue,
//! and stop at a poison pill (`None`), one per consumer. Each prints under
//! the name the library gave it (`Process-1` …).
//!
//! Run: `cargo run --release --example queue_poison_pill`

use serde::{Deserialize, Serialize};
use shmkit::process::{self, current_process};
use shmkit::queue::{JoinableQueue, Queue};

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct Task {
    a: u64,
    b: u64,
}

impl Task {
    fn call(&self) -> String {
        format!("{} * {} = {}", self.a, self.b, self.a * self.b)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} * {}", self.a, self.b)
    }
}

fn consumer(tasks: &JoinableQueue<Option<Task>>, results: &Queue<String>) {
    let name = current_process().name().to_owned();
    loop {
        match tasks.get() {
            Ok(Some(task)) => {
                println!("{name}: {task}");
                let answer = task.call();
                tasks.task_done().expect("one task_done per get");
                results.put(answer).expect("results queue closed");
            }
            Ok(None) => {
                // Poison pill means shutdown.
                println!("{name}: Exiting");
                tasks.task_done().expect("one task_done per get");
                return;
            }
            Err(e) => {
                println!("{name}: {e}");
                return;
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // Establish communication queues.
    let tasks = JoinableQueue::<Option<Task>>::anonymous(32, 16)?;
    let results = Queue::<String>::anonymous(64, 16)?;

    // Start consumers (the seed uses cpu_count() * 2; fixed here so the
    // output is reproducible).
    let num_consumers = 4;
    println!("Creating {num_consumers} consumers");
    let mut consumers = Vec::new();
    for _ in 0..num_consumers {
        consumers.push(process::fork(|| consumer(&tasks, &results))?);
    }

    // Enqueue jobs.
    let num_jobs = 10;
    for i in 0..num_jobs {
        tasks
            .put(Some(Task { a: i, b: i }))
            .map_err(|e| e.to_string())?;
    }
    // Add a poison pill for each consumer.
    for _ in 0..num_consumers {
        tasks.put(None).map_err(|e| e.to_string())?;
    }
    // Wait for all of the tasks to finish.
    tasks.join();

    // Start printing results.
    for _ in 0..num_jobs {
        println!("Result: {}", results.get()?);
    }
    for child in consumers {
        let status = child.join()?;
        assert!(status.success(), "consumer failed: {status}");
    }
    Ok(())
}
