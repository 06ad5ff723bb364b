//! Loom model of select's register → re-check → park protocol over two
//! and three futex words (`shmkit::select`).
//!
//! A selector registers on every member's notifier, re-checks every
//! member, then sleeps in `futex_waitv` on all the words at once (under
//! `cfg(loom)` the futex is a loom `Mutex` + `Condvar` whose value check
//! covers every word, see `src/os/futex.rs`). Setters publish and notify
//! on one word each. If a wake-up could be lost on any word, some
//! interleaving leaves the selector asleep with no one to wake it, and
//! loom reports a deadlock.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom cargo test --release --test loom_select`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

use shmkit::select::{select, Ready, Selected};
use shmkit::Event;

/// Two words, one setter: the selector returns exactly the set event.
#[test]
fn two_words_one_setter_wakes_the_selector() {
    loom::model(|| {
        let a = Arc::new(Event::new());
        let b = Arc::new(Event::new());
        let b2 = b.clone();
        let t = thread::spawn(move || b2.set());
        let ready = select(&[&*a, &*b], None);
        assert_eq!(
            ready,
            vec![Selected {
                index: 1,
                ready: Ready::Item
            }]
        );
        t.join().unwrap();
    });
}

/// Three words, two setters on the outer ones: the selector keeps
/// selecting over the members it has not seen until it has seen both, and
/// never reports the middle one.
#[test]
fn three_words_two_setters_both_seen() {
    loom::model(|| {
        let words: Arc<[Event; 3]> = Arc::new([Event::new(), Event::new(), Event::new()]);
        let (w0, w2) = (words.clone(), words.clone());
        let t0 = thread::spawn(move || w0[0].set());
        let t2 = thread::spawn(move || w2[2].set());
        let mut seen = [false; 3];
        while !(seen[0] && seen[2]) {
            // Only the members not seen yet (a set event stays ready).
            let open: Vec<usize> = (0..3).filter(|&i| !seen[i]).collect();
            let members: Vec<&dyn shmkit::Selectable> = open
                .iter()
                .map(|&i| &words[i] as &dyn shmkit::Selectable)
                .collect();
            for s in select(&members, None) {
                seen[open[s.index]] = true;
            }
        }
        assert!(!seen[1]);
        t0.join().unwrap();
        t2.join().unwrap();
    });
}
