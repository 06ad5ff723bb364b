//! Spilling: how a typed [`Queue`](super::Queue) sends a value whose
//! encoding does not fit its slot.
//!
//! The encoding goes into a separate shared segment of its own (a *spill
//! segment*), and the slot carries a small fixed-format *spill record*
//! that names it. The slot's length word has the MPMC queue's mark bit
//! set for a record, so ordinary messages keep their exact bytes and a
//! record is never mistaken for one (nor one for a record).
//!
//! # Names
//!
//! A queue's creator draws a random nonzero *uid* and records it in the
//! queue (header parameter 4 of a segment; the handle of an in-process
//! queue). Everything of the queue's spill family is named from it, by the
//! library, never from text read out of a slot:
//!
//! * `shmkit-spill-<uid>` — the *anchor* (uid as 16 hex digits);
//! * `shmkit-spill-<uid>-<pid>-<seq>` — a spill segment, `pid` and `seq`
//!   the sender's process id and a per-process counter, both carried in
//!   the record.
//!
//! # Record (24 bytes, little-endian)
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `u32` `b"SPL1"` |
//! | 4 | sender `pid: u32` |
//! | 8 | `seq: u64` |
//! | 16 | `len: u64`, the encoding's length |
//!
//! A spill segment holds a 16-byte header (magic `b"SHMKSPL1"`, the same
//! `len`) and then the encoding. The receiver checks the record, that
//! `len` is at most the queue's largest spill, that the segment is at
//! least `16 + len` bytes and that its header agrees; anything else, or a
//! missing segment, is [`GetError::Decode`](super::GetError::Decode) for
//! that message only. It unlinks the segment before decoding it.
//!
//! # Lifetime
//!
//! * A spill segment outlives its sender: a value acknowledged as sent
//!   stays until a receiver takes it, or the queue is destroyed.
//! * Every process with a typed handle of the queue holds the anchor
//!   (a shared lock on it; a forked child takes its own at fork).
//! * When the last holder lets go and the queue's segment is gone (an
//!   anonymous or in-process queue, or a named one whose name was
//!   removed), it removes every `shmkit-spill-<uid>-…` segment and the
//!   anchor. A named queue kept without holders (a rendezvous, `keep()`)
//!   keeps its spills.
//! * A sender killed between creating a spill segment and sending its
//!   record leaves the segment; it goes with the queue as above.
//! * [`gc()`](crate::gc()) removes a spill family whose anchor nobody holds
//!   and whose queue segment is gone, never one of a live queue; so does
//!   the `create`/`open_or_create` that replaces a queue whose holders all
//!   died (the stale segment and its family go together).
//!
//! Limits: a queue handed to a spawned child by descriptor must stay held
//! by the parent until the child has attached; an embedded queue
//! (`MpmcQueue::from_raw`) has no uid and never spills, nor does a queue
//! whose slots are smaller than a record ([`RECORD_LEN`], 24 bytes); a
//! forked child takes its own hold on at most 256 anchors (those of the
//! typed queues alive in the parent at the fork).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::typed::DecodeError;
use crate::error::Error;
use crate::segment::gc::{spill_name, SpillAnchor};
use crate::segment::Segment;

/// The largest encoding a typed queue spills unless configured otherwise
/// ([`QueueConfig::with_max_spill`](super::QueueConfig::with_max_spill)):
/// 1 GiB.
pub const DEFAULT_MAX_SPILL: u64 = 1 << 30;

/// Bytes of a spill record in a slot: a queue whose slots are smaller
/// cannot spill.
pub const RECORD_LEN: usize = 24;

const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"SPL1");
const FILE_MAGIC: u64 = u64::from_le_bytes(*b"SHMKSPL1");
/// Bytes of a spill segment before the encoding.
const FILE_HEADER: usize = 16;

/// A new queue uid: random and nonzero.
pub(crate) fn new_uid() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        // RandomState's keys come from the OS's randomness (per thread,
        // then stepped per call); pid and counter make each input unique.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let uid = h.finish();
        if uid != 0 {
            return uid;
        }
    }
}

/// The spill record a slot carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpillRecord {
    pub(crate) pid: u32,
    pub(crate) seq: u64,
    pub(crate) len: u64,
}

