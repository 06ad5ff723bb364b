//! Named objects across processes: meeting (`open_or_create`, waiting for
//! a name), lifetimes (who unlinks, what survives), stale names left by
//! killed processes (replaced, never touching a live holder), `gc`, the
//! attach table, and name hardening. Real `fork`, real `SIGKILL`, real
//! `/dev/shm`. A `harness = false` binary (forking needs a single-threaded
//! process); cases run one after another under a hang watchdog.
//!
//! `cargo test --release --test xproc_names [filter]`

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::{fork, unique_name, Child};
use shmkit::queue::{GetError, Queue};
use shmkit::segment::{
    gc_dry_run, inspect, open_or_create, validate_name, validate_os_name, Lifetime, ObjectKind,
    OpenOptions, Verdict, ATTACH_SLOTS, LAYOUT_VERSION,
};
use shmkit::{
    AttachError, Barrier, Error, Event, Mutex, Segment, ShmArray, ShmBox, ShmValue,
    UntrustedSegment,
};

const WATCHDOG: Duration = Duration::from_secs(60);

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    common::wait_until(WATCHDOG, what, cond);
}

fn park_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Best-effort cleanup of a test's names.
fn cleanup(names: &[&str]) {
    for n in names {
        let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(n));
    }
}

/// A child that creates an `Event` box called `name`, reports that it did
/// through `ready`, and then sleeps until killed.
fn spawn_creator(name: &str, ready: &ShmValue<u32>) -> Child {
    let name = name.to_owned();
    fork(move || {
        let _ev = ShmBox::<Event>::create(&name, ()).expect("child creates");
        ready.fetch_add(1);
        park_forever()
    })
}

/// Leaves a stale `Event` segment called `name`: its creator is SIGKILLed.
fn leave_stale(name: &str) {
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut c = spawn_creator(name, &ready);
    wait_for("the creator to create", || ready.load() == 1);
    c.kill();
    assert!(exists(name), "a killed creator leaves its name behind");
}

// ---------------------------------------------------------------------
// open_or_create races

const RACERS: usize = 6;
const ROUNDS: usize = 40;

/// `RACERS` processes released together by a barrier call
/// `open_or_create`; each adds 1 to the shared counter and records the
/// inode it got. All must have met in one segment, created by one of them.
fn race_rounds(tag: &str, stale_first: bool) {
    for round in 0..ROUNDS {
        let name = unique_name(tag);
        if stale_first {
            leave_stale(&name);
        }
        let stale_id = stale_first.then(|| inspect(&name).unwrap().report().creator.pid);
        let start = ShmBox::<Barrier>::anonymous(RACERS as u32).unwrap();
        let done = ShmBox::<Barrier>::anonymous(RACERS as u32).unwrap();
        let inodes = ShmArray::<u64>::anonymous(RACERS).unwrap();
        let creators = ShmArray::<u64>::anonymous(RACERS).unwrap();
        let mut kids: Vec<Child> = (0..RACERS)
            .map(|i| {
                let (name, start, done, inodes, creators) =
                    (name.clone(), &start, &done, &inodes, &creators);
                fork(move || {
                    start.wait().expect("start barrier");
                    let m = match ShmBox::<Mutex<u64>>::open_or_create(&name, 0) {
                        Ok(m) => m,
                        Err(e) => {
                            eprintln!("racer {i}: {e}");
                            return 1;
                        }
                    };
                    *m.lock().unwrap() += 1;
                    inodes.set(i, m.segment().file_id().1);
                    let r = inspect(&name).expect("inspect while held");
                    creators.set(i, u64::from(r.report().creator.pid));
                    // Nobody drops before everyone has attached.
                    done.wait().expect("done barrier");
                    0
                })
            })
            .collect();
        for k in &mut kids {
            k.join_ok("racer");
        }
        let ids = inodes.to_vec();
        assert!(
            ids.iter().all(|&i| i == ids[0] && i != 0),
            "round {round}: racers met in different segments: {ids:?}"
        );
        let c = creators.to_vec();
        assert!(c.iter().all(|&p| p == c[0]), "one creator: {c:?}");
        let kid_pids: Vec<u64> = kids.iter().map(|k| k.pid as u64).collect();
        assert!(
            kid_pids.contains(&c[0]),
            "round {round}: the creator {} is one of the racers {kid_pids:?}",
            c[0]
        );
        if let Some(old) = stale_id {
            assert_ne!(u64::from(old), c[0], "the stale segment was replaced");
        }
        // Everyone was a holder and someone other than the creator
        // attached: the last one to drop removed the name.
        assert!(
            !exists(&name),
            "round {round}: holders lifetime unlinks at last drop"
        );
    }
}

