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
//! arguments ([`Shared`](super::Shared)), so nothing is ever left in `/dev/shm`.
//!
//! # Files
//!
//! * this file: the [`Core`] shared by a pool and its handles, its options
//!   and its bookkeeping state;
//! * `lifecycle`: starting the workers and the monitor, joining and
//!   terminating them;
//! * `dispatch`: submitting tasks, the backlog and its window, waiting for
//!   and cancelling outcomes;
//! * `monitor`: the parent's monitor thread (results, dead workers);
//! * `worker`: the worker process's loop;
//! * `ticket` and `chunker`: what [`Pool`](super::Pool),
//!   [`Executor`](super::Executor) and [`Imap`](super::Imap) build on: one
//!   submitted chunk and its outcome, and cutting an input into chunks.
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
//!
//! # Keeping fine-grained work fast
//!
//! A round trip through the monitor costs two cross-CPU wake-ups (worker
//! → monitor, monitor → caller) on top of the worker's own, ~20 µs each
//! on a VM in its slow state. So:
//!
//! * a thread waiting for an outcome first polls for up to 100 µs,
//!   draining the result queue itself through a second receiver (under
//!   the state lock, like the monitor, so a result a dead worker sent is
//!   never in a thread's hands while the monitor judges that worker);
//!   meanwhile the monitor stays off the result queue's waiter list and
//!   naps, so results do not wake it for nothing. Only then does the
//!   thread sleep on the condition variable, and a completion wakes it
//!   (a completion with no sleeper skips that syscall).
//! * a worker polls the task queue for up to 50 µs after each task
//!   before it blocks (more work is likely), so a submitter rarely pays
//!   a futex wake and a task rarely waits for a worker to be scheduled.
//! * `imap`/`imap_unordered` keep as many chunks in flight as the task
//!   queue holds (they kept two per worker, and tiny tasks then waited
//!   on wake-ups instead of running).
//! * Polling yields the CPU every few microseconds (a poller that never
//!   yields keeps the thread it waits for off the CPU when threads
//!   outnumber CPUs: measured 5–10× slower `imap_unordered`); neither
//!   side polls at all when the process may use only one CPU (the peer
//!   cannot run meanwhile; sleeping at once is faster there); and polling
//!   adapts: waiters (per pool) and each worker keep polling only while
//!   recent polls got their answer before the first yield, so long tasks
//!   and a peer on the same CPU fall back to sleeping at once (every 16th
//!   wait polls again to notice when it pays).

mod callbacks;
mod chunker;
mod dispatch;
mod lifecycle;
mod monitor;
mod ticket;
mod worker;

pub(crate) use chunker::Chunker;
pub(crate) use ticket::{decode_one, encode_one, Ticket};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex as StdMutex, MutexGuard};
use std::thread::JoinHandle;

use super::handle::{ExitStatus, Process};
use super::task::TaskError;
use crate::queue::{MpmcQueue, MpmcReceiver, MpmcSender};
use crate::sync::ShmArray;

/// What a finished task left: the encoded results, or why there are none.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

/// A done-callback registered on one task: called once with its outcome,
/// on the pool's callback thread (see [`Core::add_callback`]).
pub(crate) type Callback = Box<dyn FnOnce(&Outcome) + Send>;

/// A callback bound to its outcome, queued for the callback thread.
type Job = Box<dyn FnOnce() + Send>;

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

/// One worker slot: the running process (`None` once reaped) and its pid.
struct Worker {
    process: Option<Process>,
    pid: u32,
}

/// The parent's bookkeeping, under [`Core::state`].
#[derive(Default)]
struct State {
    next_id: u64,
    /// Tasks in the shared task queue or with a worker.
    dispatched: HashSet<u64>,
    /// Tasks waiting in this process for room in the window.
    backlog: VecDeque<(u64, Vec<u8>)>,
    /// Outcomes not taken yet.
    done: HashMap<u64, Outcome>,
    /// Tasks whose outcome nobody will take (dropped handles).
    abandoned: HashSet<u64>,
    /// No more submissions.
    closed: bool,
    /// Workers may exit once the outstanding work is done.
    stopping: bool,
    /// Killed: nothing runs any more.
    terminated: bool,
    /// Workers that died holding no task id (a message may have been lost).
    suspects: Vec<(u32, ExitStatus)>,
    spawned: u64,
    /// Done-callbacks of tasks not finished yet.
    callbacks: HashMap<u64, Vec<Callback>>,
    /// Feeds the callback thread (started by the first callback).
    callback_tx: Option<std::sync::mpsc::Sender<Job>>,
}

/// A pool's workers, queues and bookkeeping, shared (in an `Arc`) by the
/// [`Pool`](super::Pool) or [`Executor`](super::Executor), its result
/// handles and its monitor thread.
pub(crate) struct Core {
    cfg: Config,
    /// Guards the bookkeeping; `cond` is notified whenever an outcome
    /// arrives or the state changes.
    state: StdMutex<State>,
    cond: Condvar,
    task_q: MpmcQueue,
    task_tx: MpmcSender,
    result_q: MpmcQueue,
    slots: ShmArray<u64>,
    workers: StdMutex<Vec<Worker>>,
    monitor: StdMutex<Option<JoinHandle<()>>>,
    /// The thread that runs done-callbacks (`None` until the first one).
    callback_thread: StdMutex<Option<JoinHandle<()>>>,
    /// A second receiver of the result queue, for threads that wait on an
    /// outcome: they drain results themselves for a short while before
    /// they sleep (see `dispatch`), sparing the monitor's wake-up and the
    /// condition variable's. Locked only under `state`.
    helper_rx: StdMutex<(Option<MpmcReceiver>, Vec<u8>)>,
    /// How many threads are draining results that way now; while any is,
    /// the monitor does not block on the result queue (where every result
    /// would wake it for nothing).
    helpers: std::sync::atomic::AtomicUsize,
    /// CPUs this process may use (at start): with one, nobody polls.
    cpus: usize,
    /// Adaptive poll budget of waiting threads: raised by a wait whose
    /// outcome came before its first yield, lowered by one that needed a
    /// yield (the worker shares this thread's CPU) or timed out (a long
    /// task). At zero, waiters sleep at once, but every 16th still polls
    /// to notice when polling pays again.
    poll_credit: std::sync::atomic::AtomicU32,
    waits: std::sync::atomic::AtomicU32,
    /// Threads asleep on `cond` (changed under `state`): a completion with
    /// none skips the wake-up syscall.
    sleepers: std::sync::atomic::AtomicUsize,
    /// Tasks dispatched into the shared queue at once.
    window: usize,
}

/// Most poll credit a pool's waiters or a worker accumulate.
pub(crate) const POLL_CREDIT_MAX: u32 = 8;

/// Polls before the first yield: an outcome that arrives within them
/// came from a thread running on another CPU at the same time.
pub(crate) const FREE_ROUNDS: u32 = 8;

/// Locks `m`, taking it over if a panicking thread poisoned it.
fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A set-up failure (queue, spawn) as the task error callers see.
fn io_err(e: impl std::fmt::Display) -> TaskError {
    TaskError::Spawn(e.to_string())
}

impl Core {
    /// Number of worker processes.
    pub(crate) fn workers(&self) -> usize {
        self.cfg.workers
    }

    /// Largest task or result message (the queues' slot size).
    pub(crate) fn max_message(&self) -> usize {
        self.cfg.max_message.max(64)
    }

    /// Tasks dispatched into the shared task queue at once.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// Pids of the live workers (in worker-index order).
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.workers)
            .iter()
            .filter(|w| w.process.is_some())
            .map(|w| w.pid)
            .collect()
    }
}
