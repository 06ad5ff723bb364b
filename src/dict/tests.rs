//! Single-process tests of the dict algorithm over heap memory (Miri runs
//! these) plus segment-backed proptests.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn heap(entries: usize, arena: usize, stripes: usize) -> ShmDict {
    ShmDict::in_heap(DictConfig::new(entries, arena).stripes(stripes)).unwrap()
}

#[test]
fn basic_ops() {
    let d = heap(64, 1 << 14, 4);
    assert!(d.is_empty());
    assert_eq!(d.insert(b"a", b"1").unwrap(), None);
    assert_eq!(d.insert(b"a", b"22").unwrap(), Some(b"1".to_vec()));
    assert_eq!(d.get(b"a").unwrap(), Some(b"22".to_vec()));
    assert!(d.contains_key(b"a").unwrap());
    assert!(!d.contains_key(b"b").unwrap());
    assert_eq!(d.len(), 1);
    assert_eq!(d.fetch_add_i64(b"n", 5).unwrap(), 0);
    assert_eq!(d.fetch_add_i64(b"n", -2).unwrap(), 5);
    assert_eq!(d.get_i64(b"n").unwrap(), Some(3));
    assert!(matches!(
        d.fetch_add_i64(b"a", 1),
        Err(DictError::Decode(_))
    ));
    assert!(matches!(d.get_pod::<u32>(b"n"), Err(DictError::Decode(_))));
    assert_eq!(
        d.update(b"a", |v| {
            assert_eq!(v, Some(&b"22"[..]));
            None
        })
        .unwrap(),
        None
    );
    assert!(!d.contains_key(b"a").unwrap());
    assert_eq!(d.remove(b"n").unwrap(), Some(3i64.to_le_bytes().to_vec()));
    assert_eq!(d.len(), 0);
    assert_eq!(d.insert(b"", b"").unwrap(), None);
    assert_eq!(d.get(b"").unwrap(), Some(vec![]));
    d.clear().unwrap();
    assert!(d.is_empty());
    assert_eq!(d.verify().unwrap(), 0);
}

#[test]
fn set_replaces_without_returning_the_old_value() {
    let d = heap(64, 1 << 14, 2);
    assert!(!d.set(b"k", b"one").unwrap());
    assert!(d.set(b"k", b"two!").unwrap());
    assert_eq!(d.get(b"k").unwrap().as_deref(), Some(&b"two!"[..]));
    // 8 bytes over 8 bytes (the in-place atomic path) and across classes.
    assert!(d.set(b"k", &7u64.to_ne_bytes()).unwrap());
    assert!(d.set(b"k", &9u64.to_ne_bytes()).unwrap());
    assert_eq!(d.get_pod::<u64>(b"k").unwrap(), Some(9));
    assert!(d.set(b"k", &[5; 200]).unwrap());
    assert_eq!(d.get(b"k").unwrap(), Some(vec![5; 200]));
    assert_eq!(d.len(), 1);
    // A value that cannot fit is refused and leaves the old one.
    assert!(matches!(
        d.set(b"k", &vec![0; 1 << 20]),
        Err(DictError::ValueTooLarge { .. })
    ));
    assert_eq!(d.get(b"k").unwrap(), Some(vec![5; 200]));
    let m = ShmMap::<String, u32>::new(heap(16, 1 << 12, 1));
    assert!(!m.set(&"a".to_string(), &1).unwrap());
    assert!(m.set(&"a".to_string(), &2).unwrap());
    assert_eq!(m.get(&"a".to_string()).unwrap(), Some(2));
    assert_eq!(d.verify().unwrap(), 1);
}

