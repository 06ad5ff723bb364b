//! Port of the seed's `Consumer(multiprocessing.Process)` example: a
//! JoinableQueue of tasks, a queue of results, a poison pill per
//! consumer, and 10 jobs computing `a * b`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmkit::process::{self, current_process, Process};
use shmkit::queue::{JoinableQueue, Queue};

#[derive(Serialize, Deserialize, Debug)]
struct Task {
    a: i64,
    b: i64,
}

impl Task {
    fn call(&self) -> String {
        std::thread::sleep(Duration::from_millis(10)); // pretend to work
        format!("{} * {} = {}", self.a, self.b, self.a * self.b)
    }
}

fn consumer((tasks, results): (String, String)) {
    let tasks = JoinableQueue::<Option<Task>>::open(&tasks).expect("open tasks");
    let results = Queue::<String>::open(&results).expect("open results");
    let proc_name = current_process().name().to_owned();
    loop {
        let next_task = tasks.get().expect("get");
        let Some(task) = next_task else {
            // Poison pill means shutdown
            println!("{proc_name}: Exiting");
            tasks.task_done().expect("task_done");
            break;
        };
        println!("{proc_name}: {} * {}", task.a, task.b);
        let answer = task.call();
        tasks.task_done().expect("task_done");
        results.put(answer).expect("put");
    }
}

shmkit::entry! { static CONSUMER: Entry<(String, String)> = consumer; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let pid = std::process::id();
    let (tn, rn) = (
        format!("shmkit-ex-tasks-{pid}"),
        format!("shmkit-ex-results-{pid}"),
    );
    let tasks = JoinableQueue::<Option<Task>>::create(&tn, 64, 64)?;
    let results = Queue::<String>::create(&rn, 64, 64)?;
    // Register as the task sender before the consumers start reading.
    let _sender = tasks.as_queue().as_mpmc().sender()?;
    // And as a results sender: a consumer registers on its first put, which
    // may come after `tasks.join()` returns.
    let _results_sender = results.as_mpmc().sender()?;
    let num_consumers = process::cpu_count() * 2;
    println!("Creating {num_consumers} consumers");
    let consumers = (0..num_consumers)
        .map(|_| Process::builder().spawn(&CONSUMER, &(tn.clone(), rn.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let num_jobs = 10;
    for i in 0..num_jobs {
        tasks
            .put(Some(Task { a: i, b: i }))
            .map_err(|e| e.to_string())?;
    }
    for _ in 0..num_consumers {
        tasks.put(None).map_err(|e| e.to_string())?;
    }
    tasks.join(); // wait for all of the tasks to finish
    for _ in 0..num_jobs {
        println!("Result: {}", results.get()?);
    }
    for c in &consumers {
        c.join()?;
    }
    Ok(())
}
