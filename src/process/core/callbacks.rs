//! Done-callbacks: Python's pool result-handler thread, which runs
//! `apply_async(callback=, error_callback=)` and
//! `Future.add_done_callback` functions.
//!
//! A callback registered on a task that has not finished is kept in
//! [`State::callbacks`](super::State) and, when the task's outcome is
//! recorded ([`Core::finish`]), bound to a copy of that outcome and queued
//! to one thread per pool (`shmkit-pool-callbacks`, started by the first
//! callback). It runs callbacks one at a time, in the order the outcomes
//! arrived, never under the pool's lock, so a callback may submit more
//! work. A callback that panics is logged and the thread goes on.
//! [`Core::join_callbacks`] (from `join`/`terminate`) waits until every
//! queued callback ran.

use std::sync::mpsc;

use super::{lock, Callback, Core, Job, Outcome, State};

impl Core {
    /// Registers `cb` for task `id`. Returns it back (with a copy of the
    /// outcome) when the task has already finished, for the caller to run
    /// at once, as Python's `add_done_callback` does; `sink` is where a
    /// handle keeps an outcome it already took (read under the lock, which
    /// is where handles store it).
    pub(crate) fn add_callback(
        &self,
        id: u64,
        sink: &std::sync::OnceLock<Outcome>,
        cb: Callback,
    ) -> Option<(Callback, Outcome)> {
        let mut st = lock(&self.state);
        if let Some(o) = sink.get().or_else(|| st.done.get(&id)) {
            return Some((cb, o.clone()));
        }
        self.ensure_callback_thread(&mut st);
        st.callbacks.entry(id).or_default().push(cb);
        None
    }

    /// Starts the callback thread unless it runs.
    pub(super) fn ensure_callback_thread(&self, st: &mut State) {
        if st.callback_tx.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("shmkit-pool-callbacks".into())
            .spawn(move || {
                for job in rx {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    if r.is_err() {
                        tracing::error!("a pool done-callback panicked");
                    }
                }
            });
        match spawned {
            Ok(h) => {
                st.callback_tx = Some(tx);
                *lock(&self.callback_thread) = Some(h);
            }
            Err(e) => tracing::error!("cannot start the pool's callback thread: {e}"),
        }
    }

    /// Queues the callbacks of `id`, bound to `outcome`, for the callback
    /// thread (called under the lock when the outcome is recorded).
    pub(super) fn queue_callbacks(st: &mut State, id: u64, outcome: &Outcome) {
        let Some(cbs) = st.callbacks.remove(&id) else {
            return;
        };
        for cb in cbs {
            let o = outcome.clone();
            let job: Job = Box::new(move || cb(&o));
            let sent = st.callback_tx.as_ref().map(|tx| tx.send(job));
            if !matches!(sent, Some(Ok(()))) {
                tracing::error!(task = id, "a done-callback was dropped: no callback thread");
            }
        }
    }

    /// Waits until every queued callback ran and stops the callback
    /// thread (a later callback starts a new one). From a callback itself
    /// it only stops the thread, which finishes its queue afterwards.
    pub(super) fn join_callbacks(&self) {
        drop(lock(&self.state).callback_tx.take());
        let h = lock(&self.callback_thread).take();
        if let Some(h) = h {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}
