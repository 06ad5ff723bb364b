//! Seed 003-2, as written: a daemon child (`f1`) and a normal child (`f2`)
//! are started and never joined; the main code prints and ends. When
//! `main` returns, the exit hook that `init()` installed terminates the
//! daemon (so its `xxxx` never prints) and waits for the normal child,
//! whose line comes after the main one. Sleeps of 3 s and 5 s are 300 ms
//! and 500 ms here.
//!
//! Run: `cargo run --release --example daemon_no_join`

use std::time::Duration;

use shmkit::process::Process;

fn f1(_: ()) {
    std::thread::sleep(Duration::from_millis(300));
    println!("xxxx");
}

fn f2(_: ()) {
    std::thread::sleep(Duration::from_millis(500));
    println!("Code for normal subprocesses");
}

shmkit::entry! {
    static F1: Entry<()> = f1;
    static F2: Entry<()> = f2;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let mut p = Process::with_target(&F1, &())?;
    p.set_daemon(true);
    let _p = p.start()?;
    let _p2 = Process::with_target(&F2, &())?.start()?;
    println!("End of main process");
    // The daemon ends with the main code; the normal child is joined.
    Ok(())
}
