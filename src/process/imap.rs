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

/// The result iterator of [`Pool::imap`](super::Pool::imap),
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) and
/// [`Executor::map`](super::Executor::map). For `imap` it is lazy: about
/// two chunks per worker are in flight, and the input is read only as far
/// as results are consumed (dropping it leaves the unread input unread).
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
            _r: PhantomData,
        }
    }

    /// The lazy iterator of `Pool::imap` (`ordered`) and
    /// `Pool::imap_unordered`: about two chunks per worker in flight.
    pub(crate) fn lazy<A>(
        core: Arc<Core>,
        task: &Task<A, R>,
        iter: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let prefetch = 2 * core.workers();
        Self::new(core, task, iter, chunksize, prefetch, ordered)
    }

    /// Submits every chunk of `iter` now (for `Executor::map`); a
    /// submission error is returned at once.
    pub(crate) fn eager<A>(
        core: Arc<Core>,
        task: &Task<A, R>,
        iter: I,
        chunksize: usize,
    ) -> Result<Self, TaskError> {
        let mut it = Self::new(core, task, iter, chunksize, usize::MAX, true);
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
}

impl<I, R> Iterator for Imap<I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
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
                self.inflight.pop_front()?
            } else {
                let ids: Vec<u64> = self.inflight.iter().map(|(t, _)| t.id()).collect();
                let id = loop {
                    if let Some(id) = self.core.wait_any(&ids, None) {
                        break id;
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
