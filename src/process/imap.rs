//! [`Imap`]: the result iterator of [`Pool::imap`](super::Pool::imap),
//! [`Pool::imap_unordered`](super::Pool::imap_unordered) and
//! [`Executor::map`](super::Executor::map).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{Chunker, Core, Ticket};
use super::task::{self, Task, TaskError};
use crate::os::Deadline;

/// The result iterator of [`Pool::imap`](super::Pool::imap),
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) and
/// [`Executor::map`](super::Executor::map). For `imap` it is lazy: at most
/// the task queue's capacity in chunks is in flight, and the input is read
/// only as far as results are consumed (dropping it leaves the unread input unread).
/// For `Executor::map` every chunk was submitted before it was returned.
/// Each item is the result for one input, or the error of the chunk it
/// was in.
pub struct Imap<I: Iterator, R> {
    core: Arc<Core>,
    chunker: Chunker<I>,
    inflight: VecDeque<(Ticket, u32)>,
    ready: std::vec::IntoIter<R>,
    err_run: Option<(TaskError, u32)>,
    submit_err: Option<TaskError>,
    exhausted: bool,
    prefetch: usize,
    ordered: bool,
    /// `Executor::map`'s deadline for the next result.
    deadline: Option<Deadline>,
    timed_out: bool,
    _r: PhantomData<fn() -> R>,
}

impl<I: Iterator, R> std::fmt::Debug for Imap<I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("inflight", &self.inflight.len())
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}

impl<I, R> Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn new<A>(
        core: Arc<Core>,
        task: &Task<A, R>,
        iter: I,
        chunksize: usize,
        prefetch: usize,
        ordered: bool,
    ) -> Self {
        let hard = core.max_message();
        Imap {
            chunker: Chunker::new(task.name(), iter, chunksize, hard),
            core,
            inflight: VecDeque::new(),
            ready: Vec::new().into_iter(),
            err_run: None,
            submit_err: None,
            exhausted: false,
            prefetch: prefetch.max(1),
            ordered,
            deadline: None,
            timed_out: false,
            _r: PhantomData,
        }
    }

    /// The lazy iterator of `Pool::imap` (`ordered`) and
    /// `Pool::imap_unordered`: as many chunks in flight as the task queue
    /// holds, so that with tiny tasks the workers never run dry while
    /// results travel back (with two per worker, each task waited for a
    /// cross-process wake-up).
    pub(crate) fn lazy<A>(
        core: Arc<Core>,
        task: &Task<A, R>,
        iter: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let prefetch = core.window().max(2 * core.workers());
        Self::new(core, task, iter, chunksize, prefetch, ordered)
    }

    /// Submits every chunk of `iter` now (for `Executor::map`); a
    /// submission error is returned at once. Past `deadline`, the next
    /// missing result is `Err(Timeout)` and the rest is cancelled.
    pub(crate) fn eager<A>(
        core: Arc<Core>,
        task: &Task<A, R>,
        iter: I,
        chunksize: usize,
        deadline: Option<Deadline>,
    ) -> Result<Self, TaskError> {
        let mut it = Self::new(core, task, iter, chunksize, usize::MAX, true);
        it.deadline = deadline;
        it.fill();
        match it.submit_err.take() {
            Some(e) => Err(e),
            None => Ok(it),
        }
    }

    /// Submits chunks until `prefetch` are in flight or the input ends (an
    /// encoding or submission error ends it too, and is kept for `next`).
    fn fill(&mut self) {
        while !self.exhausted && self.inflight.len() < self.prefetch {
            match self.chunker.submit_next(&self.core) {
                None => self.exhausted = true,
                Some(Ok(chunk)) => self.inflight.push_back(chunk),
                Some(Err(e)) => {
                    self.submit_err = Some(e);
                    self.exhausted = true;
                }
            }
        }
    }

    /// The deadline passed: cancels what no worker has taken yet, drops
    /// the rest (its results are discarded on arrival) and ends.
    fn time_out(&mut self) -> TaskError {
        for (t, _) in self.inflight.drain(..) {
            self.core.cancel(t.id());
        }
        self.exhausted = true;
        self.timed_out = true;
        TaskError::Timeout
    }
}

impl<I, R> Iterator for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.timed_out {
            return None;
        }
        loop {
            if let Some(r) = self.ready.next() {
                return Some(Ok(r));
            }
            if let Some((e, n)) = &mut self.err_run {
                if *n > 0 {
                    *n -= 1;
                    return Some(Err(e.clone()));
                }
                self.err_run = None;
            }
            self.fill();
            if self.inflight.is_empty() {
                return self.submit_err.take().map(Err);
            }
            let (ticket, n) = if self.ordered {
                let (front, _) = self.inflight.front()?;
                if front.wait(self.deadline).is_none() {
                    return Some(Err(self.time_out()));
                }
                self.inflight.pop_front()?
            } else {
                let ids: Vec<u64> = self.inflight.iter().map(|(t, _)| t.id()).collect();
                let id = loop {
                    if let Some(id) = self.core.wait_any(&ids, self.deadline) {
                        break id;
                    }
                    if self.deadline.is_some_and(|d| d.has_passed()) {
                        return Some(Err(self.time_out()));
                    }
                };
                let pos = self.inflight.iter().position(|(t, _)| t.id() == id)?;
                self.inflight.remove(pos)?
            };
            match ticket.take() {
                Ok(bytes) => match task::decode_results::<R>(&bytes, n as usize) {
                    Ok(v) => self.ready = v.into_iter(),
                    Err(e) => self.err_run = Some((e, n)),
                },
                Err(e) => self.err_run = Some((e, n)),
            }
        }
    }
}
