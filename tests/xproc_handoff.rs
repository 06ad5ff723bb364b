//! Cross-process tests of handing shmkit objects to spawned children as
//! entry arguments ([`Shared`]): typed queues, a joinable queue, a named
//! dict and a lock, anonymous (inherited memfd) and named.
//!
//! `harness = false`: `main` calls `shmkit::process::init()` first (so this
//! binary can be re-executed as a child), then runs the cases one after
//! another on the main thread with `common::run`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use shmkit::process::{ExitStatus, Process, Shared};
use shmkit::queue::{JoinableQueue, PodQueue, Queue};
use shmkit::sync::Lock;
use shmkit::{DictConfig, ShmBox, ShmDict};

type Error = Box<dyn std::error::Error>;

/// A hang watchdog for waits on other processes, not a time limit.
const LONG: Duration = Duration::from_secs(60);

// ----------------------------------------------------------------- entries

/// Takes words from `jobs` until "STOP" and puts each one, upper-cased and
/// tagged with this child's number, on `results`.
fn shout(
    (jobs, results, me): (Shared<Queue<String>>, Shared<Queue<String>>, u32),
) -> Result<(), Error> {
    let jobs = jobs.attach()?;
    let results = results.attach()?;
    loop {
        let word = jobs.get_timeout(LONG)?;
        if word == "STOP" {
            return Ok(());
        }
        results
            .put(format!("{me}:{}", word.to_uppercase()))
            .map_err(|e| e.to_string())?;
    }
}

/// Writes `key{i}` → `i * 10` for `i` in `from..to` into the dict.
fn fill_dict((dict, from, to): (Shared<ShmDict>, u32, u32)) -> Result<(), Error> {
    let dict = dict.attach()?;
    for i in from..to {
        dict.insert(format!("key{i}").as_bytes(), &(i * 10).to_le_bytes())?;
    }
    Ok(())
}

/// Takes `n` tasks, puts each doubled on `out`, and marks each done.
fn double_tasks(
    (tasks, out, n): (Shared<JoinableQueue<u64>>, Shared<PodQueue<u64>>, u32),
) -> Result<(), Error> {
    let tasks = tasks.attach()?;
    let out = out.attach()?;
    for _ in 0..n {
        let t = tasks.get_timeout(LONG)?;
        out.put(t * 2).map_err(|e| e.to_string())?;
        tasks.task_done()?;
    }
    Ok(())
}

/// Exit code 1 if the lock is held elsewhere, 0 if this child could take
/// it (and then released it), 2 if it could not be attached.
fn probe_lock(lock: Shared<ShmBox<Lock>>) -> i32 {
    let Ok(lock) = lock.attach() else { return 2 };
    let code = match lock.try_acquire() {
        Ok(_guard) => 0,
        Err(_) => 1,
    };
    code
}

shmkit::entry! {
    static SHOUT: Entry<(Shared<Queue<String>>, Shared<Queue<String>>, u32)> = shout;
    static FILL_DICT: Entry<(Shared<ShmDict>, u32, u32)> = fill_dict;
    static DOUBLE_TASKS: Entry<(Shared<JoinableQueue<u64>>, Shared<PodQueue<u64>>, u32)> =
        double_tasks;
    static PROBE_LOCK: Entry<Shared<ShmBox<Lock>>> = probe_lock;
}

// ------------------------------------------------------------------- cases

fn anonymous_typed_queues_to_three_children() {
    let jobs = Queue::<String>::anonymous(64, 8).unwrap();
    let results = Queue::<String>::anonymous(64, 8).unwrap();
    let kids: Vec<_> = (0..3u32)
        .map(|me| {
            let args = (
                Shared::new(&jobs).unwrap(),
                Shared::new(&results).unwrap(),
                me,
            );
            Process::builder().spawn(&SHOUT, &args).unwrap()
        })
        .collect();
    let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    let mut got = Vec::new();
    for w in &words {
        jobs.put(w.clone()).unwrap();
        // Drain as we go so neither queue stays full for long.
        while let Ok(r) = results.get_nowait() {
            got.push(r);
        }
    }
    for _ in &kids {
        jobs.put("STOP".to_owned()).unwrap();
    }
    while got.len() < words.len() {
        got.push(results.get_timeout(LONG).unwrap());
    }
    for k in &kids {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(0));
    }
    // Every word came back exactly once, upper-cased, from some child.
    let mut seen: Vec<String> = got
        .iter()
        .map(|r| {
            let (who, word) = r.split_once(':').unwrap();
            assert!(who.parse::<u32>().unwrap() < 3, "from child {who}");
            word.to_owned()
        })
        .collect();
    seen.sort();
    let mut want: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(results.get_nowait().is_err(), "nothing extra");
}

