//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor`.
//!
//! The same workers and transport as [`Pool`](super::Pool), with the
//! futures vocabulary: [`submit`](Executor::submit) returns a
//! [`Future`], [`as_completed`] and [`wait`] watch many of them, and
//! [`shutdown`](Executor::shutdown) (or dropping the executor, the
//! equivalent of leaving a `with` block) finishes the work and stops the
//! workers. Only `workers + 1` tasks are handed to the workers at a time;
//! the rest wait in the parent, where [`Future::cancel`] and
//! `shutdown(.., cancel_pending = true)` can still withdraw them.
//!
//! # Work is never dropped silently
//!
//! As in Python, submitting is what runs a task; reading its result is
//! optional. [`map`](Executor::map) submits every item before it returns
//! (a `map` whose results are never read still runs every task), and a
//! dropped [`Future`] (or a dropped `map` iterator) leaves its task running:
//! only its result is discarded when it arrives. Dropping the executor waits
//! for all of it. To withdraw work, call [`Future::cancel`] or
//! [`shutdown`](Executor::shutdown) with `cancel_pending`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{decode_one, Core, Ticket};
use super::imap::Imap;
use super::pool::PoolBuilder;
use super::task::{Task, TaskError};
use crate::os::Deadline;

/// A pool of worker processes with a futures interface.
///
/// ```no_run
/// use shmkit::process::{self, as_completed, Executor};
///
/// shmkit::task! { static SQUARE: Task<u64, u64> = |x| x * x; }
///
/// fn main() -> Result<(), shmkit::process::TaskError> {
///     process::init();
///     let ex = Executor::new(2)?;
///     let futs: Vec<_> = (1..=3).map(|x| ex.submit(&SQUARE, x)).collect::<Result<_, _>>()?;
///     let mut got: Vec<u64> = as_completed(&futs).map(|f| f.result().unwrap()).collect();
///     got.sort();
///     assert_eq!(got, vec![1, 4, 9]);
///     let mapped: Vec<u64> = ex.map(&SQUARE, [4, 5])?.map(Result::unwrap).collect();
///     assert_eq!(mapped, vec![16, 25]);
///     Ok(())
/// } // dropping `ex` waits for outstanding work and stops the workers
/// ```
pub struct Executor {
    core: Arc<Core>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("max_workers", &self.core.workers())
            .finish()
    }
}

impl Executor {
    /// An executor with `max_workers` worker processes.
    pub fn new(max_workers: usize) -> Result<Executor, TaskError> {
        Self::with_builder(&PoolBuilder::new().processes(max_workers))
    }

    /// An executor configured by a [`PoolBuilder`] (initializer,
    /// `max_tasks_per_child`, message size).
    pub fn with_builder(b: &PoolBuilder) -> Result<Executor, TaskError> {
        let core = Core::start(b.config(usize::MAX, "SpawnProcess")?)?;
        Ok(Executor { core })
    }

    /// Number of worker processes.
    pub fn max_workers(&self) -> usize {
        self.core.workers()
    }

    /// Pids of the workers alive now.
    pub fn pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    /// Schedules `task(arg)`. The task runs whether or not the returned
    /// [`Future`] is kept: dropping it only discards the result.
    pub fn submit<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task<A, R>,
        arg: A,
    ) -> Result<Future<R>, TaskError> {
        Ok(Future {
            ticket: Ticket::submit_one(&self.core, task, &arg)?,
            _r: PhantomData,
        })
    }

    /// Python's `Executor.map`: submits `task(item)` for every item *now*
    /// (the whole input is read and encoded before this returns) and
    /// returns an iterator over the results in input order. The tasks run
    /// whether or not the iterator is read; dropping it discards the
    /// results, not the work. At most `workers + 1` tasks sit in the
    /// shared task queue at once; the others wait in this process until a
    /// worker is free.
    ///
    /// An error while submitting (the executor was shut down, an item
    /// too large for the transport) is returned here; the items submitted
    /// before it still run.
    pub fn map<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
    ) -> Result<Imap<I::IntoIter, R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_chunked(task, items, 1)
    }

    /// [`map`](Executor::map) with `chunksize` items per task message
    /// (Python's `chunksize` argument; 1 is the default).
    pub fn map_chunked<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: usize,
    ) -> Result<Imap<I::IntoIter, R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if self.core.is_closed() {
            return Err(TaskError::Closed);
        }
        Imap::eager(self.core.clone(), task, items.into_iter(), chunksize.max(1))
    }

    /// Stops accepting tasks. With `cancel_pending`, tasks not yet handed
    /// to a worker are cancelled. With `wait`, returns once running work is
    /// done and the workers have exited; without, that happens in the
    /// background (and at the latest when the executor is dropped).
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        self.core.close(cancel_pending);
        if wait {
            self.core.join();
        } else {
            let core = self.core.clone();
            let _ = std::thread::Builder::new()
                .name("shmkit-executor-shutdown".into())
                .spawn(move || core.join());
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.core.close(false);
        self.core.join();
    }
}

/// The pending result of [`Executor::submit`].
///
/// Dropping a `Future` does not cancel its task: the task still runs and
/// its result is discarded when it arrives (use [`Future::cancel`] to
/// withdraw a task no worker has taken yet).
pub struct Future<R> {
    ticket: Ticket,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Future")
            .field("id", &self.ticket.id())
            .field("done", &self.done())
            .finish()
    }
}

