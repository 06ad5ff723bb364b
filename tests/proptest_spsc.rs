//! Property test: random push / pop / reserve+commit / read+release / batch
//! sequences on an in-process `SpscRing`, against a `VecDeque` model.

use std::collections::VecDeque;

use proptest::prelude::*;
use shmkit::queue::{SpscRing, TryRecvError, TrySendError};

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    Pop,
    Reserve { len: usize, commit: Option<usize> },
    Read,
    Batch(Vec<usize>),
    PopBatch(usize),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=max).prop_map(Op::Push),
        3 => Just(Op::Pop),
        1 => (0..=max, proptest::option::of(0..=max)).prop_map(|(len, c)| Op::Reserve {
            len,
            commit: c.map(|c| c.min(len)),
        }),
        1 => Just(Op::Read),
        1 => proptest::collection::vec(0..=max, 0..5).prop_map(Op::Batch),
        1 => (1usize..4).prop_map(Op::PopBatch),
    ]
}

fn msg(counter: &mut u8, len: usize) -> Vec<u8> {
    *counter = counter.wrapping_add(1);
    (0..len).map(|i| counter.wrapping_add(i as u8)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn ring_matches_model(cap_log in 4u32..8, ops in proptest::collection::vec(op(130), 1..200)) {
        let cap = 1usize << cap_log;
        let max = cap - 4;
        let ring = SpscRing::in_process(cap).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut c = 0u8;
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Push(len) => {
                    let m = msg(&mut c, len);
                    match tx.try_push(&m) {
                        Ok(()) => model.push_back(m),
                        Err(TrySendError::TooLarge(_)) => prop_assert!(len > max),
                        Err(TrySendError::Full(_)) => {
                            prop_assert!(len <= max);
                            if model.is_empty() {
                                // Only a pad can be in the way: popping skips it.
                                prop_assert_eq!(rx.try_pop(&mut buf), Err(TryRecvError::Empty));
                                prop_assert!(tx.try_push(&m).is_ok());
                                model.push_back(m);
                            }
                        }
                        Err(e) => prop_assert!(false, "{:?}", e),
                    }
                }
                Op::Pop => match rx.try_pop(&mut buf) {
                    Ok(()) => prop_assert_eq!(Some(buf.clone()), model.pop_front()),
                    Err(TryRecvError::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "{:?}", e),
                },
                Op::Reserve { len, commit } => {
                    let m = msg(&mut c, len);
                    match tx.reserve(len) {
                        Ok(mut g) => {
                            g.copy_from_slice(&m);
                            if let Some(k) = commit {
                                g.commit(k);
                                model.push_back(m[..k].to_vec());
                            }
                        }
                        Err(TrySendError::TooLarge(_)) => prop_assert!(len > max),
                        Err(TrySendError::Full(_)) => prop_assert!(len <= max),
                        Err(e) => prop_assert!(false, "{:?}", e),
                    }
                }
                Op::Read => match rx.read() {
                    Ok(g) => {
                        prop_assert_eq!(Some(&g.to_vec()), model.front());
                        g.release();
                        model.pop_front();
                    }
                    Err(TryRecvError::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "{:?}", e),
                },
                Op::Batch(lens) => {
                    let msgs: Vec<Vec<u8>> = lens.iter().map(|&l| msg(&mut c, l)).collect();
                    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
                    let n = tx.push_batch(&refs);
                    prop_assert!(n <= msgs.len());
                    model.extend(msgs.into_iter().take(n));
                }
                Op::PopBatch(max_n) => {
                    let mut got = Vec::new();
                    match rx.try_pop_batch(max_n, |f| got.push(f.to_vec())) {
                        Ok(n) => {
                            prop_assert!(n >= 1 && n <= max_n);
                            for g in got {
                                prop_assert_eq!(Some(g), model.pop_front());
                            }
                        }
                        Err(TryRecvError::Empty) => prop_assert!(model.is_empty()),
                        Err(e) => prop_assert!(false, "{:?}", e),
                    }
                }
            }
            prop_assert_eq!(rx.len(), model.len());
        }
        while let Ok(()) = rx.try_pop(&mut buf) {
            prop_assert_eq!(Some(buf.clone()), model.pop_front());
        }
        prop_assert!(model.is_empty());
    }
}
