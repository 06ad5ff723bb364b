//! Handing tasks to the workers and outcomes to their callers: the
//! backlog kept in this process, the window of tasks in the shared queue,
//! and the waits on [`Core::state`].

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use super::{lock, Callback, Core, Outcome, State, FREE_ROUNDS, POLL_CREDIT_MAX};
use crate::os::Deadline;
use crate::process::task::TaskError;
use crate::queue::error::TrySendError;

/// Longest sleep on the condition variable before a wait re-checks.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How long a waiting thread polls (draining results itself) before it
/// sleeps: a few round trips of a tiny task, far below a scheduler tick.
const HELP_SPIN: Duration = Duration::from_micros(100);

impl Core {
    /// Submits a task message (its first 8 bytes are overwritten with the
    /// id). Returns the id.
    pub(crate) fn submit(&self, msg: Vec<u8>) -> Result<u64, TaskError> {
        self.submit_with(msg, None)
    }

    /// [`submit`](Core::submit) with a done-callback, registered before
    /// the task can finish.
    pub(crate) fn submit_with(
        &self,
        mut msg: Vec<u8>,
        callback: Option<Callback>,
    ) -> Result<u64, TaskError> {
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
        if let Some(cb) = callback {
            self.ensure_callback_thread(&mut st);
            st.callbacks.insert(id, vec![cb]);
        }
        if st.backlog.is_empty() && st.dispatched.len() < self.window {
            match self.task_tx.try_send(&msg) {
                Ok(()) => {
                    st.dispatched.insert(id);
                    return Ok(id);
                }
                Err(TrySendError::TooLarge(_)) => {
                    st.callbacks.remove(&id);
                    return Err(TaskError::TooLarge {
                        size: msg.len(),
                        max,
                    });
                }
                Err(_) => {}
            }
        }
        st.backlog.push_back((id, msg));
        Ok(id)
    }

