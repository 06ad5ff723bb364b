//! [`Ticket`]: one submitted chunk and, once it arrives, its outcome; the
//! base of [`AsyncResult`](crate::process::AsyncResult),
//! [`TaskFuture`](crate::process::TaskFuture) and [`Imap`](crate::process::Imap);
//! and the one-item encoders they share.

use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Core, Outcome};
use crate::os::Deadline;
use crate::process::task::{self, Task, TaskError};

/// One submitted chunk: its id, and its outcome once taken.
pub(crate) struct Ticket {
    core: Arc<Core>,
    id: u64,
    outcome: OnceLock<Outcome>,
    /// Set by `take`: the outcome was collected (not abandoned), so the
    /// drop that follows must not mark the task abandoned.
    taken: bool,
}

impl Ticket {
    /// The ticket of task `id`, just submitted to `core`.
    pub(crate) fn new(core: Arc<Core>, id: u64) -> Self {
        Self {
            core,
            id,
            outcome: OnceLock::new(),
            taken: false,
        }
    }

    /// Submits `task(arg)` as a one-item chunk.
    pub(crate) fn submit_one<A: Serialize, R>(
        core: &Arc<Core>,
        task: &Task<A, R>,
        arg: &A,
    ) -> Result<Self, TaskError> {
        let id = core.submit(encode_one(task, arg)?)?;
        Ok(Self::new(core.clone(), id))
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The outcome if it has arrived (non-blocking).
    pub(crate) fn poll(&self) -> Option<&Outcome> {
        if self.outcome.get().is_none() {
            self.core.take_into(self.id, &self.outcome);
        }
        self.outcome.get()
    }

    /// Waits for the outcome until `deadline` (`None` = forever).
    pub(crate) fn wait(&self, deadline: Option<Deadline>) -> Option<&Outcome> {
        if self.outcome.get().is_none() {
            self.core.wait_into(self.id, &self.outcome, deadline);
        }
        self.outcome.get()
    }

    /// Calls `f` with the outcome once there is one: at once (in this
    /// thread) if the task has finished, else on the pool's callback
    /// thread when it finishes.
    pub(crate) fn on_done(&self, f: Box<dyn FnOnce(&Outcome) + Send>) {
        if let Some((f, o)) = self.core.add_callback(self.id, &self.outcome, f) {
            f(&o);
        }
    }

    /// Waits for the outcome and takes it.
    pub(crate) fn take(mut self) -> Outcome {
        self.wait(None);
        self.taken = true;
        self.outcome
            .take()
            .unwrap_or(Err(TaskError::Failed("outcome vanished".into())))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket dropped before its outcome arrived abandons the task
        // (its result is discarded on arrival); one whose outcome was
        // collected has nothing left in the core.
        if !self.taken && self.outcome.get().is_none() {
            self.core.abandon(self.id);
        }
    }
}

/// Decodes the single result of a one-item chunk.
pub(crate) fn decode_one<R: DeserializeOwned>(o: &Outcome) -> Result<R, TaskError> {
    match o {
        Ok(bytes) => task::decode_results::<R>(bytes, 1)?
            .pop()
            .ok_or_else(|| TaskError::Serde("no result".into())),
        Err(e) => Err(e.clone()),
    }
}

/// Encodes one call of `task` as a task message.
pub(crate) fn encode_one<A: Serialize, R>(
    task: &Task<A, R>,
    arg: &A,
) -> Result<Vec<u8>, TaskError> {
    let name = task.name();
    let mut msg = task::begin_message(name, 64);
    task::encode_into(arg, &mut msg).map_err(|e| TaskError::Serde(e.to_string()))?;
    task::set_count(&mut msg, name, 1);
    Ok(msg)
}
