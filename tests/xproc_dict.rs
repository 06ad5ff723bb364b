//! Cross-process tests of `ShmDict`: real forks, real SIGKILL.
//! `harness = false`: see tests/common.

mod common;

use common::{fork, run, Rng};
use shmkit::{DictConfig, DictError, ShmDict, ShmMap, SpawnError};
use std::time::Duration;

/// A self-checking value for (key id, version): header + key-derived bytes.
fn make_value(id: u32, version: u32) -> Vec<u8> {
    let len = 12 + ((id as usize * 7 + version as usize * 13) % 90);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    for i in 12..len {
        v.push((id ^ version ^ i as u32).wrapping_mul(31) as u8);
    }
    v
}

/// Whether `v` is a complete value written by `make_value(id, _)`.
fn check_value(id: u32, v: &[u8]) -> bool {
    if v.len() < 12 {
        return false;
    }
    let word = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().unwrap());
    let (vid, version, len) = (word(0), word(4), word(8) as usize);
    vid == id && len == v.len() && v == make_value(id, version)
}

fn key(id: u32) -> Vec<u8> {
    format!("key-{id}").into_bytes()
}

fn counter_8_processes_exact() {
    let d = ShmDict::anonymous(DictConfig::new(64, 1 << 14)).unwrap();
    d.insert(b"num", &0u64.to_le_bytes()).unwrap();
    let mut kids: Vec<_> = (0..8)
        .map(|_| {
            fork(|| {
                for _ in 0..10_000 {
                    d.update(b"num", |v| {
                        let n = u64::from_le_bytes(v?.try_into().ok()?);
                        Some((n + 1).to_le_bytes().to_vec())
                    })
                    .unwrap();
                }
                0
            })
        })
        .collect();
    for k in &mut kids {
        k.join_ok("counter updater");
    }
    assert_eq!(d.get_pod::<u64>(b"num").unwrap(), Some(80_000));
    // fetch_add path as well
    let mut kids: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                for _ in 0..5_000 {
                    d.fetch_add_i64(b"i", 2).unwrap();
                }
                0
            })
        })
        .collect();
    for k in &mut kids {
        k.join_ok("fetch_add");
    }
    assert_eq!(d.get_i64(b"i").unwrap(), Some(40_000));
}

