//! Ending the process: an `atexit` hook, and `_exit` for a forked child
//! that must not run its parent's destructors or `atexit` handlers.

use std::io;

/// Registers `hook` to run when the program exits normally (`main`
/// returns or `std::process::exit`), after hooks registered later. `hook`
/// must not unwind: catch every panic inside it.
pub(crate) fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a plain `extern "C"` function with no arguments and
    // static lifetime; libc stores the pointer and calls it at exit.
    if unsafe { libc::atexit(hook) } != 0 {
        return Err(io::Error::other("atexit: no room for another handler"));
    }
    Ok(())
}

/// Ends the calling process at once with `code` (`_exit`): no destructors,
/// no `atexit` handlers, no flushing of Rust's buffered output.
/// Async-signal-safe.
pub(crate) fn exit_immediately(code: i32) -> ! {
    // SAFETY: `_exit` takes a plain integer and does not return; skipping
    // destructors is memory-safe (it leaks, at worst).
    unsafe { libc::_exit(code) }
}
