//! Cross-process tests of spilling (typed queue values larger than a
//! slot): real `fork`, real segments, real `SIGKILL`. A `harness = false`
//! binary (fork needs a single-threaded process); every case runs under a
//! hang watchdog.

// The shared harness is foundation code; silence lints newer than it.
#[allow(clippy::all, unknown_lints, function_casts_as_integer)]
mod common;

use std::time::Duration;

use common::{fork, run, unique_name, Rng};
use serde::{Deserialize, Serialize};
use shmkit::queue::{GetError, Queue};

/// `len` bytes that depend on `seed` (so a receiver can check every byte).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Every name in /dev/shm that starts with `prefix`.
fn shm_names_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The spill prefix (`shmkit-spill-<uid>`) of a queue, learnt from the
/// spill segment a large value creates (and then received back).
fn family_of(q: &Queue<Vec<u8>>) -> String {
    let before = shm_names_with("shmkit-spill-");
    q.put(vec![0xee; 4096]).unwrap();
    let after = shm_names_with("shmkit-spill-");
    let mine = format!("-{}-", std::process::id());
    let new: Vec<&String> = after
        .iter()
        .filter(|n| !before.contains(n) && n.matches('-').count() == 4 && n.contains(&mine))
        .collect();
    assert_eq!(new.len(), 1, "one new spill segment: {new:?}");
    let name = new[0].clone();
    assert_eq!(q.get_nowait(), Ok(vec![0xee; 4096]));
    // shmkit-spill-<uid>-<pid>-<seq> → shmkit-spill-<uid>
    name.rsplitn(3, '-').nth(2).unwrap().to_owned()
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Scan {
    id: u32,
    label: String,
    samples: Vec<u64>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Bytes(Vec<u8>),
    Text(String),
    Scan(Scan),
}

fn scan() -> Scan {
    Scan {
        id: 7,
        label: "ß".repeat(20_000),
        samples: (0..100_000u64).map(|i| i * i).collect(),
    }
}

/// 1 MiB and 5 MiB byte vectors, a big string and a big struct through
/// `Queue::new()` to a forked child, mixed with small messages: all
/// arrive intact and in order. The parent drops its handle before the
/// child has read everything: the child's own hold keeps the spills.
fn big_values_to_forked_child() {
    let q = Queue::<Msg>::new().unwrap();
    let ready = Queue::<u8>::bounded(1).unwrap();
    let (cq, cready) = (q.clone(), ready.clone());
    let mut child = fork(move || {
        // Wait until the parent has sent everything and dropped its queue.
        if cready.get() != Ok(1) {
            return 10;
        }
        let want = [
            Msg::Text("first".into()),
            Msg::Bytes(pattern(1, 1 << 20)),
            Msg::Bytes(vec![1, 2, 3]),
            Msg::Bytes(pattern(5, 5 << 20)),
            Msg::Text("x".repeat(3 << 20)),
            Msg::Scan(scan()),
            Msg::Text("last".into()),
        ];
        for (i, w) in want.iter().enumerate() {
            match cq.get() {
                Ok(m) if &m == w => {}
                Ok(_) => return 20 + i as i32,
                Err(_) => return 40 + i as i32,
            }
        }
        match cq.get_nowait() {
            Err(GetError::Empty) | Err(GetError::Disconnected) => 0,
            _ => 60,
        }
    });
    q.put(Msg::Text("first".into())).unwrap();
    q.put(Msg::Bytes(pattern(1, 1 << 20))).unwrap();
    q.put(Msg::Bytes(vec![1, 2, 3])).unwrap();
    q.put(Msg::Bytes(pattern(5, 5 << 20))).unwrap();
    q.put(Msg::Text("x".repeat(3 << 20))).unwrap();
    q.put(Msg::Scan(scan())).unwrap();
    q.put(Msg::Text("last".into())).unwrap();
    assert_eq!(q.qsize(), 7, "each value takes one slot");
    drop(q);
    ready.put(1).unwrap();
    child.join_ok("receiver of big values");
}

/// A sender that creates a named queue, sends a large value and exits
/// before any receiver attached: the value is delivered to the process
/// that opens the queue afterwards.
fn sender_exits_before_receiver_attaches() {
    let name = unique_name("spill-late");
    let n = name.clone();
    let mut sender = fork(move || {
        let q = Queue::<Vec<u8>>::open_or_create_default(&n).unwrap();
        q.put(pattern(9, 2 << 20)).unwrap();
        q.put(vec![4; 4]).unwrap();
        drop(q); // the name waits for its first opener, spills with it
        0
    });
    sender.join_ok("sender");
    let q = Queue::<Vec<u8>>::open(&name).unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(30)),
        Ok(pattern(9, 2 << 20))
    );
    assert_eq!(q.get_timeout(Duration::from_secs(30)), Ok(vec![4; 4]));
}

