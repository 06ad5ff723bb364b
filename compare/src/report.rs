//! Writes the Markdown report and its SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;

use crate::chans::Mode;
use crate::extra::{LockSys, NxN};
use crate::sys::{median, quantile, Machine, Placement};
use crate::systems::{self, Sys};
use crate::{Plan, Round, Scaling};

fn med(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    (!v.is_empty()).then(|| median(&mut v))
}

fn rate(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G/s", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M/s", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k/s", x / 1e3)
    } else {
        format!("{x:.0} /s")
    }
}

fn ns(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} ms", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} µs", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.2} µs", x / 1e3)
    } else {
        format!("{x:.0} ns")
    }
}

fn size_label(s: usize) -> String {
    if s >= 1024 {
        format!("{} KiB", s / 1024)
    } else {
        format!("{s} B")
    }
}

fn tp_of(r: &Round, sys: Sys, size: usize, pl: Placement) -> Option<f64> {
    r.tp.iter()
        .find(|t| t.sys == sys && t.size == size && t.placement == pl)
        .and_then(|t| t.rate.as_ref().ok())
        .map(|x| x.msgs_per_s)
}

fn py_f(r: &Round, path: &[&str]) -> Option<f64> {
    let mut v = r.python.as_ref().ok()?;
    for k in path {
        v = v.get(k)?;
    }
    v.as_f64()
}

/// Median over rounds of `value`, and median over rounds of `value / base`
/// (both from the same round).
fn med_ratio(
    rounds: &[Round],
    value: impl Fn(&Round) -> Option<f64>,
    base: impl Fn(&Round) -> Option<f64>,
) -> (Option<f64>, Option<f64>) {
    let vals: Vec<f64> = rounds.iter().filter_map(&value).collect();
    let ratios: Vec<f64> = rounds
        .iter()
        .filter_map(|r| Some(value(r)? / base(r)?))
        .collect();
    (med(vals), med(ratios))
}

fn cell(v: Option<f64>, ratio: Option<f64>, fmt: fn(f64) -> String) -> String {
    match (v, ratio) {
        (Some(v), Some(r)) => format!("{} · {r:.2}×", fmt(v)),
        (Some(v), None) => fmt(v),
        _ => "failed".into(),
    }
}

