//! Cross-process tests of the process layer: spawn (re-exec), fork, exit
//! statuses, signals, daemon children, start-up errors and segment handoff.
//!
//! `harness = false`: `main` calls `shmkit::process::init()` first (so this
//! binary can be re-executed as a child), then runs the cases one after
//! another on the main thread with `common::run`.

mod common;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmkit::os::process_alive;
use shmkit::process::{
    self, active_children, current_process, parent_process, ExitStatus, Pool, Process, Run, Shared,
    SpawnError,
};
use shmkit::{DictConfig, Mutex, Queue, ShmArray, ShmBox, ShmMap, ShmValue};

// ----------------------------------------------------------------- entries

fn sum_code((a, b, word): (i32, i32, String)) -> i32 {
    if word != "hi" {
        return 99;
    }
    a + b
}

fn name_is(expected: String) -> bool {
    current_process().name() == expected && current_process().pid() == std::process::id()
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn die_by(sig: i32) -> i32 {
    // SAFETY: sends a signal to this very process.
    unsafe { libc::kill(libc::getpid(), sig) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn boom(n: u32) {
    panic!("boom {n}");
}

fn add_named((name, n): (String, u32)) -> Result<(), shmkit::AttachError> {
    let counter = ShmBox::<Mutex<u64>>::open(&name)?;
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
    Ok(())
}

fn add_shared((counter, n): (Shared<ShmBox<Mutex<u64>>>, u32)) -> Result<(), shmkit::AttachError> {
    let counter = counter.attach()?;
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
    Ok(())
}

shmkit::entry! {
    static SUM_CODE: Entry<(i32, i32, String)> = sum_code;
    static NAME_IS: Entry<String> = name_is;
    static SLEEP_MS: Entry<u64> = sleep_ms;
    static DIE_BY: Entry<i32> = die_by;
    static BOOM: Entry<u32> = boom;
    static ADD_NAMED: Entry<(String, u32)> = add_named;
    static ADD_SHARED: Entry<(Shared<ShmBox<Mutex<u64>>>, u32)> = add_shared;
}

/// A `Run` type (Python's subclass of `Process`): checks the name it was
/// given and leaves its own field in shared memory.
#[derive(Serialize, Deserialize)]
struct Worker {
    expect_name: String,
    value: u32,
    out: Shared<ShmArray<u32>>,
}

impl Run for Worker {
    fn run(self) {
        let out = self.out.attach().expect("attach the output array");
        assert_eq!(current_process().name(), self.expect_name);
        out.set(0, self.value);
    }
}
shmkit::register_run!(Worker);

// Slots of the array shared by the exit-hook test's three generations.
const GO: usize = 0;
const RETURNED: usize = 1;
const DAEMON_PID: usize = 2;
const CHILD_PID: usize = 3;
const CHILD_DONE: usize = 4;
const DAEMON_ALIVE_AFTER_DROP: usize = 5;
const SLOTS: usize = 6;

/// Waits for the parent's go, then marks itself done.
fn wait_go_then_mark(arr: Shared<ShmArray<u32>>) -> Result<(), shmkit::AttachError> {
    let arr = arr.attach()?;
    while arr.get(GO) != Some(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    arr.set(CHILD_DONE, 1);
    Ok(())
}

/// The seed 003-2 shape, one generation down: starts a daemon and a
/// non-daemon child, drops both handles without joining, and returns.
fn start_two_and_return(arr: Shared<ShmArray<u32>>) -> Result<(), Box<dyn std::error::Error>> {
    let shared = arr.attach()?;
    let d = Process::builder().daemon(true).spawn(&SLEEP_MS, &600_000)?;
    let n = Process::builder().spawn(&WAIT_GO_THEN_MARK, &Shared::new(&shared)?)?;
    shared.set(DAEMON_PID, d.pid());
    shared.set(CHILD_PID, n.pid());
    let daemon = d.pid();
    drop(d);
    drop(n);
    shared.set(DAEMON_ALIVE_AFTER_DROP, u32::from(process_alive(daemon)));
    shared.set(RETURNED, 1);
    Ok(())
}

shmkit::entry! {
    static WAIT_GO_THEN_MARK: Entry<Shared<ShmArray<u32>>> = wait_go_then_mark;
    static START_TWO_AND_RETURN: Entry<Shared<ShmArray<u32>>> = start_two_and_return;
}

// ------------------------------------------- parent_process, process trees

/// Reports what `parent_process()` says here, then the same for a forked
/// grandchild, into `out`: [parent pid, name ok, alive, grandchild's ok].
fn report_parent(
    (out, expect_name): (Shared<ShmArray<u32>>, String),
) -> Result<(), Box<dyn std::error::Error>> {
    let out = out.attach()?;
    let p = parent_process().ok_or("a spawned child has a parent")?;
    out.set(0, p.pid());
    out.set(1, u32::from(p.name() == expect_name));
    out.set(2, u32::from(p.is_alive()));
    let me = (std::process::id(), current_process().name().to_owned());
    let g = Process::builder().fork(move || {
        let p = parent_process().expect("a forked child has a parent");
        i32::from(p.pid() == me.0 && p.name() == me.1 && p.is_alive())
    })?;
    out.set(3, u32::try_from(g.join()?.exitcode()).unwrap_or(0));
    Ok(())
}

shmkit::task! {
    static PARENT_OF_WORKER: Task<(), Option<(u32, String)>> =
        |()| parent_process().map(|p| (p.pid(), p.name().to_owned()));
    static TREE_SQUARE: Task<u64, u64> = |x| x * x;
}

/// How the root of a test process tree ends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum TreeEnd {
    /// Joins its children and returns.
    Return,
    /// Panics while its children still run.
    Panic,
    /// Waits to be SIGKILLed.
    Hang,
}

// Slots of a tree's control array (anonymous: not under the tree's prefix).
const T_READY: usize = 0;
const T_RELEASE: usize = 1;
const T_KIDS: usize = 2; // and 3
const T_SLOTS: usize = 4;

type TreeChildArgs = (
    Shared<Queue<u64>>,
    Shared<ShmMap<String, u64>>,
    Shared<ShmArray<u32>>,
    u64,
);

/// A child of the tree: puts `k` into the dict and the queue, then stays
/// attached until the test releases it or its parent is gone.
fn tree_child((q, d, ctl, k): TreeChildArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (q, d, ctl) = (q.attach()?, d.attach()?, ctl.attach()?);
    // The dict entry first: the root reads the dict once it has both
    // queue items, so the put must come after the insert.
    d.insert(&format!("child-{k}"), &k)?;
    q.put(k).map_err(|_| "put failed")?;
    let parent = parent_process().ok_or("no parent")?;
    while ctl.get(T_RELEASE) != Some(1) && parent.is_alive() {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The root of a tree: a named queue and dict handed to two spawned
/// children as arguments, and a pool; then ends as `end` says.
fn tree_root(
    (prefix, end, daemon_kids, ctl): (String, TreeEnd, bool, Shared<ShmArray<u32>>),
) -> Result<(), Box<dyn std::error::Error>> {
    let ctl = ctl.attach()?;
    let q = Queue::<u64>::create(&format!("{prefix}-q"), 16, 8)?;
    let d =
        ShmMap::<String, u64>::create(&format!("{prefix}-d"), DictConfig::for_entries(8, 16, 8)?)?;
    let pool = Pool::new(1)?;
    if pool.apply(&TREE_SQUARE, 12)? != 144 {
        return Err("pool answered wrong".into());
    }
    let mut kids = Vec::new();
    for k in 1..=2u64 {
        let args = (Shared::new(&q)?, Shared::new(&d)?, Shared::new(&ctl)?, k);
        let p = Process::builder()
            .daemon(daemon_kids)
            .spawn(&TREE_CHILD, &args)?;
        ctl.set(T_KIDS + k as usize - 1, p.pid());
        kids.push(p);
    }
    let mut got = [q.get()?, q.get()?];
    got.sort_unstable();
    if got != [1, 2] || d.get("child-2")? != Some(2) {
        return Err("children did not deliver".into());
    }
    ctl.set(T_READY, 1);
    match end {
        TreeEnd::Return => {
            for k in kids {
                k.join()?;
            }
            Ok(())
        }
        TreeEnd::Panic => panic!("tree root panics while its children run"),
        TreeEnd::Hang => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

shmkit::entry! {
    static REPORT_PARENT: Entry<(Shared<ShmArray<u32>>, String)> = report_parent;
    static TREE_CHILD: Entry<TreeChildArgs> = tree_child;
    static TREE_ROOT: Entry<(String, TreeEnd, bool, Shared<ShmArray<u32>>)> = tree_root;
}

/// Names in /dev/shm under `prefix` (this test's own segments only).
fn shm_names_under(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    v.sort();
    v
}

/// Starts a tree, checks that its segments exist while it runs, and
/// returns (root, control array, prefix) once both children delivered.
fn start_tree(end: TreeEnd, daemon_kids: bool) -> (Process, ShmArray<u32>, String) {
    let prefix = common::unique_name("tree");
    let ctl = ShmArray::<u32>::anonymous(T_SLOTS).unwrap();
    let root = Process::builder()
        .name("tree-root")
        .spawn(
            &TREE_ROOT,
            &(prefix.clone(), end, daemon_kids, Shared::new(&ctl).unwrap()),
        )
        .unwrap();
    wait_until(LONG, "the tree's children to deliver", || {
        ctl.get(T_READY) == Some(1) || root.exit_status().is_some()
    });
    assert_eq!(root.exit_status(), None, "the tree root failed early");
    let names = shm_names_under(&prefix);
    assert_eq!(
        names,
        vec![format!("{prefix}-d"), format!("{prefix}-q")],
        "while the tree runs its two named segments exist"
    );
    (root, ctl, prefix)
}

const LONG: Duration = Duration::from_secs(60);

use common::wait_until;

// ------------------------------------------------------------------- cases

fn spawn_join_with_args_and_exit_code() {
    let p = Process::builder()
        .spawn(&SUM_CODE, &(20, 22, "hi".to_owned()))
        .unwrap();
    assert!(p.name().starts_with("Process-"), "{}", p.name());
    assert_eq!(p.join().unwrap(), ExitStatus::Code(42));
    assert_eq!(p.exitcode(), Some(42));
    assert!(!p.is_alive());

    let named = Process::builder()
        .name("worker 1")
        .spawn(&NAME_IS, &"worker 1".to_owned())
        .unwrap();
    assert_eq!(named.name(), "worker 1");
    assert_eq!(
        named.join().unwrap(),
        ExitStatus::Code(0),
        "child sees its name"
    );
}

fn exit_status_code_signal_panic() {
    let code = Process::builder()
        .spawn(&SUM_CODE, &(1, 2, "hi".into()))
        .unwrap();
    let sig = Process::builder().spawn(&DIE_BY, &libc::SIGUSR1).unwrap();
    let panicked = Process::builder().spawn(&BOOM, &7).unwrap();
    assert_eq!(code.join().unwrap(), ExitStatus::Code(3));
    assert_eq!(sig.join().unwrap(), ExitStatus::Signal(libc::SIGUSR1));
    assert_eq!(sig.exitcode(), Some(-libc::SIGUSR1));
    let st = panicked.join().unwrap();
    assert_eq!(st, ExitStatus::Panicked("boom 7".into()));
    assert_eq!(st.panic_message(), Some("boom 7"));
    assert_eq!(st.exitcode(), 1);
}

fn terminate_and_kill() {
    let t = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    let k = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    assert!(t.is_alive() && k.is_alive());
    assert_eq!(t.exitcode(), None);
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(t.join().unwrap(), ExitStatus::Signal(15));
    assert_eq!(k.join().unwrap(), ExitStatus::Signal(9));
    assert_eq!(t.exitcode(), Some(-15));
    assert_eq!(k.exitcode(), Some(-9));
    assert!(!t.is_alive() && !k.is_alive());
    // Signalling a reaped child is a no-op, not an error.
    t.terminate().unwrap();
    k.kill().unwrap();
}

fn join_timeout_none_then_some() {
    let p = Process::builder().spawn(&SLEEP_MS, &60_000).unwrap();
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(p.join_timeout(LONG).unwrap(), Some(ExitStatus::Signal(9)));
}

fn unknown_entry_bad_args_version_mismatch_are_parent_errors() {
    match Process::builder().spawn_raw("xproc_process::NO_SUCH_ENTRY", &[]) {
        Err(SpawnError::UnknownEntry(name)) => assert_eq!(name, "xproc_process::NO_SUCH_ENTRY"),
        other => panic!("expected UnknownEntry, got {other:?}"),
    }
    // (i32, i32, String) cannot decode from a truncated varint.
    match Process::builder().spawn_raw(SUM_CODE.name(), &[0xff, 0xff]) {
        Err(SpawnError::BadArgs { entry, .. }) => assert_eq!(entry, SUM_CODE.name()),
        other => panic!("expected BadArgs, got {other:?}"),
    }
    match Process::builder()
        .__protocol("shmkit-0.0.0/spawn-0")
        .spawn(&SLEEP_MS, &0)
    {
        Err(SpawnError::VersionMismatch { parent, child }) => {
            assert_eq!(parent, "shmkit-0.0.0/spawn-0");
            assert_eq!(child, process::PROTOCOL);
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

/// An intermediate process spawns a daemon child, then is killed with
/// `sig`; the daemon must die too.
fn daemon_dies_with_parent(sig: i32) {
    let slot = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut middle = common::fork(|| {
        let d = Process::builder()
            .name("daemon")
            .daemon(true)
            .spawn(&SLEEP_MS, &600_000)
            .unwrap();
        slot.store(d.pid());
        std::mem::forget(d); // keep it running until our death takes it
        std::thread::sleep(Duration::from_secs(600));
        0
    });
    wait_until(LONG, "intermediate never reported its daemon", || {
        slot.load() != 0
    });
    let daemon = slot.load();
    assert!(process_alive(daemon));
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(middle.pid, sig) };
    assert_eq!(middle.wait(LONG, "intermediate"), common::Exit::Signal(sig));
    wait_until(LONG, "daemon child outlived its parent", || {
        !process_alive(daemon)
    });
}

fn daemon_dies_when_parent_sigkilled() {
    daemon_dies_with_parent(libc::SIGKILL);
}

fn daemon_dies_when_parent_sigtermed() {
    daemon_dies_with_parent(libc::SIGTERM);
}

fn dropping_a_handle_leaves_the_child_running() {
    let d = Process::builder()
        .daemon(true)
        .spawn(&SLEEP_MS, &600_000)
        .unwrap();
    let pid = d.pid();
    drop(d);
    // As in Python, the object going away does not stop the child; the
    // registry still knows it (and the exit hook would terminate it).
    assert!(process_alive(pid));
    let again = active_children()
        .into_iter()
        .find(|p| p.pid() == pid)
        .expect("a dropped daemon child is still an active child");
    assert!(again.is_daemon());
    again.kill().unwrap();
    assert_eq!(again.join().unwrap(), ExitStatus::Signal(libc::SIGKILL));
    assert!(active_children().iter().all(|p| p.pid() != pid));

    // A dropped non-daemon child finishes on its own and is reaped by
    // active_children().
    let n = Process::builder().spawn(&SLEEP_MS, &1).unwrap();
    let pid = n.pid();
    drop(n);
    wait_until(LONG, "dropped non-daemon child is still active", || {
        active_children().iter().all(|p| p.pid() != pid)
    });
    assert!(!process_alive(pid));
}

/// Seed 003-2 one generation down: the intermediate's exit hook terminates
/// its daemon child and joins its non-daemon child, though it dropped both
/// handles without a join.
fn exit_hook_terminates_daemons_and_joins_the_rest() {
    let arr = ShmArray::<u32>::anonymous(SLOTS).unwrap();
    let middle = Process::builder()
        .spawn(&START_TWO_AND_RETURN, &Shared::new(&arr).unwrap())
        .unwrap();
    wait_until(
        LONG,
        "the intermediate never returned from its entry",
        || arr.get(RETURNED) == Some(1),
    );
    assert_eq!(arr.get(DAEMON_ALIVE_AFTER_DROP), Some(1));
    let daemon = arr.get(DAEMON_PID).unwrap();
    // The daemon is terminated by the hook...
    wait_until(LONG, "the exit hook did not terminate the daemon", || {
        !process_alive(daemon)
    });
    // ...while the non-daemon child holds the intermediate's exit: it
    // waits for our go, so the intermediate cannot be gone yet.
    let early = middle.join_timeout(Duration::from_millis(200)).unwrap();
    let done_early = arr.get(CHILD_DONE);
    arr.set(GO, 1); // first, so that a failure leaves no orphan behind
    assert_eq!(
        early, None,
        "the intermediate exited without joining its non-daemon child"
    );
    assert_eq!(done_early, Some(0));
    assert_eq!(middle.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(arr.get(CHILD_DONE), Some(1), "joined before the exit");
    assert!(!process_alive(arr.get(CHILD_PID).unwrap()));
}

fn unstarted_process_object() {
    let me = std::process::id();
    let p = Process::with_target(&SUM_CODE, &(40, 2, "hi".to_owned())).unwrap();
    let name = p.name().to_owned();
    assert!(name.starts_with("Process-"), "{name}");
    assert_eq!(
        p.to_string(),
        format!("<Process name='{name}' parent={me} initial>")
    );
    assert!(!p.is_alive());
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.parent_pid(), me);
    let p = p.start().unwrap();
    assert_eq!(p.name(), name);
    assert!(p.to_string().starts_with(&format!(
        "<Process name='{name}' pid={} parent={me} ",
        p.pid()
    )));
    assert_eq!(p.join().unwrap(), ExitStatus::Code(42));
    assert_eq!(
        p.to_string(),
        format!(
            "<Process name='{name}' pid={} parent={me} stopped exitcode=42>",
            p.pid()
        )
    );

    // Names are numbered when the object is made, as in Python; a daemon
    // flag set before start shows in the repr.
    let mut q = Process::builder().target(&SLEEP_MS, &600_000).unwrap();
    let n: u32 = name.strip_prefix("Process-").unwrap().parse().unwrap();
    assert_eq!(q.name(), format!("Process-{}", n + 1));
    q.set_daemon(true);
    q.set_name("sleeper");
    assert_eq!(
        q.to_string(),
        format!("<Process name='sleeper' parent={me} initial daemon>")
    );
    let q = q.start().unwrap();
    assert!(q.is_daemon() && q.is_alive());
    q.terminate().unwrap();
    q.join().unwrap();
    assert!(
        q.to_string()
            .ends_with(" stopped exitcode=-SIGTERM daemon>"),
        "{q}"
    );
    // Dropping an unstarted process starts nothing.
    let before = active_children().len();
    drop(Process::with_target(&SLEEP_MS, &600_000).unwrap());
    assert_eq!(active_children().len(), before);
}

fn run_trait_subclass_with_class_name() {
    let out = ShmArray::<u32>::anonymous(1).unwrap();
    let me = std::process::id();
    let make = |expect_name: &str, value: u32| Worker {
        expect_name: expect_name.to_owned(),
        value,
        out: Shared::new(&out).unwrap(),
    };
    // The number comes from the counter every process object shares.
    let probe = Process::with_target(&SLEEP_MS, &0).unwrap();
    let n: u32 = probe
        .name()
        .strip_prefix("Process-")
        .unwrap()
        .parse()
        .unwrap();
    drop(probe);
    let expected = format!("Worker-{}", n + 1);
    let w = make(&expected, 7).into_process().unwrap();
    assert_eq!(w.name(), expected);
    assert_eq!(
        w.to_string(),
        format!("<Worker name='{expected}' parent={me} initial>")
    );
    let w = w.start().unwrap();
    assert_eq!(w.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(out.get(0), Some(7));
    assert!(w
        .to_string()
        .starts_with(&format!("<Worker name='{expected}' pid=")));
    // With a builder: an explicit name; a wrong expectation panics in the
    // child, and the parent sees the panic.
    let named = Process::builder()
        .name("custom")
        .runnable(&make("custom", 9))
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(named.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(out.get(0), Some(9));
    let wrong = Process::builder()
        .name("other")
        .runnable(&make("custom", 1))
        .unwrap()
        .start()
        .unwrap();
    assert!(wrong.join().unwrap().panic_message().is_some());
    assert_eq!(out.get(0), Some(9));
}

fn named_box_handed_to_four_children() {
    let name = common::unique_name("proc-named");
    let counter = ShmBox::<Mutex<u64>>::create(&name, 0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Process::builder()
                .spawn(&ADD_NAMED, &(name.clone(), 1000))
                .unwrap()
        })
        .collect();
    for k in &kids {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(*counter.lock().unwrap(), 4000);
}

fn anonymous_segment_handed_by_fd() {
    let counter = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let shared = Shared::new(&counter).unwrap();
            Process::builder()
                .spawn(&ADD_SHARED, &(shared, 1000))
                .unwrap()
        })
        .collect();
    for k in &kids {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(0));
    }
    assert_eq!(*counter.lock().unwrap(), 4000);
}

fn fork_variant() {
    let hits = ShmBox::<Mutex<u64>>::anonymous(0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|i| {
            Process::builder()
                .name(format!("forked {i}"))
                .fork(|| {
                    for _ in 0..1000 {
                        *hits.lock().unwrap() += 1;
                    }
                    assert_eq!(current_process().name(), format!("forked {i}"));
                    i
                })
                .unwrap()
        })
        .collect();
    for (i, k) in kids.iter().enumerate() {
        assert_eq!(k.join().unwrap(), ExitStatus::Code(i as i32));
    }
    assert_eq!(*hits.lock().unwrap(), 4000);

    let p = process::fork(|| -> i32 { panic!("forked boom") }).unwrap();
    assert_eq!(
        p.join().unwrap(),
        ExitStatus::Panicked("forked boom".into())
    );
    let t = process::fork(|| std::thread::sleep(Duration::from_secs(600))).unwrap();
    t.terminate().unwrap();
    assert_eq!(t.join().unwrap().exitcode(), -15);
}

fn fork_refuses_with_other_threads() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || rx.recv());
    match process::fork(|| 0) {
        Err(SpawnError::MultiThreaded(n)) => assert!(n >= 2),
        other => panic!("expected MultiThreaded, got {other:?}"),
    }
    drop(tx);
    let _ = th.join();
    // Spawning (re-exec) works with threads alive.
}

fn parent_process_names_the_parent() {
    assert!(parent_process().is_none(), "the main process has no parent");
    let out = ShmArray::<u32>::anonymous(4).unwrap();
    let p = Process::builder()
        .name("reporter")
        .spawn(
            &REPORT_PARENT,
            &(Shared::new(&out).unwrap(), "MainProcess".to_owned()),
        )
        .unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(out.to_vec(), vec![std::process::id(), 1, 1, 1]);
    // A pool worker's parent is the process that owns the pool.
    let pool = Pool::new(1).unwrap();
    assert_eq!(
        pool.apply(&PARENT_OF_WORKER, ()).unwrap(),
        Some((std::process::id(), "MainProcess".to_owned()))
    );
}

/// Issue #11: a tree that ends normally leaves nothing in /dev/shm.
fn tree_exits_normally_leaves_no_segment() {
    let (root, ctl, prefix) = start_tree(TreeEnd::Return, false);
    ctl.set(T_RELEASE, 1);
    assert_eq!(root.join().unwrap(), ExitStatus::Code(0));
    assert_eq!(shm_names_under(&prefix), Vec::<String>::new());
}

/// Issue #11: a root that panics with its children running unlinks its
/// names while unwinding; the children keep their mappings and exit.
fn tree_root_panics_leaves_no_segment() {
    let (root, ctl, prefix) = start_tree(TreeEnd::Panic, false);
    ctl.set(T_RELEASE, 1);
    match root.join().unwrap() {
        ExitStatus::Panicked(m) => assert!(m.contains("tree root panics"), "{m}"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(shm_names_under(&prefix), Vec::<String>::new());
}

/// Issue #11: a SIGKILLed root runs no destructor; its surviving
/// (non-daemon) children notice, exit, and the last one to let go of each
/// segment removes the dead creator's name.
fn tree_root_sigkilled_survivors_clean_up() {
    let (root, _ctl, prefix) = start_tree(TreeEnd::Hang, false);
    root.kill().unwrap();
    assert_eq!(root.join().unwrap(), ExitStatus::Signal(libc::SIGKILL));
    wait_until(LONG, "the survivors to remove the tree's segments", || {
        shm_names_under(&prefix).is_empty()
    });
}

/// Issue #11: when the whole tree dies (daemon children die with the
/// SIGKILLed root), nobody is left to clean up: the next start (`create`
/// of the same names) replaces the stale segments, and they go with it.
fn tree_sigkilled_with_daemons_cleaned_on_next_start() {
    let (root, _ctl, prefix) = start_tree(TreeEnd::Hang, true);
    root.kill().unwrap();
    assert_eq!(root.join().unwrap(), ExitStatus::Signal(libc::SIGKILL));
    let (qn, dn) = (format!("{prefix}-q"), format!("{prefix}-d"));
    let mut q = None;
    let mut d = None;
    wait_until(LONG, "the dead tree's names to become replaceable", || {
        q = q.take().or_else(|| Queue::<u64>::create(&qn, 16, 8).ok());
        d = d.take().or_else(|| {
            ShmMap::<String, u64>::create(&dn, DictConfig::for_entries(8, 16, 8).unwrap()).ok()
        });
        q.is_some() && d.is_some()
    });
    let (q, d) = (q.unwrap(), d.unwrap());
    assert!(q.is_empty(), "a fresh queue, not the dead one");
    assert_eq!(
        d.get("child-1").unwrap(),
        None,
        "a fresh dict, not the dead one"
    );
    drop((q, d));
    assert_eq!(shm_names_under(&prefix), Vec::<String>::new());
}

fn main() {
    shmkit::process::init();
    common::run(
        &[
            (
                "spawn_join_with_args_and_exit_code",
                spawn_join_with_args_and_exit_code,
            ),
            (
                "exit_status_code_signal_panic",
                exit_status_code_signal_panic,
            ),
            ("terminate_and_kill", terminate_and_kill),
            ("join_timeout_none_then_some", join_timeout_none_then_some),
            (
                "unknown_entry_bad_args_version_mismatch_are_parent_errors",
                unknown_entry_bad_args_version_mismatch_are_parent_errors,
            ),
            (
                "daemon_dies_when_parent_sigkilled",
                daemon_dies_when_parent_sigkilled,
            ),
            (
                "daemon_dies_when_parent_sigtermed",
                daemon_dies_when_parent_sigtermed,
            ),
            (
                "dropping_a_handle_leaves_the_child_running",
                dropping_a_handle_leaves_the_child_running,
            ),
            (
                "exit_hook_terminates_daemons_and_joins_the_rest",
                exit_hook_terminates_daemons_and_joins_the_rest,
            ),
            ("unstarted_process_object", unstarted_process_object),
            (
                "run_trait_subclass_with_class_name",
                run_trait_subclass_with_class_name,
            ),
            (
                "named_box_handed_to_four_children",
                named_box_handed_to_four_children,
            ),
            (
                "anonymous_segment_handed_by_fd",
                anonymous_segment_handed_by_fd,
            ),
            ("fork_variant", fork_variant),
            (
                "fork_refuses_with_other_threads",
                fork_refuses_with_other_threads,
            ),
            (
                "parent_process_names_the_parent",
                parent_process_names_the_parent,
            ),
            (
                "tree_exits_normally_leaves_no_segment",
                tree_exits_normally_leaves_no_segment,
            ),
            (
                "tree_root_panics_leaves_no_segment",
                tree_root_panics_leaves_no_segment,
            ),
            (
                "tree_root_sigkilled_survivors_clean_up",
                tree_root_sigkilled_survivors_clean_up,
            ),
            (
                "tree_sigkilled_with_daemons_cleaned_on_next_start",
                tree_sigkilled_with_daemons_cleaned_on_next_start,
            ),
        ],
        120,
    );
}