fn open_or_create_race_exactly_one_creates() {
    race_rounds("ooc-race", false);
}

fn open_or_create_race_replaces_a_stale_name() {
    race_rounds("ooc-stale", true);
}

/// Two processes released together call `Pipe::open_or_create` on one
/// name: each gets one end (never the same one), they exchange a message
/// each way, and the names are gone once both dropped their ends.
fn pipe_open_or_create_race_pairs_two_processes() {
    use shmkit::queue::Pipe;
    for round in 0..ROUNDS {
        let name = unique_name("ooc-pipe");
        let start = ShmBox::<Barrier>::anonymous(2).unwrap();
        let got = ShmArray::<u64>::anonymous(2).unwrap();
        let mut kids: Vec<Child> = (0..2u64)
            .map(|i| {
                let (name, start, got) = (name.clone(), &start, &got);
                fork(move || {
                    start.wait().expect("start barrier");
                    let mut end = match Pipe::open_or_create(&name, 4096) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("pipe racer {i}: {e}");
                            return 1;
                        }
                    };
                    end.send(&(i + 1).to_le_bytes()).expect("send");
                    let m = end.recv().expect("the other end's message");
                    got.set(i as usize, u64::from_le_bytes(m.try_into().unwrap()));
                    0
                })
            })
            .collect();
        for k in &mut kids {
            k.join_ok("pipe racer");
        }
        assert_eq!(
            got.to_vec(),
            vec![2, 1],
            "round {round}: each end got the other's message"
        );
        assert!(
            !exists(&format!("{name}.ab")) && !exists(&format!("{name}.ba")),
            "round {round}: holders lifetime unlinks both rings at the last drop"
        );
    }
}

// ---------------------------------------------------------------------
// Stale names

fn stale_name_is_replaced_by_create() {
    let name = unique_name("stale-create");
    leave_stale(&name);
    let old = inspect(&name).unwrap().report().clone();
    assert_eq!(old.status(), "stale");
    assert!(!old.creator.alive);
    let fresh = ShmBox::<Event>::create(&name, ()).expect("a stale name is replaced");
    let now = inspect(&name).unwrap().report().clone();
    assert_eq!(now.creator.pid, std::process::id());
    assert_eq!(now.status(), "live");
    drop(fresh);
    assert!(!exists(&name), "the creator's drop unlinks");
}

fn live_holder_is_never_replaced() {
    let name = unique_name("stale-live");
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut creator = spawn_creator(&name, &ready);
    wait_for("the creator", || ready.load() == 1);
    // A second child attaches and stays.
    let attached = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut holder = {
        let (name, attached) = (name.clone(), &attached);
        fork(move || {
            let ev = ShmBox::<Event>::open(&name).expect("attach");
            attached.store(1);
            ev.wait();
            0
        })
    };
    wait_for("the holder to attach", || attached.load() == 1);
    creator.kill();
    // Creator dead, holder alive: not stale.
    match ShmBox::<Event>::create(&name, ()) {
        Err(Error::AlreadyExists(n)) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.status(), "live");
    assert!(!r.creator.alive);
    assert!(r
        .attached
        .iter()
        .any(|a| a.pid == holder.pid as u32 && a.alive));
    let verdicts = gc_dry_run().unwrap();
    assert!(verdicts
        .entries
        .iter()
        .any(|e| e.name == name && e.verdict == Verdict::Held));
    // The holder's segment was not touched: setting it through the name
    // reaches the holder, which then exits normally.
    let ev = ShmBox::<Event>::open(&name).unwrap();
    ev.set();
    holder.join_ok("holder sees the event");
    drop(ev);
    // Its creator was killed and every holder has dropped: the last one
    // (this process) removed the stale name on its way out.
    assert!(!exists(&name));
}

