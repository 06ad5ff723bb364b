//! Cross-process tests of `Pool` and `Executor`: real worker processes,
//! real SIGKILLs.
//!
//! `harness = false`: `main` calls `shmkit::process::init()` first (the
//! workers are re-executions of this binary), then runs the cases with
//! `common::run` under a hang watchdog.

mod common;

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex as StdMutex};
use std::time::Duration;

use shmkit::os::process_alive;
use shmkit::process::{
    self, as_completed, as_completed_timeout, wait, Executor, Pool, TaskError, FIRST_COMPLETED,
    FIRST_EXCEPTION,
};
use shmkit::{ShmBox, ShmValue};

// ------------------------------------------------------------------ tasks

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

shmkit::task! {
    static SQUARE: Task<u64, u64> = |x| x * x;
    static MUL: Task<(i64, i64), i64> = |(a, b)| a * b;
    static PID: Task<u64, u32> = |_| std::process::id();
    static MAYBE_PANIC: Task<u64, (u64, u32)> = |x| {
        if x % 5 == 3 {
            panic!("task {x} refuses");
        }
        (x, std::process::id())
    };
    static INIT: Task<(), ()> = |()| {
        INIT_RUNS.fetch_add(1, Ordering::SeqCst);
    };
    static INIT_COUNT: Task<u64, (u32, u32)> = |_| (std::process::id(), INIT_RUNS.load(Ordering::SeqCst));
    static SLEEP: Task<u64, u64> = |ms| { nap(ms); ms };
    static SLEEP_FAIL: Task<u64, u64> = |ms| { nap(ms); if ms == 0 { panic!("boom") } ms };
    static LEN: Task<Vec<u8>, usize> = |v| v.len();
    static BIG_RESULT: Task<usize, Vec<u8>> = |n| vec![7; n];
}

// Adds its number to a named shared counter and counts the call.
shmkit::task! {
    static ADD_TO: Task<(String, u64), ()> = |(name, n)| {
        let sum = ShmBox::<ShmValue<u64>>::open(&name).expect("open the sum");
        let calls = ShmBox::<ShmValue<u64>>::open(&format!("{name}-calls")).expect("open the count");
        sum.fetch_add(n);
        calls.fetch_add(1);
    };
}

// Sleeps, then counts its call in a named shared value.
shmkit::task! {
    static SLEEP_COUNT: Task<(String, u64), u64> = |(name, ms)| {
        nap(ms);
        ShmBox::<ShmValue<u64>>::open(&name).expect("open the count").fetch_add(1);
        ms
    };
}

// Tells the parent its pid through a named shared array, then sleeps.
shmkit::task! {
    static REPORT_SLEEP: Task<(String, u64), u32> = |(name, ms)| {
        let arr = shmkit::ShmArray::<u32>::open(&name).expect("open report array");
        arr.set(0, std::process::id());
        nap(ms);
        std::process::id()
    };
}

fn pool(n: usize) -> Pool {
    Pool::new(n).expect("pool starts")
}

fn memfds_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("memfd:shmkit"))
        .count()
}

// ------------------------------------------------------------------ cases

fn map_10000_in_order() {
    let p = pool(2);
    let out = p.map(&SQUARE, 0..10_000u64, None).unwrap();
    assert_eq!(out.len(), 10_000);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, (i as u64) * (i as u64));
    }
    // Explicit chunk sizes, including 1 and one bigger than the input.
    for cs in [1, 7, 20_000] {
        let out = p.map(&SQUARE, 0..500u64, Some(cs)).unwrap();
        assert_eq!(out, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    }
    p.close();
    p.join();
}