impl SpillRecord {
    /// Writes the record into `buf` (at least [`RECORD_LEN`] bytes).
    pub(crate) fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..RECORD_LEN)?;
        out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.pid.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        Some(RECORD_LEN)
    }

    /// Reads a record from a marked slot's bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != RECORD_LEN {
            return Err(DecodeError(format!(
                "spill record is {} bytes, expected {RECORD_LEN}",
                bytes.len()
            )));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
        if u32_at(0) != RECORD_MAGIC {
            return Err(DecodeError("spill record has a bad magic".into()));
        }
        let rec = SpillRecord {
            pid: u32_at(4),
            seq: u64_at(8),
            len: u64_at(16),
        };
        if rec.pid == 0 {
            return Err(DecodeError("spill record names pid 0".into()));
        }
        Ok(rec)
    }
}

/// A queue's spilling state in one process: its uid, largest spill, and
/// this process's hold on the anchor.
#[derive(Debug)]
pub(crate) struct Spill {
    uid: u64,
    max: u64,
    anchor: SpillAnchor,
    /// This process has marked the anchor as spilled.
    marked: AtomicBool,
}

impl Spill {
    /// Holds the anchor of a queue with spill parameters `(uid, max)`,
    /// whose segment is `queue` (name and file id) if it has a name.
    /// `None` when the queue cannot spill (no uid, a zero maximum) or the
    /// anchor cannot be held (then values larger than a slot are
    /// `TooLarge`, as without spilling).
    pub(crate) fn hold(params: (u64, u64), queue: Option<(&str, (u64, u64))>) -> Option<Self> {
        let (uid, max) = params;
        if uid == 0 || max == 0 || cfg!(any(miri, loom)) {
            return None;
        }
        match SpillAnchor::hold(uid, queue) {
            Ok(anchor) => Some(Spill {
                uid,
                max,
                anchor,
                marked: AtomicBool::new(false),
            }),
            Err(e) => {
                tracing::debug!(error = %e, "queue: no spill anchor; large values are refused");
                None
            }
        }
    }

