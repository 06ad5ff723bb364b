//! loom models of the dict's read path against a concurrent writer: a
//! reader under the stripe lock sees the old or the new complete value,
//! never a torn one, and counters stay exact.
#![cfg(loom)]

use loom::thread;
use shmkit::{DictConfig, ShmDict};
use std::sync::Arc;

fn dict() -> Arc<ShmDict> {
    Arc::new(ShmDict::in_heap(DictConfig::new(4, 1024).stripes(1)).unwrap())
}

#[test]
fn loom_reader_sees_old_or_new_value() {
    loom::model(|| {
        let d = dict();
        d.insert(b"k", &[1u8; 24]).unwrap();
        let w = {
            let d = d.clone();
            thread::spawn(move || {
                // Replacement with another length: fresh block, one publish.
                d.insert(b"k", &[2u8; 40]).unwrap();
            })
        };
        let v = d.get(b"k").unwrap().unwrap();
        assert!(v == [1u8; 24] || v == [2u8; 40], "torn value {v:?}");
        w.join().unwrap();
        assert_eq!(d.get(b"k").unwrap().unwrap(), [2u8; 40]);
        assert_eq!(d.verify().unwrap(), 1);
    });
}

#[test]
fn loom_reader_vs_remove_and_reinsert() {
    loom::model(|| {
        let d = dict();
        d.insert(b"a", b"old-value").unwrap();
        let w = {
            let d = d.clone();
            thread::spawn(move || {
                d.remove(b"a").unwrap();
                d.insert(b"a", b"new-value!").unwrap();
            })
        };
        let seen = d.get_with(b"a", |v| v.to_vec()).unwrap();
        assert!(
            matches!(
                seen.as_deref(),
                None | Some(b"old-value") | Some(b"new-value!")
            ),
            "unexpected {seen:?}"
        );
        w.join().unwrap();
        assert_eq!(d.len(), 1);
    });
}

#[test]
fn loom_two_updaters_no_lost_update() {
    loom::model(|| {
        let d = dict();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let d = d.clone();
                thread::spawn(move || {
                    d.fetch_add_i64(b"n", 1).unwrap();
                })
            })
            .collect();
        let seen = d.get_i64(b"n").unwrap();
        assert!(matches!(seen, None | Some(1) | Some(2)));
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(d.get_i64(b"n").unwrap(), Some(2));
    });
}
