//! [`Chunker`]: cuts an input iterator into task messages of several
//! items each, lazily, within the transport's message size.

use std::sync::Arc;

use serde::Serialize;

use super::{Core, Ticket};
use crate::process::task::{self, TaskError};

/// Cuts an input iterator into chunk messages (lazily).
pub(crate) struct Chunker<I: Iterator> {
    name: &'static str,
    iter: I,
    carry: Option<I::Item>,
    size: usize,
    budget: usize,
    hard: usize,
}

impl<I: Iterator> Chunker<I>
where
    I::Item: Serialize,
{
    /// Chunks of at most `size` items; a chunk is cut early once its
    /// encoding passes a quarter of `hard` (the transport limit), so that
    /// results up to four times the size of their arguments still fit.
    pub(crate) fn new(name: &'static str, iter: I, size: usize, hard: usize) -> Self {
        Chunker {
            name,
            iter,
            carry: None,
            size: size.max(1),
            budget: hard / 4,
            hard,
        }
    }

    /// The next chunk message and its item count; `None` once the input
    /// is exhausted.
    pub(crate) fn next_chunk(&mut self) -> Option<Result<(Vec<u8>, u32), TaskError>> {
        let mut msg = task::begin_message(self.name, self.budget.min(self.hard) + 64);
        let mut count = 0u32;
        while (count as usize) < self.size {
            let Some(item) = self.carry.take().or_else(|| self.iter.next()) else {
                break;
            };
            let before = msg.len();
            if let Err(e) = task::encode_into(&item, &mut msg) {
                return Some(Err(TaskError::Serde(e.to_string())));
            }
            if msg.len() > self.budget && count > 0 {
                msg.truncate(before);
                self.carry = Some(item);
                break;
            }
            if msg.len() > self.hard {
                return Some(Err(TaskError::TooLarge {
                    size: msg.len(),
                    max: self.hard,
                }));
            }
            count += 1;
        }
        if count == 0 {
            return None;
        }
        task::set_count(&mut msg, self.name, count);
        Some(Ok((msg, count)))
    }

    /// Cuts the next chunk and submits it to `core`: its ticket and item
    /// count, or why it could not be encoded or submitted; `None` once the
    /// input is exhausted.
    pub(crate) fn submit_next(
        &mut self,
        core: &Arc<Core>,
    ) -> Option<Result<(Ticket, u32), TaskError>> {
        Some(self.next_chunk()?.and_then(|(msg, count)| {
            let id = core.submit(msg)?;
            Ok((Ticket::new(core.clone(), id), count))
        }))
    }
}
