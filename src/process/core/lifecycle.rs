//! Starting a pool's workers and monitor thread, and stopping them: a
//! graceful [`Core::join`] or an immediate [`Core::terminate`].

use std::sync::{Arc, Condvar, Mutex as StdMutex};
use std::time::Duration;

use super::worker::{WorkerArgs, WORKER};
use super::{io_err, lock, Config, Core, State, Worker, POLL_CREDIT_MAX};
use crate::process::handoff::Shared;
use crate::process::task::TaskError;
use crate::queue::MpmcQueue;
use crate::segment::Segment;
use crate::sync::ShmArray;

impl Core {
    /// Creates the queues, starts the monitor thread, which starts the
    /// workers (so that their parent-death signal is tied to a thread that
    /// lives as long as the pool), and waits until they run.
    pub(crate) fn start(cfg: Config) -> Result<Arc<Core>, TaskError> {
        let n = cfg.workers.max(1);
        let cap = (4 * n).next_power_of_two().clamp(16, 1024);
        let slot = cfg.max_message.max(64);
        let task_q = MpmcQueue::anonymous(slot, cap).map_err(io_err)?;
        let result_q = MpmcQueue::anonymous(slot, cap).map_err(io_err)?;
        let slots = ShmArray::<u64>::anonymous(n).map_err(io_err)?;
        let task_tx = task_q.sender().map_err(io_err)?;
        let window = if cfg.window == 0 { cap } else { cfg.window };
        let core = Arc::new(Core {
            cfg: Config { workers: n, ..cfg },
            state: StdMutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            cond: Condvar::new(),
            task_q,
            task_tx,
            result_q,
            slots,
            workers: StdMutex::new(Vec::new()),
            monitor: StdMutex::new(None),
            callback_thread: StdMutex::new(None),
            helper_rx: StdMutex::new((None, Vec::new())),
            helpers: std::sync::atomic::AtomicUsize::new(0),
            cpus: crate::os::cpu::available_cpus(),
            poll_credit: std::sync::atomic::AtomicU32::new(POLL_CREDIT_MAX),
            waits: std::sync::atomic::AtomicU32::new(0),
            sleepers: std::sync::atomic::AtomicUsize::new(0),
            window,
        });
        let rx = core.result_q.receiver().map_err(io_err)?;
        lock(&core.helper_rx).0 = Some(core.result_q.receiver().map_err(io_err)?);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let c = core.clone();
        let handle = std::thread::Builder::new()
            .name("shmkit-pool-monitor".into())
            .spawn(move || {
                let started =
                    (0..n).try_for_each(|i| c.spawn_worker(i).map(|w| lock(&c.workers).push(w)));
                let ok = started.is_ok();
                let _ = ready_tx.send(started);
                if ok {
                    c.monitor_loop(rx);
                }
            })
            .map_err(io_err)?;
        *lock(&core.monitor) = Some(handle);
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(core),
            Ok(Err(e)) => {
                core.terminate();
                Err(e)
            }
            Err(_) => {
                core.terminate();
                Err(TaskError::Spawn("the monitor thread died".into()))
            }
        }
    }

    /// Starts the worker for slot `index`.
    pub(super) fn spawn_worker(&self, index: usize) -> Result<Worker, TaskError> {
        let seg = |q: &MpmcQueue| -> Result<Shared<Segment>, TaskError> {
            let s = q
                .segment()
                .ok_or_else(|| TaskError::Spawn("queue has no segment".into()))?;
            Shared::new(s).map_err(io_err)
        };
        let args = WorkerArgs {
            task_q: seg(&self.task_q)?,
            result_q: seg(&self.result_q)?,
            slots: Shared::new(&self.slots).map_err(io_err)?,
            index: index as u32,
            initializer: self.cfg.initializer.clone(),
            max_tasks: self.cfg.max_tasks_per_child,
        };
        let k = {
            let mut st = lock(&self.state);
            st.spawned += 1;
            st.spawned
        };
        let p = crate::process::Process::builder()
            .name(format!("{}-{k}", self.cfg.name_prefix))
            .daemon(true)
            .spawn(&WORKER, &args)
            .map_err(io_err)?;
        tracing::debug!(pid = p.pid(), index, "started pool worker");
        Ok(Worker {
            pid: p.pid(),
            process: Some(p),
        })
    }

    /// Waits for all submitted work, then lets the workers exit and joins
    /// them and the monitor thread.
    pub(crate) fn join(&self) {
        self.wait_state(None, |st| {
            st.closed = true;
            let idle = st.terminated || st.dispatched.is_empty() && st.backlog.is_empty();
            if idle {
                st.stopping = true;
            }
            idle.then_some(())
        });
        self.task_q.close();
        self.join_monitor();
        self.join_callbacks();
        let workers = std::mem::take(&mut *lock(&self.workers));
        for w in workers {
            if let Some(p) = w.process {
                match p.join_timeout(Duration::from_secs(5)) {
                    Ok(Some(_)) => {}
                    _ => {
                        let _ = p.kill();
                        let _ = p.join();
                    }
                }
            }
        }
    }

    /// Joins the monitor thread (unless this is it).
    fn join_monitor(&self) {
        let h = lock(&self.monitor).take();
        if let Some(h) = h {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// Kills every worker now; unfinished tasks get `Terminated`.
    pub(crate) fn terminate(&self) {
        {
            let mut st = lock(&self.state);
            st.closed = true;
            st.stopping = true;
            st.terminated = true;
            Self::fail_outstanding(&mut st, TaskError::Terminated);
        }
        self.cond.notify_all();
        self.task_q.close();
        {
            let workers = lock(&self.workers);
            for p in workers.iter().filter_map(|w| w.process.as_ref()) {
                let _ = p.kill();
            }
        }
        self.join_monitor();
        self.join_callbacks();
        // The monitor may have started a replacement before it saw the flag.
        let workers = std::mem::take(&mut *lock(&self.workers));
        for p in workers.into_iter().filter_map(|w| w.process) {
            let _ = p.kill();
            let _ = p.join();
        }
    }
}