/// Writes the report to `out` and the plots beside it.
#[allow(clippy::too_many_arguments)]
pub fn write(
    out: &Path,
    plan: &Plan,
    m: &Machine,
    rounds: &[Round],
    scaling: Option<&Scaling>,
    wall: Duration,
    python_skip: Option<&str>,
) -> Result<(), String> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "RESULTS".into());
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let tp_svg = format!("{stem}-throughput.svg");
    let lat_svg = format!("{stem}-latency.svg");
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# shmkit comparison suite — results\n");
    let _ = writeln!(
        w,
        "Written by `compare/` ({} mode, {} rounds, {:.0} s wall). Re-run: see compare/README.md.\n",
        if plan.quick { "`--quick`" } else { "full" },
        plan.rounds,
        wall.as_secs_f64()
    );
    if plan.quick {
        let _ = writeln!(
            w,
            "> **Quick mode**: small counts and two rounds. Figures are noisy (and on a machine \
             shared with other jobs, more so); use them to check the suite runs, not to decide.\n"
        );
    }
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(
        w,
        "| CPU | online cores | kernel | Python |\n|---|---|---|---|"
    );
    let _ = writeln!(
        w,
        "| {} | {} | {} | {} |\n",
        m.cpu,
        m.cores,
        m.kernel,
        m.python.as_deref().unwrap_or("not found")
    );
    let _ = writeln!(w, "## How it is measured\n");
    let _ = writeln!(
        w,
        "- Every system runs in **real separate processes** (the peer is `fork`ed after the driver \
         built what it shares; named services are opened by name in each process), except the \
         in-process ceilings (rtrb, crossbeam), which run on two threads.\n\
         - **Interleaved rounds**: each round runs every system once per workload; the system \
         order rotates by one each round. A **ratio** (`·  N×`) is computed within one round \
         (same machine state) and the table shows the median over rounds of the ratio, next to \
         the median over rounds of the absolute figure.\n\
         - The **cache-line ping-pong** (one atomic bounced between two processes, median of \
         16-round-trip batches) is measured at the start and end of every round in each \
         placement: it is the floor for any cross-process round trip in that machine state.\n\
         - **Placement**: `unpinned` leaves both sides to the scheduler; `pinned` puts the \
         driver on CPU 0 and the peer on CPU 1 with `sched_setaffinity` (only where cores ≥ 2). \
         Python runs unpinned.\n\
         - Every message carries its sequence number; receivers check count, order, length \
         and a sum of sequence numbers, so a figure from a run that lost or duplicated a \
         message is reported as `failed` instead.\n\
         - Throughput is one way, timed from the receiver's ready signal to its last receive; \
         each queue holds the same number of messages in flight (1 MiB / size, 16 to 1024). \
         Round trips are 8-byte messages, each timed alone after a warm-up.\n"
    );
    let _ = writeln!(w, "| system | how its ends are driven |\n|---|---|");
    for sys in systems::ALL {
        let _ = writeln!(w, "| {} | {} |", sys.name(), sys.how());
    }
    let _ = writeln!(
        w,
        "| Python multiprocessing | `compare/python/mp_bench.py`, run once per round by the suite \
         (bytes messages for Queue/Pipe, `send_bytes`/`recv_bytes` for Pipe){} |\n",
        match python_skip {
            Some(why) => format!("; **not run: {why}**"),
            None => rounds
                .iter()
                .find_map(|r| r.python.as_ref().ok()?.get("start_method")?.as_str())
                .map(|m| format!("; start method `{m}`"))
                .unwrap_or_default(),
        }
    );

    let _ = writeln!(w, "## Cache-line ping-pong per round\n");
    let _ = writeln!(w, "| round | placement | start | end |\n|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        for (pl, a, b) in &r.pingpong {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} |",
                i + 1,
                pl.label(),
                ns(*a),
                ns(*b)
            );
        }
    }
    let _ = writeln!(w);

    // Throughput.
    for &pl in &plan.placements {
        let _ = writeln!(
            w,
            "## Throughput, one way ({})\n\nMessages per second · ratio to the OS pipe in the same round.\n",
            pl.label()
        );
        let _ = write!(w, "| system |");
        for &sz in &plan.sizes {
            let _ = write!(w, " {} |", size_label(sz));
        }
        let _ = write!(w, "\n|---|");
        for _ in &plan.sizes {
            let _ = write!(w, "---|");
        }
        let _ = writeln!(w);
        for sys in systems::ALL {
            if !rounds.iter().any(|r| r.tp.iter().any(|t| t.sys == sys)) {
                continue;
            }
            let _ = write!(w, "| {} |", sys.name());
            for &sz in &plan.sizes {
                let (v, r) = med_ratio(
                    rounds,
                    |r| tp_of(r, sys, sz, pl),
                    |r| tp_of(r, Sys::Pipe, sz, pl),
                );
                let _ = write!(w, " {} |", cell(v, r, rate));
            }
            let _ = writeln!(w);
        }
        if pl == Placement::Unpinned && python_skip.is_none() {
            for (label, key) in [
                ("Python mp.Queue (bytes)", "queue_tp"),
                ("Python mp.Pipe (send_bytes)", "pipe_tp"),
            ] {
                let _ = write!(w, "| {label} |");
                for &sz in &plan.sizes {
                    let k = sz.to_string();
                    let (v, r) = med_ratio(
                        rounds,
                        |r| py_f(r, &[key, &k]),
                        |r| tp_of(r, Sys::Pipe, sz, pl),
                    );
                    let _ = write!(w, " {} |", cell(v, r, rate));
                }
                let _ = writeln!(w);
            }
        }
        let lossy_ran = rounds
            .iter()
            .any(|r| r.tp.iter().any(|t| t.sys == Sys::IoxLossy));
        if lossy_ran {
            let _ = write!(
                w,
                "\niceoryx2 lossy, fraction of samples lost (median over rounds):"
            );
        }
        for &sz in plan.sizes.iter().filter(|_| lossy_ran) {
            let loss: Vec<f64> = rounds
                .iter()
                .filter_map(|r| {
                    r.tp.iter()
                        .find(|t| t.sys == Sys::IoxLossy && t.size == sz && t.placement == pl)
                        .and_then(|t| t.rate.as_ref().ok())
                        .map(|x| x.loss)
                })
                .collect();
            match med(loss) {
                Some(l) => {
                    let _ = write!(w, " {}: {:.1} %;", size_label(sz), l * 100.0);
                }
                None => {
                    let _ = write!(w, " {}: failed;", size_label(sz));
                }
            }
        }
        let _ = writeln!(w, "\n");
    }
    if python_skip.is_none() {
        let (v, r) = med_ratio(
            rounds,
            |r| py_f(r, &["queue_int_tp"]),
            |r| nxn_of(r, NxN::ShmQueueU64, 1),
        );
        let _ = writeln!(
            w,
            "Python `mp.Queue` of ints (the API the seeds use), one producer and one consumer process: {} \
             (shmkit typed `Queue<u64>` 1×1 across processes, below, is {} that in the same round).\n",
            v.map(rate).unwrap_or_else(|| "failed".into()),
            r.map(|r| format!("{:.0}×", 1.0 / r)).unwrap_or_else(|| "?".into())
        );
    }
    let _ = writeln!(w, "![throughput vs message size]({tp_svg})\n");

    // Round trips.
    for &pl in &plan.placements {
        let _ = writeln!(
            w,
            "## Round trips, 8 B ({})\n\nMedian over rounds of each round's quantiles · median ÷ that round's ping-pong.\n",
            pl.label()
        );
        let _ = writeln!(
            w,
            "| system | wait | median | p99 | p99.9 | median ÷ ping-pong |\n|---|---|---|---|---|---|"
        );
        for sys in systems::ALL {
            if !rounds.iter().any(|r| r.rt.iter().any(|t| t.sys == sys)) {
                continue;
            }
            for &mode in systems::rt_modes(sys) {
                let q = |r: &Round, x: f64| -> Option<f64> {
                    let row =
                        r.rt.iter()
                            .find(|t| t.sys == sys && t.mode == mode && t.placement == pl)?;
                    let mut v = row.samples.as_ref().ok()?.clone();
                    Some(quantile(&mut v, x))
                };
                let pp = |r: &Round| r.pingpong.iter().find(|p| p.0 == pl).map(|p| p.1);
                let (m50, ratio) = med_ratio(rounds, |r| q(r, 0.5), pp);
                let m99 = med(rounds.iter().filter_map(|r| q(r, 0.99)).collect());
                let m999 = med(rounds.iter().filter_map(|r| q(r, 0.999)).collect());
                let f = |x: Option<f64>| x.map(ns).unwrap_or_else(|| "failed".into());
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} |",
                    sys.name(),
                    mode_label(mode),
                    f(m50),
                    f(m99),
                    f(m999),
                    ratio.map(|r| format!("{r:.1}×")).unwrap_or_default()
                );
            }
        }
        if pl == Placement::Unpinned && python_skip.is_none() {
            for (label, key) in [
                ("Python mp.Pipe", "pipe_rt"),
                ("Python mp.Queue", "queue_rt"),
            ] {
                let g = |k: &str| med(rounds.iter().filter_map(|r| py_f(r, &[key, k])).collect());
                let f = |x: Option<f64>| x.map(ns).unwrap_or_else(|| "failed".into());
                let _ = writeln!(
                    w,
                    "| {label} | blocking | {} | {} | {} | |",
                    f(g("median")),
                    f(g("p99")),
                    f(g("p999"))
                );
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "![round-trip latency distribution]({lat_svg})\n");

    // N×N.
    let _ = writeln!(
        w,
        "## N producers × N consumers, 8-byte messages\n\nMessages per second through one shared queue (unpinned).\n"
    );
    let _ = write!(w, "| system |");
    for n in &plan.nxn {
        let _ = write!(w, " {n}×{n} |");
    }
    let _ = write!(w, "\n|---|");
    for _ in &plan.nxn {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w);
    for s in [NxN::ShmMpmc, NxN::ShmQueueU64, NxN::CbArray] {
        let _ = write!(w, "| {} |", s.name());
        for &n in &plan.nxn {
            let (v, r) = med_ratio(rounds, |r| nxn_of(r, s, n), |r| nxn_of(r, NxN::CbArray, n));
            let _ = write!(w, " {} |", cell(v, r, rate));
        }
        let _ = writeln!(w);
    }
    if python_skip.is_none() {
        let _ = write!(w, "| Python mp.Queue (ints) |");
        for &n in &plan.nxn {
            let k = n.to_string();
            let v = med(rounds
                .iter()
                .filter_map(|r| py_f(r, &["nxn", &k]))
                .collect());
            let _ = write!(w, " {} |", v.map(rate).unwrap_or_else(|| "failed".into()));
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "\nRatios are to crossbeam `ArrayQueue` (threads) in the same round.\n"
    );

    // Locks.
    let _ = writeln!(
        w,
        "## Lock hand-off\n\nTwo contenders each take the lock and bump a counter under it; \
         time per acquisition · ratio to `std::sync::Mutex` (threads) in the same round.\n"
    );
    let _ = writeln!(w, "| lock | per acquisition |\n|---|---|");
    for s in [
        LockSys::ShmLock,
        LockSys::PthreadShared,
        LockSys::ParkingLot,
        LockSys::StdMutex,
    ] {
        let (v, r) = med_ratio(rounds, |r| lock_of(r, s), |r| lock_of(r, LockSys::StdMutex));
        let _ = writeln!(w, "| {} | {} |", s.name(), cell(v, r, ns));
    }
    if python_skip.is_none() {
        let (v, r) = med_ratio(
            rounds,
            |r| py_f(r, &["lock_ns"]),
            |r| lock_of(r, LockSys::StdMutex),
        );
        let _ = writeln!(w, "| Python mp.Lock (processes) | {} |", cell(v, r, ns));
    }
    let _ = writeln!(w);

    // Dict.
    let _ = writeln!(
        w,
        "## Shared dict\n\n{} 8-byte keys, 8-byte values; time per operation, one process at a time.\n",
        plan.dict_keys
    );
    let d = |f: fn(&crate::extra::DictNs) -> f64| {
        med(rounds
            .iter()
            .filter_map(|r| r.dict.as_ref().ok().map(f))
            .collect())
    };
    let f = |x: Option<f64>| x.map(ns).unwrap_or_else(|| "failed".into());
    let _ = writeln!(
        w,
        "| operation | shmkit ShmDict | ShmDict, from a forked peer | Mutex<HashMap> (in-process) | Python Manager dict |\n|---|---|---|---|---|"
    );
    let pyd = |k: &str| {
        med(rounds
            .iter()
            .filter_map(|r| py_f(r, &["manager_dict", k]))
            .collect())
    };
    let _ = writeln!(
        w,
        "| get | {} | {} | {} | {} |",
        f(d(|x| x.shm_get)),
        f(d(|x| x.shm_get_peer)),
        f(d(|x| x.mutex_map_get)),
        f(pyd("get_ns"))
    );
    let _ = writeln!(
        w,
        "| set | {} | | {} | {} |\n",
        f(d(|x| x.shm_set)),
        f(d(|x| x.mutex_map_set)),
        f(pyd("set_ns"))
    );

    // Pool.
    let _ = writeln!(
        w,
        "## Process pool\n\n{} workers, a task that adds one to a `u64`.\n",
        plan.pool_workers
    );
    let p = |f: fn(&crate::extra::PoolNs) -> f64| {
        med(rounds
            .iter()
            .filter_map(|r| r.pool.as_ref().ok().map(f))
            .collect())
    };
    let pyp = |k: &str| {
        med(rounds
            .iter()
            .filter_map(|r| py_f(r, &["pool", k]))
            .collect())
    };
    let rf = |x: Option<f64>| x.map(rate).unwrap_or_else(|| "failed".into());
    let _ = writeln!(
        w,
        "| measure | shmkit Pool | Python mp.Pool | Python ProcessPoolExecutor |\n|---|---|---|---|"
    );
    let _ = writeln!(
        w,
        "| tiny tasks, `imap_unordered` / `map`, chunksize 1 (tasks/s) | {} | {} | {} |",
        rf(p(|x| x.imap_tasks_per_s)),
        rf(pyp("imap_tasks_per_s")),
        rf(pyp("executor_map_tasks_per_s"))
    );
    let _ = writeln!(
        w,
        "| one task round trip (`apply_async().get()` / `submit().result()`), median | {} | {} | {} |\n",
        f(p(|x| x.apply_async_ns)),
        f(pyp("apply_async_ns")),
        f(pyp("executor_submit_ns"))
    );

    if let Some(sc) = scaling {
        let _ = writeln!(
            w,
            "## Scaling: 1 → 8 independent pairs ({}, {} cores)\n\nSummed messages per second, 64-byte messages, unpinned.\n",
            m.cpu, m.cores
        );
        let _ = writeln!(w, "| pairs | system | total |\n|---|---|---|");
        for (sys, k, r) in &sc.rows {
            let v = r
                .as_ref()
                .map(|x| rate(*x))
                .unwrap_or_else(|e| format!("failed: {e}"));
            let _ = writeln!(w, "| {k} | {} | {v} |", sys.name());
        }
        let _ = writeln!(w);
    }

    // Failures, verbatim.
    let mut fails = Vec::new();
    for (i, r) in rounds.iter().enumerate() {
        for t in &r.tp {
            if let Err(e) = &t.rate {
                fails.push(format!(
                    "round {}: throughput {} {} {}: {e}",
                    i + 1,
                    t.sys.name(),
                    size_label(t.size),
                    t.placement.label()
                ));
            }
        }
        for t in &r.rt {
            if let Err(e) = &t.samples {
                fails.push(format!(
                    "round {}: round trip {} {} {}: {e}",
                    i + 1,
                    t.sys.name(),
                    mode_label(t.mode),
                    t.placement.label()
                ));
            }
        }
        for (s, n, x) in &r.nxn {
            if let Err(e) = x {
                fails.push(format!("round {}: {n}×{n} {}: {e}", i + 1, s.name()));
            }
        }
        for (s, x) in &r.lock {
            if let Err(e) = x {
                fails.push(format!("round {}: lock {}: {e}", i + 1, s.name()));
            }
        }
        if let Err(e) = &r.dict {
            fails.push(format!("round {}: dict: {e}", i + 1));
        }
        if let Err(e) = &r.pool {
            fails.push(format!("round {}: pool: {e}", i + 1));
        }
        if python_skip.is_none() {
            if let Err(e) = &r.python {
                fails.push(format!("round {}: Python: {e}", i + 1));
            }
        }
    }
    let _ = writeln!(w, "## Failed measurements\n");
    if fails.is_empty() {
        let _ = writeln!(w, "None.");
    } else {
        for f in fails {
            let _ = writeln!(w, "- {}", f.replace('\n', " "));
        }
    }
    let _ = writeln!(w, "\nSystem order per round: ");
    for (i, r) in rounds.iter().enumerate() {
        let names: Vec<&str> = r.order.iter().map(|s| s.name()).collect();
        let _ = writeln!(w, "{}. {}", i + 1, names.join(", "));
    }

    std::fs::write(out, s).map_err(|e| format!("{}: {e}", out.display()))?;
    plot_throughput(&dir.join(&tp_svg), plan, rounds)?;
    plot_latency(&dir.join(&lat_svg), rounds)?;
    Ok(())
}

fn mode_label(m: Mode) -> &'static str {
    match m {
        Mode::Busy => "busy-poll",
        Mode::Block => "blocking",
    }
}