fn forked_child_keeps_the_segment_held() {
    let name = unique_name("fork-hold");
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let grandchild = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    // A child creates the segment and forks a grandchild that inherits
    // the handle (no open of its own); then the child is killed.
    let mut child = {
        let (name, ready, gpid) = (name.clone(), &ready, &grandchild);
        fork(move || {
            let ev = ShmBox::<Event>::create(&name, ()).unwrap();
            let g = fork(|| {
                let _inherited = &ev;
                park_forever()
            });
            gpid.store(g.pid as u32);
            std::mem::forget(g);
            ready.store(1);
            park_forever()
        })
    };
    wait_for("child and grandchild", || ready.load() == 1);
    child.kill();
    let g = grandchild.load() as i32;
    // The grandchild is re-parented to init: make sure it dies even if an
    // assertion below fails.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: kill(2) on a pid we started; harmless if gone.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let grandchild_guard = KillOnDrop(g);
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(
        r.held,
        Some(true),
        "the grandchild's inherited mapping holds it"
    );
    assert!(!r.creator.alive);
    assert!(matches!(
        ShmBox::<Event>::create(&name, ()),
        Err(Error::AlreadyExists(_))
    ));
    drop(grandchild_guard); // SIGKILLs the grandchild (init reaps it)
    wait_for("the grandchild's hold to go", || {
        inspect(&name)
            .map(|i| i.report().held == Some(false))
            .unwrap_or(false)
    });
    let report = shmkit::gc().unwrap();
    assert!(report
        .entries
        .iter()
        .any(|e| e.name == name && e.verdict == Verdict::Removed));
    assert!(!exists(&name));
}

// ---------------------------------------------------------------------
// Drop unlinks only its own segment

fn drop_unlinks_only_its_own_inode() {
    let name = unique_name("own-inode");
    let a = ShmBox::<Event>::create(&name, ()).unwrap();
    Segment::unlink(&name).unwrap(); // by hand, e.g. `shmkit rm`
    let b = ShmBox::<Event>::create(&name, ()).unwrap();
    let b_id = b.segment().file_id();
    let mut b = b;
    b.keep(); // B's own drop must not remove it either
    drop(b);
    drop(a); // A's name was taken over by B: A must not unlink it
    let again = Segment::open(&name).expect("B survives A's drop");
    assert_eq!(again.file_id(), b_id);
    drop(again);
    Segment::unlink(&name).unwrap();
}

// ---------------------------------------------------------------------
// Lifetimes

fn rendezvous_producer_exits_before_consumer() {
    let name = unique_name("rdv");
    let make = |name: &str| {
        open_or_create(
            name,
            Lifetime::Holders,
            &OpenOptions::new(),
            || Queue::<u64>::create(name, 16, 64),
            |_| Queue::<u64>::open(name),
        )
    };
    // The producer sends 50 values and exits before any consumer exists.
    let mut producer = {
        let name = name.clone();
        fork(move || {
            let q = make(&name).expect("producer open_or_create");
            for i in 0..50u64 {
                q.send(i).expect("send");
            }
            0
        })
    };
    producer.join_ok("producer");
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.status(), "kept", "waiting for its first opener: {r:?}");
    assert_eq!(r.state.lifetime, Lifetime::Holders);
    // gc leaves it alone.
    assert!(gc_dry_run()
        .unwrap()
        .entries
        .iter()
        .any(|e| e.name == name && e.verdict == Verdict::Kept { persistent: false }));
    // The consumer arrives later (a separate process) and gets everything.
    let mut consumer = {
        let name = name.clone();
        fork(move || {
            let q = make(&name).expect("consumer open_or_create");
            let mut got = Vec::new();
            loop {
                match q.try_recv() {
                    Ok(v) => got.push(v),
                    Err(GetError::Empty) | Err(GetError::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if got != (0..50).collect::<Vec<u64>>() {
                eprintln!("consumer got {got:?}");
                return 1;
            }
            0
        })
    };
    consumer.join_ok("consumer got all 50 in order");
    assert!(!exists(&name), "handed over, last holder gone: unlinked");
}

/// A producer whose name dies with it (`Lifetime::Creator`, the `create`
/// default) waits with `wait_drained` until a consumer that arrives later
/// took everything; only then does it exit and unlink the name.
fn producer_waits_until_drained_before_exiting() {
    let name = unique_name("drain");
    let ready = ShmBox::<Event>::anonymous(()).unwrap();
    let mut producer = {
        let (name, ready) = (name.clone(), &ready);
        fork(move || {
            let q = Queue::<u64>::create(&name, 16, 8).expect("create");
            for i in 0..8u64 {
                q.send(i).expect("send");
            }
            ready.set();
            match q.wait_drained(Some(Duration::from_secs(60))) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("producer: {e}");
                    1
                }
            }
        })
    };
    ready.wait_timeout(Duration::from_secs(30));
    // The producer is still there (waiting), so the name is too.
    let q = Queue::<u64>::open(&name).expect("the name outlives the send");
    let got: Vec<u64> = (0..8).map(|_| q.recv().expect("recv")).collect();
    assert_eq!(got, (0..8).collect::<Vec<u64>>());
    producer.join_ok("producer saw the queue drained");
}

