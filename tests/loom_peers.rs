//! Loom model of the endpoint registry (`shmkit::queue::peers`): a
//! `register` in one thread racing the `unregister` of the last handle in
//! another must never free the slot of an endpoint that is still held, and
//! the handle count must come out exact.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test --release --test loom_peers`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmkit::queue::peers::{PeerSlot, PeerTable, PeerTableHeader};

struct Registry {
    header: PeerTableHeader,
    slots: Vec<PeerSlot>,
}

impl Registry {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Registry {
            header: PeerTableHeader::default(),
            slots: (0..n).map(|_| PeerSlot::default()).collect(),
        })
    }

    fn table(&self) -> PeerTable<'_> {
        PeerTable::new(&self.header, &self.slots)
    }
}

/// The last handle of this process leaves while another thread of the same
/// process registers a new one: the new handle's slot must still name this
/// process (it is live), and once it leaves too, nothing is registered.
#[test]
fn loom_register_races_last_unregister() {
    loom::model(|| {
        let reg = Registry::new(2);
        let first = reg.table().register().unwrap();
        let r2 = reg.clone();
        let t = thread::spawn(move || {
            let table = r2.table();
            let mine = table.register().unwrap();
            // While this handle is held the side is connected and the slot
            // names this process.
            assert_eq!(table.slot_pid(mine), shmkit::os::current_pid());
            assert_eq!(table.live_count(), 1);
            assert!(!table.is_disconnected());
            table.unregister(mine);
        });
        reg.table().unregister(first);
        t.join().unwrap();
        let table = reg.table();
        assert_eq!(table.live_count(), 0);
        assert!(table.is_disconnected());
        // Every slot is free again: a fresh registration gets slot 0 and is
        // this process's only handle.
        let again = table.register().unwrap();
        table.unregister(again);
        assert_eq!(table.live_count(), 0);
        for i in 0..2 {
            assert_eq!(table.slot_pid(i), 0);
        }
    });
}

/// Two handles registered and dropped concurrently by two threads: the
/// count never underflows and no registration leaks.
#[test]
fn loom_two_registrations_balance() {
    loom::model(|| {
        let reg = Registry::new(1);
        let r2 = reg.clone();
        let t = thread::spawn(move || {
            let table = r2.table();
            let mine = table.register().unwrap();
            assert!(!table.is_disconnected());
            table.unregister(mine);
        });
        let table = reg.table();
        let mine = table.register().unwrap();
        assert!(!table.is_disconnected());
        table.unregister(mine);
        t.join().unwrap();
        assert_eq!(table.live_count(), 0);
        assert_eq!(table.slot_pid(0), 0);
    });
}
