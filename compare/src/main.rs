//! shmkit's public comparison suite: the same workloads through shmkit,
//! OS pipes, Unix sockets, ipc-channel, iceoryx2, shaq, crossbeam, rtrb
//! and Python multiprocessing, in interleaved rounds, written up as a
//! Markdown report with SVG plots. See README.md.

mod chans;
mod extra;
mod python;
mod report;
mod sys;
mod systems;
mod work;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use chans::Mode;
use sys::Placement;
use systems::Sys;

/// Run sizes for one mode of the suite.
#[derive(Clone, Debug)]
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    pub sizes: Vec<usize>,
    pub placements: Vec<Placement>,
    pub tp_bytes: u64,
    pub tp_max: u64,
    pub rt_n: u64,
    pub nxn: Vec<usize>,
    pub nxn_total: u64,
    pub lock_iters: u64,
    pub dict_keys: u64,
    pub dict_ops: u64,
    pub pool_workers: usize,
    pub pool_tasks: u64,
    pub pool_rounds: u64,
    pub pingpong_rounds: u64,
    pub scaling: bool,
    pub python: bool,
    /// Only the pair systems whose name contains this (and no other
    /// workloads): for checking one system.
    pub only: Option<String>,
}

impl Plan {
    fn new(quick: bool, cores: usize, force_scaling: bool, python: bool) -> Plan {
        let mut placements = vec![Placement::Unpinned];
        if cores >= 2 {
            placements.push(Placement::Pinned);
        }
        let nxn = if quick {
            let mut v = vec![1, cores];
            v.dedup();
            v
        } else {
            (1..=cores).collect()
        };
        Plan {
            quick,
            rounds: if quick { 2 } else { 5 },
            sizes: vec![8, 64, 4096, 65536],
            placements,
            tp_bytes: if quick { 32 << 20 } else { 256 << 20 },
            tp_max: if quick { 50_000 } else { 300_000 },
            rt_n: if quick { 5_000 } else { 100_000 },
            nxn,
            nxn_total: if quick { 200_000 } else { 2_000_000 },
            lock_iters: if quick { 100_000 } else { 1_000_000 },
            dict_keys: 1000,
            dict_ops: if quick { 200_000 } else { 2_000_000 },
            pool_workers: cores.max(2),
            pool_tasks: if quick { 2_000 } else { 10_000 },
            pool_rounds: if quick { 200 } else { 2_000 },
            pingpong_rounds: if quick { 20_000 } else { 200_000 },
            scaling: cores >= 8 || force_scaling,
            python,
            only: None,
        }
    }

    /// Messages for one throughput measurement at `size` bytes.
    pub fn tp_count(&self, size: usize) -> u64 {
        (self.tp_bytes / size as u64).clamp(500, self.tp_max)
    }
}

/// The progress line on stderr.
pub struct Progress {
    start: Instant,
    done: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[K[{:>4}/{}] {:>5.0}s  {what}",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let _ = e.flush();
    }
}

/// A throughput result.
pub struct TpRow {
    pub sys: Sys,
    pub size: usize,
    pub placement: Placement,
    pub rate: Result<work::Rate, String>,
}

/// A round-trip result.
pub struct RtRow {
    pub sys: Sys,
    pub mode: Mode,
    pub placement: Placement,
    pub samples: Result<Vec<f64>, String>,
}

/// Everything one round measured.
pub struct Round {
    pub order: Vec<Sys>,
    pub pingpong: Vec<(Placement, f64, f64)>,
    pub tp: Vec<TpRow>,
    pub rt: Vec<RtRow>,
    pub nxn: Vec<(extra::NxN, usize, Result<f64, String>)>,
    pub lock: Vec<(extra::LockSys, Result<f64, String>)>,
    pub dict: Result<extra::DictNs, String>,
    pub pool: Result<extra::PoolNs, String>,
    pub python: Result<serde_json::Value, String>,
}

/// The 1→8 pairs scaling run.
pub struct Scaling {
    pub rows: Vec<(Sys, usize, Result<f64, String>)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: shmkit-compare [--quick] [--out FILE] [--no-python] [--scaling]\n\
         \n  --quick      small counts, 2 rounds (about 3 minutes on 2 cores)\n\
         \n  --out FILE   report path (default compare/RESULTS.md); plots go beside it\n\
         \n  --no-python  skip the Python multiprocessing scripts\n\
         \n  --only NAME  only the queue systems whose name contains NAME (no other workloads)\n\
         \n  --scaling    run the 1→8 pairs scaling run even with fewer than 8 cores"
    );
    std::process::exit(2);
}