/// `wait_drained` on a queue whose only receiver died with messages still
/// queued ends with `Disconnected`, not a hang.
fn wait_drained_reports_a_dead_receiver() {
    let q = shmkit::queue::MpmcQueue::anonymous(8, 8).unwrap();
    let tx = q.sender().unwrap();
    for i in 0..4u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let got_one = ShmBox::<Event>::anonymous(()).unwrap();
    let mut consumer = {
        let (q, got_one) = (&q, &got_one);
        fork(move || {
            let rx = q.receiver().expect("receiver");
            let mut buf = Vec::new();
            rx.recv(&mut buf).expect("recv");
            got_one.set();
            park_forever()
        })
    };
    assert!(got_one.wait_timeout(Duration::from_secs(30)));
    consumer.kill();
    assert_eq!(
        q.wait_drained(Some(Duration::from_secs(60))),
        Err(shmkit::queue::DrainError::Disconnected)
    );
    assert_eq!(q.len(), 3, "the three unreceived messages are still queued");
}

fn creator_lifetime_unlinks_at_creator_drop() {
    let name = unique_name("life-creator");
    let ev = ShmBox::<Event>::create(&name, ()).unwrap();
    let attached = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut other = {
        let (name, attached) = (name.clone(), &attached);
        fork(move || {
            let e = ShmBox::<Event>::open(&name).unwrap();
            attached.store(1);
            e.wait();
            0
        })
    };
    wait_for("attach", || attached.load() == 1);
    ev.set();
    drop(ev);
    assert!(
        !exists(&name),
        "creator lifetime: gone at the creator's drop"
    );
    other.join_ok("the attached process still works after the unlink");
}

fn holders_lifetime_outlives_the_creator() {
    let name = unique_name("life-holders");
    let ev = ShmBox::<Event>::create(&name, ()).unwrap();
    ev.segment().set_lifetime(Lifetime::Holders).unwrap();
    let attached = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut other = {
        let (name, attached) = (name.clone(), &attached);
        fork(move || {
            let e = ShmBox::<Event>::open(&name).unwrap();
            attached.store(1);
            e.wait();
            // Still there while this process holds it.
            if !exists(&name) {
                return 1;
            }
            0
        })
    };
    wait_for("attach", || attached.load() == 1);
    ev.set();
    drop(ev);
    assert!(exists(&name), "another process holds it: the name stays");
    other.join_ok("holder");
    assert!(!exists(&name), "the last holder unlinked it");
}

