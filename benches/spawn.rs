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

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use shmkit::process::{self, Process};
use shmkit::{ShmBox, ShmValue};

fn nop(_: ()) {}
shmkit::entry! { static NOP: Entry<()> = nop; }

fn set_affinity(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET initialise it and
    // sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn all_cpus() -> Vec<usize> {
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// Spin (unpinned) for a while, then yield, so a descheduled peer on a
/// busy machine is not starved for a whole time slice.
fn backoff(pinned: bool, spins: &mut u32) {
    *spins += 1;
    if pinned || *spins > 10_000 {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Two processes bounce one atomic; returns ns per round trip.
fn ping_pong(pinned: bool) -> f64 {
    let rounds: u64 = if pinned { 2_000 } else { 20_000 };
    set_affinity(&if pinned { vec![0] } else { all_cpus() });
    let word = ShmBox::<ShmValue<u64>>::anonymous(0).expect("segment");
    let child = process::fork(|| {
        for k in 0..rounds {
            let mut spins = 0u32;
            while word.load() != 2 * k + 1 {
                backoff(pinned, &mut spins);
            }
            word.store(2 * k + 2);
        }
    })
    .expect("fork");
    let t0 = Instant::now();
    for k in 0..rounds {
        word.store(2 * k + 1);
        let mut spins = 0u32;
        while word.load() != 2 * k + 2 {
            backoff(pinned, &mut spins);
        }
    }
    let ns = t0.elapsed().as_nanos() as f64 / rounds as f64;
    child.join().expect("join");
    set_affinity(&all_cpus());
    ns
}

fn print_ping_pong(when: &str) {
    println!(
        "ping-pong ({when}): unpinned {:.0} ns/round trip, pinned (1 CPU) {:.0} ns/round trip",
        ping_pong(false),
        ping_pong(true)
    );
}

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

fn median_us(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
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
    set_affinity(&if pinned { vec![0] } else { all_cpus() });
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
    let (s, f, c) = (median_us(&mut s), median_us(&mut f), median_us(&mut c));
    let label = if pinned { "pinned (1 CPU)" } else { "unpinned" };
    println!("start+join medians, {label}, 60 rounds interleaved:");
    println!("  shmkit spawn (re-exec)  {s:9.1} µs");
    println!("  shmkit fork             {f:9.1} µs");
    println!("  std Command /bin/true   {c:9.1} µs");
    // Median of the three blocks' medians for each Python method.
    for method in ["fork", "forkserver", "spawn"] {
        let mut meds: Vec<f64> = py
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
        meds.sort_by(f64::total_cmp);
        let m = meds[meds.len() / 2];
        println!(
            "  python {method:<11}      {m:9.1} µs  (shmkit spawn is {:.1}x faster, fork {:.1}x)",
            m / s,
            m / f
        );
    }
    set_affinity(&all_cpus());
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
    print_ping_pong("start");
    interleaved(false);
    interleaved(true);
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ping_pong("end");
}