/// Senders SIGKILLed at random points of a loop of spilling sends: what
/// arrives is intact, and once the queue is dropped no segment of its
/// spill family is left (neither spills whose record never went out nor
/// the anchor). The last sender is killed while blocked on a full queue
/// with its next spill segment made, so an orphan is certain.
fn sigkilled_spill_senders_leave_nothing() {
    const ROUNDS: u64 = 12;
    let q = Queue::<Vec<u8>>::bounded(4).unwrap();
    let family = family_of(&q);
    let spills = || shm_names_with(&format!("{family}-"));
    let mut rng = Rng::new(77);
    let mut got = 0;
    for round in 0..=ROUNDS {
        // Orphans of earlier rounds.
        let base = spills().len();
        let tx = q.clone();
        let mut victim = fork(move || {
            let v = pattern(round, 150_000 + round as usize * 1000);
            loop {
                if tx.put(v.clone()).is_err() {
                    return 3;
                }
            }
        });
        if round < ROUNDS {
            // Receive a few, then kill the sender wherever it is.
            for _ in 0..rng.below(6) {
                let v = q.get_timeout(Duration::from_secs(60)).expect("a value");
                assert!(v.len() >= 150_000, "intact length");
                got += 1;
            }
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
        } else {
            // Four queued and the fifth made, its sender blocked.
            common::wait_until(Duration::from_secs(60), "a blocked spilling sender", || {
                spills().len() == base + 5
            });
        }
        victim.kill();
        loop {
            match q.get_nowait() {
                Ok(v) => {
                    assert!(v.len() >= 150_000);
                    got += 1;
                }
                Err(GetError::Empty) | Err(GetError::Disconnected) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
    }
    assert!(got > 0);
    assert!(!spills().is_empty(), "killed senders left spill segments");
    drop(q);
    assert_eq!(shm_names_with(&family), Vec::<String>::new());
}

/// A deleted spill segment, a truncated one, or one whose header was
/// overwritten gives `Decode` for that message; the next one arrives.
fn broken_spills_fail_one_message() {
    let q = Queue::<Vec<u8>>::new().unwrap();
    let family = family_of(&q);
    let tx = q.clone();
    let mut sender = fork(move || {
        for i in 0..3u64 {
            tx.put(pattern(i, 300_000)).unwrap();
            tx.put(vec![i as u8]).unwrap();
        }
        0
    });
    sender.join_ok("sender");
    let mut spills = shm_names_with(&format!("{family}-"));
    spills.sort_by_key(|n| n.rsplit('-').next().unwrap().parse::<u64>().unwrap());
    assert_eq!(spills.len(), 3, "{spills:?}");
    let path = |n: &str| format!("/dev/shm/{n}");
    std::fs::remove_file(path(&spills[0])).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path(&spills[1]))
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path(&spills[2]))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"NOTSPILL", 0).unwrap();
    drop(f);
    for i in 0..3u8 {
        assert!(
            matches!(q.get_nowait(), Err(GetError::Decode(_))),
            "spill {i} is broken"
        );
        assert_eq!(q.get_nowait(), Ok(vec![i]));
    }
    assert_eq!(q.get_nowait(), Err(GetError::Empty));
    assert_eq!(shm_names_with(&format!("{family}-")), Vec::<String>::new());
}

/// A spill record corrupted in the slot (its magic, or a pid that names
/// no spill segment) gives `Decode` for that message; the next arrives,
/// and the spill segment the record lost goes with the queue.
fn corrupted_records_fail_one_message() {
    const SLOT: usize = 64;
    let name = unique_name("spill-rec");
    let q = Queue::<Vec<u8>>::create(&name, SLOT, 4).unwrap();
    let family = family_of(&q);
    let tx = q.clone();
    let mut sender = fork(move || {
        for i in 0..2u8 {
            tx.put(vec![i; 10_000]).unwrap();
            tx.put(vec![i]).unwrap();
        }
        0
    });
    sender.join_ok("sender");
    // The records sit in slots 1 and 3 (family_of used slot 0 once, so
    // the four messages occupy slots 1, 2, 3, 0). Payload of slot i: the
    // body's slot array (after the header line, two index lines and two
    // 64-entry peer tables), 16 bytes of stamp and length, then the bytes.
    let raw = shmkit::Segment::open(&name).unwrap();
    let payload = |i: usize| shmkit::segment::BODY_OFFSET + 384 + 2 * 64 * 8 + i * (16 + SLOT) + 16;
    let poke = |at: usize, bytes: &[u8]| {
        assert!(at + bytes.len() <= raw.len());
        // SAFETY: in bounds of the mapping (checked); the receiving side
        // of this process is not reading the slot while we write.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), raw.as_ptr().add(at), bytes.len()) };
    };
    poke(payload(1), b"XXXX"); // bad magic
    poke(payload(3) + 4, &0x7fff_fff0u32.to_le_bytes()); // a pid nobody used
    for i in 0..2u8 {
        assert!(
            matches!(q.get_nowait(), Err(GetError::Decode(_))),
            "record {i} is corrupt"
        );
        assert_eq!(q.get_nowait(), Ok(vec![i]));
    }
    assert_eq!(
        shm_names_with(&format!("{family}-")).len(),
        2,
        "both spills orphaned"
    );
    drop(raw);
    drop(q);
    assert_eq!(shm_names_with(&family), Vec::<String>::new());
}

