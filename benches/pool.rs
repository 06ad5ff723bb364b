//! Pool throughput and latency against Python's `multiprocessing.Pool`
//! (measured by `benches/python_pool.py` in the same run):
//!
//! * `Pool::map` of x → x*x over 100,000 integers (default chunksize);
//! * `Pool::map` of fib(22) over 1,000 items, with N workers and with 1
//!   (the speedup against the ideal N×);
//! * `imap_unordered` of x → x*x over 10,000 integers, chunksize 1 (the
//!   per-task cost of fine-grained work);
//! * `apply_async(..).get()` round-trip latency: median, and the 10th and
//!   90th percentiles (the spread shows a bimodal distribution).
//!
//! Each round runs shmkit then Python (interleaved), unpinned and pinned
//! (everything on CPU 0, inherited by the workers). The cache-line
//! ping-pong is printed at start and end to show the VM's CPU state.
//!
//! Run: `cargo bench --bench pool` (a plain `harness = false` binary; it
//! takes about a minute).

mod common;

use std::process::Command;
use std::time::Instant;

use shmkit::process::{self, cpu_count, Pool};

fn fib(n: u32) -> u64 {
    if n <= 2 {
        1
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

shmkit::task! {
    static SQUARE: Task<u64, u64> = |x| x * x;
    static FIB: Task<u32, u64> = fib;
}

/// Untimed full `map`s of the tiny task before timing (both systems).
const WARMUP_MAPS: usize = 5;
/// Timed repetitions of the tiny `map` (median; both systems).
const TINY_ROUNDS: usize = 15;

struct Figures {
    map_tiny_ms: f64,
    map_fib_ms: f64,
    map_fib1_ms: f64,
    imap1_ms: f64,
    apply_us: f64,
    apply_p10_us: f64,
    apply_p90_us: f64,
}

/// The `q`-quantile (0..=1) of `xs`.
fn quantile(mut xs: Vec<f64>, q: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

fn time_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    let samples = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    common::median(samples)
}

/// `SHMKIT_POOL_BENCH_QUICK=1`: skip the fib(22) maps on both sides (on a
/// loaded machine Python's take minutes), for quick interleaved runs.
fn quick() -> bool {
    std::env::var_os("SHMKIT_POOL_BENCH_QUICK").is_some_and(|v| v == "1")
}

fn shmkit_figures(workers: usize, rounds: usize) -> Figures {
    let data: Vec<u64> = (0..100_000).collect();
    let pool = Pool::new(workers).expect("pool");
    let r = pool.map(&SQUARE, data.iter().copied(), None).expect("map");
    assert_eq!(r, data.iter().map(|x| x * x).collect::<Vec<_>>());
    // Warm-up, as python_pool.py does: a few untimed full maps (the VM's
    // vCPUs take a few milliseconds of load to leave their slow state).
    for _ in 0..WARMUP_MAPS {
        std::hint::black_box(pool.map(&SQUARE, data.iter().copied(), None).expect("map"));
    }
    let map_tiny_ms = time_ms(TINY_ROUNDS, || {
        std::hint::black_box(pool.map(&SQUARE, data.iter().copied(), None).expect("map"));
    });
    let map_fib_ms = if quick() {
        f64::NAN
    } else {
        time_ms(rounds, || {
            std::hint::black_box(pool.map(&FIB, vec![22; 1000], None).expect("map"));
        })
    };
    let imap1_ms = time_ms(rounds, || {
        let mut n = 0u64;
        for r in pool.imap_unordered(&SQUARE, 0..10_000u64, Some(1)) {
            n += r.expect("imap_unordered");
        }
        std::hint::black_box(n);
    });
    let lat: Vec<f64> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            pool.apply(&SQUARE, 3).expect("apply");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let apply_p10_us = quantile(lat.clone(), 0.1);
    let apply_p90_us = quantile(lat.clone(), 0.9);
    let apply_us = common::median(lat);
    drop(pool);
    let map_fib1_ms = if quick() {
        f64::NAN
    } else {
        let one = Pool::new(1).expect("pool");
        time_ms(rounds, || {
            std::hint::black_box(one.map(&FIB, vec![22; 1000], None).expect("map"));
        })
    };
    Figures {
        map_tiny_ms,
        map_fib_ms,
        map_fib1_ms,
        imap1_ms,
        apply_us,
        apply_p10_us,
        apply_p90_us,
    }
}

fn python_figures(workers: usize, rounds: usize) -> Option<Figures> {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/python_pool.py"
        ))
        .arg(workers.to_string())
        .arg(rounds.to_string())
        .arg(WARMUP_MAPS.to_string())
        .arg(TINY_ROUNDS.to_string())
        .arg(if quick() { "quick" } else { "full" })
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python_pool.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(Figures {
        map_tiny_ms: get("map_tiny_ms")?,
        map_fib_ms: get("map_fib_ms")?,
        map_fib1_ms: get("map_fib1_ms")?,
        imap1_ms: get("imap1_ms")?,
        apply_us: get("apply_us")?,
        apply_p10_us: get("apply_p10_us")?,
        apply_p90_us: get("apply_p90_us")?,
    })
}

