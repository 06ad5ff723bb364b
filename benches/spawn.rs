//! Process start + join: shmkit spawn (re-exec of this binary with a
//! registered entry), shmkit fork, `std::process::Command` of `/bin/true`,
//! and Python's `multiprocessing.Process` (fork / forkserver / spawn start
//! methods, measured by `benches/python_process.py` in the same run).
//!
//! The systems are interleaved round by round, pinned (everything on CPU 0
//! via `sched_setaffinity`, inherited by children) and unpinned, and the
//! cache-line ping-pong is printed at start and end to show which state the
//! VM's CPUs were in. Criterion then measures the two shmkit variants.
//!
//! Run: `cargo bench --bench spawn -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Placement;
use criterion::{criterion_group, Criterion};
use shmkit::process::{self, Process};

fn nop(_: ()) {}
shmkit::entry! { static NOP: Entry<()> = nop; }

/// The ping-pong placements reported: like the benchmarks, unpinned and
/// all on CPU 0.
const PING_PONG: [Placement; 2] = [Placement::Unpinned, Placement::Together];

fn spawn_join() -> Duration {
    let t0 = Instant::now();
    let p = Process::builder().spawn(&NOP, &()).expect("spawn");
    assert!(p.join().expect("join").success());
    t0.elapsed()
}

fn fork_join() -> Duration {
    let t0 = Instant::now();
    let p = process::fork(|| 0).expect("fork");
    assert!(p.join().expect("join").success());
    t0.elapsed()
}

fn command_true() -> Duration {
    let t0 = Instant::now();
    assert!(Command::new("/bin/true")
        .status()
        .expect("/bin/true")
        .success());
    t0.elapsed()
}

fn median_us(v: &[Duration]) -> f64 {
    common::median(v.iter().map(|d| d.as_secs_f64() * 1e6).collect())
}

/// Runs the Python peer; returns its lines.
fn python(rounds: u32, pinned: bool) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_process.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(rounds.to_string());
    if pinned {
        cmd.arg("pinned");
    }
    match cmd.output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => vec!["python3 unavailable or failed".to_owned()],
    }
}

fn interleaved(pinned: bool) {
    common::with_pin(pinned.then_some(0), || interleaved_here(pinned));
}

fn interleaved_here(pinned: bool) {
    let (mut s, mut f, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let mut py = Vec::new();
    for _block in 0..3 {
        for _ in 0..20 {
            s.push(spawn_join());
            f.push(fork_join());
            c.push(command_true());
        }
        py.extend(python(20, pinned));
    }
    let (s, f, c) = (median_us(&s), median_us(&f), median_us(&c));
    let label = if pinned { "pinned (1 CPU)" } else { "unpinned" };
    println!("start+join medians, {label}, 60 rounds interleaved:");
    println!("  shmkit spawn (re-exec)  {s:9.1} µs");
    println!("  shmkit fork             {f:9.1} µs");
    println!("  std Command /bin/true   {c:9.1} µs");
    // Median of the three blocks' medians for each Python method.
    for method in ["fork", "forkserver", "spawn"] {
        let meds: Vec<f64> = py
            .iter()
            .filter(|l| l.starts_with(&format!("python_{method} ")))
            .filter_map(|l| {
                l.split("median_us=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        if meds.is_empty() {
            println!("  python {method:<11} unavailable");
            continue;
        }
        let m = common::median(meds);
        println!(
            "  python {method:<11}      {m:9.1} µs  (shmkit spawn is {:.1}x faster, fork {:.1}x)",
            m / s,
            m / f
        );
    }
}

fn bench_criterion(c: &mut Criterion) {
    let mut g = c.benchmark_group("start_join");
    g.sample_size(20);
    g.bench_function("shmkit_spawn_reexec", |b| b.iter(spawn_join));
    if process::thread_count().unwrap_or(2) == 1 {
        g.bench_function("shmkit_fork", |b| b.iter(fork_join));
    }
    g.bench_function("std_command_true", |b| b.iter(command_true));
    g.finish();
}

criterion_group!(benches, bench_criterion);

fn main() {
    process::init();
    common::report_pingpongs("start", &PING_PONG);
    interleaved(false);
    interleaved(true);
    benches();
    Criterion::default().configure_from_args().final_summary();
    common::report_pingpongs("end", &PING_PONG);
}