fn main() {
    // Pool workers are re-executions of this binary: let them start here.
    shmkit::process::init();
    // iceoryx2 warns on every node that it runs without a config file.
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    let mut quick = false;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md"));
    let mut python = true;
    let mut force_scaling = false;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--full" => quick = false,
            "--no-python" => python = false,
            "--scaling" => force_scaling = true,
            "--only" => only = Some(args.next().unwrap_or_else(|| usage())),
            "--out" => out = PathBuf::from(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let machine = sys::Machine::probe();
    let mut plan = Plan::new(
        quick,
        machine.cores,
        force_scaling,
        python && only.is_none(),
    );
    plan.only = only;
    let python_skip = if !plan.python {
        Some("skipped with --no-python".to_string())
    } else if machine.python.is_none() {
        Some("python3 not found on PATH".to_string())
    } else {
        None
    };
    if let Some(why) = &python_skip {
        eprintln!("Python multiprocessing: {why}");
    }
    let started = Instant::now();
    let picked: Vec<Sys> = systems::ALL
        .iter()
        .copied()
        .filter(|s| {
            plan.only
                .as_ref()
                .is_none_or(|o| s.name().contains(o.as_str()))
        })
        .collect();
    let extras = if plan.only.is_some() {
        0
    } else {
        plan.nxn.len() * 3 + 4 + 2 + usize::from(python_skip.is_none())
    };
    let per_round = plan.placements.len() * (1 + picked.len() * plan.sizes.len())
        + plan.placements.len()
            * picked
                .iter()
                .map(|s| systems::rt_modes(*s).len())
                .sum::<usize>()
        + extras;
    let scaling_steps = if plan.scaling {
        2 * (8.min(machine.cores / 2).max(1).ilog2() as usize + 1)
    } else {
        0
    };
    let mut progress = Progress {
        start: started,
        done: 0,
        total: per_round * plan.rounds + scaling_steps,
    };
    let mut rounds = Vec::new();
    for r in 0..plan.rounds {
        rounds.push(run_round(r, &plan, python_skip.is_none(), &mut progress));
    }
    let scaling = plan.scaling.then(|| run_scaling(&plan, &mut progress));
    eprintln!(
        "\r\x1b[Kdone in {:.0} s; writing {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    let wall = started.elapsed();
    if let Err(e) = report::write(
        &out,
        &plan,
        &machine,
        &rounds,
        scaling.as_ref(),
        wall,
        python_skip.as_deref(),
    ) {
        eprintln!("cannot write the report: {e}");
        std::process::exit(1);
    }
}

/// Runs one measurement; a panic (a peer that broke a watchdog, an
/// unexpected error from a system) becomes that measurement's error
/// instead of ending the suite, and any pinning it left is undone.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            sys::pin(None);
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

fn run_round(r: usize, plan: &Plan, python: bool, p: &mut Progress) -> Round {
    let mut order: Vec<Sys> = systems::ALL
        .iter()
        .copied()
        .filter(|s| {
            plan.only
                .as_ref()
                .is_none_or(|o| s.name().contains(o.as_str()))
        })
        .collect();
    let k = r % order.len().max(1);
    order.rotate_left(k);
    let tag = format!("round {}/{}", r + 1, plan.rounds);
    let mut pingpong = Vec::new();
    for &pl in &plan.placements {
        p.step(&format!("{tag} cache-line ping-pong {}", pl.label()));
        pingpong.push((pl, sys::pingpong_ns(plan.pingpong_rounds, pl), 0.0));
    }
    let mut tp = Vec::new();
    for &pl in &plan.placements {
        for &sys in &order {
            for &size in &plan.sizes {
                p.step(&format!(
                    "{tag} throughput {} {size} B {}",
                    sys.name(),
                    pl.label()
                ));
                let rate = guarded(|| systems::throughput(sys, size, plan.tp_count(size), pl));
                tp.push(TpRow {
                    sys,
                    size,
                    placement: pl,
                    rate,
                });
            }
        }
    }
    let mut rt = Vec::new();
    for &pl in &plan.placements {
        for &sys in &order {
            for &mode in systems::rt_modes(sys) {
                p.step(&format!(
                    "{tag} round trip {} {mode:?} {}",
                    sys.name(),
                    pl.label()
                ));
                let samples = guarded(|| systems::roundtrip(sys, mode, plan.rt_n, pl));
                rt.push(RtRow {
                    sys,
                    mode,
                    placement: pl,
                    samples,
                });
            }
        }
    }
    let mut nxn = Vec::new();
    let mut lock = Vec::new();
    if plan.only.is_some() {
        return Round {
            order,
            pingpong,
            tp,
            rt,
            nxn,
            lock,
            dict: Err("skipped (--only)".into()),
            pool: Err("skipped (--only)".into()),
            python: Err("skipped (--only)".into()),
        };
    }
    let mut nsys = [
        extra::NxN::ShmMpmc,
        extra::NxN::ShmQueueU64,
        extra::NxN::CbArray,
    ];
    nsys.rotate_left(r % 3);
    for &n in &plan.nxn {
        for &s in &nsys {
            p.step(&format!("{tag} {n}×{n} {}", s.name()));
            nxn.push((s, n, guarded(|| extra::nxn(s, n, plan.nxn_total))));
        }
    }
    let mut lsys = [
        extra::LockSys::ShmLock,
        extra::LockSys::PthreadShared,
        extra::LockSys::ParkingLot,
        extra::LockSys::StdMutex,
    ];
    lsys.rotate_left(r % 4);
    for s in lsys {
        p.step(&format!("{tag} lock hand-off {}", s.name()));
        lock.push((s, guarded(|| extra::lock_handoff(s, plan.lock_iters))));
    }
    p.step(&format!("{tag} dict"));
    let dict = guarded(|| extra::dict(plan.dict_keys, plan.dict_ops));
    p.step(&format!("{tag} pool"));
    let pool = guarded(|| extra::pool(plan.pool_workers, plan.pool_tasks, plan.pool_rounds));
    let python = if python {
        p.step(&format!("{tag} Python multiprocessing"));
        python::run(plan)
    } else {
        Err("skipped".into())
    };
    // The ping-pong again at the end of the round: the state may drift.
    for (pl, _, end) in pingpong.iter_mut() {
        *end = sys::pingpong_ns(plan.pingpong_rounds, *pl);
    }
    Round {
        order,
        pingpong,
        tp,
        rt,
        nxn,
        lock,
        dict,
        pool,
        python,
    }
}

fn run_scaling(plan: &Plan, p: &mut Progress) -> Scaling {
    let mut rows = Vec::new();
    let max_pairs = 8.min(sys::online_cpus() / 2).max(1);
    let mut k = 1;
    while k <= max_pairs {
        for sys in [Sys::ShmSpsc, Sys::Pipe] {
            p.step(&format!("scaling {k} pairs {}", sys.name()));
            rows.push((sys, k, guarded(|| scaling_run(sys, k, plan.tp_count(64)))));
        }
        k *= 2;
    }
    Scaling { rows }
}

/// `k` independent pairs at once, each a forked driver with its own forked
/// peer, 64-byte messages; returns the summed rate.
fn scaling_run(sys: Sys, k: usize, count: u64) -> Result<f64, String> {
    let slots = sys::shared_map(4096).cast::<std::sync::atomic::AtomicU64>();
    let kids: Vec<sys::Child> = (0..k)
        .map(|i| {
            sys::Child::fork(move || {
                let rate = systems::throughput(sys, 64, count, Placement::Unpinned)
                    .map(|r| r.msgs_per_s)
                    .unwrap_or(f64::NAN);
                // SAFETY: slot `i` (< 8) lies in the 4096-byte shared page.
                unsafe { &*slots.add(i) }
                    .store(rate.to_bits(), std::sync::atomic::Ordering::Release);
            })
        })
        .collect();
    for c in kids {
        c.join()?;
    }
    let mut sum = 0.0;
    for i in 0..k {
        // SAFETY: as above; every writer has exited.
        let v =
            f64::from_bits(unsafe { &*slots.add(i) }.load(std::sync::atomic::Ordering::Acquire));
        if v.is_nan() {
            return Err(format!("pair {i} failed"));
        }
        sum += v;
    }
    // SAFETY: our own page; nobody uses it any more.
    unsafe { libc::munmap(slots.cast(), 4096) };
    Ok(sum)
}
