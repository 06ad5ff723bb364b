//! The machinery shared by [`Pool`](super::Pool) and
//! [`Executor`](super::Executor): worker processes, the two shared-memory
//! queues, the per-worker current-task slots, and the parent's monitor
//! thread.
//!
//! # Transport
//!
//! * task queue (parent → workers): an anonymous [`MpmcQueue`]; each
//!   message is one chunk of one task (see [`task`](super::task)).
//! * result queue (workers → parent): an anonymous [`MpmcQueue`].
//! * current-task slots: an anonymous [`ShmArray<u64>`], one per worker
//!   index; 0 = idle. A worker writes the id of the task it takes *inside*
//!   the receive (while it holds the slot's claim) and clears it only
//!   after its result has been sent.
//!
//! All three are anonymous memfds handed to each worker in its spawn
//! arguments ([`Shared`]), so nothing is ever left in `/dev/shm`.
//!
//! # The monitor thread
//!
//! One thread in the parent receives results, moves tasks from the local
//! backlog into the task queue (at most `window` dispatched at once, so
//! later tasks stay cancellable), and every few milliseconds reaps dead
//! workers (pidfd-backed `waitid`). For a dead worker it first drains the
//! result queue (a result that was fully sent wins), then reads the
//! worker's slot: a task id there gets `WorkerDied { pid, status }`. A
//! worker that died with an empty slot may have been killed inside the
//! few instructions between claiming a message and writing its id; the
//! monitor then waits until the pool is quiescent (task queue empty, every
//! slot idle, results drained) and fails whatever is still outstanding
//! with `WorkerDied`, so no caller waits forever. A replacement worker is
//! started for every dead one (also for one that exited after
//! `max_tasks_per_child`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex as StdMutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::handle::{ExitStatus, Process};
use super::handoff::Shared;
use super::task::{self, TaskError};
use crate::os::Deadline;
use crate::queue::error::{RecvTimeoutError, TrySendError};
use crate::queue::{MpmcQueue, MpmcReceiver, MpmcSender};
use crate::segment::{OpenOptions, Segment};
use crate::sync::ShmArray;

/// What a finished task left: the encoded results, or why there are none.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

const TICK: Duration = Duration::from_millis(5);

/// Options common to pools and executors.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub workers: usize,
    pub max_message: usize,
    pub max_tasks_per_child: u64,
    pub initializer: Option<(String, Vec<u8>)>,
    /// Tasks dispatched into the shared queue at once (0 = queue capacity).
    pub window: usize,
    pub name_prefix: &'static str,
}

struct Worker {
    process: Option<Process>,
    pid: u32,
}

#[derive(Default)]
struct State {
    next_id: u64,
    dispatched: HashSet<u64>,
    backlog: VecDeque<(u64, Vec<u8>)>,
    done: HashMap<u64, Outcome>,
    abandoned: HashSet<u64>,
    closed: bool,
    stopping: bool,
    terminated: bool,
    /// Workers that died holding no task id (a message may have been lost).
    suspects: Vec<(u32, ExitStatus)>,
    spawned: u64,
}