/// `gc()` leaves the spill of a live queue alone and removes the spill
/// family of a queue whose every holder died.
fn gc_keeps_live_spills_and_removes_dead_ones() {
    let live = Queue::<Vec<u8>>::new().unwrap();
    let live_family = family_of(&live);
    live.put(pattern(3, 100_000)).unwrap();
    let before = shm_names_with("shmkit-spill-");
    let sent = shmkit::ShmBox::<shmkit::Event>::anonymous(()).unwrap();
    let flag = &sent;
    let mut crasher = fork(move || {
        let q = Queue::<Vec<u8>>::new().unwrap();
        q.put(pattern(4, 100_000)).unwrap();
        flag.set();
        // Dies holding the queue: nothing is dropped.
        // SAFETY: ends this forked child at once.
        unsafe { libc::raise(libc::SIGKILL) };
        0
    });
    crasher.wait(Duration::from_secs(60), "crasher");
    assert!(sent.is_set());
    let mine = shm_names_with(&live_family);
    assert_eq!(mine.len(), 2, "anchor and one spill: {mine:?}");
    let dead: Vec<String> = shm_names_with("shmkit-spill-")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(dead.len(), 2, "the dead queue's anchor and spill: {dead:?}");
    let report = shmkit::gc().unwrap();
    let removed: Vec<&str> = report.removed().collect();
    assert_eq!(
        shm_names_with(&live_family),
        mine,
        "the live queue's spill stays"
    );
    for n in &dead {
        assert!(removed.contains(&n.as_str()), "{n} removed: {removed:?}");
    }
    let left: Vec<String> = shm_names_with("shmkit-spill-")
        .into_iter()
        .filter(|n| dead.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(live.get_nowait(), Ok(pattern(3, 100_000)));
}

/// A named queue whose every holder was SIGKILLed is replaced by the next
/// `create` of its name; its spill family (the anchor the dead left, and a
/// spilled value nobody received) goes with it, without waiting for `gc`.
fn replacing_a_dead_queue_removes_its_spills() {
    let name = unique_name("spill-replace");
    let before = shm_names_with("shmkit-spill-");
    let sent = shmkit::ShmBox::<shmkit::Event>::anonymous(()).unwrap();
    let flag = &sent;
    let qname = name.clone();
    let mut crasher = fork(move || {
        let q = Queue::<Vec<u8>>::create(&qname, 64, 4).unwrap();
        q.put(pattern(5, 50_000)).unwrap();
        flag.set();
        // Dies holding the queue: nothing is dropped.
        // SAFETY: ends this forked child at once.
        unsafe { libc::raise(libc::SIGKILL) };
        0
    });
    crasher.wait(Duration::from_secs(60), "crasher");
    assert!(sent.is_set());
    let dead: Vec<String> = shm_names_with("shmkit-spill-")
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(dead.len(), 2, "the dead queue's anchor and spill: {dead:?}");
    let fresh = Queue::<Vec<u8>>::create(&name, 64, 4).unwrap();
    assert!(fresh.is_empty(), "a fresh queue, not the dead one");
    let left: Vec<String> = shm_names_with("shmkit-spill-")
        .into_iter()
        .filter(|n| dead.contains(n))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "the dead family went with it");
}

/// `JoinableQueue::new()` spills too: a consumer process gets two 1 MiB
/// tasks intact and marks them done; the producer's `join` returns.
fn joinable_queue_spills_across_processes() {
    let q = shmkit::JoinableQueue::<Vec<u8>>::new().unwrap();
    let cq = q.clone();
    let mut consumer = fork(move || {
        for seed in [11, 12] {
            if cq.get() != Ok(pattern(seed, 1 << 20)) {
                return 2;
            }
            if cq.task_done().is_err() {
                return 3;
            }
        }
        0
    });
    q.put(pattern(11, 1 << 20)).unwrap();
    q.put(pattern(12, 1 << 20)).unwrap();
    assert!(q.join_timeout(Duration::from_secs(60)), "every task done");
    assert_eq!(q.unfinished(), 0);
    consumer.join_ok("joinable consumer");
}

fn main() {
    run(
        &[
            ("big_values_to_forked_child", big_values_to_forked_child),
            (
                "sender_exits_before_receiver_attaches",
                sender_exits_before_receiver_attaches,
            ),
            (
                "sigkilled_spill_senders_leave_nothing",
                sigkilled_spill_senders_leave_nothing,
            ),
            (
                "broken_spills_fail_one_message",
                broken_spills_fail_one_message,
            ),
            (
                "gc_keeps_live_spills_and_removes_dead_ones",
                gc_keeps_live_spills_and_removes_dead_ones,
            ),
            (
                "joinable_queue_spills_across_processes",
                joinable_queue_spills_across_processes,
            ),
            (
                "corrupted_records_fail_one_message",
                corrupted_records_fail_one_message,
            ),
            (
                "replacing_a_dead_queue_removes_its_spills",
                replacing_a_dead_queue_removes_its_spills,
            ),
        ],
        120,
    );
}
