//! Seed 004-3: a daemon child and a non-daemon child; after a pause the
//! main process prints `d.is_alive()` (true: the daemon is still asleep)
//! and joins only the non-daemon child. When `main` returns, the exit hook
//! terminates the daemon, so its "Exiting" line never prints. The seed's
//! sleeps (2 s in the daemon, 1 s in main) are 20 s and "until the daemon
//! has printed its first line" here.
//!
//! Run: `cargo run --release --example daemon`

use std::time::Duration;

use shmkit::process::{current_process, Process, Shared};
use shmkit::{Event, ShmBox};

fn daemon(started: Shared<ShmBox<Event>>) -> Result<(), shmkit::AttachError> {
    let started = started.attach()?;
    let name = current_process().name().to_owned();
    println!("Starting: {name}");
    started.set();
    std::thread::sleep(Duration::from_secs(20));
    println!("Exiting : {name}");
    Ok(())
}

fn non_daemon(_: ()) {
    let name = current_process().name().to_owned();
    println!("Starting: {name}");
    println!("Exiting : {name}");
}

shmkit::entry! {
    static DAEMON: Entry<Shared<ShmBox<Event>>> = daemon;
    static NON_DAEMON: Entry<()> = non_daemon;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let started = ShmBox::<Event>::anonymous(())?;
    let mut d = Process::builder()
        .name("daemon")
        .target(&DAEMON, &Shared::new(&started)?)?;
    d.set_daemon(true);
    let mut n = Process::builder()
        .name("non-daemon")
        .target(&NON_DAEMON, &())?;
    n.set_daemon(false);
    let d = d.start()?;
    let n = n.start()?;
    started.wait(); // the seed's sleep(1): the daemon has printed its first line
    println!("d.is_alive() {}", d.is_alive());
    n.join()?;
    Ok(())
}