fn persistent_survives_everyone() {
    let name = unique_name("persist");
    let mut ev = ShmBox::<Event>::create(&name, ()).unwrap();
    ev.keep();
    let mut child = {
        let name = name.clone();
        fork(move || {
            let e = ShmBox::<Event>::open(&name).unwrap();
            e.set();
            // Even a holders lifetime does not unlink a persistent name.
            e.segment().set_lifetime(Lifetime::Holders).unwrap();
            drop(e);
            0
        })
    };
    child.join_ok("child");
    drop(ev);
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.status(), "persistent");
    assert!(matches!(
        ShmBox::<Event>::create(&name, ()),
        Err(Error::AlreadyExists(_))
    ));
    let last = ShmBox::<Event>::open(&name).unwrap();
    assert!(last.is_set(), "the child's write is still there");
    drop(last);
    assert!(exists(&name));
    Segment::unlink(&name).unwrap();
}

fn last_user_unlinks_a_kept_segment() {
    let name = unique_name("unlink-on-drop");
    let mut ev = ShmBox::<Event>::create(&name, ()).unwrap();
    ev.keep();
    drop(ev);
    let mut seg = Segment::open(&name).unwrap();
    seg.unlink_on_drop();
    drop(seg);
    assert!(!exists(&name));
}

// ---------------------------------------------------------------------
// Waiting for a name

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn open_waits_for_the_name_without_spinning() {
    let name = unique_name("wait");
    let mut creator = {
        let name = name.clone();
        fork(move || {
            std::thread::sleep(Duration::from_millis(400));
            let mut ev = ShmBox::<Event>::create(&name, ()).unwrap();
            ev.set();
            ev.keep();
            0
        })
    };
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let ev = ShmBox::<Event>::open_with(&name, &OpenOptions::new().wait(Duration::from_secs(60)))
        .expect("the name appears");
    let (cpu, waited) = (cpu_time() - cpu0, t0.elapsed());
    assert!(ev.is_set());
    creator.join_ok("creator");
    // Sleeping on inotify costs next to no CPU (a busy loop would cost as
    // much CPU as the wait took).
    assert!(
        cpu * 4 < waited,
        "waiting {waited:?} for the name cost {cpu:?} of CPU"
    );
    drop(ev);
    Segment::unlink(&name).unwrap();
}

fn open_wait_times_out_with_not_found() {
    let name = unique_name("wait-none");
    match ShmBox::<Event>::open_with(&name, &OpenOptions::new().wait(Duration::from_millis(50))) {
        Err(AttachError::NotFound(n)) => assert_eq!(n, name),
        other => panic!("{other:?}"),
    }
    match ShmBox::<Event>::open(&name) {
        Err(AttachError::NotFound(_)) => {}
        other => panic!("no wait by default: {other:?}"),
    }
}

// ---------------------------------------------------------------------
// gc

fn gc_removes_only_stale_shmkit_segments() {
    let stale = unique_name("gc-stale");
    let live = unique_name("gc-live");
    let kept = unique_name("gc-kept");
    let persistent = unique_name("gc-persist");
    let foreign = unique_name("gc-foreign");
    let old = unique_name("gc-oldver");
    leave_stale(&stale);
    let live_box = ShmBox::<Event>::create(&live, ()).unwrap();
    {
        let b = ShmBox::<Event>::create(&kept, ()).unwrap();
        b.segment().set_lifetime(Lifetime::Holders).unwrap();
    }
    {
        let mut b = ShmBox::<Event>::create(&persistent, ()).unwrap();
        b.keep();
    }
    std::fs::write(format!("/dev/shm/{foreign}"), b"not ours, no magic here").unwrap();
    {
        // A shmkit segment of another layout version that nobody holds.
        let mut s = Segment::create(&old, 4096).unwrap();
        let mut img = [0u8; 16];
        img[0..8].copy_from_slice(b"SHMKIT\0\x01");
        img[8..12].copy_from_slice(&(LAYOUT_VERSION + 7).to_le_bytes());
        // SAFETY: 4096 writable bytes, nobody else uses them.
        unsafe { std::ptr::copy_nonoverlapping(img.as_ptr(), s.as_ptr(), 16) };
        s.keep();
    }
    let verdict = |r: &shmkit::segment::GcReport, n: &str| {
        r.entries
            .iter()
            .find(|e| e.name == n)
            .map(|e| e.verdict.clone())
    };
    let dry = gc_dry_run().unwrap();
    assert_eq!(verdict(&dry, &stale), Some(Verdict::WouldRemove));
    assert_eq!(verdict(&dry, &live), Some(Verdict::Held));
    assert_eq!(
        verdict(&dry, &kept),
        Some(Verdict::Kept { persistent: false })
    );
    assert_eq!(
        verdict(&dry, &persistent),
        Some(Verdict::Kept { persistent: true })
    );
    assert_eq!(
        verdict(&dry, &foreign),
        None,
        "other programs' files are not listed"
    );
    assert_eq!(
        verdict(&dry, &old),
        Some(Verdict::OtherVersion(LAYOUT_VERSION + 7))
    );
    assert!(exists(&stale), "a dry run removes nothing");
    let done = shmkit::gc().unwrap();
    assert_eq!(verdict(&done, &stale), Some(Verdict::Removed));
    assert!(!exists(&stale));
    for n in [&live, &kept, &persistent, &foreign, &old] {
        assert!(exists(n), "gc must not remove {n}");
    }
    assert!(!live_box.is_set(), "the live segment still works");
    drop(live_box);
    cleanup(&[&kept, &persistent, &foreign, &old]);
}

