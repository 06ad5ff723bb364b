//! Soak run: every kind of shmkit object used by many processes for a long
//! time while random processes are SIGKILLed, then a check that nothing
//! acknowledged was lost or duplicated, no lock is wedged, memory stayed
//! flat and no segment was left behind.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10
//! cargo run --release --example soak -- --seconds 10      # smoke run
//! ```
//!
//! Roles (each a forked process, replaced when it dies):
//! * SPSC ring: 1 producer, 1 consumer; MPMC queue and typed `Queue<T>`:
//!   2 producers, 2 consumers each. Producers send `(incarnation, seq)` and
//!   record each send that returned `Ok` (acknowledged); consumers mark each
//!   message they receive in a bitmap, counting a second mark as a
//!   duplicate.
//! * Dict: 3 writers (`fetch_add_i64` on their own key, recording the value
//!   returned), 2 readers checking that no key ever goes backwards.
//! * Lock: 3 processes incrementing a counter under a robust `Mutex`
//!   (recovering with `OwnerDied` after a holder is killed).
//! * Pool: a driver process mapping a task over a 4-worker `Pool`; the
//!   workers are killed too.
//!
//! The supervisor kills a random process every 50–250 ms, prints a
//! progress line every 5 s, and at the end stops producers, lets consumers
//! drain, and checks. Exit status 0 iff every check passed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmkit::process::{self, Pool, Process};
use shmkit::queue::{GetError, MpmcQueue, Queue, SendTimeoutError, SpscRing};
use shmkit::{DictConfig, Mutex, Segment, ShmBox, ShmDict, TryLockError};

// ---------------------------------------------------------------------
// Sizes

/// Messages one producer incarnation sends before it exits (and is
/// replaced by a new incarnation).
const SEQ_PER_INC: u64 = 1 << 14;
const WORDS_PER_INC: usize = (SEQ_PER_INC / 64) as usize;
/// Producer incarnations per queue kind (then no more are started).
const MAX_INC: usize = 4096;
const KINDS: usize = 3;
const KIND_NAMES: [&str; KINDS] = ["spsc", "mpmc", "typed"];
const DICT_WRITERS: usize = 3;
const DICT_READERS: usize = 2;
const LOCKERS: usize = 3;
const POOL_WORKERS: usize = 4;

// Counter words at the start of the bookkeeping segment.
const STOP_PRODUCERS: usize = 0;
const STOP_CONSUMERS: usize = 1;
const STOP_OTHERS: usize = 2;
const DELIVERED: usize = 3; // + kind
const DUPLICATES: usize = 6; // + kind
const BAD_MESSAGES: usize = 9; // + kind
const LOCK_ACKS: usize = 12;
const LOCK_RECOVERIES: usize = 13;
const DICT_READS: usize = 14;
const DICT_BACKWARDS: usize = 15;
const POOL_BATCHES_OK: usize = 16;
const POOL_WORKER_DIED: usize = 17;
const POOL_WRONG: usize = 18;
const POOL_OTHER_ERR: usize = 19;
const DICT_ACKS: usize = 20; // + writer slot
const POOL_PIDS: usize = 24; // + worker index
const COUNTERS: usize = 32;

fn ack_base(kind: usize) -> usize {
    COUNTERS + kind * MAX_INC
}

fn bitmap_base(kind: usize) -> usize {
    COUNTERS + KINDS * MAX_INC + kind * MAX_INC * WORDS_PER_INC
}

const BOOK_WORDS: usize = COUNTERS + KINDS * MAX_INC * (1 + WORDS_PER_INC);

/// Shared bookkeeping: an anonymous segment viewed as atomic words,
/// inherited by every forked role.
struct Book {
    seg: Segment,
}