fn imap_is_lazy() {
    let p = pool(2);
    let pulled = Cell::new(0u64);
    let input = (0..100_000u64).inspect(|_| pulled.set(pulled.get() + 1));
    let mut it = p.imap(&SQUARE, input, Some(1));
    for k in 0..10u64 {
        assert_eq!(it.next().unwrap().unwrap(), k * k);
    }
    assert!(
        pulled.get() < 100,
        "imap pulled {} items for 10 results",
        pulled.get()
    );
    drop(it);
    // The whole thing, in order, with chunks.
    let all: Vec<u64> = p
        .imap(&SQUARE, 0..3000u64, Some(16))
        .map(Result::unwrap)
        .collect();
    assert_eq!(all, (0..3000u64).map(|x| x * x).collect::<Vec<_>>());
}

fn imap_unordered_full_multiset() {
    let p = pool(2);
    let mut got: Vec<u64> = p
        .imap_unordered(&SQUARE, 0..2000u64, Some(3))
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..2000u64).map(|x| x * x).collect::<Vec<_>>());
}

fn starmap_tuples() {
    let p = pool(2);
    let items: Vec<(i64, i64)> = (0..300).map(|i| (i, -i)).collect();
    let out = p.starmap(&MUL, items, None).unwrap();
    assert_eq!(out, (0..300).map(|i| -i * i).collect::<Vec<_>>());
}

fn apply_async_get_ready_successful() {
    let p = pool(2);
    let r = p.apply_async(&SLEEP, 50).unwrap();
    assert_eq!(r.get().unwrap(), 50);
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    let slow = p.apply_async(&SLEEP, 300).unwrap();
    assert!(
        matches!(
            slow.get_timeout(Duration::from_millis(1)),
            Err(TaskError::Timeout)
        ) || slow.ready()
    );
    assert_eq!(slow.get().unwrap(), 300);
    let bad = p.apply_async(&SLEEP_FAIL, 0).unwrap();
    assert!(matches!(bad.get(), Err(TaskError::Panicked(m)) if m == "boom"));
    assert_eq!(bad.successful(), Some(false));
    assert_eq!(p.apply(&MUL, (6, 7)).unwrap(), 42);
    // Too large for the transport: refused at submit, never in a worker.
    let e = p.apply_async(&LEN, vec![1u8; 100_000]).unwrap_err();
    assert!(
        matches!(e, TaskError::TooLarge { size, max } if size > max),
        "{e:?}"
    );
    assert_eq!(p.apply(&LEN, vec![1u8; 1000]).unwrap(), 1000);
    // A huge chunksize is capped so each chunk fits the transport.
    let big: Vec<(i64, i64)> = vec![(3, 5); 100_000];
    assert_eq!(p.map(&MUL, big, Some(100_000)).unwrap(), vec![15; 100_000]);
    // A result too large for the transport is an error for that task.
    let e = p.apply(&BIG_RESULT, 1 << 20).unwrap_err();
    assert!(
        matches!(e, TaskError::Failed(ref m) if m.contains("transport")),
        "{e:?}"
    );
    assert_eq!(p.apply(&BIG_RESULT, 3).unwrap(), vec![7, 7, 7]);
}

/// The pool keeps nothing for a task whose result was collected, nor (once
/// it finished) for one whose handle was dropped: a long-running pool does
/// not grow. (It did: every collected `AsyncResult` left its id behind.)
fn collected_and_dropped_results_leave_no_bookkeeping() {
    let p = pool(2);
    for i in 0..2_000i64 {
        assert_eq!(p.apply_async(&MUL, (i, 2)).unwrap().get().unwrap(), 2 * i);
    }
    assert_eq!(
        p.map(&MUL, vec![(2, 3); 500], Some(1)).unwrap(),
        vec![6; 500]
    );
    assert_eq!(p.outstanding(), 0, "collected results left bookkeeping");
    for i in 0..200i64 {
        drop(p.apply_async(&MUL, (i, 3)).unwrap());
    }
    common::wait_until(Duration::from_secs(60), "dropped tasks to finish", || {
        p.outstanding() == 0
    });
}

