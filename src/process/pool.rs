//! [`Pool`]: Python's `multiprocessing.Pool` over shared-memory queues.
//!
//! Workers are spawned processes (re-executions of this binary running a
//! worker loop registered inside shmkit); tasks are registered functions
//! ([`task!`](crate::task)) whose arguments and results travel postcard-
//! encoded through two [`MpmcQueue`](crate::queue::MpmcQueue)s. See the
//! `core` module docs (in the source, `src/process/core/`) and SAFETY.md
//! for what happens when a worker dies.
//!
//! ```no_run
//! use shmkit::process::{self, Pool};
//!
//! shmkit::task! { static SQUARE: Task<u64, u64> = |x| x * x; }
//!
//! fn main() -> Result<(), shmkit::process::TaskError> {
//!     process::init();
//!     let pool = Pool::new(2)?;
//!     assert_eq!(pool.map(&SQUARE, 0..5, None)?, vec![0, 1, 4, 9, 16]);
//!     let r = pool.apply_async(&SQUARE, 7)?;
//!     assert_eq!(r.get()?, 49);
//!     pool.close();
//!     pool.join();
//!     Ok(())
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{decode_one, encode_one, Callback, Chunker, Config, Core, Ticket};
use super::imap::Imap;
use super::task::{self, Task, TaskError};
use crate::os::Deadline;

/// Default largest encoded task or result chunk (64 KiB).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 10;

/// The number of CPUs this process may use: `sched_getaffinity`, lowered by
/// a cgroup v2 `cpu.max` quota if one applies. The default pool size.
///
/// ```
/// assert!(shmkit::process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    crate::os::cpu::available_cpus()
}

/// The pending result of [`Pool::apply_async`] (one value) or
/// [`Pool::map_async`] / [`Pool::starmap_async`] (`AsyncResult<Vec<R>>`,
/// every result in input order): Python's `AsyncResult`.
///
/// Dropping it without reading the result is fine: the work still runs
/// and its result is discarded when it arrives. [`get`](AsyncResult::get)
/// may be called more than once.
///
/// ```no_run
/// use shmkit::process::{self, Pool};
///
/// shmkit::task! { static SQUARE: Task<u64, u64> = |x| x * x; }
///
/// fn main() -> Result<(), shmkit::process::TaskError> {
///     process::init();
///     let pool = Pool::new(2)?;
///     let one = pool.apply_async(&SQUARE, 7)?;
///     let all = pool.map_async(&SQUARE, 0..4, None)?;
///     assert_eq!(one.get()?, 49);
///     assert_eq!(all.get()?, vec![0, 1, 4, 9]);
///     assert_eq!(all.successful(), Some(true));
///     Ok(())
/// }
/// ```
pub struct AsyncResult<T> {
    /// The submitted chunks and their item counts, in input order.
    parts: Vec<(Ticket, u32)>,
    /// Decodes the outcomes of `parts` (all there) into the value.
    decode: DecodeFn<T>,
}

/// How an [`AsyncResult`] turns its chunks' outcomes into its value.
type DecodeFn<T> = fn(&[(Ticket, u32)]) -> Result<T, TaskError>;

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("chunks", &self.parts.len())
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

/// The value of a one-item chunk.
fn decode_single<R: DeserializeOwned>(parts: &[(Ticket, u32)]) -> Result<R, TaskError> {
    match parts.first().and_then(|(t, _)| t.poll()) {
        Some(o) => decode_one(o),
        None => Err(TaskError::Failed("outcome vanished".into())),
    }
}

/// Every chunk's values, in order; the first error (in input order) wins,
/// as in Python's `map_async(...).get()`.
fn decode_all<R: DeserializeOwned>(parts: &[(Ticket, u32)]) -> Result<Vec<R>, TaskError> {
    let mut out = Vec::new();
    for (t, k) in parts {
        match t.poll() {
            Some(Ok(bytes)) => task::decode_results_into(bytes, *k as usize, &mut out)?,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(TaskError::Failed("outcome vanished".into())),
        }
    }
    Ok(out)
}