fn nxn_of(r: &Round, s: NxN, n: usize) -> Option<f64> {
    r.nxn
        .iter()
        .find(|x| x.0 == s && x.1 == n)
        .and_then(|x| x.2.as_ref().ok().copied())
}

fn lock_of(r: &Round, s: LockSys) -> Option<f64> {
    r.lock
        .iter()
        .find(|x| x.0 == s)
        .and_then(|x| x.1.as_ref().ok().copied())
}

fn perr<E: std::fmt::Debug>(e: E) -> String {
    format!("plot: {e:?}")
}

/// Twenty well-separated colours (shmkit's series take the first five).
const COLORS: [(u8, u8, u8); 20] = [
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (23, 190, 207),
    (188, 189, 34),
    (227, 119, 194),
    (0, 0, 0),
    (174, 199, 232),
    (152, 223, 138),
    (255, 187, 120),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (158, 218, 229),
    (219, 219, 141),
    (57, 59, 121),
];

fn style(i: usize, name: &str) -> ShapeStyle {
    let (r, g, b) = COLORS[i % COLORS.len()];
    let width = if name.starts_with("shmkit") { 3 } else { 1 };
    RGBColor(r, g, b).stroke_width(width)
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

fn plot_throughput(path: &PathBuf, plan: &Plan, rounds: &[Round]) -> Result<(), String> {
    let mut series: Series = Vec::new();
    for sys in systems::ALL {
        let pts: Vec<(f64, f64)> = plan
            .sizes
            .iter()
            .filter_map(|&sz| {
                let v = med(rounds
                    .iter()
                    .filter_map(|r| tp_of(r, sys, sz, Placement::Unpinned))
                    .collect())?;
                Some((sz as f64, v))
            })
            .collect();
        if !pts.is_empty() {
            series.push((sys.name().to_string(), pts));
        }
    }
    for (label, key) in [
        ("Python mp.Queue", "queue_tp"),
        ("Python mp.Pipe", "pipe_tp"),
    ] {
        let pts: Vec<(f64, f64)> = plan
            .sizes
            .iter()
            .filter_map(|&sz| {
                let k = sz.to_string();
                Some((
                    sz as f64,
                    med(rounds.iter().filter_map(|r| py_f(r, &[key, &k])).collect())?,
                ))
            })
            .collect();
        if !pts.is_empty() {
            series.push((label.to_string(), pts));
        }
    }
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
    let root = SVGBackend::new(path, (1100, 680)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One-way throughput vs message size (unpinned, median over rounds; shmkit thick)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (6f64..90_000f64).log_scale(),
            (lo / 2.0..hi * 2.0).log_scale(),
        )
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes)")
        .y_desc("messages per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()
        .map_err(perr)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let st = style(i, name);
        chart
            .draw_series(LineSeries::new(pts.clone(), st))
            .map_err(perr)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], st));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, st.color.filled())))
            .map_err(perr)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(perr)?;
    root.present().map_err(perr)?;
    Ok(())
}

