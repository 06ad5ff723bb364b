//! Seed 004-10: signalling between processes with an `Event` (the seed's
//! wait_for_event / wait_for_event_timeout program). The seed's 2 s timeout
//! and 3 s sleep become 100 ms and "after the timed waiter has given up".
//!
//! Run: `cargo run --release --example event`

use std::time::Duration;

use shmkit::process::{Process, Shared};
use shmkit::{Event, ShmBox};

fn wait_for_event(e: Shared<ShmBox<Event>>) -> Result<(), shmkit::AttachError> {
    let e = e.attach()?;
    println!("wait_for_event: starting");
    e.wait();
    println!("wait_for_event: e.is_set()-> {}", e.is_set());
    Ok(())
}

fn wait_for_event_timeout(
    (e, t): (Shared<ShmBox<Event>>, Duration),
) -> Result<(), shmkit::AttachError> {
    let e = e.attach()?;
    println!("wait_for_event_timeout: starting");
    e.wait_timeout(t);
    println!("wait_for_event_timeout: e.is_set()-> {}", e.is_set());
    Ok(())
}

shmkit::entry! {
    static WAIT_FOR_EVENT: Entry<Shared<ShmBox<Event>>> = wait_for_event;
    static WAIT_FOR_EVENT_TIMEOUT: Entry<(Shared<ShmBox<Event>>, Duration)> = wait_for_event_timeout;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let e = ShmBox::<Event>::anonymous(())?;
    let w1 = Process::builder()
        .name("block")
        .spawn(&WAIT_FOR_EVENT, &Shared::new(&e)?)?;
    let w2 = Process::builder().name("nonblock").spawn(
        &WAIT_FOR_EVENT_TIMEOUT,
        &(Shared::new(&e)?, Duration::from_millis(100)),
    )?;
    println!("main: waiting before calling Event.set()");
    // The seed sleeps 3 s, longer than the 2 s timeout; waiting for the
    // timed waiter to finish gives the same order deterministically.
    w2.join()?;
    e.set();
    println!("main: event is set");
    w1.join()?;
    Ok(())
}