fn named_dict_to_two_children() {
    let name = common::unique_name("handoff-dict");
    let dict = ShmDict::create(&name, DictConfig::new(64, 16 << 10)).unwrap();
    let shared = Shared::new(&dict).unwrap();
    assert!(shared.is_named());
    let a = Process::builder()
        .spawn(&FILL_DICT, &(shared, 0, 20))
        .unwrap();
    let b = Process::builder()
        .spawn(&FILL_DICT, &(Shared::new(&dict).unwrap(), 20, 40))
        .unwrap();
    assert_eq!(a.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(b.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(dict.len(), 40);
    for i in 0..40u32 {
        let v = dict.get(format!("key{i}").as_bytes()).unwrap();
        assert_eq!(v, Some((i * 10).to_le_bytes().to_vec()), "key{i}");
    }
}

fn joinable_queue_to_a_child() {
    let tasks = JoinableQueue::<u64>::anonymous(16, 4).unwrap();
    let out = PodQueue::<u64>::anonymous(32).unwrap();
    let n = 20u32;
    let kid = Process::builder()
        .spawn(
            &DOUBLE_TASKS,
            &(Shared::new(&tasks).unwrap(), Shared::new(&out).unwrap(), n),
        )
        .unwrap();
    for t in 1..=u64::from(n) {
        tasks.put(t).unwrap();
    }
    // Every task was marked done by the child.
    assert!(
        tasks.join_timeout(LONG),
        "join: {} unfinished",
        tasks.unfinished()
    );
    assert_eq!(tasks.unfinished(), 0);
    assert_eq!(kid.join().unwrap(), ExitStatus::Code(0));
    let mut doubled = BTreeSet::new();
    for _ in 0..n {
        assert!(doubled.insert(out.get_nowait().unwrap()));
    }
    assert!(out.get_nowait().is_err(), "nothing extra");
    assert_eq!(doubled, (1..=u64::from(n)).map(|t| t * 2).collect());
}

fn lock_to_a_child_anonymous_and_named() {
    let anon = Lock::anonymous().unwrap();
    let name = common::unique_name("handoff-lock");
    let named = Lock::create(&name).unwrap();
    for lock in [&anon, &named] {
        let held = lock.acquire().unwrap();
        let busy = Process::builder()
            .spawn(&PROBE_LOCK, &Shared::new(lock).unwrap())
            .unwrap();
        assert_eq!(busy.join().unwrap(), ExitStatus::Code(1), "held here");
        drop(held);
        let free = Process::builder()
            .spawn(&PROBE_LOCK, &Shared::new(lock).unwrap())
            .unwrap();
        assert_eq!(free.join().unwrap(), ExitStatus::Code(0), "released");
        // The child released what it took: the lock is free here too.
        assert!(lock.try_acquire().is_ok());
    }
}

fn in_process_objects_are_refused() {
    let q = Queue::<String>::in_process(16, 2).unwrap();
    let err = Shared::new(&q).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

fn main() {
    shmkit::process::init();
    common::run(
        &[
            (
                "anonymous_typed_queues_to_three_children",
                anonymous_typed_queues_to_three_children,
            ),
            ("named_dict_to_two_children", named_dict_to_two_children),
            ("joinable_queue_to_a_child", joinable_queue_to_a_child),
            (
                "lock_to_a_child_anonymous_and_named",
                lock_to_a_child_anonymous_and_named,
            ),
            (
                "in_process_objects_are_refused",
                in_process_objects_are_refused,
            ),
        ],
        120,
    );
}
