//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor`.
//!
//! The same workers and transport as [`Pool`](super::Pool), with the
//! futures vocabulary: [`submit`](Executor::submit) returns a
//! [`TaskFuture`], [`as_completed`] and [`wait`] watch many of them, and
//! [`shutdown`](Executor::shutdown) (or dropping the executor, the
//! equivalent of leaving a `with` block) finishes the work and stops the
//! workers. Only `workers + 1` tasks are handed to the workers at a time;
//! the rest wait in the parent, where [`TaskFuture::cancel`] and
//! `shutdown(.., cancel_pending = true)` can still withdraw them.
//!
//! # Work is never dropped silently
//!
//! As in Python, submitting is what runs a task; reading its result is
//! optional. [`map`](Executor::map) submits every item before it returns
//! (a `map` whose results are never read still runs every task), and a
//! dropped [`TaskFuture`] (or a dropped `map` iterator) leaves its task running:
//! only its result is discarded when it arrives. Dropping the executor waits
//! for all of it. To withdraw work, call [`TaskFuture::cancel`] or
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
///     let mapped: Vec<u64> = ex.map(&SQUARE, [4, 5], None, None)?.map(Result::unwrap).collect();
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
    /// [`TaskFuture`] is kept: dropping it only discards the result.
    pub fn submit<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task<A, R>,
        arg: A,
    ) -> Result<TaskFuture<R>, TaskError> {
        Ok(TaskFuture {
            ticket: Ticket::submit_one(&self.core, task, &arg)?,
            _r: PhantomData,
        })
    }

    /// Python's `Executor.map(fn, items, timeout=, chunksize=)`: submits
    /// every item *now*, `chunksize` items per task message (`None`: 1, as
    /// in Python; a larger chunk saves per-task overhead on tiny tasks),
    /// and returns an iterator over the results in input order. The whole
    /// input is read and encoded before this returns. The tasks run
    /// whether or not the iterator is read; dropping it discards the
    /// results, not the work. At most `workers + 1` task messages sit in
    /// the shared task queue at once; the others wait in this process
    /// until a worker is free.
    ///
    /// With a `timeout`, the deadline is `timeout` after this call (as in
    /// Python): once it passes with the next result still missing, the
    /// iterator yields `Err(`[`TaskError::Timeout`]`)` once and then ends,
    /// and the tasks no worker has taken yet are cancelled (Python
    /// cancels the pending futures there too).
    ///
    /// An error while submitting (the executor was shut down, an item
    /// too large for the transport) is returned here; the items submitted
    /// before it still run.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use shmkit::process::{self, Executor, TaskError};
    ///
    /// shmkit::task! { static NAP: Task<u64, u64> = |ms| { std::thread::sleep(Duration::from_millis(ms)); ms }; }
    ///
    /// fn main() -> Result<(), TaskError> {
    ///     process::init();
    ///     let ex = Executor::new(2)?;
    ///     let fast: Vec<u64> = ex.map(&NAP, [1, 2, 3], Some(2), None)?.collect::<Result<_, _>>()?;
    ///     assert_eq!(fast, vec![1, 2, 3]);
    ///     let mut slow = ex.map(&NAP, [5_000, 1], None, Some(Duration::from_millis(100)))?;
    ///     assert_eq!(slow.next(), Some(Err(TaskError::Timeout)));
    ///     assert_eq!(slow.next(), None);
    ///     Ok(())
    /// }
    /// ```
    pub fn map<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
        timeout: Option<Duration>,
    ) -> Result<Imap<I::IntoIter, R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if self.core.is_closed() {
            return Err(TaskError::Closed);
        }
        let deadline = timeout.map(Deadline::after);
        Imap::eager(
            self.core.clone(),
            task,
            items.into_iter(),
            chunksize.unwrap_or(1),
            deadline,
        )
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
/// Dropping a `TaskFuture` does not cancel its task: the task still runs and
/// its result is discarded when it arrives (use [`TaskFuture::cancel`] to
/// withdraw a task no worker has taken yet).
pub struct TaskFuture<R> {
    ticket: Ticket,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFuture")
            .field("id", &self.ticket.id())
            .field("done", &self.done())
            .finish()
    }
}

