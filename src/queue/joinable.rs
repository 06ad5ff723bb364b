//! [`JoinableQueue<T>`]: Python's `multiprocessing.JoinableQueue` across
//! processes — a typed [`Queue`] plus `task_done()` and `join()`.
//!
//! The segment is an [`MpmcQueue`] of kind
//! `JOINABLE_QUEUE` whose header also holds an *unfinished-task counter*
//! (a `u64`) and an `all_done` [`Notifier`]. `put`
//! increments the counter **before** the value becomes visible (and undoes
//! it if the send fails), `task_done` decrements it (refusing to go below
//! zero) and wakes joiners when it reaches zero, `join` parks until it is
//! zero.
//!
//! # Peer death
//!
//! * A consumer that dies between `get` and `task_done` leaves the counter
//!   one too high for good: `join()` would then never return on its own.
//!   Use [`join_timeout`](JoinableQueue::join_timeout) where consumers may
//!   die. (Per-process outstanding counts are **not** tracked; a dead
//!   consumer's tasks are not released automatically.)
//! * A producer that dies between its increment and the send, or whose
//!   message is lost because it died mid-send, leaves the counter one too
//!   high in the same way.
//! * Neither case corrupts the queue; `unfinished()` shows the count.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{SendError, SendTimeoutError, TrySendError};
use super::mpmc::{MpmcQueue, QueueConfig};
use super::typed::{
    Codec, GetError, PodCodec, Postcard, Queue, Sizing, DEFAULT_CAPACITY, DEFAULT_SLOT_SIZE,
};
use crate::error::{AttachError, Error};
use crate::os::Deadline;
use crate::primitives::{AtomicU64, Ordering};
use crate::segment::{type_tag, ObjectKind, OpenOptions, Segment, SegmentObject};
use crate::sync::Notifier;

/// `task_done()` was called more times than values were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than there were items put (Python's ValueError)")]
pub struct TaskDoneError;

/// A typed queue whose consumers mark each value done, so producers can
/// wait (`join`) until everything put has been processed.
///
/// ```
/// use shmkit::queue::JoinableQueue;
/// use std::time::Duration;
///
/// let q = JoinableQueue::<String>::anonymous(32, 8)?;
/// q.put("bun 1".to_string()).unwrap();
/// assert_eq!(q.unfinished(), 1);
/// assert!(!q.join_timeout(Duration::from_millis(1)));
/// let bun = q.get().unwrap();
/// q.task_done().unwrap();
/// q.join(); // returns at once: every item is done
/// assert_eq!(bun, "bun 1");
/// assert!(q.task_done().is_err()); // one too many
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct JoinableQueue<T, C = Postcard> {
    queue: Queue<T, C>,
}

impl<T, C> std::fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}

impl<T, C> Clone for JoinableQueue<T, C> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T, C: Sizing<T>> SegmentObject for JoinableQueue<T, C> {
    type Config = C::Config;

    fn create_in(name: Option<&str>, config: C::Config) -> Result<Self, Error> {
        Self::make(name, C::queue_config(config))
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let q = MpmcQueue::attach_kind(seg, ObjectKind::JOINABLE_QUEUE, opts)?;
        Ok(JoinableQueue {
            queue: Queue::from_mpmc_with(q, opts)?,
        })
    }

    fn segment(&self) -> Option<&Segment> {
        self.queue.as_mpmc().segment()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T, Postcard> {
    /// Creates a named queue of `capacity` slots (any number from 1 to
    /// 2^24) holding encodings of at most `max_encoded_size` bytes.
    pub fn create(name: &str, max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::make(Some(name), QueueConfig::new(max_encoded_size, capacity))
    }

    /// Creates an anonymous queue (shared with children forked or spawned
    /// with it afterwards).
    pub fn anonymous(max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        Self::make(None, QueueConfig::new(max_encoded_size, capacity))
    }

    /// Python's `JoinableQueue()`: an anonymous queue with the default
    /// sizes of [`Queue::new`] ([`DEFAULT_CAPACITY`] slots of
    /// [`DEFAULT_SLOT_SIZE`] bytes; larger values spill). `put` blocks
    /// once that many values wait.
    ///
    /// ```
    /// use shmkit::JoinableQueue;
    ///
    /// let q = JoinableQueue::<String>::new()?;
    /// q.put("y".repeat(50_000))?;
    /// assert_eq!(q.get()?.len(), 50_000);
    /// q.task_done()?;
    /// q.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<Self, Error> {
        Self::bounded(DEFAULT_CAPACITY)
    }

    /// Python's `JoinableQueue(maxsize)`: [`new`](Self::new) with exactly
    /// `capacity` slots.
    pub fn bounded(capacity: usize) -> Result<Self, Error> {
        Self::anonymous(DEFAULT_SLOT_SIZE, capacity)
    }

    /// A named queue with the default sizes of [`new`](Self::new).
    pub fn create_default(name: &str) -> Result<Self, Error> {
        Self::create(name, DEFAULT_SLOT_SIZE, DEFAULT_CAPACITY)
    }

    /// Opens the named queue, or creates it with the default sizes.
    pub fn open_or_create_default(name: &str) -> Result<Self, Error> {
        Self::open_or_create(name, DEFAULT_SLOT_SIZE, DEFAULT_CAPACITY)
    }

    /// Opens the named queue, or creates it if there is none (race-free
    /// between processes; see [`SegmentObject::open_or_create`]).
    pub fn open_or_create(
        name: &str,
        max_encoded_size: usize,
        capacity: usize,
    ) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, QueueConfig::new(max_encoded_size, capacity))
    }

    /// A queue for threads of one process (heap memory).
    pub fn in_process(max_encoded_size: usize, capacity: usize) -> Result<Self, Error> {
        let config = QueueConfig::new(max_encoded_size, capacity);
        let q = MpmcQueue::in_process_kind(ObjectKind::JOINABLE_QUEUE, config)?;
        Ok(Self::wrap(q))
    }
}

