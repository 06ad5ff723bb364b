//! ShmDict get / insert / update throughput from 1, 2 and 4 processes,
//! interleaved with an in-process `Mutex<HashMap>` and `DashMap` driven by
//! 1, 2 and 4 threads. Each criterion "iteration" is one operation of the
//! aggregate (all workers together), so time/iter = 1 / aggregate ops/s.
//! Cross-process figures are given unpinned and pinned (all on CPU 0).
//! A two-process cache-line ping-pong is printed at the start and the end,
//! since this VM's CPUs switch between a fast and a slow state.
//!
//! `set` is Python's `d[k] = v` (no old value copied out); `insert` also
//! returns an owned copy of the old value. For the peers both are their
//! `insert`, which moves the old value out for free.
//!
//! Before and after the criterion groups, three interleaved rounds compare
//! one process doing `set` (and `insert`) against one Python process doing
//! `d[k] = i` on a `multiprocessing.Manager().dict()`
//! (`benches/python_manager_dict.py N set 1`), and print the ratio.
//!
//! Run (short): `cargo bench --bench dict -- --warm-up-time 1 --measurement-time 2`

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Placement;
use criterion::{criterion_group, criterion_main, Criterion};
use dashmap::DashMap;
use shmkit::{DictConfig, Segment, ShmDict};

const KEYS: u64 = 1000;

fn key(i: u64) -> Vec<u8> {
    format!("key-{:06}", i % KEYS).into_bytes()
}

/// Forks `n` children each running `f(worker)`; returns the wall time from
/// the common start signal until all have exited.
fn in_processes(n: usize, pinned: bool, f: impl Fn(usize) + Sync) -> Duration {
    let seg = Segment::anonymous(4096).unwrap();
    // SAFETY: the mapping is 4096 zeroed, page-aligned bytes.
    let go = unsafe { &*(seg.as_ptr() as *const AtomicU64) };
    common::with_pin(pinned.then_some(0), || {
        let peers: Vec<_> = (0..n)
            .map(|w| {
                let f = &f;
                common::Peer::fork(move || {
                    go.fetch_add(1, Ordering::AcqRel);
                    while go.load(Ordering::Acquire) < 1000 {
                        std::hint::spin_loop();
                    }
                    f(w);
                })
            })
            .collect();
        while go.load(Ordering::Acquire) < n as u64 {
            std::thread::yield_now();
        }
        let start = Instant::now();
        go.store(1000, Ordering::Release);
        peers.into_iter().for_each(common::Peer::join);
        start.elapsed()
    })
}

fn in_threads(n: usize, f: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..n {
            let f = &f;
            s.spawn(move || f(w));
        }
    });
    start.elapsed()
}

/// The ping-pong placements reported: like the benchmarks, unpinned and
/// all on CPU 0.
const PING_PONG: [Placement; 2] = [Placement::Unpinned, Placement::Together];

fn value(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Python's Manager dict `d[k] = i` from one process (ops/s), or `None`
/// if python3 is unavailable.
fn python_set_ops() -> Option<f64> {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/python_manager_dict.py"
        ))
        .args(["10000", "set", "1"])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python_manager_dict.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ops_per_s="))?
        .trim()
        .parse()
        .ok()
}

/// One forked process doing `n` `set`s (or `insert`s): ops/s.
fn shmdict_ops(d: &ShmDict, keys: &[Vec<u8>], set: bool, n: u64) -> f64 {
    let t = in_processes(1, false, |_| {
        for i in 0..n {
            let k = &keys[((i * 7) % KEYS) as usize];
            if set {
                black_box(d.set(k, &value(i)).unwrap());
            } else {
                black_box(d.insert(k, &value(i)).unwrap());
            }
        }
    });
    n as f64 / t.as_secs_f64()
}