impl Book {
    fn new() -> Result<Self, shmkit::Error> {
        Ok(Book {
            seg: Segment::anonymous(BOOK_WORDS * 8)?,
        })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is BOOK_WORDS * 8 bytes, page-aligned, lives
        // as long as `self`, and is only accessed through atomics (in this
        // and every forked process).
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr() as *const AtomicU64, BOOK_WORDS) }
    }

    fn w(&self, i: usize) -> &AtomicU64 {
        &self.words()[i]
    }

    fn get(&self, i: usize) -> u64 {
        self.w(i).load(Ordering::Acquire)
    }

    fn add(&self, i: usize) {
        self.w(i).fetch_add(1, Ordering::AcqRel);
    }

    fn flag(&self, i: usize) -> bool {
        self.get(i) != 0
    }

    /// Records delivery of `(inc, seq)` on queue `kind`.
    fn delivered(&self, kind: usize, inc: u64, seq: u64) {
        if inc as usize >= MAX_INC || seq >= SEQ_PER_INC {
            self.add(BAD_MESSAGES + kind);
            return;
        }
        let word = bitmap_base(kind) + inc as usize * WORDS_PER_INC + (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.w(word).fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            self.add(DUPLICATES + kind);
        }
        self.add(DELIVERED + kind);
    }

    fn delivered_bit(&self, kind: usize, inc: usize, seq: u64) -> bool {
        let word = bitmap_base(kind) + inc * WORDS_PER_INC + (seq / 64) as usize;
        self.get(word) & (1 << (seq % 64)) != 0
    }
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Msg {
    inc: u32,
    seq: u32,
}

fn encode(inc: u64, seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&inc.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, u64)> {
    if b.len() != 16 {
        return None;
    }
    let inc = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let seq = u64::from_le_bytes(b[8..16].try_into().ok()?);
    Some((inc, seq))
}

// ---------------------------------------------------------------------
// Roles (run in forked children)

struct Names {
    spsc: String,
    mpmc: String,
    typed: String,
    dict: String,
    lock: String,
}

/// Paces producers so one incarnation lasts about a second.
fn pace(seq: u64) {
    if seq % 256 == 255 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn producer(book: &Book, names: &Names, kind: usize, inc: u64) -> i32 {
    let ack = |seq: u64| {
        book.w(ack_base(kind) + inc as usize)
            .store(seq + 1, Ordering::Release)
    };
    let stop = || book.flag(STOP_PRODUCERS);
    match kind {
        0 => {
            let ring = SpscRing::open(&names.spsc).expect("open spsc");
            let mut p = loop {
                match ring.producer() {
                    Ok(p) => break p,
                    Err(_) if !stop() => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => return 0,
                }
            };
            for seq in 0..SEQ_PER_INC {
                let msg = encode(inc, seq);
                loop {
                    if stop() {
                        return 0;
                    }
                    match p.push_timeout(&msg, Duration::from_millis(50)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(_)) => continue,
                        Err(_) => return 2,
                    }
                }
                ack(seq);
                pace(seq);
            }
        }
        1 => {
            let q = MpmcQueue::open(&names.mpmc).expect("open mpmc");
            let tx = q.sender().expect("mpmc sender");
            for seq in 0..SEQ_PER_INC {
                let msg = encode(inc, seq);
                loop {
                    if stop() {
                        return 0;
                    }
                    match tx.send_timeout(&msg, Duration::from_millis(50)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(_)) => continue,
                        Err(_) => return 2,
                    }
                }
                ack(seq);
                pace(seq);
            }
        }
        _ => {
            let q = Queue::<Msg>::open(&names.typed).expect("open typed queue");
            for seq in 0..SEQ_PER_INC {
                let msg = Msg {
                    inc: inc as u32,
                    seq: seq as u32,
                };
                loop {
                    if stop() {
                        return 0;
                    }
                    match q.send_timeout(msg, Duration::from_millis(50)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(_)) => continue,
                        Err(_) => return 2,
                    }
                }
                ack(seq);
                pace(seq);
            }
        }
    }
    0
}