fn report(label: &str, workers: usize, s: &Figures, p: Option<&Figures>) {
    println!("--- {label} ({workers} workers)");
    let speedup = s.map_fib1_ms / s.map_fib_ms;
    println!(
        "shmkit: map 100k tiny {:.2} ms ({:.1} M items/s) | map 1000 fib(22) {:.1} ms, 1 worker {:.1} ms, speedup {:.2}x of ideal {}x ({:.0}%) | imap_unordered 10k chunksize 1 {:.1} ms | apply round trip {:.1} us (p10 {:.1}, p90 {:.1})",
        s.map_tiny_ms,
        100.0 / s.map_tiny_ms,
        s.map_fib_ms,
        s.map_fib1_ms,
        speedup,
        workers,
        100.0 * speedup / workers as f64,
        s.imap1_ms,
        s.apply_us,
        s.apply_p10_us,
        s.apply_p90_us
    );
    if let Some(p) = p {
        println!(
            "python: map 100k tiny {:.2} ms | map 1000 fib(22) {:.1} ms, 1 worker {:.1} ms, speedup {:.2}x | imap_unordered 10k chunksize 1 {:.1} ms | apply round trip {:.1} us (p10 {:.1}, p90 {:.1})",
            p.map_tiny_ms,
            p.map_fib_ms,
            p.map_fib1_ms,
            p.map_fib1_ms / p.map_fib_ms,
            p.imap1_ms,
            p.apply_us,
            p.apply_p10_us,
            p.apply_p90_us
        );
        println!(
            "ratio (python / shmkit): map tiny {:.1}x | map fib {:.1}x | imap_unordered chunksize 1 {:.1}x | apply latency {:.1}x",
            p.map_tiny_ms / s.map_tiny_ms,
            p.map_fib_ms / s.map_fib_ms,
            p.imap1_ms / s.imap1_ms,
            p.apply_us / s.apply_us
        );
    } else {
        println!("python: unavailable");
    }
}

/// The affinity mask at start; `common::pin(None)` cannot restore it once
/// pinned (it counts CPUs with `available_parallelism`, which follows the
/// current mask), so this bench restores the saved mask itself.
fn saved_mask() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        set
    }
}

fn restore_mask(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid mask obtained from sched_getaffinity.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

fn main() {
    process::init();
    let mask = saved_mask();
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list / cargo test --benches probes
    }
    common::report_pingpong("start");
    restore_mask(&mask); // the ping-pong leaves this process pinned to CPU 0
    let workers = cpu_count();
    let rounds = 5;
    for round in 0..1 {
        for pinned in [false, true] {
            if pinned {
                common::pin(Some(0));
            } else {
                restore_mask(&mask);
            }
            let n = if pinned { 1.max(workers) } else { workers };
            let s = shmkit_figures(n, rounds);
            let p = python_figures(n, rounds);
            let label = format!(
                "round {round}, {}",
                if pinned {
                    "pinned to CPU 0"
                } else {
                    "unpinned"
                }
            );
            report(&label, n, &s, p.as_ref());
        }
        restore_mask(&mask);
    }
    common::report_pingpong("end");
}