#[test]
fn full_dict_rejects_cleanly() {
    let d = heap(8, 1 << 12, 1);
    let mut n = 0u32;
    loop {
        match d.insert(&n.to_le_bytes(), &[7; 20]) {
            Ok(_) => n += 1,
            Err(DictError::CapacityExceeded) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(n < 10_000);
    }
    assert!(n >= 8);
    assert_eq!(d.len(), n as usize);
    for i in 0..n {
        assert_eq!(d.get(&i.to_le_bytes()).unwrap(), Some(vec![7; 20]));
    }
    // Too-large values and keys are refused up front.
    assert!(matches!(
        d.insert(b"k", &vec![0; 1 << 13]),
        Err(DictError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        d.insert(&vec![0; 1 << 13], b"v"),
        Err(DictError::KeyTooLarge { .. })
    ));
    assert_eq!(d.verify().unwrap(), n as usize);
}

#[test]
fn churn_reuses_space() {
    let cycles: u32 = if cfg!(miri) {
        300
    } else if cfg!(debug_assertions) {
        50_000
    } else {
        1_000_000
    };
    let d = heap(256, 64 << 10, 4);
    let mut live = std::collections::VecDeque::new();
    for i in 0..cycles {
        let len = (i as usize * 7) % 100;
        let key = i.to_le_bytes();
        d.insert(&key, &vec![i as u8; len]).unwrap();
        live.push_back((key, len));
        if live.len() > 100 {
            let (k, l) = live.pop_front().unwrap();
            assert_eq!(d.remove(&k).unwrap().map(|v| v.len()), Some(l));
        }
    }
    assert_eq!(d.len(), live.len());
    assert_eq!(d.verify().unwrap(), live.len());
}

#[test]
fn iteration_and_snapshot() {
    let d = heap(100, 1 << 14, 4);
    for i in 0..50u8 {
        d.insert(&[i], &[i, i]).unwrap();
    }
    let mut a: Vec<_> = d.iter().map(Result::unwrap).collect();
    let mut b = d.snapshot().unwrap();
    let mut k = d.keys().unwrap();
    a.sort();
    b.sort();
    k.sort();
    assert_eq!(a, b);
    assert_eq!(a.len(), 50);
    assert_eq!(k, (0..50u8).map(|i| vec![i]).collect::<Vec<_>>());
}

#[test]
fn typed_map_roundtrip_and_decode_error() {
    let m: ShmMap<(u32, String), Vec<u16>> = ShmMap::new(heap(32, 1 << 13, 2));
    let k = (1, "x".to_string());
    assert_eq!(m.insert(&k, &vec![1, 2]).unwrap(), None);
    assert_eq!(m.get(&k).unwrap(), Some(vec![1, 2]));
    assert_eq!(
        m.update(&k, |v| v.map(|mut v| {
            v.push(3);
            v
        }))
        .unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(m.to_vec().unwrap(), vec![(k.clone(), vec![1, 2, 3])]);
    // Bytes that are not a Vec<u16>: a Decode error, not a panic.
    let kb = postcard::to_allocvec(&k).unwrap();
    m.dict()
        .insert(&kb, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        .unwrap();
    assert!(matches!(m.get(&k), Err(DictError::Decode(_))));
    assert!(matches!(m.update(&k, |v| v), Err(DictError::Decode(_))));
    assert_eq!(m.dict().get(&kb).unwrap().unwrap().len(), 6);
    assert_eq!(m.remove(&(2, String::new())).unwrap(), None);
}

#[test]
fn threads_update_one_counter() {
    let d = heap(16, 1 << 12, 2);
    let per = if cfg!(miri) { 20 } else { 5_000 };
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..per {
                    d.update(b"c", |v| {
                        let n = v.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                        Some((n + 1).to_le_bytes().to_vec())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(d.get_pod::<u64>(b"c").unwrap(), Some(4 * per));
}

/// Garbage in every byte of the memory: every operation returns, with a
/// value or an error, and never panics or loops forever.
#[test]
fn garbage_memory_is_survivable() {
    let cfg = DictConfig::new(16, 1024).stripes(2);
    let size = ShmDict::embedded_size(&cfg).unwrap();
    let mut mem = vec![0u64; size.div_ceil(8) + 8];
    let base = mem.as_mut_ptr() as *mut u8;
    let off = base.align_offset(64);
    let mut seed = 0x1234_5678_9ABC_DEF1u64;
    for round in 0..if cfg!(miri) { 2 } else { 50 } {
        // SAFETY: `mem` has room for `size` bytes past the 64-aligned point.
        let p = unsafe { base.add(off) };
        for i in 0..size {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Keep lock words mostly unlocked so the test does not wait on
            // a random "owner" pid; other bytes are fully random.
            let byte = if round % 2 == 0 {
                (seed >> 56) as u8
            } else {
                (seed >> 56) as u8 & 0x0F
            };
            // SAFETY: i < size.
            unsafe { p.add(i).write(byte) };
        }
        for s in 0..cfg.stripes {
            // SAFETY: stripe headers are at the start; lock word is 4 bytes.
            unsafe { p.add(s * 192).cast::<u32>().write(0) };
        }
        // SAFETY: p is 64-aligned and valid for `size` bytes while `mem` lives.
        let mut d = unsafe { ShmDict::from_raw(p, size, cfg) }.unwrap();
        d.set_lock_timeout(Some(std::time::Duration::from_millis(1)));
        let _ = d.get(b"a");
        let _ = d.insert(b"a", b"bb");
        let _ = d.update(b"c", |_| Some(vec![1; 40]));
        let _ = d.remove(b"a");
        let _ = d.iter().count();
        let _ = d.verify();
        let _ = d.len();
        let _ = d.clear();
        let _ = d.insert(b"z", b"after clear");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, Vec<u8>),
    Set(u8, Vec<u8>),
    Get(u8),
    Remove(u8),
    Update(u8, Option<Vec<u8>>),
    Add(u8, i64),
    Clear,
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    let val = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        4 => (any::<u8>(), val.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (any::<u8>(), val.clone()).prop_map(|(k, v)| Op::Set(k, v)),
        3 => any::<u8>().prop_map(Op::Get),
        3 => any::<u8>().prop_map(Op::Remove),
        2 => (any::<u8>(), proptest::option::of(val)).prop_map(|(k, v)| Op::Update(k, v)),
        1 => (any::<u8>(), any::<i64>()).prop_map(|(k, d)| Op::Add(k, d)),
        1 => Just(Op::Clear),
        1 => Just(Op::Len),
    ]
}

fn key(k: u8) -> Vec<u8> {
    // Keys of varied length, some sharing prefixes.
    vec![k; 1 + (k as usize % 13)]
}

fn run_model(d: &ShmDict, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                prop_assert_eq!(d.insert(&key(*k), v).unwrap(), m.insert(key(*k), v.clone()))
            }
            Op::Set(k, v) => prop_assert_eq!(
                d.set(&key(*k), v).unwrap(),
                m.insert(key(*k), v.clone()).is_some()
            ),
            Op::Get(k) => prop_assert_eq!(d.get(&key(*k)).unwrap(), m.get(&key(*k)).cloned()),
            Op::Remove(k) => prop_assert_eq!(d.remove(&key(*k)).unwrap(), m.remove(&key(*k))),
            Op::Update(k, v) => {
                let mut seen = None;
                d.update(&key(*k), |old| {
                    seen = Some(old.map(<[u8]>::to_vec));
                    v.clone()
                })
                .unwrap();
                prop_assert_eq!(seen.unwrap(), m.get(&key(*k)).cloned());
                match v {
                    Some(v) => m.insert(key(*k), v.clone()),
                    None => m.remove(&key(*k)),
                };
            }
            Op::Add(k, delta) => {
                let cur = m.get(&key(*k)).cloned();
                let r = d.fetch_add_i64(&key(*k), *delta);
                match cur {
                    None => {
                        prop_assert_eq!(r.unwrap(), 0);
                        m.insert(key(*k), delta.to_le_bytes().to_vec());
                    }
                    Some(b) if b.len() == 8 => {
                        let old = i64::from_le_bytes(b.try_into().unwrap());
                        prop_assert_eq!(r.unwrap(), old);
                        m.insert(key(*k), old.wrapping_add(*delta).to_le_bytes().to_vec());
                    }
                    Some(_) => prop_assert!(matches!(r, Err(DictError::Decode(_)))),
                }
            }
            Op::Clear => {
                d.clear().unwrap();
                m.clear();
            }
            Op::Len => prop_assert_eq!(d.len(), m.len()),
        }
    }
    prop_assert_eq!(d.len(), m.len());
    prop_assert_eq!(d.verify().unwrap(), m.len());
    let mut all = d.snapshot().unwrap();
    all.sort();
    let mut want: Vec<_> = m.into_iter().collect();
    want.sort();
    prop_assert_eq!(all, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        // Miri's isolation forbids getcwd, which failure persistence needs.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    })]

    #[test]
    fn heap_dict_matches_hashmap(ops in proptest::collection::vec(op(), 0..if cfg!(miri) { 40 } else { 400 })) {
        // Small arena and 2 stripes: exercises rehash, splitting and reuse.
        let d = heap(300, 64 << 10, 2);
        run_model(&d, &ops)?;
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri cannot mmap segments")]
    fn segment_dict_matches_hashmap(ops in proptest::collection::vec(op(), 0..400)) {
        let d = ShmDict::anonymous(DictConfig::new(300, 64 << 10).stripes(3)).unwrap();
        run_model(&d, &ops)?;
    }
}

#[test]
#[cfg_attr(miri, ignore = "miri cannot mmap segments")]
fn named_open_validates_params() {
    let name = format!("shmkit-unit-dict-{}", std::process::id());
    let d = ShmDict::create(&name, DictConfig::new(100, 1 << 14)).unwrap();
    d.insert(b"x", b"y").unwrap();
    let o = ShmDict::open(&name).unwrap();
    assert_eq!(o.get(b"x").unwrap(), Some(b"y".to_vec()));
    assert_eq!(o.config(), d.config());
    assert!(matches!(
        crate::ShmBox::<crate::Event>::open(&name),
        Err(AttachError::KindMismatch { .. })
    ));
}

/// Value sizes that defeat per-class reuse: every key first gets a small
/// value (small blocks from the bump pointer), then a largest one.
fn small_then_large(
    d: &ShmDict,
    n: usize,
    max_key: usize,
    max_value: usize,
) -> Result<(), DictError> {
    let key = |i: usize| format!("{i:0width$}", width = max_key).into_bytes();
    for i in 0..n {
        d.insert(&key(i), &[1u8; 1])?;
    }
    for i in 0..n {
        d.insert(&key(i), &vec![2u8; max_value])?;
    }
    Ok(())
}

#[test]
fn naive_arena_runs_out_where_for_entries_does_not() {
    const N: usize = 64;
    const KEY: usize = 8;
    const VALUE: usize = 100;
    // One largest block per entry (16 + 8 + 100 bytes -> 128) is not
    // enough once small blocks have taken part of the arena.
    let naive = heap(N, N * 128, 1);
    assert_eq!(
        small_then_large(&naive, N, KEY, VALUE),
        Err(DictError::CapacityExceeded)
    );
    let cfg = DictConfig::new(N, 0)
        .stripes(1)
        .arena_for(KEY, VALUE)
        .unwrap();
    let sized = ShmDict::in_heap(cfg).unwrap();
    small_then_large(&sized, N, KEY, VALUE).unwrap();
    assert_eq!(sized.verify().unwrap(), N);
}

#[test]
fn for_entries_never_runs_out_under_mixed_size_churn() {
    #[cfg(miri)]
    const ROUNDS: u64 = 2;
    #[cfg(not(miri))]
    const ROUNDS: u64 = 40;
    const N: usize = 200;
    const KEY: usize = 12;
    const VALUE: usize = 300;
    let d = ShmDict::in_heap(DictConfig::for_entries(N, KEY, VALUE).unwrap()).unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for round in 0..ROUNDS {
        for _ in 0..N {
            let id = next(N as u64);
            let k = format!("k{id:0w$}", w = (next(KEY as u64 - 1)) as usize).into_bytes();
            // Sizes biased to the extremes: the worst mix for the classes.
            let len = match next(3) {
                0 => next(4) as usize,
                1 => VALUE - next(4) as usize,
                _ => next(VALUE as u64 + 1) as usize,
            };
            let v = vec![round as u8; len];
            if model.len() >= N && !model.contains_key(&k) {
                let victim = model.keys().next().cloned().unwrap();
                assert!(d.remove(&victim).unwrap().is_some());
                model.remove(&victim);
            }
            d.set(&k, &v)
                .unwrap_or_else(|e| panic!("round {round}: {} entries: {e}", model.len()));
            model.insert(k, v);
        }
        assert_eq!(d.verify().unwrap(), model.len());
    }
    for (k, v) in &model {
        assert_eq!(d.get(k).unwrap().as_ref(), Some(v));
    }
}