fn consumer(book: &Book, names: &Names, kind: usize) -> i32 {
    let done = || book.flag(STOP_CONSUMERS);
    let tick = Duration::from_millis(50);
    match kind {
        0 => {
            let ring = SpscRing::open(&names.spsc).expect("open spsc");
            let mut c = loop {
                match ring.consumer() {
                    Ok(c) => break c,
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            };
            let mut buf = Vec::new();
            loop {
                match c.pop_timeout(&mut buf, tick) {
                    Ok(()) => match decode(&buf) {
                        Some((inc, seq)) => book.delivered(kind, inc, seq),
                        None => book.add(BAD_MESSAGES + kind),
                    },
                    Err(_) if done() && c.is_empty() => return 0,
                    Err(_) => {}
                }
            }
        }
        1 => {
            let q = MpmcQueue::open(&names.mpmc).expect("open mpmc");
            let rx = q.receiver().expect("mpmc receiver");
            let mut buf = Vec::new();
            loop {
                match rx.recv_timeout(&mut buf, tick) {
                    Ok(_) => match decode(&buf) {
                        Some((inc, seq)) => book.delivered(kind, inc, seq),
                        None => book.add(BAD_MESSAGES + kind),
                    },
                    Err(_) if done() && q.is_empty() => return 0,
                    Err(_) => {}
                }
            }
        }
        _ => {
            let q = Queue::<Msg>::open(&names.typed).expect("open typed queue");
            loop {
                match q.recv_timeout(tick) {
                    Ok(m) => book.delivered(kind, u64::from(m.inc), u64::from(m.seq)),
                    Err(GetError::Decode(_)) => book.add(BAD_MESSAGES + kind),
                    Err(_) if done() && q.is_empty() => return 0,
                    Err(_) => {}
                }
            }
        }
    }
}

fn dict_writer(book: &Book, names: &Names, slot: usize) -> i32 {
    let d = ShmDict::open(&names.dict).expect("open dict");
    let key = format!("w{slot}");
    while !book.flag(STOP_OTHERS) {
        match d.fetch_add_i64(key.as_bytes(), 1) {
            // The value after this add (fetch_add returns the one before).
            Ok(v) => book
                .w(DICT_ACKS + slot)
                .store(v.wrapping_add(1) as u64, Ordering::Release),
            Err(e) => {
                eprintln!("dict writer: {e}");
                return 2;
            }
        }
        if book.get(DICT_ACKS + slot) % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    0
}

fn dict_reader(book: &Book, names: &Names) -> i32 {
    let d = ShmDict::open(&names.dict).expect("open dict");
    let mut last = [i64::MIN; DICT_WRITERS];
    while !book.flag(STOP_OTHERS) {
        for (slot, seen) in last.iter_mut().enumerate() {
            let key = format!("w{slot}");
            match d.get(key.as_bytes()) {
                Ok(Some(v)) if v.len() == 8 => {
                    let v = i64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8]));
                    if v < *seen {
                        book.add(DICT_BACKWARDS);
                    }
                    *seen = v;
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("dict reader: {e}");
                    return 2;
                }
            }
            book.add(DICT_READS);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    0
}

fn locker(book: &Book, names: &Names) -> i32 {
    let m = ShmBox::<Mutex<u64>>::open(&names.lock).expect("open lock");
    while !book.flag(STOP_OTHERS) {
        let mut g = match m.lock_timeout(Duration::from_secs(30)) {
            Ok(g) => g,
            Err(TryLockError::OwnerDied(died)) => {
                book.add(LOCK_RECOVERIES);
                let g = died.into_inner();
                g.mark_consistent();
                g
            }
            Err(TryLockError::TimedOut) => {
                eprintln!("locker: lock wedged for 30 s");
                return 3;
            }
            Err(e) => {
                eprintln!("locker: {e:?}");
                return 2;
            }
        };
        *g += 1;
        // Hold it a little: many kills land inside the critical section.
        std::thread::sleep(Duration::from_micros(200));
        drop(g);
        book.add(LOCK_ACKS);
        std::thread::sleep(Duration::from_micros(100));
    }
    0
}

/// Takes a little while, so that killed workers are usually busy.
fn square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(50));
    x * x
}

shmkit::task! { static SQUARE: Task<u64, u64> = square; }

fn pool_driver(book: &Book) -> i32 {
    let pool = match Pool::new(POOL_WORKERS) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pool: {e}");
            return 2;
        }
    };
    while !book.flag(STOP_OTHERS) {
        for (i, pid) in pool.pids().into_iter().take(8).enumerate() {
            book.w(POOL_PIDS + i)
                .store(u64::from(pid), Ordering::Release);
        }
        match pool.map(&SQUARE, 0..200u64, Some(10)) {
            Ok(out) => {
                if out
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v == (i as u64) * (i as u64))
                {
                    book.add(POOL_BATCHES_OK);
                } else {
                    book.add(POOL_WRONG);
                }
            }
            Err(process::TaskError::WorkerDied { .. }) => book.add(POOL_WORKER_DIED),
            Err(e) => {
                eprintln!("pool: {e}");
                book.add(POOL_OTHER_ERR);
            }
        }
    }
    for i in 0..8 {
        book.w(POOL_PIDS + i).store(0, Ordering::Release);
    }
    pool.close();
    pool.join();
    0
}

// ---------------------------------------------------------------------
// Supervisor

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Role {
    Producer(usize),
    Consumer(usize),
    DictWriter(usize),
    DictReader,
    Locker,
    PoolDriver,
}