    /// The largest encoding this queue spills.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Writes a `len`-byte encoding (by `encode`, into exactly `len`
    /// bytes) into a new spill segment; returns its record. `None` when
    /// `len` is over the maximum or `encode` wrote something else than
    /// `len` bytes (`TooLarge`). Checked before anything is created.
    pub(crate) fn write(
        &self,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<SpillRecord>, Error> {
        if len as u64 > self.max {
            return Ok(None);
        }
        let size = len
            .checked_add(FILE_HEADER)
            .ok_or(Error::InvalidArgument("spill size overflows"))?;
        if !self.marked.load(Ordering::Relaxed) {
            // Before the first spill segment exists: the last holder only
            // looks for spill segments of a queue marked so.
            self.anchor.mark_spilled()?;
            self.marked.store(true, Ordering::Relaxed);
        }
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let pid = crate::os::current_pid();
        let mut encode = Some(encode);
        for _ in 0..64 {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let name = spill_name(self.uid, pid, seq);
            let mut pending = match Segment::create_pending(Some(&name), size) {
                Ok(p) => p,
                // A name left by a dead process with our pid: next seq.
                Err(Error::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            };
            let seg = pending.segment();
            // SAFETY: a fresh mapping of `size` bytes that no other
            // process can open yet (it has no name until `finish`).
            let bytes = unsafe { std::slice::from_raw_parts_mut(seg.as_ptr(), size) };
            let (head, body) = bytes.split_at_mut(FILE_HEADER);
            if encode.take().and_then(|f| f(body)) != Some(len) {
                return Ok(None);
            }
            head[..8].copy_from_slice(&FILE_MAGIC.to_le_bytes());
            head[8..16].copy_from_slice(&(len as u64).to_le_bytes());
            // (`create_pending` found the name free; one taken since is
            // an error, as the encoder has run.)
            let mut seg = pending.finish()?;
            // The name outlives this handle (and this process).
            seg.keep();
            return Ok(Some(SpillRecord {
                pid,
                seq,
                len: len as u64,
            }));
        }
        Err(Error::AlreadyExists(spill_name(self.uid, pid, 0)))
    }

    /// Removes the spill segment of a record whose send failed.
    pub(crate) fn discard(&self, rec: &SpillRecord) {
        let _ = Segment::unlink(&spill_name(self.uid, rec.pid, rec.seq));
    }
}

/// Takes the spill segment `rec` names for queue `uid` (largest spill
/// `max`), unlinking it, and passes its encoding to `decode`.
pub(crate) fn take_from<T>(
    uid: u64,
    max: u64,
    rec: &SpillRecord,
    decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    if rec.len > max {
        return Err(DecodeError(format!(
            "spill record of {} bytes is over the queue's largest spill ({max})",
            rec.len
        )));
    }
    let name = spill_name(uid, rec.pid, rec.seq);
    let seg = Segment::open(&name)
        .map_err(|e| DecodeError(format!("spill segment {name} unavailable: {e}")))?;
    // Whatever follows, this message is consumed: its segment goes.
    let _ = crate::os::shm_names::unlink_if_id(&name, seg.file_id());
    let need = usize::try_from(rec.len)
        .ok()
        .and_then(|n| n.checked_add(FILE_HEADER))
        .filter(|&n| n <= seg.len())
        .ok_or_else(|| {
            DecodeError(format!(
                "spill segment {name} is {} bytes, its record says {}",
                seg.len(),
                rec.len
            ))
        })?;
    // SAFETY: the mapping is `seg.len() >= need` bytes and lives while
    // `seg` does; bytes are plain data (any value is valid), and nobody
    // writes a spill segment once its record is sent.
    let bytes = unsafe { std::slice::from_raw_parts(seg.as_ptr(), need) };
    let magic = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
    if magic != FILE_MAGIC || len != rec.len {
        return Err(DecodeError(format!(
            "spill segment {name} has a bad header"
        )));
    }
    decode(&bytes[FILE_HEADER..])
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use crate::segment::gc::{parse_spill_name, spill_anchor_name};

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let rec = SpillRecord {
            pid: 4242,
            seq: 7,
            len: 5 << 20,
        };
        let mut buf = [0u8; 40];
        assert_eq!(rec.encode(&mut buf), Some(RECORD_LEN));
        assert_eq!(&buf[..4], b"SPL1");
        assert_eq!(SpillRecord::decode(&buf[..RECORD_LEN]), Ok(rec));
        assert!(rec.encode(&mut [0u8; RECORD_LEN - 1]).is_none());
        // Wrong length, bad magic, pid 0: decode errors, no panic.
        assert!(SpillRecord::decode(&buf[..RECORD_LEN - 1]).is_err());
        assert!(SpillRecord::decode(&buf[..]).is_err());
        let mut bad = buf;
        bad[0] ^= 1;
        assert!(SpillRecord::decode(&bad[..RECORD_LEN]).is_err());
        let mut zero = buf;
        zero[4..8].fill(0);
        assert!(SpillRecord::decode(&zero[..RECORD_LEN]).is_err());
    }

    #[test]
    fn names_are_derived_and_parsed_strictly() {
        let uid = 0x00ab_cdef_0123_4567;
        assert_eq!(spill_anchor_name(uid), "shmkit-spill-00abcdef01234567");
        let name = spill_name(uid, 31, 9);
        assert_eq!(name, "shmkit-spill-00abcdef01234567-31-9");
        assert!(crate::segment::validate_name(&name).is_ok());
        assert_eq!(parse_spill_name(&name), Some((uid, Some((31, 9)))));
        assert_eq!(parse_spill_name(&spill_anchor_name(uid)), Some((uid, None)));
        let longest = spill_name(u64::MAX, u32::MAX, u64::MAX);
        assert!(crate::segment::validate_name(&longest).is_ok());
        assert_eq!(
            parse_spill_name(&longest),
            Some((u64::MAX, Some((u32::MAX, u64::MAX))))
        );
        for bad in [
            "shmkit-spill-",
            "shmkit-spill-00ABCDEF01234567",
            "shmkit-spill-00abcdef0123456",
            "shmkit-spill-00abcdef01234567-",
            "shmkit-spill-00abcdef01234567-31",
            "shmkit-spill-00abcdef01234567-31-9-1",
            "shmkit-spill-00abcdef01234567-031-9",
            "shmkit-spill-00abcdef01234567-+31-9",
            "shmkit-spill-00abcdef01234567-31-x",
            "shmkit-spill-00abcdef01234567x",
            "jobs",
        ] {
            assert_eq!(parse_spill_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn uids_are_nonzero_and_distinct() {
        let a: Vec<u64> = (0..64).map(|_| new_uid()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), a.len());
        assert!(a.iter().all(|&u| u != 0));
    }
}
