//! The seed's `multiprocessing.Pipe` producer/consumer: the parent sends
//! `'a'` down a shmkit `Pipe`, the forked child receives it and prints it.
//!
//!     cargo run --release --example pipe

use shmkit::queue::Pipe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut send_end, mut recv_end) = Pipe::duplex()?;
    // SAFETY: single-threaded here; the child only uses the pipe and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        // Consumer.
        let code = match recv_end.recv_value::<String>() {
            Ok(data) => {
                println!("{data}");
                0
            }
            Err(e) => {
                eprintln!("child: {e}");
                1
            }
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    // Producer: the parent's copy of the child's end is not used here.
    drop(recv_end);
    send_end.send_value("a")?;
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err("consumer failed".into());
    }
    Ok(())
}