impl<R> TaskFuture<R> {
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

impl<R: DeserializeOwned> TaskFuture<R> {
    /// Calls `f` with the task's result once it finished (with a value,
    /// an error, or cancelled): Python's `Future.add_done_callback`.
    ///
    /// If the task has already finished, `f` runs at once, in this
    /// thread. Otherwise it runs on the executor's callback thread in this
    /// process (`shmkit-pool-callbacks`, one callback at a time, in the
    /// order results arrive), whether or not this future is kept; several
    /// callbacks on one future run in the order they were added. A
    /// callback that panics is logged and the others still run.
    /// [`shutdown`](Executor::shutdown) with `wait` returns after every
    /// callback ran.
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use shmkit::process::{self, Executor};
    ///
    /// shmkit::task! { static TWICE: Task<u64, u64> = |x| 2 * x; }
    ///
    /// fn main() -> Result<(), shmkit::process::TaskError> {
    ///     process::init();
    ///     let ex = Executor::new(1)?;
    ///     let (tx, rx) = mpsc::channel();
    ///     let fut = ex.submit(&TWICE, 21)?;
    ///     fut.add_done_callback(move |r| tx.send(r).unwrap());
    ///     assert_eq!(rx.recv().unwrap(), Ok(42));
    ///     Ok(())
    /// }
    /// ```
    pub fn add_done_callback<F>(&self, f: F)
    where
        F: FnOnce(Result<R, TaskError>) + Send + 'static,
    {
        self.ticket
            .on_done(Box::new(move |o| f(decode_one::<R>(o))));
    }

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
fn wait_progress<R>(futs: &[TaskFuture<R>], pending: &[usize], deadline: Option<Deadline>) {
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
pub fn wait<R>(futs: &[TaskFuture<R>], when: ReturnWhen, timeout: Option<Duration>) -> Waited {
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
/// `as_completed`); see [`Executor`] for an example, and
/// [`as_completed_timeout`] for the form with a deadline.
pub fn as_completed<R>(futs: &[TaskFuture<R>]) -> AsCompleted<'_, R> {
    AsCompleted {
        futs,
        yielded: vec![false; futs.len()],
        left: futs.len(),
        deadline: None,
        timed_out: false,
    }
}

/// Python's `as_completed(fs, timeout=)`: yields `Ok(future)` for each of
/// `futs` as it completes; if `timeout` (counted from this call) passes
/// while some are still pending, yields `Err(`[`TaskError::Timeout`]`)`
/// once and ends. The pending tasks keep running.
///
/// ```no_run
/// use std::time::Duration;
/// use shmkit::process::{self, as_completed_timeout, Executor, TaskError};
///
/// shmkit::task! { static NAP: Task<u64, u64> = |ms| { std::thread::sleep(Duration::from_millis(ms)); ms }; }
///
/// fn main() -> Result<(), TaskError> {
///     process::init();
///     let ex = Executor::new(2)?;
///     let futs = vec![ex.submit(&NAP, 1)?, ex.submit(&NAP, 5_000)?];
///     let mut it = as_completed_timeout(&futs, Duration::from_millis(500));
///     assert_eq!(it.next().unwrap()?.result()?, 1);
///     assert_eq!(it.next().map(|r| r.err()), Some(Some(TaskError::Timeout)));
///     assert!(it.next().is_none());
///     ex.shutdown(false, true);
///     Ok(())
/// }
/// ```
pub fn as_completed_timeout<R>(
    futs: &[TaskFuture<R>],
    timeout: Duration,
) -> AsCompletedTimeout<'_, R> {
    let mut inner = as_completed(futs);
    inner.deadline = Some(Deadline::after(timeout));
    AsCompletedTimeout { inner }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<'a, R> {
    futs: &'a [TaskFuture<R>],
    yielded: Vec<bool>,
    left: usize,
    deadline: Option<Deadline>,
    timed_out: bool,
}

impl<R> std::fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, R> AsCompleted<'a, R> {
    /// The next completed future; `Err(Timeout)` once the deadline (if
    /// any) passed first, then `None`.
    fn next_until(&mut self) -> Option<Result<&'a TaskFuture<R>, TaskError>> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        loop {
            let pending: Vec<usize> = (0..self.futs.len()).filter(|&i| !self.yielded[i]).collect();
            if let Some(&i) = pending.iter().find(|&&i| self.futs[i].done()) {
                self.yielded[i] = true;
                self.left -= 1;
                return Some(Ok(&self.futs[i]));
            }
            if self.deadline.is_some_and(|d| d.has_passed()) {
                self.timed_out = true;
                return Some(Err(TaskError::Timeout));
            }
            wait_progress(self.futs, &pending, self.deadline);
        }
    }
}

impl<'a, R> Iterator for AsCompleted<'a, R> {
    type Item = &'a TaskFuture<R>;

    fn next(&mut self) -> Option<&'a TaskFuture<R>> {
        // Without a deadline `next_until` never yields an error.
        self.next_until()?.ok()
    }
}

/// The iterator of [`as_completed_timeout`].
pub struct AsCompletedTimeout<'a, R> {
    inner: AsCompleted<'a, R>,
}

impl<R> std::fmt::Debug for AsCompletedTimeout<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompletedTimeout")
            .field("left", &self.inner.left)
            .finish()
    }
}

impl<'a, R> Iterator for AsCompletedTimeout<'a, R> {
    type Item = Result<&'a TaskFuture<R>, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_until()
    }
}