fn gc_removes_leftover_creation_files_of_dead_processes() {
    // What a creator killed between making its file and naming it leaves
    // where O_TMPFILE is unavailable: `.shmkit-new-<pid>-<start>-<n>`.
    let dead = ".shmkit-new-1073741823-5-0".to_owned(); // pid above PID_MAX_LIMIT
    let me = std::process::id();
    let start = shmkit::os::process::process_start_time(me).unwrap();
    let alive = format!(".shmkit-new-{me}-{start}-999");
    std::fs::write(format!("/dev/shm/{dead}"), b"x").unwrap();
    std::fs::write(format!("/dev/shm/{alive}"), b"x").unwrap();
    let r = shmkit::gc().unwrap();
    assert!(r
        .entries
        .iter()
        .any(|e| e.name == dead && e.verdict == Verdict::Removed));
    assert!(!exists(&dead));
    assert!(exists(&alive), "a live creator's file is left alone");
    cleanup(&[&alive]);
}

// ---------------------------------------------------------------------
// The attach table

fn attach_table_lists_processes_and_forgets_them() {
    let name = unique_name("table");
    let ev = ShmBox::<Event>::create(&name, ()).unwrap();
    let count = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..3)
        .map(|_| {
            let (name, count) = (name.clone(), &count);
            fork(move || {
                let e = ShmBox::<Event>::open(&name).unwrap();
                count.fetch_add(1);
                e.wait();
                0
            })
        })
        .collect();
    wait_for("three attaches", || count.load() == 3);
    let r = inspect(&name).unwrap().report().clone();
    let mut pids: Vec<u32> = r.attached.iter().map(|a| a.pid).collect();
    pids.sort_unstable();
    let mut want: Vec<u32> = kids.iter().map(|k| k.pid as u32).collect();
    want.push(std::process::id());
    want.sort_unstable();
    assert_eq!(pids, want, "creator and the three attached processes");
    assert!(r.attached.iter().all(|a| a.alive));
    // One is killed: its entry stays (until swept) but is reported dead.
    kids[0].kill();
    let r = inspect(&name).unwrap().report().clone();
    let dead = r
        .attached
        .iter()
        .find(|a| a.pid == kids[0].pid as u32)
        .unwrap();
    assert!(!dead.alive);
    // The others exit normally: their entries go.
    ev.set();
    for k in &mut kids[1..] {
        k.join_ok("attached child");
    }
    let r = inspect(&name).unwrap().report().clone();
    let pids: Vec<u32> = r.attached.iter().map(|a| a.pid).collect();
    assert!(pids.contains(&std::process::id()));
    assert!(!pids.contains(&(kids[1].pid as u32)) && !pids.contains(&(kids[2].pid as u32)));
}