pub(crate) struct Core {
    cfg: Config,
    state: StdMutex<State>,
    cond: Condvar,
    task_q: MpmcQueue,
    task_tx: MpmcSender,
    result_q: MpmcQueue,
    slots: ShmArray<u64>,
    workers: StdMutex<Vec<Worker>>,
    monitor: StdMutex<Option<JoinHandle<()>>>,
    window: usize,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_err(e: impl std::fmt::Display) -> TaskError {
    TaskError::Spawn(e.to_string())
}

impl Core {
    /// Creates the queues, starts the monitor thread, which starts the
    /// workers (so that their parent-death signal is tied to a thread that
    /// lives as long as the pool), and waits until they run.
    pub(crate) fn start(cfg: Config) -> Result<Arc<Core>, TaskError> {
        let n = cfg.workers.max(1);
        let cap = (4 * n).next_power_of_two().clamp(16, 1024);
        let slot = cfg.max_message.max(64);
        let task_q = MpmcQueue::anonymous(slot, cap).map_err(io_err)?;
        let result_q = MpmcQueue::anonymous(slot, cap).map_err(io_err)?;
        let slots = ShmArray::<u64>::anonymous(n).map_err(io_err)?;
        let task_tx = task_q.sender().map_err(io_err)?;
        let window = if cfg.window == 0 { cap } else { cfg.window };
        let core = Arc::new(Core {
            cfg: Config { workers: n, ..cfg },
            state: StdMutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            cond: Condvar::new(),
            task_q,
            task_tx,
            result_q,
            slots,
            workers: StdMutex::new(Vec::new()),
            monitor: StdMutex::new(None),
            window,
        });
        let rx = core.result_q.receiver().map_err(io_err)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let c = core.clone();
        let handle = std::thread::Builder::new()
            .name("shmkit-pool-monitor".into())
            .spawn(move || {
                let started =
                    (0..n).try_for_each(|i| c.spawn_worker(i).map(|w| lock(&c.workers).push(w)));
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    c.monitor_loop(rx);
                }
            })
            .map_err(io_err)?;
        *lock(&core.monitor) = Some(handle);
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(core),
            Ok(Err(e)) => {
                core.terminate();
                Err(e)
            }
            Err(_) => {
                core.terminate();
                Err(TaskError::Spawn("the monitor thread died".into()))
            }
        }
    }

    fn spawn_worker(&self, index: usize) -> Result<Worker, TaskError> {
        let seg = |q: &MpmcQueue| -> Result<Shared<Segment>, TaskError> {
            let s = q
                .segment()
                .ok_or_else(|| TaskError::Spawn("queue has no segment".into()))?;
            Shared::new(s).map_err(io_err)
        };
        let args = WorkerArgs {
            task_q: seg(&self.task_q)?,
            result_q: seg(&self.result_q)?,
            slots: Shared::new(&self.slots).map_err(io_err)?,
            index: index as u32,
            initializer: self.cfg.initializer.clone(),
            max_tasks: self.cfg.max_tasks_per_child,
        };
        let k = {
            let mut st = lock(&self.state);
            st.spawned += 1;
            st.spawned
        };
        let p = super::Process::builder()
            .name(format!("{}-{k}", self.cfg.name_prefix))
            .daemon(true)
            .spawn(&WORKER, &args)
            .map_err(io_err)?;
        tracing::debug!(pid = p.pid(), index, "started pool worker");
        Ok(Worker {
            pid: p.pid(),
            process: Some(p),
        })
    }

    pub(crate) fn workers(&self) -> usize {
        self.cfg.workers
    }

    pub(crate) fn max_message(&self) -> usize {
        self.cfg.max_message.max(64)
    }

    /// Pids of the live workers (in worker-index order).
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.workers)
            .iter()
            .filter(|w| w.process.is_some())
            .map(|w| w.pid)
            .collect()
    }

    /// Submits a task message (its first 8 bytes are overwritten with the
    /// id). Returns the id.
    pub(crate) fn submit(&self, mut msg: Vec<u8>) -> Result<u64, TaskError> {
        let max = self.max_message();
        if msg.len() > max {
            return Err(TaskError::TooLarge {
                size: msg.len(),
                max,
            });
        }
        let mut st = lock(&self.state);
        if st.closed {
            return Err(TaskError::Closed);
        }
        let id = st.next_id;
        st.next_id += 1;
        msg[..8].copy_from_slice(&id.to_le_bytes());
        if st.backlog.is_empty() && st.dispatched.len() < self.window {
            match self.task_tx.try_send(&msg) {
                Ok(()) => {
                    st.dispatched.insert(id);
                    return Ok(id);
                }
                Err(TrySendError::TooLarge(_)) => {
                    return Err(TaskError::TooLarge {
                        size: msg.len(),
                        max,
                    })
                }
                Err(_) => {}
            }
        }
        st.backlog.push_back((id, msg));
        Ok(id)
    }

    /// Moves backlog into the task queue while the window allows.
    fn pump(&self, st: &mut State) {
        while st.dispatched.len() < self.window {
            let Some((id, msg)) = st.backlog.pop_front() else {
                break;
            };
            match self.task_tx.try_send(&msg) {
                Ok(()) => {
                    st.dispatched.insert(id);
                }
                Err(_) => {
                    st.backlog.push_front((id, msg));
                    break;
                }
            }
        }
    }

    fn finish(st: &mut State, id: u64, outcome: Outcome) {
        if st.abandoned.remove(&id) {
            return;
        }
        st.done.insert(id, outcome);
    }

    /// Takes the outcome of `id` if it is there.
    pub(crate) fn take(&self, id: u64) -> Option<Outcome> {
        lock(&self.state).done.remove(&id)
    }

    /// Waits for the outcome of `id` until `deadline` (`None` = forever).
    pub(crate) fn wait(&self, id: u64, deadline: Option<Deadline>) -> Option<Outcome> {
        let mut st = lock(&self.state);
        loop {
            if let Some(o) = st.done.remove(&id) {
                return Some(o);
            }
            let slice = match deadline {
                Some(d) if d.has_passed() => return None,
                Some(d) => d.remaining().min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            st = self
                .cond
                .wait_timeout(st, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until any of `ids` has an outcome (or the deadline passes);
    /// returns the first one found.
    pub(crate) fn wait_any(&self, ids: &[u64], deadline: Option<Deadline>) -> Option<u64> {
        let mut st = lock(&self.state);
        loop {
            if let Some(&id) = ids.iter().find(|id| st.done.contains_key(id)) {
                return Some(id);
            }
            let slice = match deadline {
                Some(d) if d.has_passed() => return None,
                Some(d) => d.remaining().min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            st = self
                .cond
                .wait_timeout(st, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Forgets `id`: its outcome is dropped now or when it arrives.
    pub(crate) fn abandon(&self, id: u64) {
        let mut st = lock(&self.state);
        if st.done.remove(&id).is_none() {
            st.abandoned.insert(id);
        }
    }

    /// Cancels `id` if it has not been dispatched to a worker yet.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        let mut st = lock(&self.state);
        let Some(pos) = st.backlog.iter().position(|(i, _)| *i == id) else {
            return false;
        };
        st.backlog.remove(pos);
        Self::finish(&mut st, id, Err(TaskError::Cancelled));
        drop(st);
        self.cond.notify_all();
        true
    }

    /// Stops accepting work; with `cancel_pending`, every task not yet
    /// dispatched gets `Cancelled`.
    pub(crate) fn close(&self, cancel_pending: bool) {
        let mut st = lock(&self.state);
        st.closed = true;
        if cancel_pending {
            for (id, _) in std::mem::take(&mut st.backlog) {
                Self::finish(&mut st, id, Err(TaskError::Cancelled));
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Waits for all submitted work, then lets the workers exit and joins
    /// them and the monitor thread.
    pub(crate) fn join(&self) {
        {
            let mut st = lock(&self.state);
            st.closed = true;
            while !(st.terminated || st.dispatched.is_empty() && st.backlog.is_empty()) {
                st = self
                    .cond
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            st.stopping = true;
        }
        self.task_q.close();
        self.join_monitor();
        let workers = std::mem::take(&mut *lock(&self.workers));
        for w in workers {
            if let Some(p) = w.process {
                match p.join_timeout(Duration::from_secs(5)) {
                    Ok(Some(_)) => {}
                    _ => {
                        let _ = p.kill();
                        let _ = p.join();
                    }
                }
            }
        }
    }

    fn join_monitor(&self) {
        let h = lock(&self.monitor).take();
        if let Some(h) = h {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Kills every worker now; unfinished tasks get `Terminated`.
    pub(crate) fn terminate(&self) {
        {
            let mut st = lock(&self.state);
            st.closed = true;
            st.stopping = true;
            st.terminated = true;
            let st = &mut *st;
            let ids: Vec<u64> = st
                .dispatched
                .drain()
                .chain(st.backlog.drain(..).map(|(id, _)| id))
                .collect();
            for id in ids {
                Self::finish(st, id, Err(TaskError::Terminated));
            }
        }
        self.cond.notify_all();
        self.task_q.close();
        {
            let workers = lock(&self.workers);
            for p in workers.iter().filter_map(|w| w.process.as_ref()) {
                let _ = p.kill();
            }
        }
        self.join_monitor();
        // The monitor may have started a replacement before it saw the flag.
        let workers = std::mem::take(&mut *lock(&self.workers));
        for p in workers.into_iter().filter_map(|w| w.process) {
            let _ = p.kill();
            let _ = p.join();
        }
    }

    fn complete_message(&self, st: &mut State, bytes: &[u8]) {
        match task::parse_result(bytes) {
            Some((id, outcome)) => {
                if st.dispatched.remove(&id) {
                    Self::finish(st, id, outcome);
                }
            }
            None => tracing::warn!("dropping a result message without a task id"),
        }
    }

    /// Receives every result already queued.
    fn drain(&self, st: &mut State, rx: &MpmcReceiver, buf: &mut Vec<u8>) -> usize {
        let mut n = 0;
        while rx.try_recv(buf).is_ok() {
            self.complete_message(st, buf);
            n += 1;
        }
        n
    }

    fn monitor_loop(&self, rx: MpmcReceiver) {
        let mut buf = Vec::new();
        let mut last_check = Instant::now();
        loop {
            match rx.recv_timeout(&mut buf, TICK) {
                Ok(_) => {
                    let mut st = lock(&self.state);
                    self.complete_message(&mut st, &buf);
                    self.drain(&mut st, &rx, &mut buf);
                    self.pump(&mut st);
                    drop(st);
                    self.cond.notify_all();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
                Err(RecvTimeoutError::Corrupt(c)) => {
                    tracing::error!("result queue is corrupt: {c}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            {
                let mut st = lock(&self.state);
                self.pump(&mut st);
                if st.terminated
                    || (st.stopping && st.dispatched.is_empty() && st.backlog.is_empty())
                {
                    return;
                }
            }
            if last_check.elapsed() >= TICK {
                last_check = Instant::now();
                self.check_workers(&rx, &mut buf);
                self.reconcile(&rx, &mut buf);
            }
        }
    }

    fn check_workers(&self, rx: &MpmcReceiver, buf: &mut Vec<u8>) {
        let n = lock(&self.workers).len();
        for i in 0..n {
            let dead = {
                let mut workers = lock(&self.workers);
                let Some(w) = workers.get_mut(i) else {
                    continue;
                };
                match w.process.as_ref().and_then(|p| p.exit_status()) {
                    Some(status) => {
                        w.process = None;
                        Some((w.pid, status))
                    }
                    None => None,
                }
            };
            let Some((pid, status)) = dead else { continue };
            let mut st = lock(&self.state);
            if st.terminated {
                return;
            }
            // A result that was completely sent wins over the death.
            self.drain(&mut st, rx, buf);
            let id = self.slots.get(i).unwrap_or(0);
            let clean = status == ExitStatus::Code(0);
            if id != 0 && st.dispatched.remove(&id) {
                tracing::warn!(pid, %status, task = id, "pool worker died running a task");
                Self::finish(
                    &mut st,
                    id,
                    Err(TaskError::WorkerDied {
                        pid,
                        status: status.clone(),
                    }),
                );
            } else if !clean {
                tracing::warn!(pid, %status, "pool worker died while idle or taking a task");
                st.suspects.push((pid, status));
            } else {
                tracing::debug!(pid, "pool worker exited");
            }
            let replace = !(st.stopping && st.dispatched.is_empty() && st.backlog.is_empty());
            drop(st);
            self.cond.notify_all();
            self.slots.set(i, 0);
            if replace {
                match self.spawn_worker(i) {
                    Ok(w) => lock(&self.workers)[i] = w,
                    Err(e) => {
                        tracing::error!("could not replace pool worker: {e}");
                        if self.pids().is_empty() {
                            self.fail_all(TaskError::Spawn(e.to_string()));
                        }
                    }
                }
            }
        }
    }

    fn fail_all(&self, err: TaskError) {
        {
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            let ids: Vec<u64> = st
                .dispatched
                .drain()
                .chain(st.backlog.drain(..).map(|(id, _)| id))
                .collect();
            for id in ids {
                Self::finish(st, id, Err(err.clone()));
            }
        }
        self.cond.notify_all();
    }

    /// After a worker died with no task id in its slot, waits for a
    /// quiescent moment and fails the tasks that vanished with it.
    fn reconcile(&self, rx: &MpmcReceiver, buf: &mut Vec<u8>) {
        let mut st = lock(&self.state);
        if st.suspects.is_empty() {
            return;
        }
        if st.dispatched.is_empty() {
            st.suspects.clear();
            return;
        }
        // Order matters: queue empty (a claimed message counts as queued
        // until its claimer wrote its slot), then every slot idle (a worker
        // clears its slot only after sending), then drain the results.
        if !self.task_q.is_empty() {
            return;
        }
        if self.slots.to_vec().iter().any(|&s| s != 0) {
            return;
        }
        self.drain(&mut st, rx, buf);
        let (pid, status) = st.suspects[0].clone();
        let lost: Vec<u64> = st.dispatched.drain().collect();
        for id in lost {
            tracing::warn!(pid, task = id, "task lost with a dead worker");
            Self::finish(
                &mut st,
                id,
                Err(TaskError::WorkerDied {
                    pid,
                    status: status.clone(),
                }),
            );
        }
        st.suspects.clear();
        self.pump(&mut st);
        drop(st);
        self.cond.notify_all();
    }
}

// ---------------------------------------------------------------------
// Worker side.

#[derive(Serialize, Deserialize)]
struct WorkerArgs {
    task_q: Shared<Segment>,
    result_q: Shared<Segment>,
    slots: Shared<ShmArray<u64>>,
    index: u32,
    initializer: Option<(String, Vec<u8>)>,
    max_tasks: u64,
}

crate::entry! {
    /// The pool worker loop.
    static WORKER: Entry<WorkerArgs> = worker_main;
}

thread_local! {
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn worker_main(args: WorkerArgs) -> i32 {
    // Tasks run on a thread of their own: the spawn layer's panic hook
    // reports panics of the entry thread to the parent as the process's
    // fate, and a caught task panic is not that.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TASK.with(|c| c.get()) {
            prev(info);
        }
    }));
    match std::thread::Builder::new()
        .name("shmkit-worker".into())
        .spawn(move || serve(args))
    {
        Ok(h) => h.join().unwrap_or(101),
        Err(e) => {
            eprintln!("shmkit pool worker: cannot start its thread: {e}");
            1
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned())
}

/// Runs one chunk, appending its body (encoded results, or an error text)
/// to `out`; returns the status byte.
fn run_chunk(name: &str, payload: &[u8], count: u32, out: &mut Vec<u8>) -> u8 {
    let start = out.len();
    let Some(run) = task::lookup(name) else {
        out.extend_from_slice(
            format!("no task named {name:?} is registered in this binary").as_bytes(),
        );
        return task::STATUS_FAILED;
    };
    IN_TASK.with(|c| c.set(true));
    let mut body = std::mem::take(out);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(payload, count, &mut body)
    }));
    IN_TASK.with(|c| c.set(false));
    *out = body;
    let (status, text) = match r {
        Ok(Ok(())) => return task::STATUS_OK,
        Ok(Err(e)) => (task::STATUS_FAILED, e),
        Err(p) => (task::STATUS_PANICKED, panic_text(&*p)),
    };
    out.truncate(start);
    out.extend_from_slice(text.as_bytes());
    status
}

fn serve(args: WorkerArgs) -> i32 {
    let attach = || -> Result<_, Box<dyn std::error::Error>> {
        let task_q = MpmcQueue::from_segment(args.task_q.attach()?, &OpenOptions::new())?;
        let result_q = MpmcQueue::from_segment(args.result_q.attach()?, &OpenOptions::new())?;
        let slots = args.slots.attach()?;
        Ok((
            task_q.receiver()?,
            result_q.sender()?,
            result_q.slot_size(),
            slots,
        ))
    };
    let (rx, tx, max_out, slots) = match attach() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("shmkit pool worker: cannot attach the pool's queues: {e}");
            return 2;
        }
    };
    let idx = args.index as usize;
    if idx >= slots.len() {
        eprintln!("shmkit pool worker: index {idx} out of range");
        return 2;
    }
    if let Some((name, bytes)) = &args.initializer {
        let mut out = Vec::new();
        if run_chunk(name, bytes, 1, &mut out) != task::STATUS_OK {
            eprintln!(
                "shmkit pool worker: initializer failed: {}",
                String::from_utf8_lossy(&out)
            );
            return 3;
        }
    }
    tracing::debug!("pool worker ready");
    let mut served = 0u64;
    let mut msg = Vec::new();
    let mut reply = Vec::new();
    loop {
        slots.set(idx, 0);
        let got = rx.recv_with(|b| {
            // Name the task before the claim is released: if we die from
            // here on, the parent knows which task it was.
            slots.set(idx, task::message_id(b));
            msg.clear();
            msg.extend_from_slice(b);
        });
        match got {
            Ok(()) => {}
            Err(crate::queue::RecvError::Disconnected) => return 0,
            Err(e) => {
                eprintln!("shmkit pool worker: task queue failed: {e}");
                return 2;
            }
        }
        // Reply: id, status byte, then the body written in place.
        reply.clear();
        reply.extend_from_slice(&task::message_id(&msg).to_le_bytes());
        reply.push(0);
        let status = match task::parse_task(&msg) {
            Ok(t) => run_chunk(t.name, t.payload, t.count, &mut reply),
            Err(e) => {
                reply.extend_from_slice(e.as_bytes());
                task::STATUS_FAILED
            }
        };
        reply[8] = status;
        if reply.len() > max_out {
            let text = format!(
                "the encoded result is {} bytes, the transport carries at most {max_out}; raise max_message_size or lower chunksize",
                reply.len()
            );
            reply.truncate(9);
            reply[8] = task::STATUS_FAILED;
            reply.extend_from_slice(text.as_bytes());
            reply.truncate(max_out);
        }
        if tx.send(&reply).is_err() {
            return 0; // the parent is gone
        }
        slots.set(idx, 0);
        served += 1;
        if args.max_tasks != 0 && served >= args.max_tasks {
            return 0;
        }
    }
}

/// CPUs this process may use: the `sched_getaffinity` count, lowered by a
/// cgroup v2 `cpu.max` quota on this process's cgroup or an ancestor.
pub(crate) fn available_cpus() -> usize {
    let mut n = affinity_cpus()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Some(q) = cgroup_quota() {
        n = n.min(q);
    }
    n.max(1)
}

fn affinity_cpus() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    // SAFETY: `set` was filled by the kernel above.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

fn cgroup_quota() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(path.trim_start_matches('/'));
    let mut best: Option<usize> = None;
    loop {
        if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
            let mut it = max.split_whitespace();
            if let (Some(q), Some(p)) = (it.next(), it.next()) {
                if let (Ok(q), Ok(p)) = (q.parse::<u64>(), p.parse::<u64>()) {
                    if p > 0 {
                        let cpus = q.div_ceil(p).max(1) as usize;
                        best = Some(best.map_or(cpus, |b| b.min(cpus)));
                    }
                }
            }
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            break;
        }
    }
    best
}
