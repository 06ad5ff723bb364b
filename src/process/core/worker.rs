//! The worker process: attaches the pool's queues, runs the initializer,
//! then takes one task chunk at a time, runs it (catching panics) and sends
//! back its result, naming the task in its slot while it holds it.

use serde::{Deserialize, Serialize};

use crate::process::handoff::Shared;
use crate::process::spawn::panic_message;
use crate::process::task;
use std::time::{Duration, Instant};

use crate::queue::error::TryRecvError;
use crate::queue::{MpmcQueue, MpmcReceiver};
use crate::segment::{OpenOptions, Segment};
use crate::sync::ShmArray;

/// What a worker gets in its spawn arguments.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerArgs {
    pub(super) task_q: Shared<Segment>,
    pub(super) result_q: Shared<Segment>,
    pub(super) slots: Shared<ShmArray<u64>>,
    pub(super) index: u32,
    pub(super) initializer: Option<(String, Vec<u8>)>,
    pub(super) max_tasks: u64,
}

crate::entry! {
    /// The pool worker loop.
    pub(super) static WORKER: Entry<WorkerArgs> = worker_main;
}

thread_local! {
    /// Whether this thread is running a task (whose panics are caught and
    /// reported as the task's error, not as the process's fate).
    static IN_TASK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The worker's entry: runs [`serve`] on a thread of its own.
fn worker_main(args: WorkerArgs) -> i32 {
    // Tasks run on a thread of their own: the spawn layer's panic hook
    // reports panics of the entry thread to the parent as the process's
    // fate, and a caught task panic is not that.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TASK.with(|c| c.get()) {
            prev(info);
        }
    }));
    match std::thread::Builder::new()
        .name("shmkit-worker".into())
        .spawn(move || serve(args))
    {
        Ok(h) => h.join().unwrap_or(101),
        Err(e) => {
            eprintln!("shmkit pool worker: cannot start its thread: {e}");
            1
        }
    }
}

/// Runs one chunk, appending its body (encoded results, or an error text)
/// to `out`; returns the status byte.
fn run_chunk(name: &str, payload: &[u8], count: u32, out: &mut Vec<u8>) -> u8 {
    let start = out.len();
    let Some(run) = task::lookup(name) else {
        out.extend_from_slice(
            format!("no task named {name:?} is registered in this binary").as_bytes(),
        );
        return task::STATUS_FAILED;
    };
    IN_TASK.with(|c| c.set(true));
    let mut body = std::mem::take(out);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(payload, count, &mut body)
    }));
    IN_TASK.with(|c| c.set(false));
    *out = body;
    let (status, text) = match r {
        Ok(Ok(())) => return task::STATUS_OK,
        Ok(Err(e)) => (task::STATUS_FAILED, e),
        Err(p) => (task::STATUS_PANICKED, panic_message(&*p)),
    };
    out.truncate(start);
    out.extend_from_slice(text.as_bytes());
    status
}

/// How long an idle worker polls the task queue before it blocks.
const WORKER_SPIN: Duration = Duration::from_micros(50);

/// Polls `rx` for up to [`WORKER_SPIN`], passing a message to `take`;
/// `None` when none came (or the queue needs the blocking path to report
/// why it failed).
fn poll_briefly(
    rx: &MpmcReceiver,
    take: &mut impl FnMut(&[u8]),
) -> Option<Result<(), crate::queue::RecvError>> {
    // On one CPU the submitter cannot run while this polls: block at once.
    static ALONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ALONE.get_or_init(|| crate::os::cpu::available_cpus() < 2) {
        return None;
    }
    // The same adaptive credit as the parent's waiters: polling pays when
    // the next task comes before the first yield.
    thread_local! {
        static CREDIT: std::cell::Cell<(u32, u32)> =
            const { std::cell::Cell::new((super::POLL_CREDIT_MAX, 0)) };
    }
    let (credit, polls) = CREDIT.with(|c| c.get());
    if credit == 0 && polls % 16 != 0 {
        CREDIT.with(|c| c.set((0, polls.wrapping_add(1))));
        return None;
    }
    let settle = |paid: bool| {
        let c = if paid {
            (credit + 1).min(super::POLL_CREDIT_MAX)
        } else {
            credit.saturating_sub(2)
        };
        CREDIT.with(|cell| cell.set((c, polls.wrapping_add(1))));
    };
    let until = Instant::now() + WORKER_SPIN;
    let mut rounds = 0u32;
    loop {
        match rx.try_recv_with(&mut *take) {
            Ok(()) => {
                settle(rounds < super::FREE_ROUNDS);
                return Some(Ok(()));
            }
            Err(TryRecvError::Empty) => {}
            Err(_) => return None,
        }
        rounds += 1;
        if rounds % super::FREE_ROUNDS == 0 {
            if Instant::now() >= until {
                settle(false);
                return None;
            }
            std::thread::yield_now();
        } else {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        }
    }
}