fn plot_latency(path: &PathBuf, rounds: &[Round]) -> Result<(), String> {
    // One CDF per system, samples pooled over rounds (unpinned), thinned to
    // quantile points; busy-poll and blocking in two panels.
    let mut panels: [(Mode, Series); 2] = [(Mode::Busy, Vec::new()), (Mode::Block, Vec::new())];
    for (mode, series) in panels.iter_mut() {
        for sys in systems::ALL {
            if !systems::rt_modes(sys).contains(mode) {
                continue;
            }
            let mut all: Vec<f64> = rounds
                .iter()
                .flat_map(|r| r.rt.iter())
                .filter(|t| t.sys == sys && t.mode == *mode && t.placement == Placement::Unpinned)
                .filter_map(|t| t.samples.as_ref().ok())
                .flatten()
                .copied()
                .filter(|x| *x > 0.0)
                .collect();
            if all.is_empty() {
                continue;
            }
            all.sort_by(|a, b| a.total_cmp(b));
            let mut levels: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
            levels.extend([0.995, 0.999, 0.9995, 0.9999]);
            levels.sort_by(|a, b| a.total_cmp(b));
            let pts = levels
                .into_iter()
                .map(|q| {
                    let i = ((all.len() - 1) as f64 * q).round() as usize;
                    (all[i], q * 100.0)
                })
                .collect();
            series.push((sys.name().to_string(), pts));
        }
    }
    let xs: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.1.iter().flat_map(|s| s.1.iter().map(|p| p.0)))
        .collect();
    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = xs.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
    let root = SVGBackend::new(path, (1400, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let halves = root.split_evenly((1, 2));
    for ((mode, series), area) in panels.iter().zip(halves.iter()) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "8-byte round trips, {} (unpinned, all rounds): CDF",
                    mode_label(*mode)
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), 0f64..100f64)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc("round trip (ns, log scale)")
            .y_desc("% of round trips at or below")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(perr)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let st = style(i, name);
            chart
                .draw_series(LineSeries::new(pts.clone(), st))
                .map_err(perr)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], st));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(perr)?;
    }
    root.present().map_err(perr)?;
    Ok(())
}
