//! Cross-process tests of `SpscRing` and `Pipe`: real fork, real segments,
//! real SIGKILL. `harness = false`: run with
//! `cargo test --release --test xproc_spsc [filter]`; set `SHMKIT_STRESS=1`
//! for the long variant (more kills, more messages).

mod common;

use std::time::{Duration, Instant};

use common::{fork, run, unique_name, Exit, Rng};
use shmkit::queue::{Pipe, RecvError, RecvTimeoutError, SendTimeoutError, SpscRing, TryRecvError};
use shmkit::{ShmBox, ShmValue};

fn stress() -> bool {
    std::env::var_os("SHMKIT_STRESS").is_some_and(|v| v != "0")
}

/// FNV-1a over `seq` and the body.
fn checksum(seq: u64, body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seq;
    for &b in body {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Message `seq`: `[seq u64][checksum u64][body]`, 16 to 16 + `max_body`
/// bytes, body derived from `seq`.
fn make_msg(seq: u64, max_body: u64, out: &mut Vec<u8>) {
    let body_len = (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % (max_body + 1);
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend((0..body_len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    let c = checksum(seq, &out[16..]);
    out[8..16].copy_from_slice(&c.to_le_bytes());
}

/// Checks a received message; returns its sequence number.
fn check_msg(m: &[u8]) -> u64 {
    assert!(m.len() >= 16, "torn frame: {} bytes", m.len());
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    let c = u64::from_le_bytes(m[8..16].try_into().unwrap());
    assert_eq!(c, checksum(seq, &m[16..]), "garbage frame (seq {seq})");
    seq
}

fn million_messages() {
    let n: u64 = if stress() {
        10_000_000
    } else if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let ring = SpscRing::anonymous(1 << 16).unwrap();
    let mut child = fork(|| {
        let mut tx = ring.producer().unwrap();
        let mut m = Vec::new();
        for seq in 0..n {
            make_msg(seq, 200, &mut m);
            tx.push(&m).unwrap();
        }
        0
    });
    let mut rx = ring.consumer().unwrap();
    let mut buf = Vec::new();
    let mut bytes = 0u64;
    for seq in 0..n {
        rx.pop(&mut buf).unwrap();
        assert_eq!(check_msg(&buf), seq);
        bytes += buf.len() as u64;
    }
    assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
    child.join_ok("producer");
    assert!(bytes >= 16 * n);
}

/// Spins for about `micros` µs (a delay that lets the peer's spin run out
/// so it parks; never a limit on the test).
fn delay(micros: u64) {
    let until = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The asymmetric wake-up handshake under fire: a ping-pong across two
/// rings where each side blocks on every message (and, after a random
/// delay, usually parks), so a waiter's registration races the other
/// side's release-only publish on every round. Every message arrives
/// exactly once and in order; the hang watchdog fails the run if a side
/// stays asleep. (A lost wake-up would cost a 1 ms park slice rather than
/// a hang, so the run also prints how many rounds took over 1 ms: a
/// figure to compare between protocol versions, not a pass criterion.)
fn park_wake_storm() {
    let n: u64 = if stress() {
        3_000_000
    } else if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let data = SpscRing::anonymous(256).unwrap();
    let ack = SpscRing::anonymous(64).unwrap();
    let mut child = fork(|| {
        let mut tx = data.producer().unwrap();
        let mut back = ack.consumer().unwrap();
        let mut rng = Rng::new(0x5eed_cafe);
        let mut m = Vec::new();
        let mut a = Vec::new();
        for seq in 0..n {
            // Mostly no delay (the race between the peer registering and
            // this publish), sometimes long enough for the peer to park.
            match rng.below(8) {
                0 => delay(rng.below(40)),
                1 => std::thread::yield_now(),
                _ => {}
            }
            make_msg(seq, 24, &mut m);
            tx.push(&m).unwrap();
            back.pop(&mut a).unwrap();
            assert_eq!(a, seq.to_le_bytes(), "ack out of order");
        }
        0
    });
    let mut rx = data.consumer().unwrap();
    let mut tx = ack.producer().unwrap();
    let mut rng = Rng::new(0xfeed_beef);
    let mut buf = Vec::new();
    let mut slow = 0u64;
    for seq in 0..n {
        let t = Instant::now();
        rx.pop(&mut buf).unwrap();
        slow += u64::from(t.elapsed() >= Duration::from_millis(1));
        assert_eq!(check_msg(&buf), seq);
        if rng.below(8) == 0 {
            delay(rng.below(40));
        }
        tx.push(&seq.to_le_bytes()).unwrap();
    }
    child.join_ok("ping-pong producer");
    assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
    println!("  park_wake_storm: {n} rounds, {slow} waited over 1 ms");
}

fn blocking_pop_sees_killed_producer() {
    let ring = SpscRing::anonymous(1024).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut child = fork(|| {
        let mut tx = ring.producer().unwrap();
        for i in 0..10u8 {
            tx.push(&[i; 9]).unwrap();
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut buf = Vec::new();
    for i in 0..10u8 {
        rx.pop(&mut buf).unwrap();
        assert_eq!(buf, [i; 9]);
    }
    // Kill it while we are (about to be) parked in pop; leave it a zombie
    // for a moment, which must also read as dead.
    child.kill_no_reap();
    assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
    assert!(matches!(
        child.wait(Duration::from_secs(10), "killed producer"),
        Exit::Signal(9)
    ));
    // A restarted producer takes the dead one's slot.
    let mut tx = ring.producer().unwrap();
    tx.try_push(b"again").unwrap();
    rx.pop(&mut buf).unwrap();
    assert_eq!(buf, b"again");
}

fn blocked_push_sees_killed_consumer() {
    let ring = SpscRing::anonymous(64).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut child = fork(|| {
        let _rx = ring.consumer().unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Wait until the child registered (consumer side becomes live).
    while ring.consumer().is_ok_and(|c| {
        drop(c);
        true
    }) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut pushed = 0;
    while tx.try_push(&[1; 20]).is_ok() {
        pushed += 1;
    }
    assert!(pushed > 0);
    child.kill();
    assert!(matches!(
        tx.push(&[2; 20]),
        Err(shmkit::queue::SendError::Disconnected(_))
    ));
}

/// The SIGKILL storm: producers killed at random points; every message
/// whose push returned Ok arrives exactly once, in order, never torn.
fn producer_sigkill_storm() {
    let rounds: u64 = if stress() { 2000 } else { 200 };
    let ring = SpscRing::anonymous(4096).unwrap();
    let count = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut rng = Rng::new(0x5eed ^ std::process::id() as u64);
    let mut next_seq = 0u64;
    let mut buf = Vec::new();
    let mut total = 0u64;
    for round in 0..rounds {
        count.store(0);
        let start = next_seq;
        let mut child = fork(|| {
            let mut tx = match ring.producer() {
                Ok(t) => t,
                Err(_) => return 7,
            };
            let mut m = Vec::new();
            let mut seq = start;
            loop {
                make_msg(seq, 300, &mut m);
                if tx.push(&m).is_err() {
                    return 8;
                }
                seq += 1;
                count.store(seq - start);
            }
        });
        let delay = Duration::from_micros(rng.below(3000));
        let mut t0 = None;
        let mut got = 0u64;
        // Consume concurrently so the producer is killed mid-push, mid-pad,
        // mid-wake at random. The random delay starts once the child has
        // pushed something (on a loaded machine it may start late).
        while t0.map_or(true, |t: Instant| t.elapsed() < delay) {
            if t0.is_none() && count.load() > 0 {
                t0 = Some(Instant::now());
            }
            match rx.try_pop(&mut buf) {
                Ok(()) => {
                    assert_eq!(check_msg(&buf), next_seq + got, "round {round}");
                    got += 1;
                }
                // Disconnected: the new producer has not registered yet
                // (the previous one is dead).
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {
                    std::hint::spin_loop()
                }
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        if round % 2 == 0 {
            child.kill();
        } else {
            child.kill_no_reap();
        }
        // Drain: must end in Disconnected (never wedge).
        loop {
            match rx.pop(&mut buf) {
                Ok(()) => {
                    assert_eq!(check_msg(&buf), next_seq + got, "round {round}");
                    got += 1;
                }
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        let exit = child.wait(Duration::from_secs(10), "killed producer");
        assert_eq!(
            exit,
            Exit::Signal(libc::SIGKILL),
            "round {round}: producer exited early"
        );
        let recorded = count.load();
        assert!(
            got == recorded || got == recorded + 1,
            "round {round}: {recorded} pushes returned Ok, {got} arrived"
        );
        next_seq += got;
        total += got;
    }
    // The dead slot is reclaimed by a new producer.
    let mut tx = ring.producer().unwrap();
    let mut m = Vec::new();
    make_msg(next_seq, 10, &mut m);
    tx.try_push(&m).unwrap();
    rx.try_pop(&mut buf).unwrap();
    assert_eq!(check_msg(&buf), next_seq);
    println!("    {rounds} kills, {total} messages verified");
}

fn consumer_killed_mid_pop() {
    let n = 20_000u64;
    let ring = SpscRing::anonymous(2048).unwrap();
    let popped = ShmBox::<ShmValue<u64>>::anonymous(0).unwrap();
    // The producer holds back the second half until the parent has killed
    // the first consumer and taken over, so the kill lands mid-stream.
    let gate = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
    let mut producer = fork(|| {
        let mut tx = ring.producer().unwrap();
        let mut m = Vec::new();
        for seq in 0..n {
            if seq == n / 2 {
                while gate.load() == 0 {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            make_msg(seq, 100, &mut m);
            // The consumer is killed mid-run; until its replacement
            // registers, the ring correctly reports Disconnected. This
            // producer knows a replacement is coming, so it retries.
            let mut retries = 0;
            while tx.push(&m).is_err() {
                retries += 1;
                if retries > 20_000 {
                    return 9;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        0
    });
    let mut consumer = fork(|| {
        let mut rx = ring.consumer().unwrap();
        let mut buf = Vec::new();
        loop {
            rx.pop(&mut buf).unwrap();
            let seq = check_msg(&buf);
            popped.store(seq + 1);
        }
    });
    while popped.load() < n / 4 {
        std::thread::sleep(Duration::from_micros(200));
    }
    consumer.kill();
    let recorded = popped.load();
    let mut rx = ring.consumer().unwrap(); // reclaims the dead slot
    let mut buf = Vec::new();
    gate.store(1);
    rx.pop(&mut buf).unwrap();
    let first = check_msg(&buf);
    assert!(
        first == recorded || first == recorded + 1,
        "first {first}, recorded {recorded}"
    );
    for seq in first + 1..n {
        rx.pop(&mut buf).unwrap();
        assert_eq!(check_msg(&buf), seq);
    }
    assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
    producer.join_ok("producer");
}

fn pipe_ping_pong_and_eof() {
    let rounds = 10_000u32;
    let (mut parent_end, mut child_end) = Pipe::duplex().unwrap();
    let mut child = fork(|| {
        let c = &mut child_end;
        loop {
            match c.recv() {
                Ok(m) if m == b"stop" => break,
                Ok(m) => {
                    let v = u32::from_le_bytes(m[..4].try_into().unwrap());
                    c.send(&(v + 1).to_le_bytes()).unwrap();
                }
                Err(_) => return 5,
            }
        }
        c.send_value(&("bye".to_string(), 42u64)).unwrap();
        0
    });
    // The parent keeps its copy of the child's end until the child has
    // used it (the first answer proves that); dropping it then must not
    // end the pipe: the end belongs to the child now.
    let mut child_end = Some(child_end);
    for i in 0..rounds {
        parent_end.send(&i.to_le_bytes()).unwrap();
        let r = parent_end.recv().unwrap();
        assert_eq!(u32::from_le_bytes(r[..4].try_into().unwrap()), i + 1);
        drop(child_end.take());
    }
    parent_end.send(b"stop").unwrap();
    let v: (String, u64) = parent_end.recv_value().unwrap();
    assert_eq!(v, ("bye".to_string(), 42));
    child.join_ok("pipe child");
    // The child exited: end-of-file.
    assert!(parent_end.poll(Duration::from_secs(5)));
    assert_eq!(parent_end.recv(), Err(RecvError::Disconnected));
}

fn pipe_eof_when_child_dies_without_sending() {
    let (mut a, b) = Pipe::duplex().unwrap();
    let claimed = ShmBox::<ShmValue<bool>>::anonymous(false).unwrap();
    let mut child = fork(|| {
        let mut b = b;
        // First use claims the end; then the child is killed.
        let _ = b.poll(Duration::ZERO);
        claimed.store(true);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    while !claimed.load() {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill();
    assert_eq!(a.recv(), Err(RecvError::Disconnected));
}

fn named_pipe_between_processes() {
    let name = unique_name("pipe");
    let mut a = Pipe::create(&name, 4096).unwrap();
    let n2 = name.clone();
    let mut child = fork(move || {
        let mut b = Pipe::open(&n2).unwrap();
        let m = b.recv().unwrap();
        b.send(&m.iter().rev().copied().collect::<Vec<u8>>())
            .unwrap();
        // A value that does not decode as the receiver's type.
        b.send(&[0xff; 3]).unwrap();
        b.send_value(&7u16).unwrap();
        0
    });
    a.send(b"abc").unwrap();
    assert_eq!(a.recv().unwrap(), b"cba");
    assert!(a.recv_value::<String>().is_err()); // decode error, pipe usable
    assert_eq!(a.recv_value::<u16>().unwrap(), 7);
    child.join_ok("named pipe child");
    assert_eq!(a.recv(), Err(RecvError::Disconnected));
}

/// Pushes one frame, runs `spawn_unrelated` (a fork or spawn that never
/// touches the ring), drops the producer: the consumer must see the frame,
/// then `Disconnected`. With the old fork-generation scheme any fork since
/// the producer's last use kept its registration alive, and the consumer
/// timed out instead (a blocking pop hung while the parent lived).
fn drop_after_unrelated_fork(spawn_unrelated: impl FnOnce()) {
    let ring = SpscRing::anonymous(1024).unwrap();
    let mut tx = ring.producer().unwrap();
    let mut rx = ring.consumer().unwrap();
    tx.push(b"before").unwrap();
    spawn_unrelated();
    drop(tx);
    let mut buf = Vec::new();
    rx.pop(&mut buf).unwrap();
    assert_eq!(buf, b"before");
    assert_eq!(
        rx.pop_timeout(&mut buf, Duration::from_secs(20)),
        Err(RecvTimeoutError::Disconnected)
    );
    // And the other way round: a dropped consumer after a fork.
    let ring = SpscRing::anonymous(64).unwrap();
    let mut tx = ring.producer().unwrap();
    let rx = ring.consumer().unwrap();
    while tx.try_push(&[1; 20]).is_ok() {}
    let _ = fork(|| 0).wait(Duration::from_secs(60), "unrelated child");
    drop(rx);
    assert!(matches!(
        tx.push_timeout(&[2; 20], Duration::from_secs(20)),
        Err(SendTimeoutError::Disconnected(_))
    ));
}

fn drop_after_fork_disconnects() {
    drop_after_unrelated_fork(|| {
        let mut child = fork(|| 0);
        assert_eq!(
            child.wait(Duration::from_secs(60), "unrelated child"),
            Exit::Code(0)
        );
    });
}

fn drop_after_spawn_disconnects() {
    drop_after_unrelated_fork(|| {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("true");
        // A pre_exec hook makes std fork (and run the atfork handlers)
        // instead of using posix_spawn, as shmkit's own spawn does.
        // SAFETY: the hook does nothing, which is async-signal-safe.
        unsafe { cmd.pre_exec(|| Ok(())) };
        assert!(cmd.status().unwrap().success());
    });
}

/// The registry's rule 3: a consumer of a named ring whose creator dies
/// (exits, or is SIGKILLed) before any producer registered gets
/// `Disconnected` instead of hanging; while the creator lives it waits.
fn creator_dies_before_first_push() {
    for kill in [false, true] {
        let name = unique_name("spsc-creator");
        let state = ShmBox::<ShmValue<u32>>::anonymous(0).unwrap();
        let mut creator = fork(|| {
            let _ring = SpscRing::create(&name, 256).unwrap();
            state.store(1); // created
            while state.load() != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if kill {
                // SAFETY: raising a signal on ourselves.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            // Exit without unlinking (the parent cleans up).
            0
        });
        common::wait_until(Duration::from_secs(60), "ring created", || {
            state.load() == 1
        });
        let ring = SpscRing::open(&name).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            rx.pop_timeout(&mut buf, Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout),
            "the creator is alive and could still hand the ring on"
        );
        state.store(2);
        assert_eq!(rx.pop(&mut buf), Err(RecvError::Disconnected));
        let want = if kill { Exit::Signal(9) } else { Exit::Code(0) };
        assert_eq!(creator.wait(Duration::from_secs(60), "creator"), want);
        let _ = shmkit::Segment::unlink(&name);
    }
}

fn main() {
    run(
        &[
            ("million_messages", million_messages),
            ("park_wake_storm", park_wake_storm),
            (
                "blocking_pop_sees_killed_producer",
                blocking_pop_sees_killed_producer,
            ),
            (
                "blocked_push_sees_killed_consumer",
                blocked_push_sees_killed_consumer,
            ),
            ("producer_sigkill_storm", producer_sigkill_storm),
            ("consumer_killed_mid_pop", consumer_killed_mid_pop),
            ("pipe_ping_pong_and_eof", pipe_ping_pong_and_eof),
            (
                "pipe_eof_when_child_dies_without_sending",
                pipe_eof_when_child_dies_without_sending,
            ),
            ("named_pipe_between_processes", named_pipe_between_processes),
            ("drop_after_fork_disconnects", drop_after_fork_disconnects),
            ("drop_after_spawn_disconnects", drop_after_spawn_disconnects),
            (
                "creator_dies_before_first_push",
                creator_dies_before_first_push,
            ),
        ],
        if stress() { 1800 } else { 300 },
    );
}