fn panic_is_an_error_and_worker_keeps_serving() {
    let p = pool(1);
    let pid = p.pids()[0];
    let rs: Vec<_> = (0..20u64)
        .map(|x| p.apply_async(&MAYBE_PANIC, x).unwrap())
        .collect();
    for (x, r) in rs.iter().enumerate() {
        let x = x as u64;
        match r.get() {
            Ok((v, wpid)) => {
                assert_eq!(v, x);
                assert_eq!(wpid, pid, "the same worker keeps serving");
            }
            Err(TaskError::Panicked(m)) => {
                assert_eq!(x % 5, 3);
                assert_eq!(m, format!("task {x} refuses"));
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(p.pids(), vec![pid]);
}

fn sigkill_workers_mid_task() {
    let name = common::unique_name("poolrep");
    let arr = shmkit::ShmArray::<u32>::create(&name, 1).unwrap();
    let p = pool(2);
    let mut all_pids = HashSet::new();
    let mut died = 0;
    for round in 0..24 {
        arr.set(0, 0);
        // Some ordinary work around the victim.
        let others: Vec<_> = (0..6u64)
            .map(|x| p.apply_async(&SQUARE, x + round).unwrap())
            .collect();
        let victim = p
            .apply_async(&REPORT_SLEEP, (name.clone(), 10_000))
            .unwrap();
        let pid = loop {
            let pid = arr.get(0).unwrap();
            if pid != 0 {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        all_pids.insert(pid);
        // SAFETY: kill(2) on a worker pid of our own pool.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        match victim.get() {
            Err(TaskError::WorkerDied { pid: dead, status }) => {
                assert_eq!(dead, pid);
                assert_eq!(status, shmkit::ExitStatus::Signal(libc::SIGKILL));
                died += 1;
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        for (x, r) in others.iter().enumerate() {
            let v = x as u64 + round;
            assert_eq!(r.get().unwrap(), v * v);
        }
    }
    assert_eq!(died, 24);
    // Replacements took over: the pool still has 2 workers and works.
    let mut live = p.pids();
    for _ in 0..200 {
        if live.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        live = p.pids();
    }
    assert_eq!(live.len(), 2);
    for pid in &live {
        assert!(!all_pids.contains(pid), "a killed pid is still listed");
    }
    assert_eq!(p.map(&SQUARE, 0..100u64, None).unwrap().len(), 100);
    drop(p);
    drop(arr);
}

fn max_tasks_per_child_replaces_workers() {
    let p = Pool::builder()
        .processes(2)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = p.map(&PID, 0..30u64, Some(1)).unwrap();
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert!(
        distinct.len() >= 10,
        "30 tasks, 3 per child: {} distinct pids",
        distinct.len()
    );
    for pid in &distinct {
        assert!(pids.iter().filter(|p| *p == pid).count() <= 3);
    }
}

/// An iterator whose size hint claims an absurd exact length.
struct Liar(std::ops::Range<u64>);

impl Iterator for Liar {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX / 2, Some(usize::MAX / 2))
    }
}

/// `map` streams exact-length iterators and collects the others; a wrong
/// size hint changes nothing but speed.
fn map_any_iterator_and_wrong_size_hints() {
    let p = pool(2);
    let want: Vec<u64> = (0..1000u64).filter(|x| x % 3 != 0).map(|x| x * x).collect();
    let got = p
        .map(&SQUARE, (0..1000u64).filter(|x| x % 3 != 0), None)
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(
        p.map(&SQUARE, Liar(0..5), None).unwrap(),
        vec![0, 1, 4, 9, 16]
    );
    assert_eq!(p.map(&SQUARE, Liar(0..0), None).unwrap(), Vec::<u64>::new());
    assert_eq!(p.map(&SQUARE, Liar(0..7), Some(2)).unwrap().len(), 7);
}

/// Like Python's `maxtasksperchild`, one chunk of a `map` is one task for
/// the worker: 1 worker, 2 tasks per child, 4 chunks of 3 items = exactly
/// 2 children, each serving 2 whole chunks.
fn max_tasks_per_child_counts_chunks_like_python() {
    let p = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = p.map(&PID, 0..12u64, Some(3)).unwrap();
    assert_eq!(pids.len(), 12);
    for chunk in pids.chunks(3) {
        assert!(
            chunk.iter().all(|&q| q == chunk[0]),
            "a chunk ran in one worker: {pids:?}"
        );
    }
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 2, "{pids:?}");
    for pid in &distinct {
        assert_eq!(pids.iter().filter(|q| *q == pid).count(), 6, "{pids:?}");
    }
}

fn initializer_runs_once_per_worker() {
    let p = Pool::builder()
        .processes(2)
        .initializer(&INIT, ())
        .build()
        .unwrap();
    let seen: Vec<(u32, u32)> = p.map(&INIT_COUNT, 0..200u64, Some(1)).unwrap();
    for (_, n) in &seen {
        assert_eq!(*n, 1);
    }
    assert_eq!(INIT_RUNS.load(Ordering::SeqCst), 0, "not in the parent");
}

fn terminate_and_drop_leave_nothing() {
    let before = memfds_open();
    let p = pool(2);
    let pids = p.pids();
    assert_eq!(pids.len(), 2);
    let pending = p.apply_async(&SLEEP, 10_000).unwrap();
    p.terminate();
    assert!(matches!(pending.get(), Err(TaskError::Terminated)));
    for pid in &pids {
        assert!(!process_alive(*pid), "worker {pid} survived terminate");
    }
    assert!(matches!(p.apply_async(&SQUARE, 1), Err(TaskError::Closed)));
    drop(p);
    drop(pending);

    let p = pool(2);
    let pids = p.pids();
    let _r = p.apply_async(&SLEEP, 10_000).unwrap();
    drop(p);
    for pid in &pids {
        assert!(!process_alive(*pid), "worker {pid} survived drop");
    }
    drop(_r);
    assert_eq!(memfds_open(), before, "segments still mapped/open");

    // close + join: graceful, workers exit by themselves.
    let p = pool(2);
    let pids = p.pids();
    let r = p.apply_async(&SLEEP, 20).unwrap();
    p.close();
    p.join();
    assert_eq!(r.get().unwrap(), 20);
    for pid in &pids {
        assert!(!process_alive(*pid));
    }
}

fn executor_submit_map_as_completed() {
    let ex = Executor::new(2).unwrap();
    let f = ex.submit(&SQUARE, 12).unwrap();
    assert_eq!(f.result().unwrap(), 144);
    assert!(f.done());
    let mapped: Vec<u64> = ex
        .map(&SQUARE, 0..50u64, None, None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(mapped, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    let chunked: Vec<u64> = ex
        .map(&SQUARE, 0..50u64, Some(7), None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, mapped);
    let futs: Vec<_> = [300u64, 10, 150]
        .iter()
        .map(|&ms| ex.submit(&SLEEP, ms).unwrap())
        .collect();
    let order: Vec<u64> = as_completed(&futs).map(|f| f.result().unwrap()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![10, 150, 300]);
    assert!(matches!(
        futs[0].result_timeout(Duration::from_secs(30)),
        Ok(300)
    ));
}

fn executor_wait_modes() {
    let ex = Executor::new(2).unwrap();
    let futs = vec![
        ex.submit(&SLEEP, 20).unwrap(),
        ex.submit(&SLEEP, 2_000).unwrap(),
    ];
    let w = wait(&futs, FIRST_COMPLETED, None);
    assert!(w.done.contains(&0));
    let futs2 = vec![
        ex.submit(&SLEEP_FAIL, 0).unwrap(),
        ex.submit(&SLEEP_FAIL, 2_000).unwrap(),
    ];
    let w = wait(&futs2, FIRST_EXCEPTION, None);
    assert!(w.done.contains(&0));
    assert!(matches!(futs2[0].result(), Err(TaskError::Panicked(_))));
    ex.shutdown(true, false);
    assert_eq!(futs[1].result().unwrap(), 2_000);
}

fn executor_shutdown_cancels_pending() {
    let ex = Executor::new(1).unwrap();
    let futs: Vec<_> = (0..10).map(|_| ex.submit(&SLEEP, 100).unwrap()).collect();
    assert!(futs[9].cancel());
    assert!(futs[9].cancelled());
    ex.shutdown(true, true);
    let done = futs.iter().filter(|f| f.result().is_ok()).count();
    let cancelled = futs.iter().filter(|f| f.cancelled()).count();
    assert_eq!(done + cancelled, 10);
    assert!(cancelled >= 5, "only {cancelled} cancelled");
    assert!(done >= 1);
    assert!(matches!(ex.submit(&SQUARE, 1), Err(TaskError::Closed)));
}

/// Seeds 000-5 and 000-6: `executor.map(func, items)` whose results are
/// never read. Every task must still run (Python submits them all at
/// once); so must a task whose future was dropped.
fn executor_map_unread_still_runs_every_task() {
    let name = common::unique_name("map-unread");
    let sum = ShmBox::<ShmValue<u64>>::create(&name, 0).unwrap();
    let calls = ShmBox::<ShmValue<u64>>::create(&format!("{name}-calls"), 0).unwrap();
    {
        let ex = Executor::new(2).unwrap();
        let items: Vec<(String, u64)> = (1..=40).map(|i| (name.clone(), i)).collect();
        drop(ex.map(&ADD_TO, items, None, None).unwrap());
        let chunked: Vec<(String, u64)> = (41..=50).map(|i| (name.clone(), i)).collect();
        let _unread = ex.map(&ADD_TO, chunked, Some(3), None).unwrap();
        drop(ex.submit(&ADD_TO, (name.clone(), 1000)).unwrap());
    } // the `with` block ends: the executor waits for its work
    assert_eq!(calls.load(), 51, "every task ran exactly once");
    assert_eq!(sum.load(), (1..=50).sum::<u64>() + 1000);
    // After shutdown, map refuses at once instead of queueing into a void.
    let ex = Executor::new(1).unwrap();
    ex.shutdown(true, false);
    assert!(matches!(
        ex.map(&ADD_TO, [(name.clone(), 1)], None, None),
        Err(TaskError::Closed)
    ));
}

fn map_async_and_starmap_async() {
    let p = pool(2);
    let r = p.map_async(&SQUARE, 0..1000u64, Some(7)).unwrap();
    let a = p
        .starmap_async(&MUL, [(2, 3), (4, 5), (6, 7)], None)
        .unwrap();
    let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    assert_eq!(r.get().unwrap(), want);
    assert_eq!(r.get().unwrap(), want, "get may be called again");
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(
        a.get_timeout(Duration::from_secs(60)).unwrap(),
        vec![6, 20, 42]
    );
    // An iterator without an exact length, and an empty input.
    let odd = p
        .map_async(&SQUARE, (0..100u64).filter(|x| x % 2 == 1), None)
        .unwrap();
    assert_eq!(odd.get().unwrap().len(), 50);
    assert_eq!(
        p.map_async(&SQUARE, 0..0u64, None).unwrap().get().unwrap(),
        Vec::<u64>::new()
    );
    // The first error in input order wins; the handle says so.
    let bad = p.map_async(&MAYBE_PANIC, 0..20u64, Some(2)).unwrap();
    assert!(matches!(bad.get(), Err(TaskError::Panicked(m)) if m == "task 3 refuses"));
    assert_eq!(bad.successful(), Some(false));
    // Refused at once when a chunk cannot travel, and once closed.
    let e = p
        .map_async(&LEN, vec![vec![1u8; 100_000]], None)
        .unwrap_err();
    assert!(matches!(e, TaskError::TooLarge { .. }), "{e:?}");
    p.close();
    assert!(matches!(
        p.map_async(&SQUARE, 0..3u64, None),
        Err(TaskError::Closed)
    ));
    p.join();
}

/// `apply_async_with`: exactly one of the two callbacks runs per task,
/// on the pool's callback thread, also for a dropped `AsyncResult`; `join`
/// returns only once all have run.
fn apply_async_callbacks_run_on_the_pool_thread() {
    let p = pool(2);
    let (tx, rx) = mpsc::channel::<(u64, Result<u64, String>, String)>();
    for x in 0..40u64 {
        let (ok, err) = (tx.clone(), tx.clone());
        let r = p
            .apply_async_with(
                &MAYBE_PANIC,
                x,
                move |(v, _pid)| {
                    let t = std::thread::current().name().unwrap_or("").to_owned();
                    ok.send((x, Ok(v), t)).unwrap();
                },
                move |e| {
                    let t = std::thread::current().name().unwrap_or("").to_owned();
                    err.send((x, Err(e.to_string()), t)).unwrap();
                },
            )
            .unwrap();
        if x % 2 == 0 {
            drop(r); // the callback still runs
        }
    }
    drop(tx);
    p.close();
    p.join();
    let mut got: Vec<_> = rx.try_iter().collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(got.len(), 40, "each task called back exactly once");
    for (i, (x, r, thread)) in got.into_iter().enumerate() {
        assert_eq!(x, i as u64);
        assert_eq!(thread, "shmkit-pool-callbacks");
        match r {
            Ok(v) => assert!(x % 5 != 3 && v == x),
            Err(m) => assert!(
                x % 5 == 3 && m.contains(&format!("task {x} refuses")),
                "{m}"
            ),
        }
    }
    // Terminated before finishing: the error callback gets `Terminated`.
    let p = pool(1);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let r = p
        .apply_async_with(
            &SLEEP,
            60_000,
            move |v| tx.send(Ok(v)).unwrap(),
            move |e| tx2.send(Err(e)).unwrap(),
        )
        .unwrap();
    p.terminate();
    assert_eq!(rx.try_recv().unwrap(), Err(TaskError::Terminated));
    assert!(matches!(r.get(), Err(TaskError::Terminated)));
}

/// `TaskFuture::add_done_callback`: on the callback thread for a pending
/// task, at once in the caller's thread for a finished one, in the order
/// added, and for a cancelled one too.
fn task_future_add_done_callback() {
    let ex = Executor::new(1).unwrap();
    let log = Arc::new(StdMutex::new(Vec::new()));
    let slow = ex.submit(&SLEEP, 300).unwrap();
    let queued: Vec<_> = (0..6).map(|_| ex.submit(&SLEEP, 100).unwrap()).collect();
    for tag in ["first", "second"] {
        let log = log.clone();
        slow.add_done_callback(move |r| {
            let t = std::thread::current().name().unwrap_or("").to_owned();
            log.lock().unwrap().push((tag, r, t));
        });
    }
    assert!(queued[5].cancel());
    let l2 = log.clone();
    queued[5].add_done_callback(move |r| l2.lock().unwrap().push(("cancelled", r, String::new())));
    assert_eq!(slow.result().unwrap(), 300);
    ex.shutdown(true, false);
    let got = log.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            ("cancelled", Err(TaskError::Cancelled), String::new()),
            ("first", Ok(300), "shmkit-pool-callbacks".to_owned()),
            ("second", Ok(300), "shmkit-pool-callbacks".to_owned()),
        ]
    );
    // Already done: runs now, in this thread.
    let here = std::thread::current().id();
    let ran = Arc::new(StdMutex::new(None));
    let r2 = ran.clone();
    slow.add_done_callback(move |r| *r2.lock().unwrap() = Some((r, std::thread::current().id())));
    assert_eq!(ran.lock().unwrap().take(), Some((Ok(300), here)));
}

/// `Executor::map` with a chunksize, and with a timeout: `Err(Timeout)`
/// once, then the end; work no worker took is cancelled, as in Python.
fn executor_map_chunksize_and_timeout() {
    let ex = Executor::new(1).unwrap();
    let chunked: Vec<u64> = ex
        .map(&SQUARE, 0..100u64, Some(9), Some(Duration::from_secs(60)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(chunked, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let name = common::unique_name("map-timeout");
    let count = ShmBox::<ShmValue<u64>>::create(&name, 0).unwrap();
    let items: Vec<(String, u64)> = std::iter::once((name.clone(), 3_000))
        .chain((0..10).map(|_| (name.clone(), 0)))
        .collect();
    let mut it = ex
        .map(&SLEEP_COUNT, items, None, Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(it.next(), Some(Err(TaskError::Timeout)));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    ex.shutdown(true, false);
    // One worker, `workers + 1` = 2 tasks dispatched: those two ran, the
    // nine still waiting in this process were cancelled.
    assert_eq!(count.load(), 2);
}

fn as_completed_with_timeout() {
    let ex = Executor::new(2).unwrap();
    let futs = vec![
        ex.submit(&SLEEP, 10).unwrap(),
        ex.submit(&SLEEP, 20).unwrap(),
        ex.submit(&SLEEP, 4_000).unwrap(),
    ];
    let mut it = as_completed_timeout(&futs, Duration::from_secs(2));
    let mut done: Vec<u64> = (0..2)
        .map(|_| it.next().unwrap().unwrap().result().unwrap())
        .collect();
    done.sort_unstable();
    assert_eq!(done, vec![10, 20]);
    assert!(matches!(it.next(), Some(Err(TaskError::Timeout))));
    assert!(it.next().is_none());
    // Everything done before the deadline: no timeout at all.
    let quick = vec![
        ex.submit(&SQUARE, 3).unwrap(),
        ex.submit(&SQUARE, 4).unwrap(),
    ];
    let all: Vec<_> = as_completed_timeout(&quick, Duration::from_secs(60)).collect();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r.is_ok()));
    drop(futs);
    ex.shutdown(false, true);
}

fn main() {
    process::init();
    common::run(
        &[
            ("map_10000_in_order", map_10000_in_order),
            ("imap_is_lazy", imap_is_lazy),
            (
                "map_any_iterator_and_wrong_size_hints",
                map_any_iterator_and_wrong_size_hints,
            ),
            ("imap_unordered_full_multiset", imap_unordered_full_multiset),
            ("starmap_tuples", starmap_tuples),
            (
                "apply_async_get_ready_successful",
                apply_async_get_ready_successful,
            ),
            (
                "collected_and_dropped_results_leave_no_bookkeeping",
                collected_and_dropped_results_leave_no_bookkeeping,
            ),
            (
                "panic_is_an_error_and_worker_keeps_serving",
                panic_is_an_error_and_worker_keeps_serving,
            ),
            ("sigkill_workers_mid_task", sigkill_workers_mid_task),
            (
                "max_tasks_per_child_replaces_workers",
                max_tasks_per_child_replaces_workers,
            ),
            (
                "max_tasks_per_child_counts_chunks_like_python",
                max_tasks_per_child_counts_chunks_like_python,
            ),
            (
                "initializer_runs_once_per_worker",
                initializer_runs_once_per_worker,
            ),
            (
                "terminate_and_drop_leave_nothing",
                terminate_and_drop_leave_nothing,
            ),
            (
                "executor_submit_map_as_completed",
                executor_submit_map_as_completed,
            ),
            ("executor_wait_modes", executor_wait_modes),
            (
                "executor_map_unread_still_runs_every_task",
                executor_map_unread_still_runs_every_task,
            ),
            (
                "executor_shutdown_cancels_pending",
                executor_shutdown_cancels_pending,
            ),
            ("map_async_and_starmap_async", map_async_and_starmap_async),
            (
                "apply_async_callbacks_run_on_the_pool_thread",
                apply_async_callbacks_run_on_the_pool_thread,
            ),
            (
                "task_future_add_done_callback",
                task_future_add_done_callback,
            ),
            (
                "executor_map_chunksize_and_timeout",
                executor_map_chunksize_and_timeout,
            ),
            ("as_completed_with_timeout", as_completed_with_timeout),
        ],
        120,
    );
}
