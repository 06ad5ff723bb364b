//! The status pipe: how a child reports its start-up and a panic to the
//! parent.
//!
//! Frames are `[len: u32 little endian][postcard(Report)]`, at most
//! [`MAX_FRAME`] bytes. The child writes `Started` (or the reason it cannot
//! start) before running its entry, and `Panicked` if the entry panics. The
//! parent treats the pipe as untrusted input: an over-long or undecodable
//! frame is a protocol error, never a panic.

use std::fs::File;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Largest accepted frame body (a panic message is truncated to fit).
pub(crate) const MAX_FRAME: usize = 16 * 1024;

/// One message from child to parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The entry was found and its arguments decoded; it runs now.
    Started,
    /// No entry of this name is registered in the child.
    UnknownEntry(String),
    /// The arguments did not decode.
    BadArgs(String),
    /// The child speaks another protocol (its tag).
    VersionMismatch(String),
    /// The entry panicked with this message.
    Panicked(String),
}

/// Writes one report frame (best effort: a parent that went away is not an
/// error the child can act on).
pub(crate) fn send(pipe: &mut File, report: &Report) {
    let mut report = report.clone();
    if let Report::Panicked(msg) = &mut report {
        if msg.len() > MAX_FRAME - 64 {
            let mut cut = MAX_FRAME - 64;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
    }
    let Ok(body) = postcard::to_allocvec(&report) else {
        return;
    };
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    let _ = pipe.write_all(&frame);
}

/// Result of reading one frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read1 {
    /// A well-formed report.
    Report(Report),
    /// The write end is closed (child exited or exec'd something else).
    Eof,
    /// No complete frame available (non-blocking pipe).
    WouldBlock,
    /// Malformed frame.
    Bad(&'static str),
}

/// Reads one frame from `pipe`. With a blocking pipe this blocks until a
/// whole frame or EOF; with a non-blocking one it returns `WouldBlock` when
/// no frame has started.
pub(crate) fn recv(pipe: &mut File) -> Read1 {
    let mut len = [0u8; 4];
    match read_full(pipe, &mut len) {
        Ok(true) => {}
        Ok(false) => return Read1::Eof,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read1::WouldBlock,
        Err(_) => return Read1::Bad("read error on status pipe"),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return Read1::Bad("frame length out of range");
    }
    let mut body = vec![0u8; n];
    // A long frame may arrive in several pieces; once its length has been
    // read, keep reading (the writer finishes a frame before exiting, and
    // EOF mid-frame is reported as malformed).
    loop {
        match read_full(pipe, &mut body) {
            Ok(true) => break,
            Ok(false) => return Read1::Bad("truncated frame"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(_) => return Read1::Bad("read error on status pipe"),
        }
    }
    match postcard::from_bytes::<Report>(&body) {
        Ok(r) => Read1::Report(r),
        Err(_) => Read1::Bad("undecodable frame"),
    }
}

/// Fills `buf` completely; `Ok(false)` on EOF before the first byte,
/// an `UnexpectedEof` error on EOF in the middle. Retries `EINTR`.
fn read_full(pipe: &mut File, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match pipe.read(&mut buf[done..]) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "pipes need syscalls")]
    fn frames_round_trip_and_reject_garbage() {
        let (r, w) = crate::os::fd::pipe_cloexec().unwrap();
        let (mut r, mut w) = (File::from(r), File::from(w));
        send(&mut w, &Report::Started);
        send(&mut w, &Report::Panicked("boom".into()));
        w.write_all(&u32::MAX.to_le_bytes()).unwrap();
        drop(w);
        assert_eq!(recv(&mut r), Read1::Report(Report::Started));
        assert_eq!(recv(&mut r), Read1::Report(Report::Panicked("boom".into())));
        assert_eq!(recv(&mut r), Read1::Bad("frame length out of range"));
        assert_eq!(recv(&mut r), Read1::Eof);
    }
}