fn full_attach_table_sweeps_dead_and_counts_untracked() {
    let name = unique_name("table-full");
    let ev = ShmBox::<Event>::create(&name, ()).unwrap(); // slot 1 of 63
                                                          // Four children fill 60 slots between them, then are killed without
                                                          // deregistering.
    let ready = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut kids: Vec<Child> = (0..4)
        .map(|_| {
            let (name, ready) = (name.clone(), &ready);
            fork(move || {
                let hs: Vec<_> = (0..15)
                    .map(|_| ShmBox::<Event>::open(&name).unwrap())
                    .collect();
                ready.fetch_add(1);
                let _keep = hs;
                park_forever()
            })
        })
        .collect();
    wait_for("60 attaches", || ready.load() == 4);
    let mut mine: Vec<ShmBox<Event>> = (0..2).map(|_| ShmBox::open(&name).unwrap()).collect();
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.attached.len(), ATTACH_SLOTS, "the table is full");
    // Full, everyone alive: the next attach is only counted.
    mine.push(ShmBox::open(&name).unwrap());
    assert_eq!(inspect(&name).unwrap().report().untracked, 1);
    for k in &mut kids {
        k.kill();
    }
    // The next attach sweeps the 60 dead entries and gets a slot.
    mine.push(ShmBox::open(&name).unwrap());
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.untracked, 1);
    assert_eq!(
        r.attached.len(),
        4,
        "creator + 3 tracked handles of this process"
    );
    assert!(r.attached.iter().all(|a| a.alive));
    drop(mine);
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!((r.attached.len(), r.untracked), (1, 0));
    drop(ev);
}

// ---------------------------------------------------------------------
// Names

