//! Loom model of the endpoint registry (`shmkit::queue::peers`): a
//! `register` in one thread racing the `unregister` of the last handle in
//! another must never free the slot of an endpoint that is still held, and
//! the handle count must come out exact; and peer-slot reclaim with
//! simulated processes (`shmkit::os::process::loom_liveness`): a dead
//! peer's slot is taken over, a live one's never.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test --release --test loom_peers`
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmkit::os::process::loom_liveness as liveness;
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

/// Peer-slot reclaim: a table with one slot. Process A registers and dies
/// without unregistering; process B registers concurrently. B may take
/// the slot only if it was free or A is dead — never while A is alive and
/// holds it — and once both are done (A dead, B unregistered), a third
/// registration always succeeds: the dead peer's slot is reclaimed.
#[test]
fn loom_dead_peer_slot_reclaimed_live_one_never() {
    loom::model(|| {
        liveness::become_process();
        let reg = Registry::new(1);
        let a_pid = Arc::new(AtomicU32::new(0));
        let a_holds = Arc::new(AtomicBool::new(false));
        let a = {
            let (reg, a_pid, a_holds) = (reg.clone(), a_pid.clone(), a_holds.clone());
            thread::spawn(move || {
                a_pid.store(liveness::become_process(), Ordering::Release);
                if reg.table().register().is_ok() {
                    // Published before the death: whoever sees A dead
                    // also sees that A held the slot.
                    a_holds.store(true, Ordering::Release);
                }
                liveness::die();
            })
        };
        let b = {
            let (reg, a_pid, a_holds) = (reg.clone(), a_pid.clone(), a_holds.clone());
            thread::spawn(move || {
                let me = liveness::become_process();
                let table = reg.table();
                match table.register() {
                    Ok(slot) => {
                        assert_eq!(table.slot_pid(slot), me);
                        let a = a_pid.load(Ordering::Acquire);
                        assert!(
                            !(a_holds.load(Ordering::Acquire) && shmkit::os::process_alive(a)),
                            "a live peer's slot was taken"
                        );
                        table.unregister(slot);
                    }
                    // Full: the one slot names A, which was alive.
                    Err(_) => assert_eq!(table.slot_pid(0), a_pid.load(Ordering::Acquire)),
                }
            })
        };
        a.join().unwrap();
        b.join().unwrap();
        let table = reg.table();
        // `register` itself reclaims (before `live_count`, which also
        // frees dead slots as a side effect, could do it for us).
        let mine = table.register().expect("the dead peer's slot is reclaimed");
        assert_eq!(table.slot_pid(mine), shmkit::os::current_pid());
        assert_eq!(table.live_count(), 1, "only this process is alive");
        table.unregister(mine);
        assert_eq!(table.slot_pid(0), 0);
    });
}
