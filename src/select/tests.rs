//! Select in one process (threads): timeouts, the fallback path beyond
//! `futex_waitv`'s 128 words, and the `notify_one` pass-on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{select, Ready, Selected, WaitSet};
use crate::os::Deadline;
use crate::queue::MpmcQueue;
use crate::sync::{Event, Semaphore};

#[test]
fn deadline_passes_with_nothing_ready() {
    let (a, b) = (Event::new(), Semaphore::new(0, None));
    let mut set = WaitSet::new();
    set.add(&a);
    set.add(&b);
    assert!(set.wait_timeout(Duration::from_millis(2)).is_empty());
    assert!(set.poll().is_empty());
    b.release().unwrap();
    assert_eq!(
        set.wait_timeout(Duration::ZERO),
        vec![Selected {
            index: 1,
            ready: Ready::Item
        }]
    );
}

#[test]
fn empty_set_returns_at_once() {
    assert!(WaitSet::new().wait().is_empty());
    assert!(crate::wait(&[], None).is_empty());
}

/// More words than `futex_waitv` takes: the selector sleeps on the first
/// word in slices and still sees a set on the last one.
#[test]
#[cfg_attr(miri, ignore = "threads sleeping in real time; liveness syscalls")]
fn more_than_waitv_max_words_falls_back() {
    let n = crate::os::futex::WAITV_MAX + 2;
    let events: Vec<Event> = (0..n).map(|_| Event::new()).collect();
    let members: Vec<&dyn super::Selectable> = events.iter().map(|e| e as _).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(5));
            events[n - 1].set();
        });
        let ready = select(&members, None);
        assert_eq!(
            ready,
            vec![Selected {
                index: n - 1,
                ready: Ready::Item
            }]
        );
    });
}

/// A queue's sender dropped while the selector sleeps reads `Closed`.
#[test]
#[cfg_attr(miri, ignore = "threads sleeping in real time; liveness syscalls")]
fn last_sender_dropped_reads_closed() {
    let q = MpmcQueue::in_process(8, 2).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            tx.send(b"x").unwrap();
            std::thread::sleep(Duration::from_millis(5));
            drop(tx);
        });
        let mut buf = Vec::new();
        assert_eq!(select(&[&rx], None)[0].ready, Ready::Item);
        rx.try_recv(&mut buf).unwrap();
        let d = Some(Deadline::after(Duration::from_secs(60)));
        assert_eq!(select(&[&rx], d)[0].ready, Ready::Closed);
    });
}

/// A selector woken by a semaphore's `notify_one` passes the wake-up on:
/// a thread blocked in `acquire` next to it still gets the permit.
#[test]
#[cfg_attr(miri, ignore = "threads sleeping in real time; liveness syscalls")]
fn semaphore_wake_is_passed_on() {
    for _ in 0..20 {
        let sem = Semaphore::new(0, None);
        let stop = Event::new();
        let acquired = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                sem.acquire();
                acquired.store(true, Ordering::Release);
                stop.set();
            });
            s.spawn(|| {
                // Keeps selecting (without taking) until the acquirer is done.
                while !stop.is_set() {
                    select(&[&sem, &stop], None);
                    std::thread::yield_now();
                }
            });
            std::thread::sleep(Duration::from_millis(1));
            sem.release().unwrap();
            // Hang watchdog: on a lost wake-up, unblock everyone, then fail.
            let woke = stop.wait_timeout(Duration::from_secs(60));
            if !woke {
                sem.release().unwrap();
                stop.set();
            }
            assert!(woke, "watchdog: the blocked acquirer never woke");
        });
        assert!(acquired.load(Ordering::Acquire));
    }
}