    /// Moves backlog into the task queue while the window allows.
    pub(super) fn pump(&self, st: &mut State) {
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

    /// Records the outcome of `id`, unless its handle was dropped.
    /// Its done-callbacks run whether or not its handle was kept.
    pub(super) fn finish(st: &mut State, id: u64, outcome: Outcome) {
        Self::queue_callbacks(st, id, &outcome);
        if st.abandoned.remove(&id) {
            return;
        }
        st.done.insert(id, outcome);
    }

    /// How many tasks the core still keeps something for: queued,
    /// running, finished but not collected, or abandoned but not finished.
    pub(crate) fn tracked(&self) -> usize {
        let st = lock(&self.state);
        st.dispatched.len() + st.backlog.len() + st.done.len() + st.abandoned.len()
    }

    /// Moves the outcome of `id`, if it is there, into `sink` (under the
    /// lock, so that [`add_callback`](Core::add_callback) sees it in one
    /// place or the other); returns whether `sink` holds it.
    pub(crate) fn take_into(&self, id: u64, sink: &OnceLock<Outcome>) -> bool {
        let mut st = lock(&self.state);
        if let Some(o) = st.done.remove(&id) {
            let _ = sink.set(o);
        }
        sink.get().is_some()
    }

    /// Waits until `deadline` (`None` = forever) for the outcome of `id`
    /// and moves it into `sink` as [`take_into`](Core::take_into) does;
    /// returns whether `sink` holds it.
    pub(crate) fn wait_into(
        &self,
        id: u64,
        sink: &OnceLock<Outcome>,
        deadline: Option<Deadline>,
    ) -> bool {
        self.wait_state(deadline, |st| {
            if let Some(o) = st.done.remove(&id) {
                let _ = sink.set(o);
            }
            sink.get().is_some().then_some(())
        })
        .is_some()
    }

    /// Waits until any of `ids` has an outcome (or the deadline passes);
    /// returns the first one found.
    pub(crate) fn wait_any(&self, ids: &[u64], deadline: Option<Deadline>) -> Option<u64> {
        self.wait_state(deadline, |st| {
            ids.iter().find(|id| st.done.contains_key(id)).copied()
        })
    }

    /// Calls `ready` on the state, under its lock, until it returns `Some`
    /// (then returns that) or `deadline` passes (`None` = forever; then
    /// `None`).
    ///
    /// For up to [`HELP_SPIN`] it polls, draining the result queue itself
    /// in between ([`help_drain`](Core::help_drain)): a short task's
    /// result then reaches this thread without waking the monitor thread
    /// and then this one (two cross-CPU wake-ups, ~20 µs each on a VM).
    /// Then it sleeps on the condition variable, and the monitor delivers.
    pub(super) fn wait_state<T>(
        &self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        // On one CPU the worker cannot run while this thread polls: go
        // straight to sleep there (measured: polling, even with yields,
        // made the round trip 1.6x slower with everything on one CPU).
        let credit = self.poll_credit.load(Ordering::Relaxed);
        let probe = self.waits.fetch_add(1, Ordering::Relaxed) % 16 == 0;
        let budget = if self.cpus < 2 || (credit == 0 && !probe) {
            Duration::ZERO
        } else {
            HELP_SPIN
        };
        let spin_end = match deadline {
            Some(d) => Deadline::earliest(Some(d), Deadline::after(budget)),
            None => Deadline::after(budget),
        };
        let helping = budget > Duration::ZERO;
        if helping {
            self.helpers.fetch_add(1, Ordering::SeqCst);
        }
        let mut rounds = 0u32;
        let spun = loop {
            let mut st = lock(&self.state);
            if let Some(v) = ready(&mut st) {
                break Some(v);
            }
            if st.terminated || spin_end.has_passed() {
                break None;
            }
            if helping && self.help_drain(&mut st) {
                drop(st);
                self.notify();
                continue;
            }
            drop(st);
            rounds += 1;
            if rounds % FREE_ROUNDS == 0 {
                std::thread::yield_now();
            } else {
                for _ in 0..32 {
                    std::hint::spin_loop();
                }
            }
        };
        if helping {
            self.helpers.fetch_sub(1, Ordering::SeqCst);
            // Polling paid only if the outcome came before the first
            // yield (or was already there).
            let paid = spun.is_some() && rounds < FREE_ROUNDS;
            let c = if paid {
                (credit + 1).min(POLL_CREDIT_MAX)
            } else {
                credit.saturating_sub(2)
            };
            self.poll_credit.store(c, Ordering::Relaxed);
        }
        if spun.is_some() {
            return spun;
        }
        let mut st = lock(&self.state);
        loop {
            if let Some(v) = ready(&mut st) {
                return Some(v);
            }
            let slice = match deadline {
                Some(d) if d.has_passed() => return None,
                Some(d) => d.remaining().min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            st = self
                .cond
                .wait_timeout(st, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Receives every result already in the result queue (under the state
    /// lock, so that a result a dead worker sent is never in a thread's
    /// hands while the monitor judges that worker) and feeds the backlog
    /// into the freed window; returns whether any arrived.
    pub(super) fn help_drain(&self, st: &mut State) -> bool {
        let mut h = lock(&self.helper_rx);
        let (rx, buf) = &mut *h;
        let Some(rx) = rx.as_ref() else {
            return false;
        };
        let n = self.drain(st, rx, buf);
        if n > 0 {
            self.pump(st);
        }
        n > 0
    }

    /// Wakes the threads asleep on the condition variable, if any (call
    /// after releasing the state lock under which the change was made).
    pub(super) fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.cond.notify_all();
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

    /// Ends every task not finished yet (dispatched or in the backlog) with
    /// `err`.
    pub(super) fn fail_outstanding(st: &mut State, err: TaskError) {
        let ids: Vec<u64> = st
            .dispatched
            .drain()
            .chain(st.backlog.drain(..).map(|(id, _)| id))
            .collect();
        for id in ids {
            Self::finish(st, id, Err(err.clone()));
        }
    }
}