/// Interleaved single-process rounds: Python Manager dict set, ShmDict
/// set, ShmDict insert.
fn versus_python(when: &str, d: &ShmDict, keys: &[Vec<u8>]) {
    for round in 0..3 {
        let py = python_set_ops();
        let set = shmdict_ops(d, keys, true, 2_000_000);
        let ins = shmdict_ops(d, keys, false, 2_000_000);
        match py {
            Some(py) => println!(
                "vs Python ({when}, round {round}): Manager dict set {py:.0} ops/s | ShmDict set {:.2} M ops/s = {:.0}x | ShmDict insert {:.2} M ops/s = {:.0}x",
                set / 1e6,
                set / py,
                ins / 1e6,
                ins / py
            ),
            None => println!(
                "vs Python ({when}, round {round}): python unavailable | ShmDict set {:.2} M ops/s | insert {:.2} M ops/s",
                set / 1e6,
                ins / 1e6
            ),
        }
    }
}

fn bench(c: &mut Criterion) {
    common::report_pingpongs("start", &PING_PONG);
    let dict = ShmDict::anonymous(DictConfig::new(4096, 4 << 20)).unwrap();
    let mutex: Mutex<HashMap<Vec<u8>, Vec<u8>>> = Mutex::new(HashMap::new());
    let dash: DashMap<Vec<u8>, Vec<u8>> = DashMap::new();
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        dict.insert(k, &value(i as u64)).unwrap();
        mutex
            .lock()
            .unwrap()
            .insert(k.clone(), value(i as u64).to_vec());
        dash.insert(k.clone(), value(i as u64).to_vec());
    }
    versus_python("start", &dict, &keys);
    let keys = &keys;
    // Each worker walks the keys from its own offset with a stride.
    let k_of = |w: usize, i: u64| &keys[((i * 7 + w as u64 * 331) % KEYS) as usize];

    for op in ["get", "set", "insert", "update"] {
        let mut g = c.benchmark_group(format!("dict_{op}"));
        for n in [1usize, 2, 4] {
            for pinned in [false, true] {
                if pinned && n == 1 {
                    continue;
                }
                let label = format!("shmdict/{n}p{}", if pinned { "-pinned" } else { "" });
                let d = &dict;
                g.bench_function(label, |b| {
                    b.iter_custom(|iters| {
                        let per = iters.div_ceil(n as u64);
                        in_processes(n, pinned, |w| {
                            for i in 0..per {
                                let k = k_of(w, i);
                                match op {
                                    "get" => {
                                        black_box(d.get(k).unwrap());
                                    }
                                    "set" => {
                                        black_box(d.set(k, &value(i)).unwrap());
                                    }
                                    "insert" => {
                                        black_box(d.insert(k, &value(i)).unwrap());
                                    }
                                    _ => {
                                        d.update(k, |v| {
                                            let mut v = v?.to_vec();
                                            v[0] = v[0].wrapping_add(1);
                                            Some(v)
                                        })
                                        .unwrap();
                                    }
                                }
                            }
                        })
                    })
                });
            }
            let m = &mutex;
            g.bench_function(format!("std_mutex_hashmap/{n}t"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(n as u64);
                    in_threads(n, |w| {
                        for i in 0..per {
                            let k = k_of(w, i);
                            match op {
                                "get" => {
                                    black_box(m.lock().unwrap().get(k).cloned());
                                }
                                "set" | "insert" => {
                                    black_box(
                                        m.lock().unwrap().insert(k.clone(), value(i).to_vec()),
                                    );
                                }
                                _ => {
                                    if let Some(v) = m.lock().unwrap().get_mut(k) {
                                        v[0] = v[0].wrapping_add(1);
                                    }
                                }
                            }
                        }
                    })
                })
            });
            let dm = &dash;
            g.bench_function(format!("dashmap/{n}t"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(n as u64);
                    in_threads(n, |w| {
                        for i in 0..per {
                            let k = k_of(w, i);
                            match op {
                                "get" => {
                                    black_box(dm.get(k).map(|v| v.clone()));
                                }
                                "set" | "insert" => {
                                    black_box(dm.insert(k.clone(), value(i).to_vec()));
                                }
                                _ => {
                                    if let Some(mut v) = dm.get_mut(k) {
                                        v[0] = v[0].wrapping_add(1);
                                    }
                                }
                            }
                        }
                    })
                })
            });
        }
        g.finish();
    }
    versus_python("end", &dict, keys);
    common::report_pingpongs("end", &PING_PONG);
}

criterion_group!(benches, bench);
criterion_main!(benches);