impl<T> AsyncResult<T> {
    /// Waits for the result.
    pub fn get(&self) -> Result<T, TaskError> {
        for (t, _) in &self.parts {
            t.wait(None);
        }
        (self.decode)(&self.parts)
    }

    /// Waits at most `timeout`; [`TaskError::Timeout`] if it has not
    /// arrived (the task keeps running; ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        (self.decode)(&self.parts)
    }

    /// Waits until the result is there (or `timeout` passes); returns
    /// whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Deadline::after(timeout);
        self.parts
            .iter()
            .all(|(t, _)| t.wait(Some(deadline)).is_some())
    }

    /// Whether the work has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.parts.iter().all(|(t, _)| t.poll().is_some())
    }

    /// `Some(true)` if it finished with a value, `Some(false)` if with an
    /// error, `None` while not ready (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        self.ready().then(|| {
            self.parts
                .iter()
                .all(|(t, _)| matches!(t.poll(), Some(Ok(_))))
        })
    }
}

/// Configures a [`Pool`] (or an [`Executor`](super::Executor)).
///
/// ```no_run
/// use shmkit::process::Pool;
///
/// shmkit::task! {
///     static SETUP: Task<String, ()> = |greeting| println!("{greeting}");
///     static ID: Task<u32, u32> = |x| x;
/// }
///
/// fn main() -> Result<(), shmkit::process::TaskError> {
///     shmkit::process::init();
///     let pool = Pool::builder()
///         .processes(2)
///         .initializer(&SETUP, "worker up".to_string())
///         .max_tasks_per_child(100)
///         .build()?;
///     assert_eq!(pool.apply(&ID, 5)?, 5);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<(String, Vec<u8>), TaskError>>,
    max_tasks_per_child: u64,
    max_message: usize,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolBuilder {
    /// Defaults: [`cpu_count()`] workers, no initializer, workers never
    /// replaced, 64 KiB messages.
    pub fn new() -> Self {
        Self {
            processes: None,
            initializer: None,
            max_tasks_per_child: 0,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// Number of worker processes (at least 1).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.max(1));
        self
    }

    /// A registered task each worker runs once, with `arg`, before serving
    /// (a worker whose initializer panics exits and is replaced).
    pub fn initializer<A: Serialize>(mut self, task: &Task<A, ()>, arg: A) -> Self {
        self.initializer = Some(encode_one(task, &arg).map(|m| {
            let at = task::header_len(task.name());
            (task.name().to_owned(), m[at..].to_vec())
        }));
        self
    }

    /// A worker exits after this many tasks and is replaced (0 = never).
    ///
    /// As with Python's `maxtasksperchild`, a task is one message a worker
    /// takes: one `apply`/`submit` call, or one *chunk* of a `map`/`imap`
    /// (Python's workers count each `mapstar` chunk once, too). Pass a
    /// `chunksize` to bound the items a worker serves.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = n;
        self
    }

    /// Largest encoded task chunk or result chunk (the queues' slot size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes.clamp(64, crate::queue::mpmc::MAX_SLOT_SIZE);
        self
    }

    pub(crate) fn config(
        &self,
        window: usize,
        name_prefix: &'static str,
    ) -> Result<Config, TaskError> {
        let initializer = match &self.initializer {
            None => None,
            Some(Ok(i)) => Some(i.clone()),
            Some(Err(e)) => return Err(e.clone()),
        };
        let workers = self.processes.unwrap_or_else(cpu_count);
        Ok(Config {
            workers,
            max_message: self.max_message,
            max_tasks_per_child: self.max_tasks_per_child,
            initializer,
            window: if window == usize::MAX {
                workers + 1
            } else {
                window
            },
            name_prefix,
        })
    }

    /// Starts the pool: spawns the workers and waits until they run.
    pub fn build(&self) -> Result<Pool, TaskError> {
        let core = Core::start(self.config(0, "SpawnPoolWorker")?)?;
        Ok(Pool { core })
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Dropping the pool terminates its workers (like leaving Python's
/// `with Pool() as p:` block); call [`close`](Pool::close) and
/// [`join`](Pool::join) first to let submitted work finish.
///
/// ```no_run
/// use shmkit::process::{self, Pool};
///
/// shmkit::task! { static MUL: Task<(u32, u32), u32> = |(a, b)| a * b; }
///
/// fn main() -> Result<(), shmkit::process::TaskError> {
///     process::init();
///     let pool = Pool::new(2)?;
///     assert_eq!(pool.starmap(&MUL, [(2, 3), (4, 5)], None)?, vec![6, 20]);
///     let lazy: Vec<u32> = pool.imap(&MUL, (0..4).map(|i| (i, i)), None).map(Result::unwrap).collect();
///     assert_eq!(lazy, vec![0, 1, 4, 9]);
///     Ok(())
/// }
/// ```
pub struct Pool {
    core: Arc<Core>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.core.workers())
            .field("pids", &self.core.pids())
            .finish()
    }
}