impl Role {
    fn label(self) -> String {
        match self {
            Role::Producer(k) => format!("{}-producer", KIND_NAMES[k]),
            Role::Consumer(k) => format!("{}-consumer", KIND_NAMES[k]),
            Role::DictWriter(_) => "dict-writer".into(),
            Role::DictReader => "dict-reader".into(),
            Role::Locker => "locker".into(),
            Role::PoolDriver => "pool-driver".into(),
        }
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Supervisor<'a> {
    book: &'a Book,
    names: &'a Names,
    procs: Vec<(Role, Process)>,
    next_inc: [u64; KINDS],
    kills: HashMap<String, u64>,
    consumer_kills: [u64; KINDS],
    locker_kills: u64,
    failures: Vec<String>,
}

impl Supervisor<'_> {
    fn start(&mut self, role: Role) {
        let (book, names) = (self.book, self.names);
        let code = match role {
            Role::Producer(k) => {
                let inc = self.next_inc[k];
                if inc as usize >= MAX_INC {
                    return; // this kind has used all its incarnations
                }
                self.next_inc[k] += 1;
                process::fork(move || producer(book, names, k, inc))
            }
            Role::Consumer(k) => process::fork(move || consumer(book, names, k)),
            Role::DictWriter(s) => process::fork(move || dict_writer(book, names, s)),
            Role::DictReader => process::fork(move || dict_reader(book, names)),
            Role::Locker => process::fork(move || locker(book, names)),
            Role::PoolDriver => process::fork(move || pool_driver(book)),
        };
        match code {
            Ok(p) => self.procs.push((role, p)),
            Err(e) => self.failures.push(format!("fork {}: {e}", role.label())),
        }
    }

    /// Reaps finished roles and starts replacements (unless stopping).
    fn reap(&mut self, restart: bool) {
        let mut i = 0;
        while i < self.procs.len() {
            let done = !self.procs[i].1.is_alive();
            if !done {
                i += 1;
                continue;
            }
            let (role, p) = self.procs.swap_remove(i);
            if let Ok(status) = p.join() {
                // Killed roles end by signal; any other failure is a bug.
                let signalled = status.exitcode() < 0;
                if !signalled && !status.success() {
                    self.failures
                        .push(format!("{} exited with {status:?}", role.label()));
                }
            }
            if restart {
                self.start(role);
            }
        }
    }

    fn kill_random(&mut self, rng: &mut Rng) {
        // Pool workers are victims too (the pool replaces them).
        let pool_pids: Vec<u32> = (0..8)
            .map(|i| self.book.get(POOL_PIDS + i) as u32)
            .filter(|&p| p != 0)
            .collect();
        let candidates = self
            .procs
            .iter()
            .filter(|(r, _)| *r != Role::PoolDriver)
            .count();
        let n = candidates + pool_pids.len();
        if n == 0 {
            return;
        }
        let pick = rng.below(n as u64) as usize;
        if pick >= candidates {
            let pid = pool_pids[pick - candidates];
            // SAFETY: plain kill(2); the pid is a live pool worker's (it
            // may have exited meanwhile, then this signals nobody or a
            // reused pid only if the driver lagged; acceptable in a soak).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            *self.kills.entry("pool-worker".into()).or_default() += 1;
            return;
        }
        let (role, p) = self
            .procs
            .iter()
            .filter(|(r, _)| *r != Role::PoolDriver)
            .nth(pick)
            .expect("index in range");
        if p.kill().is_ok() {
            *self.kills.entry(role.label()).or_default() += 1;
            match role {
                Role::Consumer(k) => self.consumer_kills[*k] += 1,
                Role::Locker => self.locker_kills += 1,
                _ => {}
            }
        }
    }

