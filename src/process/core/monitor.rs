//! The parent's monitor thread: receives results, feeds the backlog into
//! the task queue, and notices dead workers (see the module docs of
//! [`core`](super) for what happens to their tasks).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, Core, Outcome, State};
use crate::process::handle::ExitStatus;
use crate::process::task::{self, TaskError};
use crate::queue::error::RecvTimeoutError;
use crate::queue::MpmcReceiver;

/// How often the monitor checks the workers (and the longest it blocks on
/// the result queue).
const TICK: Duration = Duration::from_millis(5);

/// How long the monitor naps while waiting threads drain results.
const HELPED_NAP: Duration = Duration::from_micros(200);

impl Core {
    /// Records one result message.
    fn complete_message(&self, st: &mut State, bytes: &[u8]) {
        match task::parse_result(bytes) {
            Some((id, outcome)) => {
                if st.dispatched.remove(&id) {
                    Self::finish(st, id, outcome);
                }
            }
            None => tracing::warn!("dropping a result message without a task id"),
        }
    }

    /// Receives every result already queued.
    pub(super) fn drain(&self, st: &mut State, rx: &MpmcReceiver, buf: &mut Vec<u8>) -> usize {
        let mut n = 0;
        while rx.try_recv(buf).is_ok() {
            self.complete_message(st, buf);
            n += 1;
        }
        n
    }

    /// The monitor thread's loop; returns once the pool is terminated, or
    /// stopping with nothing outstanding.
    pub(super) fn monitor_loop(&self, rx: MpmcReceiver) {
        let mut buf = Vec::new();
        let mut last_check = Instant::now();
        loop {
            // While a waiting thread drains results itself, stay off the
            // result queue's waiter list (each result would wake this
            // thread for nothing) and look again shortly.
            let received = if self.helpers.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(HELPED_NAP);
                let mut st = lock(&self.state);
                match self.drain(&mut st, &rx, &mut buf) {
                    0 => Err(RecvTimeoutError::Timeout),
                    n => Ok(n),
                }
            } else {
                rx.recv_timeout(&mut buf, TICK).map(|_| {
                    let mut st = lock(&self.state);
                    self.complete_message(&mut st, &buf);
                    1 + self.drain(&mut st, &rx, &mut buf)
                })
            };
            match received {
                Ok(_) => {
                    let mut st = lock(&self.state);
                    self.pump(&mut st);
                    drop(st);
                    self.notify();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
                Err(RecvTimeoutError::Corrupt(c)) => {
                    tracing::error!("result queue is corrupt: {c}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            {
                let mut st = lock(&self.state);
                self.pump(&mut st);
                if st.terminated
                    || (st.stopping && st.dispatched.is_empty() && st.backlog.is_empty())
                {
                    return;
                }
            }
            if last_check.elapsed() >= TICK {
                last_check = Instant::now();
                self.check_workers(&rx, &mut buf);
                self.reconcile(&rx, &mut buf);
            }
        }
    }

    /// Reaps dead workers: fails the task each held, notes the ones that
    /// held none, and starts replacements.
    fn check_workers(&self, rx: &MpmcReceiver, buf: &mut Vec<u8>) {
        let n = lock(&self.workers).len();
        for i in 0..n {
            let dead = {
                let mut workers = lock(&self.workers);
                let Some(w) = workers.get_mut(i) else {
                    continue;
                };
                match w.process.as_ref().and_then(|p| p.exit_status()) {
                    Some(status) => {
                        w.process = None;
                        Some((w.pid, status))
                    }
                    None => None,
                }
            };
            let Some((pid, status)) = dead else { continue };
            let mut st = lock(&self.state);
            if st.terminated {
                return;
            }
            // A result that was completely sent wins over the death.
            self.drain(&mut st, rx, buf);
            let id = self.slots.get(i).unwrap_or(0);
            let clean = status == ExitStatus::Code(0);
            if id != 0 && st.dispatched.remove(&id) {
                tracing::warn!(pid, %status, task = id, "pool worker died running a task");
                Self::finish(&mut st, id, worker_died(pid, &status));
            } else if !clean {
                tracing::warn!(pid, %status, "pool worker died while idle or taking a task");
                st.suspects.push((pid, status));
            } else {
                tracing::debug!(pid, "pool worker exited");
            }
            let replace = !(st.stopping && st.dispatched.is_empty() && st.backlog.is_empty());
            drop(st);
            self.cond.notify_all();
            self.slots.set(i, 0);
            if replace {
                match self.spawn_worker(i) {
                    Ok(w) => lock(&self.workers)[i] = w,
                    Err(e) => {
                        tracing::error!("could not replace pool worker: {e}");
                        if self.pids().is_empty() {
                            self.fail_all(TaskError::Spawn(e.to_string()));
                        }
                    }
                }
            }
        }
    }

    /// Ends every outstanding task with `err` (no worker is left to run
    /// them).
    fn fail_all(&self, err: TaskError) {
        Self::fail_outstanding(&mut lock(&self.state), err);
        self.cond.notify_all();
    }

    /// After a worker died with no task id in its slot, waits for a
    /// quiescent moment and fails the tasks that vanished with it.
    fn reconcile(&self, rx: &MpmcReceiver, buf: &mut Vec<u8>) {
        let mut st = lock(&self.state);
        if st.suspects.is_empty() {
            return;
        }
        if st.dispatched.is_empty() {
            st.suspects.clear();
            return;
        }
        // Order matters: queue empty (a claimed message counts as queued
        // until its claimer wrote its slot), then every slot idle (a worker
        // clears its slot only after sending), then drain the results.
        if !self.task_q.is_empty() {
            return;
        }
        if self.slots.to_vec().iter().any(|&s| s != 0) {
            return;
        }
        self.drain(&mut st, rx, buf);
        let (pid, status) = st.suspects[0].clone();
        let lost: Vec<u64> = st.dispatched.drain().collect();
        for id in lost {
            tracing::warn!(pid, task = id, "task lost with a dead worker");
            Self::finish(&mut st, id, worker_died(pid, &status));
        }
        st.suspects.clear();
        self.pump(&mut st);
        drop(st);
        self.cond.notify_all();
    }
}

/// The outcome of a task that was lost with worker `pid`.
fn worker_died(pid: u32, status: &ExitStatus) -> Outcome {
    Err(TaskError::WorkerDied {
        pid,
        status: status.clone(),
    })
}