impl Pool {
    /// A pool of `n` workers (at least 1) with default options.
    pub fn new(n: usize) -> Result<Pool, TaskError> {
        PoolBuilder::new().processes(n).build()
    }

    /// A builder (default size: [`cpu_count()`]).
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// Number of worker processes.
    pub fn processes(&self) -> usize {
        self.core.workers()
    }

    /// Pids of the workers alive now (replacements included).
    pub fn pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    /// Runs `task(arg)` in a worker and waits for the result.
    pub fn apply<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task<A, R>,
        arg: A,
    ) -> Result<R, TaskError> {
        self.apply_async(task, arg)?.get()
    }

    /// Submits `task(arg)`; the encoding is checked against the transport
    /// here ([`TaskError::TooLarge`]), never in the worker.
    pub fn apply_async<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task<A, R>,
        arg: A,
    ) -> Result<AsyncResult<R>, TaskError> {
        Ok(AsyncResult {
            parts: vec![(Ticket::submit_one(&self.core, task, &arg)?, 1)],
            decode: decode_single::<R>,
        })
    }

    /// [`apply_async`](Pool::apply_async) with Python's `callback` and
    /// `error_callback`: when the task finishes, exactly one of them is
    /// called, with its value or with its error.
    ///
    /// Where they run: as in Python, on a thread of the pool's own in this
    /// process (`shmkit-pool-callbacks`, started by the first callback),
    /// one callback at a time, in the order results arrive, whether or
    /// not the returned [`AsyncResult`] is kept or read. A callback should
    /// be quick (it holds up the ones behind it); it may submit more work.
    /// A panicking callback is logged and the others still run.
    /// [`join`](Pool::join) and [`terminate`](Pool::terminate) return only
    /// after every callback ran (after `terminate`, unfinished tasks call
    /// `error_callback` with [`TaskError::Terminated`]).
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use shmkit::process::{self, Pool};
    ///
    /// shmkit::task! { static HALF: Task<u64, u64> = |x| { assert!(x % 2 == 0, "odd"); x / 2 }; }
    ///
    /// fn main() -> Result<(), shmkit::process::TaskError> {
    ///     process::init();
    ///     let pool = Pool::new(2)?;
    ///     let (tx, rx) = mpsc::channel();
    ///     for x in [10, 7] {
    ///         let (ok, err) = (tx.clone(), tx.clone());
    ///         pool.apply_async_with(
    ///             &HALF,
    ///             x,
    ///             move |v| ok.send(Ok(v)).unwrap(),
    ///             move |e| err.send(Err(e.to_string())).unwrap(),
    ///         )?;
    ///     }
    ///     pool.close();
    ///     pool.join(); // every callback has run
    ///     let got: Vec<_> = rx.try_iter().collect();
    ///     assert!(got.contains(&Ok(5)));
    ///     assert!(got.iter().any(|r| r.as_ref().is_err_and(|e| e.contains("odd"))));
    ///     Ok(())
    /// }
    /// ```
    pub fn apply_async_with<A, R, F, E>(
        &self,
        task: &Task<A, R>,
        arg: A,
        callback: F,
        error_callback: E,
    ) -> Result<AsyncResult<R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        F: FnOnce(R) + Send + 'static,
        E: FnOnce(TaskError) + Send + 'static,
    {
        let msg = encode_one(task, &arg)?;
        let cb: Callback = Box::new(move |o| match decode_one::<R>(o) {
            Ok(v) => callback(v),
            Err(e) => error_callback(e),
        });
        let id = self.core.submit_with(msg, Some(cb))?;
        Ok(AsyncResult {
            parts: vec![(Ticket::new(self.core.clone(), id), 1)],
            decode: decode_single::<R>,
        })
    }

    /// Applies `task` to every item, in chunks of `chunksize` (`None`:
    /// about `len / (4 × workers)`, as Python does, capped so a chunk stays
    /// under a quarter of the message size), and returns the results in
    /// order, or the first error.
    ///
    /// Every call that cuts its input into chunks takes `chunksize` as an
    /// `Option<usize>`: `None` is Python's default for that call
    /// (`map`/`starmap` and their `_async` forms: the computed size above;
    /// `imap`, `imap_unordered` and `Executor::map`: 1), and `Some(0)`
    /// counts as 1 (Python refuses it).
    pub fn map<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if self.core.is_closed() {
            return Err(TaskError::Closed);
        }
        // An iterator that knows its exact length is streamed straight
        // into the chunk messages; any other is collected first (as Python
        // does with an iterable that has no `len`).
        let iter = items.into_iter();
        match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => self.map_exact(task, iter, lo, chunksize),
            _ => {
                let items: Vec<A> = iter.collect();
                let n = items.len();
                self.map_exact(task, items.into_iter(), n, chunksize)
            }
        }
    }

    /// `map` over `n` items (`n` only sizes the default chunks and the
    /// output; a wrong `n` costs speed, never correctness).
    fn map_exact<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        n: usize,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: Iterator<Item = A>,
    {
        let (tickets, submit_err) = self.submit_chunks(task, items, n, chunksize);
        let mut out = Vec::new();
        // `n` may come from a size hint: a wrong one must not abort.
        let _ = out.try_reserve_exact(n);
        for (ticket, k) in tickets {
            task::decode_results_into(&ticket.take()?, k as usize, &mut out)?;
        }
        match submit_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Cuts `items` into chunks (`chunksize`, or Python's default for `n`
    /// items) and submits them all: the tickets, and the error that
    /// stopped the submission early, if one did.
    fn submit_chunks<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        n: usize,
        chunksize: Option<usize>,
    ) -> (Vec<(Ticket, u32)>, Option<TaskError>)
    where
        A: Serialize,
        I: Iterator<Item = A>,
    {
        let chunk = chunksize.unwrap_or_else(|| n.div_ceil(4 * self.core.workers()));
        // Submit every chunk (the monitor feeds them to the workers while
        // we encode the rest); the caller collects them in order.
        let hard = self.core.max_message();
        let mut chunker = Chunker::new(task.name(), items, chunk.max(1), hard);
        let mut tickets = Vec::new();
        while let Some(c) = chunker.submit_next(&self.core) {
            match c {
                Ok(chunk) => tickets.push(chunk),
                Err(e) => return (tickets, Some(e)),
            }
        }
        (tickets, None)
    }

    /// Python's `map_async`: submits every chunk now (the whole input is
    /// read and encoded before this returns; chunk sizes as in
    /// [`map`](Pool::map)) and returns a handle whose
    /// [`get`](AsyncResult::get) gives every result in input order, or the
    /// first error. An error while submitting (the pool is closed, a chunk
    /// too large for the transport) is returned here; chunks submitted
    /// before it still run.
    ///
    /// ```no_run
    /// use shmkit::process::{self, Pool};
    ///
    /// shmkit::task! { static INC: Task<u32, u32> = |x| x + 1; }
    ///
    /// fn main() -> Result<(), shmkit::process::TaskError> {
    ///     process::init();
    ///     let pool = Pool::new(2)?;
    ///     let pending = pool.map_async(&INC, 0..1000, Some(100))?;
    ///     // ... the workers run while this process does something else ...
    ///     let all = pending.get()?;
    ///     assert_eq!(all.len(), 1000);
    ///     assert_eq!(all[999], 1000);
    ///     Ok(())
    /// }
    /// ```
    pub fn map_async<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        if self.core.is_closed() {
            return Err(TaskError::Closed);
        }
        let iter = items.into_iter();
        let parts = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => self.submit_chunks(task, iter, lo, chunksize),
            _ => {
                let items: Vec<A> = iter.collect();
                let n = items.len();
                self.submit_chunks(task, items.into_iter(), n, chunksize)
            }
        };
        match parts {
            (parts, None) => Ok(AsyncResult {
                parts,
                decode: decode_all::<R>,
            }),
            (_, Some(e)) => Err(e),
        }
    }

    /// [`map_async`](Pool::map_async) for a task over a tuple (Python's
    /// `starmap_async`).
    ///
    /// ```no_run
    /// use shmkit::process::{self, Pool};
    ///
    /// shmkit::task! { static POW: Task<(u64, u32), u64> = |(b, e)| b.pow(e); }
    ///
    /// fn main() -> Result<(), shmkit::process::TaskError> {
    ///     process::init();
    ///     let pool = Pool::new(2)?;
    ///     let r = pool.starmap_async(&POW, [(2, 10), (3, 3)], None)?;
    ///     assert_eq!(r.get()?, vec![1024, 27]);
    ///     Ok(())
    /// }
    /// ```
    pub fn starmap_async<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async(task, items, chunksize)
    }

    /// [`map`](Pool::map) for a task over a tuple: each item is the
    /// argument tuple (Python's `starmap`).
    pub fn starmap<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, TaskError>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map(task, items, chunksize)
    }

    /// Lazy, ordered map (Python's `imap`): `chunksize` items per task
    /// message (`None`: 1, as in Python). It reads the input only as far
    /// as needed to keep the task queue supplied (at most its capacity in
    /// chunks in flight), so an endless input is fine.
    pub fn imap<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Imap<I::IntoIter, R>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let chunk = chunksize.unwrap_or(1);
        Imap::lazy(self.core.clone(), task, items.into_iter(), chunk, true)
    }

    /// Like [`imap`](Pool::imap), but yields results as their chunks
    /// complete (Python's `imap_unordered`).
    ///
    /// ```no_run
    /// use shmkit::process::{self, Pool};
    ///
    /// shmkit::task! { static CUBE: Task<u64, u64> = |x| x * x * x; }
    ///
    /// fn main() -> Result<(), shmkit::process::TaskError> {
    ///     process::init();
    ///     let pool = Pool::new(2)?;
    ///     let mut got: Vec<u64> = pool
    ///         .imap_unordered(&CUBE, 0..100, None)
    ///         .collect::<Result<_, _>>()?;
    ///     got.sort();
    ///     assert_eq!(got, (0..100u64).map(|x| x * x * x).collect::<Vec<_>>());
    ///     Ok(())
    /// }
    /// ```
    pub fn imap_unordered<A, R, I>(
        &self,
        task: &Task<A, R>,
        items: I,
        chunksize: Option<usize>,
    ) -> Imap<I::IntoIter, R>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let chunk = chunksize.unwrap_or(1);
        Imap::lazy(self.core.clone(), task, items.into_iter(), chunk, false)
    }

    /// How many tasks the pool still keeps bookkeeping for: queued, running,
    /// or finished with a result nobody has collected yet (a dropped
    /// [`AsyncResult`] counts until its task finishes). Zero once every
    /// result was taken: a long-running pool does not grow.
    ///
    /// ```no_run
    /// # use shmkit::process::{self, Pool};
    /// # fn double(x: u64) -> u64 { x * 2 }
    /// # shmkit::task! { static DOUBLE: Task<u64, u64> = double; }
    /// process::init();
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.apply(&DOUBLE, 21)?, 42);
    /// assert_eq!(pool.outstanding(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outstanding(&self) -> usize {
        self.core.tracked()
    }

    /// No more submissions; submitted work still runs.
    pub fn close(&self) {
        self.core.close(false);
    }

    /// Waits for submitted work, then for the workers to exit (closes the
    /// pool if it was not).
    pub fn join(&self) {
        self.core.join();
    }

    /// Kills the workers now; unfinished tasks get [`TaskError::Terminated`].
    pub fn terminate(&self) {
        self.core.terminate();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.core.terminate();
    }
}
