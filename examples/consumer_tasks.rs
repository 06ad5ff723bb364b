//! Seed 004-9: `class Consumer(multiprocessing.Process)` with its own
//! `run()`. `cpu_count() * 2` consumers take `Task`s from a joinable task
//! queue, compute `a * b`, mark each task done and put the answer on a
//! result queue; a poison pill (`None`) per consumer stops them. The main
//! process waits with `tasks.join()` and prints the ten results. Consumers
//! are `Run` values, so their default names are `Consumer-1`, `Consumer-2`,
//! … as in Python; they are not joined (the exit hook waits for them).
//!
//! Run: `cargo run --release --example consumer_tasks`

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmkit::process::{self, current_process, Run};
use shmkit::queue::{JoinableQueue, Queue};

#[derive(Serialize, Deserialize, Debug)]
struct Task {
    a: i64,
    b: i64,
}

impl Task {
    fn call(&self) -> String {
        std::thread::sleep(Duration::from_millis(10)); // pretend to take some time
        format!("{} * {} = {}", self.a, self.b, self.a * self.b)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} * {}", self.a, self.b)
    }
}

/// The queues travel by name; the child opens them.
#[derive(Serialize, Deserialize)]
struct Consumer {
    task_queue: String,
    result_queue: String,
}

impl Run for Consumer {
    fn run(self) {
        let task_queue = JoinableQueue::<Option<Task>>::open(&self.task_queue).expect("open tasks");
        let result_queue = Queue::<String>::open(&self.result_queue).expect("open results");
        let proc_name = current_process().name().to_owned();
        loop {
            let Some(next_task) = task_queue.get().expect("get") else {
                // Poison pill means shutdown
                println!("{proc_name}: Exiting");
                task_queue.task_done().expect("task_done");
                break;
            };
            println!("{proc_name}: {next_task}");
            let answer = next_task.call();
            task_queue.task_done().expect("task_done");
            result_queue.put(answer).expect("put");
        }
    }
}
shmkit::register_run!(Consumer);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // Establish communication queues
    let pid = std::process::id();
    let (tn, rn) = (
        format!("shmkit-ex-tasks-{pid}"),
        format!("shmkit-ex-results-{pid}"),
    );
    let tasks = JoinableQueue::<Option<Task>>::create(&tn, 64, 64)?;
    let results = Queue::<String>::create(&rn, 64, 64)?;
    // The parent counts as a sender on both queues, so that a consumer
    // never finds a queue that no live process could feed (see the
    // queue's disconnection rule).
    let _tasks_sender = tasks.as_queue().as_mpmc().sender()?;
    let _results_sender = results.as_mpmc().sender()?;
    // Start consumers
    let num_consumers = process::cpu_count() * 2;
    println!("Creating {num_consumers} consumers");
    let consumers = (0..num_consumers)
        .map(|_| {
            Consumer {
                task_queue: tn.clone(),
                result_queue: rn.clone(),
            }
            .into_process()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let _running = consumers
        .into_iter()
        .map(|w| w.start())
        .collect::<Result<Vec<_>, _>>()?;
    // Enqueue jobs
    let num_jobs = 10;
    for i in 0..num_jobs {
        tasks
            .put(Some(Task { a: i, b: i }))
            .map_err(|e| e.to_string())?;
    }
    // Add a poison pill for each consumer
    for _ in 0..num_consumers {
        tasks.put(None).map_err(|e| e.to_string())?;
    }
    // Wait for all of the tasks to finish
    tasks.join();
    // Start printing results
    for _ in 0..num_jobs {
        println!("Result: {}", results.get()?);
    }
    Ok(())
}
