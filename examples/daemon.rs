//! Daemon vs non-daemon children (the seed's daemon program): the daemon
//! child is killed when the parent is done with it, so its "Exiting" line
//! never prints. Sleeps are scaled down.
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
    let d = Process::builder()
        .name("daemon")
        .daemon(true)
        .spawn(&DAEMON, &Shared::new(&started)?)?;
    let n = Process::builder()
        .name("non-daemon")
        .daemon(false)
        .spawn(&NON_DAEMON, &())?;
    started.wait(); // the seed's sleep(1): the daemon has printed its first line
    std::thread::sleep(Duration::from_millis(50));
    println!("d.is_alive() {}", d.is_alive());
    n.join()?;
    // Dropping a running daemon child's handle kills it (and it would die
    // with this process anyway: PR_SET_PDEATHSIG).
    drop(d);
    Ok(())
}