fn bad_names_say_why() {
    let long = "a".repeat(201);
    for (name, why) in [
        ("", "empty"),
        ("..", "directories"),
        (".", "directories"),
        (".hidden", "starts with '.'"),
        ("a/b", "'/'"),
        ("a\0b", "NUL"),
        (long.as_str(), "longer than 200"),
        ("sp ace", "only ASCII"),
    ] {
        let e = validate_name(name).unwrap_err().to_string();
        assert!(e.contains(why), "{name:?}: {e}");
        let e = ShmBox::<Event>::create(name, ()).unwrap_err().to_string();
        assert!(e.contains(why), "create {name:?}: {e}");
        let e = ShmBox::<Event>::open(name).unwrap_err().to_string();
        assert!(e.contains(why), "open {name:?}: {e}");
    }
    let e = validate_os_name(OsStr::from_bytes(b"bad\xff")).unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

fn fifo_and_directory_are_refused_and_left_alone() {
    let fifo = unique_name("fifo");
    let dir = unique_name("dir");
    let path = std::ffi::CString::new(format!("/dev/shm/{fifo}")).unwrap();
    // SAFETY: a valid C string path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(format!("/dev/shm/{dir}")).unwrap();
    for n in [&fifo, &dir] {
        // Refused as untrusted (not a regular file), never opened or removed.
        let untrusted = |e: &AttachError| {
            matches!(
                e,
                AttachError::Untrusted {
                    reason: UntrustedSegment::NotRegularFile { .. },
                    ..
                }
            )
        };
        match Segment::open(n) {
            Err(e) => assert!(untrusted(&e), "{n}: {e:?}"),
            Ok(_) => panic!("{n}: opened"),
        }
        match ShmBox::<Event>::create(n, ()) {
            Err(Error::AlreadyExists(_)) => {}
            Err(Error::Attach(e)) => assert!(untrusted(&e), "{n}: {e:?}"),
            other => panic!("{n}: {other:?}"),
        }
        match ShmBox::<Event>::open_or_create(n, ()) {
            Err(Error::Attach(e)) => assert!(untrusted(&e), "{n}: {e:?}"),
            other => panic!("{n}: {other:?}"),
        }
        assert!(exists(n), "never removed");
    }
    let r = shmkit::gc().unwrap();
    assert!(r.entries.iter().all(|e| e.name != fifo && e.name != dir));
    cleanup(&[&fifo]);
    let _ = std::fs::remove_dir(format!("/dev/shm/{dir}"));
}

fn full_dev_shm_is_no_space_at_create() {
    let (total, _avail) = shmkit::os::shm_names::space().unwrap();
    if total == 0 {
        println!("  (skipped: /dev/shm has no size limit, so no size is refused up front)");
        return;
    }
    // More than the whole filesystem: tmpfs refuses the reservation before
    // allocating anything, so this never fills /dev/shm.
    let size = (total + (64 << 20)) as usize;
    match Segment::create(&unique_name("nospace-big"), size) {
        Err(Error::NoSpace(n)) => assert_eq!(n, size as u64),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(
        !std::fs::read_dir("/dev/shm").unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("nospace-big")),
        "a failed create leaves no name"
    );
}

fn kind_is_recorded_and_checked() {
    let name = unique_name("kind");
    let m = ShmBox::<Mutex<u64>>::create(&name, 3).unwrap();
    let r = inspect(&name).unwrap().report().clone();
    assert_eq!(r.kind, ObjectKind::MUTEX);
    assert_eq!(r.version, LAYOUT_VERSION);
    match ShmBox::<Event>::open_or_create(&name, ()) {
        Err(Error::Attach(AttachError::KindMismatch { .. })) => {}
        other => panic!("a live segment of another kind is not replaced: {other:?}"),
    }
    assert_eq!(*m.lock().unwrap(), 3);
}

fn main() {
    common::run(
        &[
            (
                "open_or_create_race_exactly_one_creates",
                open_or_create_race_exactly_one_creates,
            ),
            (
                "open_or_create_race_replaces_a_stale_name",
                open_or_create_race_replaces_a_stale_name,
            ),
            (
                "pipe_open_or_create_race_pairs_two_processes",
                pipe_open_or_create_race_pairs_two_processes,
            ),
            (
                "stale_name_is_replaced_by_create",
                stale_name_is_replaced_by_create,
            ),
            (
                "live_holder_is_never_replaced",
                live_holder_is_never_replaced,
            ),
            (
                "forked_child_keeps_the_segment_held",
                forked_child_keeps_the_segment_held,
            ),
            (
                "drop_unlinks_only_its_own_inode",
                drop_unlinks_only_its_own_inode,
            ),
            (
                "rendezvous_producer_exits_before_consumer",
                rendezvous_producer_exits_before_consumer,
            ),
            (
                "producer_waits_until_drained_before_exiting",
                producer_waits_until_drained_before_exiting,
            ),
            (
                "wait_drained_reports_a_dead_receiver",
                wait_drained_reports_a_dead_receiver,
            ),
            (
                "creator_lifetime_unlinks_at_creator_drop",
                creator_lifetime_unlinks_at_creator_drop,
            ),
            (
                "holders_lifetime_outlives_the_creator",
                holders_lifetime_outlives_the_creator,
            ),
            ("persistent_survives_everyone", persistent_survives_everyone),
            (
                "last_user_unlinks_a_kept_segment",
                last_user_unlinks_a_kept_segment,
            ),
            (
                "open_waits_for_the_name_without_spinning",
                open_waits_for_the_name_without_spinning,
            ),
            (
                "open_wait_times_out_with_not_found",
                open_wait_times_out_with_not_found,
            ),
            (
                "gc_removes_only_stale_shmkit_segments",
                gc_removes_only_stale_shmkit_segments,
            ),
            (
                "gc_removes_leftover_creation_files_of_dead_processes",
                gc_removes_leftover_creation_files_of_dead_processes,
            ),
            (
                "attach_table_lists_processes_and_forgets_them",
                attach_table_lists_processes_and_forgets_them,
            ),
            (
                "full_attach_table_sweeps_dead_and_counts_untracked",
                full_attach_table_sweeps_dead_and_counts_untracked,
            ),
            ("bad_names_say_why", bad_names_say_why),
            (
                "fifo_and_directory_are_refused_and_left_alone",
                fifo_and_directory_are_refused_and_left_alone,
            ),
            (
                "full_dev_shm_is_no_space_at_create",
                full_dev_shm_is_no_space_at_create,
            ),
            ("kind_is_recorded_and_checked", kind_is_recorded_and_checked),
        ],
        120,
    );
}