/// The worker loop; returns the worker's exit code.
fn serve(args: WorkerArgs) -> i32 {
    let attach = || -> Result<_, Box<dyn std::error::Error>> {
        let task_q = MpmcQueue::from_segment(args.task_q.attach()?, &OpenOptions::new())?;
        let result_q = MpmcQueue::from_segment(args.result_q.attach()?, &OpenOptions::new())?;
        let slots = args.slots.attach()?;
        Ok((
            task_q.receiver()?,
            result_q.sender()?,
            result_q.slot_size(),
            slots,
        ))
    };
    let (rx, tx, max_out, slots) = match attach() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("shmkit pool worker: cannot attach the pool's queues: {e}");
            return 2;
        }
    };
    let idx = args.index as usize;
    if idx >= slots.len() {
        eprintln!("shmkit pool worker: index {idx} out of range");
        return 2;
    }
    if let Some((name, bytes)) = &args.initializer {
        let mut out = Vec::new();
        if run_chunk(name, bytes, 1, &mut out) != task::STATUS_OK {
            eprintln!(
                "shmkit pool worker: initializer failed: {}",
                String::from_utf8_lossy(&out)
            );
            return 3;
        }
    }
    tracing::debug!("pool worker ready");
    let mut served = 0u64;
    let mut msg = Vec::new();
    let mut reply = Vec::new();
    loop {
        slots.set(idx, 0);
        let mut take = |b: &[u8]| {
            // Name the task before the claim is released: if we die from
            // here on, the parent knows which task it was.
            slots.set(idx, task::message_id(b));
            msg.clear();
            msg.extend_from_slice(b);
        };
        // More work is likely right after a task: poll for a short while
        // before blocking (a parked worker costs the submitter a futex
        // wake and the task a cross-CPU wake-up).
        let got = match poll_briefly(&rx, &mut take) {
            Some(r) => r,
            None => rx.recv_with(&mut take),
        };
        match got {
            Ok(()) => {}
            Err(crate::queue::RecvError::Disconnected) => return 0,
            Err(e) => {
                eprintln!("shmkit pool worker: task queue failed: {e}");
                return 2;
            }
        }
        // Reply: id, status byte, then the body written in place.
        reply.clear();
        reply.extend_from_slice(&task::message_id(&msg).to_le_bytes());
        reply.push(0);
        let status = match task::parse_task(&msg) {
            Ok(t) => run_chunk(t.name, t.payload, t.count, &mut reply),
            Err(e) => {
                reply.extend_from_slice(e.as_bytes());
                task::STATUS_FAILED
            }
        };
        reply[8] = status;
        if reply.len() > max_out {
            let text = format!(
                "the encoded result is {} bytes, the transport carries at most {max_out}; raise max_message_size or lower chunksize",
                reply.len()
            );
            reply.truncate(9);
            reply[8] = task::STATUS_FAILED;
            reply.extend_from_slice(text.as_bytes());
            reply.truncate(max_out);
        }
        if tx.send(&reply).is_err() {
            return 0; // the parent is gone
        }
        slots.set(idx, 0);
        served += 1;
        if args.max_tasks != 0 && served >= args.max_tasks {
            return 0;
        }
    }
}