impl<T: bytemuck::Pod + Send + Sync> JoinableQueue<T, PodCodec> {
    /// Creates a named queue of `capacity` `Pod` values.
    pub fn create_pod(name: &str, capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, capacity)
    }

    /// Creates an anonymous queue of `capacity` `Pod` values.
    pub fn anonymous_pod(capacity: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(capacity)
    }
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    /// Creates the queue, recording `T`'s type tag (or the scoped one).
    fn make(name: Option<&str>, config: QueueConfig) -> Result<Self, Error> {
        let tag = type_tag::creation_tag(C::type_tag());
        let q = type_tag::create_tagged(tag, || {
            MpmcQueue::create_kind(name, ObjectKind::JOINABLE_QUEUE, config)
        })?;
        Ok(Self::wrap(q))
    }

    /// Wraps a queue this process just created (registered on both sides
    /// now, as a typed [`Queue`]'s creator handle is).
    fn wrap(q: MpmcQueue) -> Self {
        JoinableQueue {
            queue: Queue::from_new_mpmc(q),
        }
    }
}

impl<T, C> JoinableQueue<T, C> {
    fn counter(&self) -> (&AtomicU64, &Notifier) {
        self.queue.as_mpmc().joinable()
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> u64 {
        self.counter().0.load(Ordering::SeqCst)
    }

    /// The typed queue underneath (its sends do not count as tasks).
    pub fn as_queue(&self) -> &Queue<T, C> {
        &self.queue
    }

    /// Values queued now.
    pub fn qsize(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether every slot is taken.
    pub fn full(&self) -> bool {
        self.queue.is_full()
    }

    /// Closes the queue for every process.
    pub fn close(&self) {
        self.queue.close();
    }

    /// Marks one item taken with `get` as processed. Fails (without
    /// changing anything) when every item put is already done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let (count, done) = self.counter();
        let mut cur = count.load(Ordering::SeqCst);
        loop {
            if cur == 0 {
                return Err(TaskDoneError);
            }
            match count.compare_exchange_weak(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            done.notify_all();
        }
        Ok(())
    }

    /// Blocks until every item put has been marked done.
    pub fn join(&self) {
        self.join_deadline(None);
    }

    /// Like [`join`](Self::join), giving up after `timeout`; returns
    /// whether everything was done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_deadline(Some(Deadline::after(timeout)))
    }

    /// Like [`join`](Self::join), giving up at `deadline`.
    pub fn join_deadline(&self, deadline: Option<Deadline>) -> bool {
        let (count, done) = self.counter();
        done.wait_until(deadline, || {
            (count.load(Ordering::SeqCst) == 0).then_some(())
        })
        .is_some()
    }

    fn undo_put(&self) {
        let (count, done) = self.counter();
        if count.fetch_sub(1, Ordering::SeqCst) == 1 {
            done.notify_all();
        }
    }
}

impl<T, C: Sizing<T>> JoinableQueue<T, C> {
    crate::segment::inherent_opens!("joinable queue");
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    /// Puts `value` (waiting while full) and counts it as a task.
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.counter().0.fetch_add(1, Ordering::SeqCst);
        self.queue.send(value).inspect_err(|_| self.undo_put())
    }

    /// Puts `value`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.counter().0.fetch_add(1, Ordering::SeqCst);
        self.queue
            .send_timeout(value, timeout)
            .inspect_err(|_| self.undo_put())
    }

    /// Puts `value` if there is room now.
    pub fn put_nowait(&self, value: T) -> Result<(), TrySendError<T>> {
        self.counter().0.fetch_add(1, Ordering::SeqCst);
        self.queue.try_send(value).inspect_err(|_| self.undo_put())
    }

    /// Takes a value, waiting while empty. Call
    /// [`task_done`](Self::task_done) once it is processed.
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.recv()
    }

    /// Takes a value, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.queue.recv_timeout(timeout)
    }

    /// Takes a value if one is queued now.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.queue.try_recv()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn join_waits_for_every_task_done() {
        let q = JoinableQueue::<u32>::in_process(8, 4).unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError));
        let n = if cfg!(miri) { 10 } else { 1_000 };
        let done = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            let (q2, done) = (q.clone(), &done);
            s.spawn(move || {
                for _ in 0..n {
                    q2.get().unwrap();
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    q2.task_done().unwrap();
                }
            });
            for i in 0..n {
                q.put(i).unwrap();
            }
            q.join();
            // Every task_done follows its increment of `done`.
            assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), n);
        });
        assert_eq!(q.unfinished(), 0);
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert!(q.join_timeout(Duration::ZERO));
    }

    /// `JoinableQueue(30)` holds exactly 30 tasks.
    #[test]
    fn any_capacity() {
        let q = JoinableQueue::<u32>::in_process(8, 30).unwrap();
        for i in 0..30 {
            q.put_nowait(i).unwrap();
        }
        assert!(matches!(q.put_nowait(30), Err(TrySendError::Full(30))));
        assert_eq!(q.unfinished(), 30, "the refused put was not counted");
        for i in 0..30 {
            assert_eq!(q.get(), Ok(i));
            q.task_done().unwrap();
        }
        assert!(q.join_timeout(Duration::ZERO));
    }
}