impl<R> Future<R> {
    /// Whether the task finished (with a value, an error, or cancelled).
    pub fn done(&self) -> bool {
        self.ticket.poll().is_some()
    }

    /// Whether the task was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(self.ticket.poll(), Some(Err(TaskError::Cancelled)))
    }

    /// Cancels the task if no worker has taken it yet; returns whether it
    /// is cancelled now.
    pub fn cancel(&self) -> bool {
        self.ticket.core().cancel(self.ticket.id()) || self.cancelled()
    }

    /// The error, if the task finished with one (waits).
    pub fn exception(&self) -> Option<TaskError> {
        self.ticket
            .wait(None)
            .and_then(|o| o.as_ref().err().cloned())
    }

    fn failed(&self) -> bool {
        matches!(self.ticket.poll(), Some(Err(_)))
    }
}

impl<R: DeserializeOwned> Future<R> {
    /// Waits for the result.
    pub fn result(&self) -> Result<R, TaskError> {
        decode_one(self.ticket.wait(None).expect("waits forever"))
    }

    /// Waits at most `timeout` ([`TaskError::Timeout`] if not done).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        match self.ticket.wait(Some(Deadline::after(timeout))) {
            Some(o) => decode_one(o),
            None => Err(TaskError::Timeout),
        }
    }
}

/// When [`wait`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// When every future is done.
    AllCompleted,
    /// When any future is done.
    FirstCompleted,
    /// When any future finishes with an error, else when all are done.
    FirstException,
}

/// Python's `ALL_COMPLETED`.
pub const ALL_COMPLETED: ReturnWhen = ReturnWhen::AllCompleted;
/// Python's `FIRST_COMPLETED`.
pub const FIRST_COMPLETED: ReturnWhen = ReturnWhen::FirstCompleted;
/// Python's `FIRST_EXCEPTION`.
pub const FIRST_EXCEPTION: ReturnWhen = ReturnWhen::FirstException;

/// What [`wait`] found: indices into the slice it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waited {
    /// Futures that are done.
    pub done: Vec<usize>,
    /// Futures still pending.
    pub not_done: Vec<usize>,
}

/// Sleeps until some pending future among `futs` may have changed.
fn wait_progress<R>(futs: &[Future<R>], pending: &[usize], deadline: Option<Deadline>) {
    let Some(&first) = pending.first() else {
        return;
    };
    let core = futs[first].ticket.core();
    let ids: Vec<u64> = pending
        .iter()
        .filter(|&&i| Arc::ptr_eq(futs[i].ticket.core(), core))
        .map(|&i| futs[i].ticket.id())
        .collect();
    let slice = Deadline::earliest(deadline, Deadline::after(Duration::from_millis(50)));
    core.wait_any(&ids, Some(slice));
}

/// Waits on `futs` until `when` holds or `timeout` passes.
///
/// ```no_run
/// use shmkit::process::{wait, Executor, FIRST_COMPLETED};
///
/// shmkit::task! { static NAP: Task<u64, u64> = |ms| { std::thread::sleep(std::time::Duration::from_millis(ms)); ms }; }
///
/// fn main() -> Result<(), shmkit::process::TaskError> {
///     shmkit::process::init();
///     let ex = Executor::new(2)?;
///     let futs = vec![ex.submit(&NAP, 10)?, ex.submit(&NAP, 500)?];
///     let w = wait(&futs, FIRST_COMPLETED, None);
///     assert!(!w.done.is_empty());
///     Ok(())
/// }
/// ```
pub fn wait<R>(futs: &[Future<R>], when: ReturnWhen, timeout: Option<Duration>) -> Waited {
    let deadline = timeout.map(Deadline::after);
    loop {
        let (done, not_done): (Vec<usize>, Vec<usize>) =
            (0..futs.len()).partition(|&i| futs[i].done());
        let finished = match when {
            ReturnWhen::AllCompleted => not_done.is_empty(),
            ReturnWhen::FirstCompleted => !done.is_empty() || futs.is_empty(),
            ReturnWhen::FirstException => {
                not_done.is_empty() || done.iter().any(|&i| futs[i].failed())
            }
        };
        if finished || deadline.is_some_and(|d| d.has_passed()) {
            return Waited { done, not_done };
        }
        wait_progress(futs, &not_done, deadline);
    }
}

/// Yields the futures of `futs` as they complete (Python's
/// `as_completed`); see [`Executor`] for an example.
pub fn as_completed<R>(futs: &[Future<R>]) -> AsCompleted<'_, R> {
    AsCompleted {
        futs,
        yielded: vec![false; futs.len()],
        left: futs.len(),
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<'a, R> {
    futs: &'a [Future<R>],
    yielded: Vec<bool>,
    left: usize,
}

impl<R> std::fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, R> Iterator for AsCompleted<'a, R> {
    type Item = &'a Future<R>;

    fn next(&mut self) -> Option<&'a Future<R>> {
        if self.left == 0 {
            return None;
        }
        loop {
            let pending: Vec<usize> = (0..self.futs.len()).filter(|&i| !self.yielded[i]).collect();
            if let Some(&i) = pending.iter().find(|&&i| self.futs[i].done()) {
                self.yielded[i] = true;
                self.left -= 1;
                return Some(&self.futs[i]);
            }
            wait_progress(self.futs, &pending, None);
        }
    }
}