    fn join_all(&mut self, which: impl Fn(Role) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.reap(false);
            if !self.procs.iter().any(|(r, _)| which(*r)) {
                return;
            }
            if Instant::now() > deadline {
                self.failures
                    .push(format!("{what} did not finish within 120 s (wedged?)"));
                for (r, p) in &self.procs {
                    if which(*r) {
                        let _ = p.kill();
                    }
                }
                self.reap(false);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn parse_duration() -> Duration {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut d = Duration::from_secs(60);
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).and_then(|v| v.parse::<f64>().ok());
        match (args[i].as_str(), val) {
            ("--minutes", Some(m)) => d = Duration::from_secs_f64(m * 60.0),
            ("--seconds", Some(s)) => d = Duration::from_secs_f64(s),
            _ => {
                eprintln!("usage: soak [--minutes M | --seconds S]");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    d
}

fn segments_left(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let duration = parse_duration();
    let me = std::process::id();
    let prefix = format!("soak-{me}-");
    let names = Names {
        spsc: format!("{prefix}spsc"),
        mpmc: format!("{prefix}mpmc"),
        typed: format!("{prefix}typed"),
        dict: format!("{prefix}dict"),
        lock: format!("{prefix}lock"),
    };
    let book = Book::new()?;
    let spsc = SpscRing::create(&names.spsc, 1 << 16)?;
    let mpmc = MpmcQueue::create(&names.mpmc, 16, 1024)?;
    let typed = Queue::<Msg>::create(&names.typed, 16, 1024)?;
    let dict = ShmDict::create(&names.dict, DictConfig::new(64, 64 << 10))?;
    let lock = ShmBox::<Mutex<u64>>::create(&names.lock, 0)?;

    let mut sup = Supervisor {
        book: &book,
        names: &names,
        procs: Vec::new(),
        next_inc: [0; KINDS],
        kills: HashMap::new(),
        consumer_kills: [0; KINDS],
        locker_kills: 0,
        failures: Vec::new(),
    };
    // The pool driver first: it is the only role that starts threads.
    sup.start(Role::PoolDriver);
    for (k, producers) in [(0, 1), (1, 2), (2, 2)] {
        for _ in 0..producers {
            sup.start(Role::Producer(k));
            sup.start(Role::Consumer(k));
        }
    }
    for s in 0..DICT_WRITERS {
        sup.start(Role::DictWriter(s));
    }
    for _ in 0..DICT_READERS {
        sup.start(Role::DictReader);
    }
    for _ in 0..LOCKERS {
        sup.start(Role::Locker);
    }

    // The long-lived processes: the supervisor and the pool driver (the
    // other roles are replaced all the time).
    let driver_rss = |sup: &Supervisor| -> u64 {
        sup.procs
            .iter()
            .find(|(r, _)| *r == Role::PoolDriver)
            .map_or(0, |(_, p)| rss_kib(p.pid()))
    };
    let start = Instant::now();
    let mut rng = Rng(u64::from(me) | 1 << 40);
    let mut next_kill = start + Duration::from_millis(100);
    let mut next_progress = start + Duration::from_secs(5);
    let mut rss_first: Option<(u64, u64)> = None;
    let mut rss_last = (0, 0);
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(10));
        sup.reap(true);
        let now = Instant::now();
        if now >= next_kill {
            sup.kill_random(&mut rng);
            next_kill = now + Duration::from_millis(50 + rng.below(200));
        }
        if rss_first.is_none() && start.elapsed() > Duration::from_secs(2) {
            rss_first = Some((rss_kib(me), driver_rss(&sup)));
        }
        if now >= next_progress || start.elapsed() >= duration {
            rss_last = (rss_kib(me), driver_rss(&sup));
            let kills: u64 = sup.kills.values().sum();
            println!(
                "[{:>6.1}s] delivered spsc {} mpmc {} typed {} | lock ops {} | dict reads {} | pool batches {} | kills {} | rss {} KiB, pool driver {} KiB",
                start.elapsed().as_secs_f64(),
                book.get(DELIVERED),
                book.get(DELIVERED + 1),
                book.get(DELIVERED + 2),
                book.get(LOCK_ACKS),
                book.get(DICT_READS),
                book.get(POOL_BATCHES_OK),
                kills,
                rss_last.0,
                rss_last.1,
            );
            next_progress = now + Duration::from_secs(5);
        }
    }
    let rss_first = rss_first.unwrap_or(rss_last);
    rss_last = (rss_kib(me), driver_rss(&sup));

    // Stop: producers first, then let consumers drain, then the rest.
    book.w(STOP_PRODUCERS).store(1, Ordering::Release);
    sup.join_all(|r| matches!(r, Role::Producer(_)), "producers");
    book.w(STOP_CONSUMERS).store(1, Ordering::Release);
    sup.join_all(|r| matches!(r, Role::Consumer(_)), "consumers");
    book.w(STOP_OTHERS).store(1, Ordering::Release);
    sup.join_all(|_| true, "dict, lock and pool roles");

    // ---- checks
    let mut ok = true;
    let mut check = |pass: bool, line: String| {
        println!("{} {line}", if pass { "ok  " } else { "FAIL" });
        ok &= pass;
    };
    let total_kills: u64 = sup.kills.values().sum();
    let mut kill_list: Vec<_> = sup.kills.iter().collect();
    kill_list.sort();
    println!(
        "soak: {:.0} s, {total_kills} processes SIGKILLed: {}",
        start.elapsed().as_secs_f64(),
        kill_list
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (kind, kind_name) in KIND_NAMES.iter().enumerate() {
        let (mut acked, mut lost, mut phantom) = (0u64, 0u64, 0u64);
        for inc in 0..sup.next_inc[kind] as usize {
            let a = book.get(ack_base(kind) + inc);
            acked += a;
            lost += (0..a)
                .filter(|&s| !book.delivered_bit(kind, inc, s))
                .count() as u64;
            // Beyond the acknowledged count only the one in-flight message
            // of a killed producer may have arrived.
            phantom += (a + 1..SEQ_PER_INC)
                .filter(|&s| book.delivered_bit(kind, inc, s))
                .count() as u64;
        }
        let dups = book.get(DUPLICATES + kind);
        let bad = book.get(BAD_MESSAGES + kind);
        let allowed = sup.consumer_kills[kind];
        check(
            dups == 0 && phantom == 0 && bad == 0 && lost <= allowed,
            format!(
                "{:<5} queue: {acked} acknowledged, {} delivered, duplicates {dups}, never-sent {phantom}, malformed {bad}, lost {lost} (at most one per killed consumer: {allowed})",
                kind_name,
                book.get(DELIVERED + kind)
            ),
        );
    }
    // Lock: not wedged, and the counter matches the acknowledged increments
    // (a locker killed after its increment, before recording it, adds one).
    let (counter, recovered) = match lock.lock_timeout(Duration::from_secs(10)) {
        Ok(g) => (Some(*g), false),
        Err(TryLockError::OwnerDied(d)) => {
            let g = d.into_inner();
            g.mark_consistent();
            (Some(*g), true)
        }
        Err(_) => (None, false),
    };
    let acks = book.get(LOCK_ACKS);
    check(
        counter.is_some_and(|c| c >= acks && c <= acks + sup.locker_kills),
        format!(
            "lock: final lock taken {} (owner-died recoveries {}{}), counter {counter:?}, acknowledged {acks}, locker kills {}",
            if counter.is_some() { "within 10 s" } else { "NEVER (wedged)" },
            book.get(LOCK_RECOVERIES),
            if recovered { ", one more at the end" } else { "" },
            sup.locker_kills
        ),
    );
    // Dict: every writer's key equals its last acknowledged value (or one
    // more, if it was killed between the add and recording it); readers
    // never saw a key go backwards; no stripe lock is wedged.
    let mut dict = dict;
    dict.set_lock_timeout(Some(Duration::from_secs(10)));
    let mut dict_ok = true;
    let mut detail = Vec::new();
    for s in 0..DICT_WRITERS {
        let ack = book.get(DICT_ACKS + s) as i64;
        match dict.fetch_add_i64(format!("w{s}").as_bytes(), 0) {
            Ok(v) => {
                dict_ok &= v == ack || v == ack + 1;
                detail.push(format!("w{s}={v} (ack {ack})"));
            }
            Err(e) => {
                dict_ok = false;
                detail.push(format!("w{s}: {e}"));
            }
        }
    }
    let backwards = book.get(DICT_BACKWARDS);
    check(
        dict_ok && backwards == 0,
        format!(
            "dict: {}; {} reads, went backwards {backwards} times",
            detail.join(", "),
            book.get(DICT_READS)
        ),
    );
    let (pool_ok, died, wrong, other) = (
        book.get(POOL_BATCHES_OK),
        book.get(POOL_WORKER_DIED),
        book.get(POOL_WRONG),
        book.get(POOL_OTHER_ERR),
    );
    check(
        wrong == 0 && other == 0 && pool_ok > 0,
        format!("pool: {pool_ok} map batches correct, {died} reported WorkerDied, {wrong} wrong results, {other} other errors"),
    );
    let grew = |first: u64, last: u64| last > first + first / 2 + 8 * 1024;
    check(
        !grew(rss_first.0, rss_last.0) && !grew(rss_first.1, rss_last.1),
        format!(
            "rss: supervisor first {} KiB, last {} KiB; pool driver first {} KiB, last {} KiB",
            rss_first.0, rss_last.0, rss_first.1, rss_last.1
        ),
    );
    for f in &sup.failures {
        check(false, format!("role failure: {f}"));
    }
    drop((spsc, mpmc, typed, dict, lock));
    let left = segments_left(&prefix);
    check(
        left.is_empty(),
        format!("segments left in /dev/shm: {} {left:?}", left.len()),
    );
    println!("RESULT: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