fn readers_see_absent_or_complete() {
    const PER: u32 = 2_000;
    let d = ShmDict::anonymous(DictConfig::new(10_000, 4 << 20)).unwrap();
    let mut writers: Vec<_> = (0..4u32)
        .map(|w| {
            let d = &d;
            fork(move || {
                for version in 0..3 {
                    for id in w * PER..(w + 1) * PER {
                        d.insert(&key(id), &make_value(id, version)).unwrap();
                    }
                }
                0
            })
        })
        .collect();
    let mut readers: Vec<_> = (0..4u64)
        .map(|r| {
            let d = &d;
            fork(move || {
                let mut rng = Rng::new(r + 1);
                for _ in 0..40_000 {
                    let id = rng.below(4 * PER as u64) as u32;
                    let ok = d.get_with(&key(id), |v| check_value(id, v)).unwrap();
                    if ok == Some(false) {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();
    for k in writers.iter_mut().chain(readers.iter_mut()) {
        k.join_ok("writer/reader");
    }
    assert_eq!(d.len(), 4 * PER as usize);
    for id in 0..4 * PER {
        let v = d.get(&key(id)).unwrap().expect("every key present");
        assert!(check_value(id, &v));
        assert_eq!(v, make_value(id, 2), "last version wins");
    }
    assert_eq!(d.verify().unwrap(), 4 * PER as usize);
}

/// Random insert/set/remove/update/fetch_add on a small key space, forever.
fn mutate_forever(d: &ShmDict, seed: u64, ops: Option<u64>) -> i32 {
    let mut rng = Rng::new(seed);
    let mut n = 0;
    loop {
        let id = rng.below(64) as u32;
        let version = rng.next() as u32;
        let r = match rng.below(5) {
            0 => d.insert(&key(id), &make_value(id, version)).map(drop),
            1 => d.set(&key(id), &make_value(id, version)).map(drop),
            2 => d.remove(&key(id)).map(drop),
            3 => d
                .update(&key(id), |_| Some(make_value(id, version)))
                .map(drop),
            _ => d.fetch_add_i64(b"counter", 1).map(drop),
        };
        if let Err(e) = r {
            eprintln!("mutator error: {e}");
            return 2;
        }
        n += 1;
        if ops.is_some_and(|m| n >= m) {
            return 0;
        }
    }
}

fn verify_all(d: &ShmDict) {
    let n = d.verify().expect("dict consistent after a kill");
    assert_eq!(d.len(), n);
    let mut seen = 0;
    d.for_each(|k, v| {
        seen += 1;
        if k == b"counter" {
            assert_eq!(v.len(), 8);
            return;
        }
        let id: u32 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
        assert!(check_value(id, v), "torn value for key {id}");
    })
    .unwrap();
    assert_eq!(seen, n);
}

fn sigkill_mid_operation_loop() {
    let kills = 150;
    // Small arena: the victim also exercises splits, free lists and rehash.
    let d = ShmDict::anonymous(DictConfig::new(128, 32 << 10).stripes(2)).unwrap();
    let mut rng = Rng::new(0xD1C7);
    for round in 0..kills {
        let dr = &d;
        let mut victim = fork(move || mutate_forever(dr, round + 1, None));
        let mut survivor = fork(move || mutate_forever(dr, round + 1000, Some(300)));
        std::thread::sleep(Duration::from_micros(200 + rng.below(3_000)));
        victim.kill();
        let e = survivor.wait(Duration::from_secs(30), "survivor after a peer was killed");
        assert_eq!(e, common::Exit::Code(0), "survivor failed in round {round}");
        verify_all(&d);
    }
    let repairs = d.repairs();
    println!(
        "  {kills} kills, {repairs} stripe repairs after a holder died, {} entries",
        d.len()
    );
    assert!(repairs > 0, "no kill landed inside a critical section");
}

fn churn_never_exhausts() {
    let cycles: u32 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let d = ShmDict::anonymous(DictConfig::new(512, 256 << 10).stripes(4)).unwrap();
    let mut kids: Vec<_> = (0..2u32)
        .map(|p| {
            let d = &d;
            fork(move || {
                let mut live = std::collections::VecDeque::new();
                for i in 0..cycles / 2 {
                    let id = p * cycles + i;
                    match d.insert(&key(id), &make_value(id, i)) {
                        Ok(_) => {}
                        Err(DictError::CapacityExceeded) => return 3,
                        Err(_) => return 4,
                    }
                    live.push_back(id);
                    if live.len() > 100 {
                        let old = live.pop_front().unwrap();
                        let v = d.remove(&key(old)).unwrap();
                        if !v.is_some_and(|v| check_value(old, &v)) {
                            return 5;
                        }
                    }
                }
                0
            })
        })
        .collect();
    for k in &mut kids {
        k.join_ok("churn (3 = CapacityExceeded)");
    }
    assert_eq!(d.len(), 2 * 100);
    assert_eq!(d.verify().unwrap(), 200);
}

fn named_open_from_child() {
    let name = common::unique_name("dict");
    let d = ShmDict::create(&name, DictConfig::new(100, 1 << 14)).unwrap();
    let n2 = name.clone();
    let mut c = fork(move || {
        let o = ShmDict::open(&n2).unwrap();
        o.insert(b"number1", b"25").unwrap();
        0
    });
    c.join_ok("opener");
    assert_eq!(d.get(b"number1").unwrap(), Some(b"25".to_vec()));
}

/// A closure run under a stripe lock (`get_with`, `update`, `for_each`)
/// counts as a held guard: `fork` from inside it is refused (the child
/// would get the borrowed slice with nobody holding the lock for it).
fn fork_refused_inside_dict_closures() {
    let d = ShmDict::anonymous(DictConfig::new(64, 1 << 14)).unwrap();
    d.insert(b"k", b"value").unwrap();
    let refused = |r: Result<shmkit::Process, SpawnError>| match r {
        Err(SpawnError::GuardHeld(1)) => true,
        Err(e) => panic!("expected GuardHeld(1), got {e}"),
        Ok(p) => {
            let _ = p.join();
            false
        }
    };
    let got = d
        .get_with(b"k", |v| refused(shmkit::process::fork(|| v == b"value")))
        .unwrap();
    assert_eq!(got, Some(true), "fork inside get_with must be refused");
    let mut in_update = false;
    d.update(b"k", |v| {
        in_update = refused(shmkit::process::fork(|| v.is_some()));
        v.map(<[u8]>::to_vec)
    })
    .unwrap();
    assert!(in_update, "fork inside update must be refused");
    let mut in_for_each = false;
    d.for_each(|_, _| in_for_each = refused(shmkit::process::fork(|| 0)))
        .unwrap();
    assert!(in_for_each, "fork inside for_each must be refused");
    // Outside any closure, fork works.
    let p = shmkit::process::fork(|| d.get(b"k").unwrap().as_deref() == Some(&b"value"[..]));
    assert_eq!(p.unwrap().join().unwrap().exitcode(), 0);
}

/// Runs `f`, which must panic, with the panic message silenced.
fn expect_panic<R>(what: &str, f: impl FnOnce() -> R) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    assert!(r.is_err(), "{what} should have panicked");
}

/// A user closure that panics under a stripe lock leaves the stripe
/// unlocked and unchanged: another process (with its own handle, bounded
/// by a lock timeout so a wedged stripe fails instead of hanging) can use
/// the same key at once.
fn panic_in_dict_closures_does_not_wedge() {
    let name = common::unique_name("dict-panic");
    let d = ShmDict::create(&name, DictConfig::new(64, 1 << 14)).unwrap();
    d.insert(b"k", b"v1").unwrap();
    let other_process_uses_key = |expect: &'static [u8], next: &'static [u8]| {
        let name = name.clone();
        let mut kid = fork(move || {
            let mut o = ShmDict::open(&name).unwrap();
            o.set_lock_timeout(Some(Duration::from_secs(30)));
            match o.get(b"k") {
                Ok(Some(v)) if v == expect => {}
                Ok(_) => return 2,
                Err(_) => return 3,
            }
            match o.insert(b"k", next) {
                Ok(_) => 0,
                Err(_) => 4,
            }
        });
        kid.join_ok("another process using the key (3/4 = lock timeout)");
    };
    expect_panic("get_with", || {
        d.get_with(b"k", |_| panic!("boom in get_with"))
    });
    other_process_uses_key(b"v1", b"v2");
    expect_panic("update", || {
        d.update(b"k", |_| -> Option<Vec<u8>> { panic!("boom in update") })
    });
    other_process_uses_key(b"v2", b"v3");
    expect_panic("for_each", || d.for_each(|_, _| panic!("boom in for_each")));
    other_process_uses_key(b"v3", b"v4");
    let map: shmkit::ShmMap<String, u32> = shmkit::ShmMap::new(ShmDict::open(&name).unwrap());
    expect_panic("ShmMap::update", || {
        map.update(&"n".to_string(), |_| panic!("boom in a typed update"))
    });
    other_process_uses_key(b"v4", b"v5");
    assert_eq!(d.get(b"k").unwrap().as_deref(), Some(&b"v5"[..]));
    assert_eq!(
        d.repairs(),
        0,
        "nothing needed repair: the locks were released"
    );
    assert_eq!(d.verify().unwrap(), 1);
}

/// `ShmMap` by name: created with a computed arena, opened in a child that
/// writes through borrowed forms (`&str` keys, `&[u32]` values); the parent
/// reads them back with owned and borrowed keys alike.
fn shm_map_named_with_borrowed_keys() {
    let name = common::unique_name("map");
    let cfg = DictConfig::for_entries(100, 16, 4 * 20).unwrap();
    let map = ShmMap::<String, Vec<u32>>::create(&name, cfg).unwrap();
    map.insert("parent", &vec![1, 2, 3]).unwrap();
    let n2 = name.clone();
    let mut c = fork(move || {
        let m = ShmMap::<String, Vec<u32>>::open(&n2).unwrap();
        if m.get("parent").unwrap() != Some(vec![1, 2, 3]) {
            return 2;
        }
        for i in 0..100u32 {
            let k = format!("child-{i}");
            let v: Vec<u32> = (0..i % 20).collect();
            m.set(k.as_str(), &v[..]).unwrap();
        }
        m.update("parent", |v| {
            v.map(|mut v| {
                v.push(4);
                v
            })
        })
        .unwrap();
        0
    });
    c.join_ok("map writer");
    assert_eq!(map.get("parent").unwrap(), Some(vec![1, 2, 3, 4]));
    for i in 0..100u32 {
        let k = format!("child-{i}");
        let want: Vec<u32> = (0..i % 20).collect();
        assert_eq!(map.get(&k).unwrap().as_ref(), Some(&want), "by String");
        assert_eq!(map.get(k.as_str()).unwrap(), Some(want), "by &str");
    }
    assert_eq!(map.len(), 101);
    assert_eq!(map.dict().verify().unwrap(), 101);
}

fn main() {
    run(
        &[
            ("counter_8_processes_exact", counter_8_processes_exact),
            (
                "readers_see_absent_or_complete",
                readers_see_absent_or_complete,
            ),
            ("sigkill_mid_operation_loop", sigkill_mid_operation_loop),
            ("churn_never_exhausts", churn_never_exhausts),
            ("named_open_from_child", named_open_from_child),
            (
                "shm_map_named_with_borrowed_keys",
                shm_map_named_with_borrowed_keys,
            ),
            (
                "fork_refused_inside_dict_closures",
                fork_refused_inside_dict_closures,
            ),
            (
                "panic_in_dict_closures_does_not_wedge",
                panic_in_dict_closures_does_not_wedge,
            ),
        ],
        240,
    );
}
