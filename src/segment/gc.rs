//! Stale names and [`gc()`]: removing shmkit segments that no process holds.
//!
//! A named segment is **stale** when it is a shmkit segment of this
//! [`LAYOUT_VERSION`] that no process holds (its creator and every process
//! that attached are gone — exited, killed, or in another pid namespace
//! that has let go) and that nobody asked to keep (not persistent, not
//! waiting for its first opener). The check takes the segment's exclusive
//! hold before looking, so a process cannot start holding it while it is
//! judged and removed; and the name is only unlinked while it still points
//! at the file that was judged.
//!
//! Never touched: files without shmkit's magic (other programs'), segments
//! of other layout versions (their processes may not take holds), files of
//! other users, and anything a live process holds.
//!
//! **Spill families** (`shmkit-spill-<uid>` and `shmkit-spill-<uid>-…`,
//! the large values of a typed queue; see
//! [`queue::spill`](crate::queue::spill)) follow their queue instead: they
//! are judged after the segments, and removed only when no process holds
//! the family's anchor and the queue segment it records (if named) is
//! gone. A spill segment of a live queue is never removed, even though no
//! process holds the spill segment itself.

use super::header::{identity_alive, LAYOUT_VERSION};
use super::raw::{validate_os_name, Segment};
use crate::error::{AttachError, Error};
use crate::os::shm_names::{self, Hold};
use std::collections::BTreeMap;
use std::fs::File;
// A process-global table read by a fork handler, not a concurrent
// algorithm: plain std atomics (as in `os::shm_names`), also under loom.
use std::sync::atomic::{AtomicU64, Ordering};

/// What [`gc()`] (or a `create` that found the name taken) decided about
/// one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stale: the name was removed.
    Removed,
    /// Stale: the name would be removed (dry run).
    WouldRemove,
    /// The name disappeared while being looked at.
    Gone,
    /// A live process holds the segment (or holds cannot be checked here).
    Held,
    /// Nobody holds it, but it was kept on purpose: persistent (`keep`)
    /// or a [`Lifetime::Holders`](super::Lifetime::Holders) segment
    /// waiting for its first opener.
    Kept {
        /// `keep()` was called (else: waiting for its first opener).
        persistent: bool,
    },
    /// Not a shmkit segment (no magic, not a regular file, ...).
    Foreign(&'static str),
    /// A shmkit segment of another layout version.
    OtherVersion(u32),
    /// Not ours to judge: owned by another user.
    PermissionDenied,
}

impl Verdict {
    /// Whether the name is free now (removed or gone).
    pub fn name_is_free(&self) -> bool {
        matches!(self, Verdict::Removed | Verdict::Gone)
    }
}

/// Removes the segment called `name` if it is stale; otherwise says why
/// not.
pub(crate) fn remove_if_stale(name: &str) -> Result<Verdict, Error> {
    let (verdict, spill_uid) = judge_segment(name, false)?;
    if let Some(uid) = spill_uid {
        // The stale queue's spill family (its anchor, left by the dead
        // holders, and any spills) goes with it, by gc's own rule.
        sweep_spill_family(uid);
    }
    Ok(verdict)
}

fn judge(name: &str, dry_run: bool) -> Result<Verdict, Error> {
    judge_segment(name, dry_run).map(|(verdict, _)| verdict)
}

/// The spill uid a removed segment recorded, if it was a typed queue
/// that could spill (MPMC layout tag 4 or later, uid in parameter 4).
fn spill_uid_of(h: &super::header::SegmentHeader, mapped_len: usize) -> Option<u64> {
    use super::header::ObjectKind;
    let info = h.validate_any(mapped_len).ok()?;
    let queue = matches!(
        info.kind,
        ObjectKind::MPMC_QUEUE | ObjectKind::JOINABLE_QUEUE
    );
    (queue && info.params[3] == crate::queue::mpmc::LAYOUT_TAG && info.params[4] != 0)
        .then_some(info.params[4])
}

/// Applies gc's spill-family rule to queue `uid`'s family, if it has one.
fn sweep_spill_family(uid: u64) {
    let Ok(names) = shm_names::list_names() else {
        return;
    };
    let family: Vec<String> = names
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| matches!(parse_spill_name(n), Some((u, _)) if u == uid))
        .map(str::to_owned)
        .collect();
    if !family.is_empty() {
        let _ = judge_spill_family(uid, &family, false);
    }
}

/// [`judge`], and for a removed typed queue the spill uid it recorded.
fn judge_segment(name: &str, dry_run: bool) -> Result<(Verdict, Option<u64>), Error> {
    let verdict = |v: Verdict| Ok((v, None));
    let seg = match Segment::open_unheld(name) {
        Ok(seg) => seg,
        Err(AttachError::NotFound(_)) => return verdict(Verdict::Gone),
        Err(AttachError::PermissionDenied(_)) => return verdict(Verdict::PermissionDenied),
        Err(AttachError::TooSmall { .. }) => return verdict(Verdict::Foreign("empty file")),
        Err(AttachError::Corrupt(why)) => return verdict(Verdict::Foreign(why)),
        Err(AttachError::Untrusted { reason, .. }) => {
            return verdict(
                reason
                    .foreign_reason()
                    .map_or(Verdict::PermissionDenied, Verdict::Foreign),
            )
        }
        Err(e) => return Err(e.into()),
    };
    let Some(h) = seg.header_unchecked().filter(|_| seg.has_magic()) else {
        return verdict(Verdict::Foreign("no shmkit header"));
    };
    if h.version() != LAYOUT_VERSION {
        return verdict(Verdict::OtherVersion(h.version()));
    }
    match shm_names::try_hold_exclusive(seg.file())? {
        Hold::Busy | Hold::Unsupported => return verdict(Verdict::Held),
        Hold::Taken => {}
    }
    // Held exclusively: nobody holds it and nobody can start to; its state
    // is final. A corrupt state word in an unheld segment is just stale.
    let state = h.state().unwrap_or_default();
    if state.persistent || state.kept {
        return verdict(Verdict::Kept {
            persistent: state.persistent,
        });
    }
    if dry_run {
        return verdict(Verdict::WouldRemove);
    }
    if shm_names::unlink_if_id(name, seg.file_id())? {
        Ok((Verdict::Removed, spill_uid_of(h, seg.len())))
    } else {
        verdict(Verdict::Gone)
    }
    // Dropping `seg` closes and unmaps it, which releases the hold.
}

/// One name [`gc()`] looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcEntry {
    /// The name in `/dev/shm`.
    pub name: String,
    /// What was decided.
    pub verdict: Verdict,
}

/// What [`gc()`] did: one entry per shmkit segment (and per leftover hidden
/// creation file) it looked at. Other programs' files are not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Every shmkit name looked at, in name order.
    pub entries: Vec<GcEntry>,
}

impl GcReport {
    /// Names removed (or, in a dry run, that would be).
    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| matches!(e.verdict, Verdict::Removed | Verdict::WouldRemove))
            .map(|e| e.name.as_str())
    }
}

/// Removes every stale shmkit segment in `/dev/shm` (see the module docs):
/// those whose holders are all dead and that nobody kept. Also removes the
/// hidden `.shmkit-new-…` files of creations whose process died midway.
/// Never touches other programs' files, other users' files, or a segment a
/// live process holds.
///
/// ```no_run
/// // Removes stale segments (run by hand or at start-up; `shmkit gc` is
/// // the same from a shell).
/// let report = shmkit::gc()?;
/// for name in report.removed() {
///     eprintln!("removed stale segment {name}");
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn gc() -> Result<GcReport, Error> {
    run(false)
}

/// What [`gc()`] would remove, removing nothing.
///
/// ```
/// use shmkit::{Event, ShmBox};
///
/// let name = format!("doc-gc-{}", std::process::id());
/// let ev = ShmBox::<Event>::create(&name, ())?;
/// let report = shmkit::segment::gc_dry_run()?;
/// // Held by this process: never a candidate.
/// assert!(report.removed().all(|n| n != name));
/// for name in report.removed() {
///     println!("stale: {name}");
/// }
/// # drop(ev);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn gc_dry_run() -> Result<GcReport, Error> {
    run(true)
}

fn run(dry_run: bool) -> Result<GcReport, Error> {
    let mut report = GcReport::default();
    // Spill families are judged last, once stale queues are gone.
    let mut families: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for os_name in shm_names::list_names()? {
        let Some(raw) = os_name.to_str() else {
            continue;
        };
        if let Some((uid, _)) = parse_spill_name(raw) {
            families.entry(uid).or_default().push(raw.to_owned());
            continue;
        }
        if let Some((pid, start)) = shm_names::parse_temp_name(raw) {
            if !identity_alive(pid, start) {
                let verdict = if dry_run {
                    Verdict::WouldRemove
                } else {
                    match crate::os::shm::unlink_named(raw) {
                        Ok(()) => Verdict::Removed,
                        Err(_) => Verdict::Gone,
                    }
                };
                report.entries.push(GcEntry {
                    name: raw.to_owned(),
                    verdict,
                });
            }
            continue;
        }
        let Ok(name) = validate_os_name(&os_name) else {
            continue;
        };
        let verdict = match judge(name, dry_run) {
            Ok(v) => v,
            // One unreadable file does not stop the sweep.
            Err(_) => continue,
        };
        if matches!(verdict, Verdict::Foreign(_) | Verdict::PermissionDenied) {
            continue;
        }
        report.entries.push(GcEntry {
            name: name.to_owned(),
            verdict,
        });
    }
    for (uid, names) in &families {
        report
            .entries
            .extend(judge_spill_family(*uid, names, dry_run));
    }
    report.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

// ---------------------------------------------------------------------
// Spill families (the typed queue's large messages; see `queue::spill`).
// ---------------------------------------------------------------------

/// Prefix of every name of a spill family: the anchor
/// `shmkit-spill-<uid>` of a queue and its spill segments
/// `shmkit-spill-<uid>-<pid>-<seq>` (`uid` as 16 lowercase hex digits).
pub const SPILL_PREFIX: &str = "shmkit-spill-";

/// Magic at the start of an anchor file: `b"SHMKANC1"` as a
/// little-endian u64.
const ANCHOR_MAGIC: u64 = u64::from_le_bytes(*b"SHMKANC1");
/// Bytes of an anchor file before the queue's name: magic, the queue
/// segment's `(device, inode)`, the name's length, and a word set to 1
/// once the queue has spilled.
const ANCHOR_FIXED: usize = 32;
/// Offset of the anchor's "has spilled" word.
const SPILLED_AT: u64 = 28;

/// The anchor name of the queue with spill uid `uid`.
pub(crate) fn spill_anchor_name(uid: u64) -> String {
    format!("{SPILL_PREFIX}{uid:016x}")
}

/// The name of spill segment `seq` of process `pid` for queue `uid`.
pub(crate) fn spill_name(uid: u64, pid: u32, seq: u64) -> String {
    format!("{SPILL_PREFIX}{uid:016x}-{pid}-{seq}")
}

/// A decimal number without sign or leading zeros (so one value has one
/// spelling, and a parsed name formats back to itself).
fn plain_decimal<N: std::str::FromStr>(s: &str) -> Option<N> {
    let canonical = !s.is_empty() && (s == "0" || !s.starts_with('0'));
    (canonical && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Splits a spill-family name: `(uid, None)` for an anchor,
/// `(uid, Some((pid, seq)))` for a spill segment, `None` for anything
/// else (names are parsed strictly: they are formatted back identically).
pub(crate) fn parse_spill_name(name: &str) -> Option<(u64, Option<(u32, u64)>)> {
    let rest = name.strip_prefix(SPILL_PREFIX)?;
    let hex = rest.get(..16)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let uid = u64::from_str_radix(hex, 16).ok()?;
    let tail = &rest[16..];
    if tail.is_empty() {
        return Some((uid, None));
    }
    let mut parts = tail.strip_prefix('-')?.split('-');
    let pid = plain_decimal(parts.next()?)?;
    let seq = plain_decimal(parts.next()?)?;
    parts.next().is_none().then_some((uid, Some((pid, seq))))
}

/// This process's hold on a queue's spill anchor (see `queue::spill`):
/// every process with a typed handle of the queue holds the anchor, so
/// "nobody holds the anchor" means no process can still receive the
/// queue's spilled messages. The anchor file also records the queue's
/// segment name and file id, if it has a name, so that a named queue
/// kept without holders keeps its spills.
#[derive(Debug)]
pub(crate) struct SpillAnchor {
    uid: u64,
    file: File,
    id: (u64, u64),
    /// The process that opened it: only it decides at drop (a forked
    /// child's copy shares this open file description and never decides).
    opener: u32,
    queue: Option<(String, (u64, u64))>,
    /// This anchor's entry in the fork table (see `SPILL_FORK_TABLE`).
    fork_slot: Option<usize>,
}

/// Anchors live in this process, so that a forked child takes its own
/// hold on each (a child shares its parent's open file descriptions, so
/// without one the parent could not tell that the child still holds it).
/// A `pthread_atfork` child handler reopens every anchor listed here;
/// atomics only, as the handler runs in a freshly forked child.
static SPILL_FORK_TABLE: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

fn anchor_contents(queue: Option<(&str, (u64, u64))>) -> Vec<u8> {
    let (name, id) = queue.unwrap_or(("", (0, 0)));
    let mut v = Vec::with_capacity(ANCHOR_FIXED + name.len());
    v.extend_from_slice(&ANCHOR_MAGIC.to_le_bytes());
    v.extend_from_slice(&id.0.to_le_bytes());
    v.extend_from_slice(&id.1.to_le_bytes());
    v.extend_from_slice(&(name.len() as u32).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // spilled flag
    v.extend_from_slice(name.as_bytes());
    v
}

/// The queue an anchor file names (`None`: anonymous or unreadable).
fn read_anchor(file: &File) -> Option<(String, (u64, u64))> {
    use std::os::unix::fs::FileExt;
    let mut fixed = [0u8; ANCHOR_FIXED];
    file.read_exact_at(&mut fixed, 0).ok()?;
    let word = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or_default());
    if word(0) != ANCHOR_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(fixed[24..28].try_into().unwrap_or_default()) as usize;
    if len == 0 || len > super::raw::MAX_NAME_LEN {
        return None;
    }
    let mut name = vec![0u8; len];
    file.read_exact_at(&mut name, ANCHOR_FIXED as u64).ok()?;
    let name = String::from_utf8(name).ok()?;
    super::raw::validate_name(&name).ok()?;
    Some((name, (word(8), word(16))))
}

impl SpillAnchor {
    /// Opens (creating it if needed) and holds the anchor of queue `uid`,
    /// whose segment is `queue` (name and file id) if it has a name.
    pub(crate) fn hold(uid: u64, queue: Option<(&str, (u64, u64))>) -> std::io::Result<Self> {
        use crate::os::shm::{open_named, OpenNamedError, OwnerCheck};
        use std::os::unix::fs::FileExt;
        let name = spill_anchor_name(uid);
        let deadline = crate::os::Deadline::after(std::time::Duration::from_secs(1));
        loop {
            let file = match open_named(&name, OwnerCheck::ThisUserOnly) {
                Ok(file) => file,
                Err(OpenNamedError::Os(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    let body = anchor_contents(queue);
                    let (file, mut temp) = shm_names::create_unnamed(body.len() as u64)?;
                    file.write_all_at(&body, 0)?;
                    shm_names::try_hold_shared(&file)?;
                    match shm_names::link_name(&file, &mut temp, &name) {
                        Ok(()) => return Self::held(uid, file, queue),
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(OpenNamedError::Os(e)) => return Err(e),
                Err(OpenNamedError::Untrusted(u)) => {
                    return Err(std::io::Error::other(u.to_string()))
                }
            };
            match shm_names::try_hold_shared(&file)? {
                Hold::Busy if deadline.has_passed() => {
                    return Err(std::io::Error::from_raw_os_error(libc::EBUSY))
                }
                Hold::Busy => {
                    // A remover is deciding; it unlinks or lets go soon.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    continue;
                }
                Hold::Taken | Hold::Unsupported => {}
            }
            // Held: the name can no longer be removed under us; it must
            // still name this file (else a remover took it: start over).
            if shm_names::name_id(&name)? == Some(shm_names::file_id(&file)?) {
                return Self::held(uid, file, queue);
            }
        }
    }

    fn held(uid: u64, file: File, queue: Option<(&str, (u64, u64))>) -> std::io::Result<Self> {
        let id = shm_names::file_id(&file)?;
        let fork_slot = SPILL_FORK_TABLE.iter().position(|s| {
            s.compare_exchange(0, uid, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        });
        register_fork_handler();
        Ok(SpillAnchor {
            uid,
            file,
            id,
            opener: crate::os::current_pid(),
            queue: queue.map(|(n, id)| (n.to_owned(), id)),
            fork_slot,
        })
    }
}

impl SpillAnchor {
    /// Records in the anchor that the queue has spilled at least once, so
    /// that its last holder knows to look for spill segments. Called by a
    /// sender before it creates its first one.
    pub(crate) fn mark_spilled(&self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(&1u32.to_le_bytes(), SPILLED_AT)
    }

    /// Whether any process marked the queue as having spilled (`true`
    /// when the anchor cannot be read: then look anyway).
    fn has_spilled(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let mut word = [0u8; 4];
        self.file.read_exact_at(&mut word, SPILLED_AT).is_err() || word != [0; 4]
    }
}

impl Drop for SpillAnchor {
    /// The last holder of a queue whose segment is gone (no name left that
    /// points at it) removes the queue's spill segments and the anchor.
    fn drop(&mut self) {
        if let Some(i) = self.fork_slot {
            SPILL_FORK_TABLE[i].store(0, Ordering::SeqCst);
        }
        if self.opener != crate::os::current_pid() {
            return;
        }
        if shm_names::try_hold_exclusive(&self.file).ok() != Some(Hold::Taken) {
            return;
        }
        let queue_present = self
            .queue
            .as_ref()
            .is_some_and(|(name, id)| shm_names::name_id(name).ok().flatten() == Some(*id));
        if !queue_present {
            if self.has_spilled() {
                let _ = remove_spills(self.uid);
            }
            let _ = shm_names::unlink_if_id(&spill_anchor_name(self.uid), self.id);
        }
    }
}

/// Unlinks every spill segment of queue `uid` (the anchor stays). Returns
/// the names removed.
pub(crate) fn remove_spills(uid: u64) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for os_name in shm_names::list_names()? {
        let Some(name) = os_name.to_str() else {
            continue;
        };
        if matches!(parse_spill_name(name), Some((u, Some(_))) if u == uid)
            && crate::os::shm::unlink_named(name).is_ok()
        {
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

fn register_fork_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a child-side handler that only reads atomics
        // and makes async-signal-safe calls (open, fcntl).
        unsafe {
            libc::pthread_atfork(None, None, Some(hold_anchors_in_child));
        }
    });
}

/// In a freshly forked child: takes this process's own shared hold on
/// every anchor the parent held (kept until the child exits or execs).
/// Only atomics, a stack buffer and async-signal-safe calls.
extern "C" fn hold_anchors_in_child() {
    const PATH: &[u8] = b"/dev/shm/shmkit-spill-";
    for slot in SPILL_FORK_TABLE.iter() {
        let uid = slot.load(Ordering::SeqCst);
        if uid == 0 {
            continue;
        }
        let mut path = [0u8; 64];
        path[..PATH.len()].copy_from_slice(PATH);
        for i in 0..16 {
            let nibble = ((uid >> (60 - 4 * i)) & 0xf) as u8;
            path[PATH.len() + i] = if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            };
        }
        // path[PATH.len() + 16] is the terminating NUL.
        // SAFETY: `path` is NUL-terminated; open and fcntl are
        // async-signal-safe; an all-zero flock is a valid C struct.
        unsafe {
            let fd = libc::open(
                path.as_ptr() as *const libc::c_char,
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            );
            if fd < 0 {
                continue;
            }
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_RDLCK as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            if libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) != 0 {
                libc::close(fd);
            }
            // Else the descriptor stays open: the hold lasts until exit.
        }
    }
}

/// gc's rule for the spill family of queue `uid` (its anchor and spill
/// segments, `names`): they are removed when no process holds the anchor
/// and the queue's segment is gone (no name that points at the file the
/// anchor records). A live queue's family is left alone.
fn judge_spill_family(uid: u64, names: &[String], dry_run: bool) -> Vec<GcEntry> {
    use crate::os::shm::{open_named, OwnerCheck};
    let entries = |verdict: Verdict| {
        names
            .iter()
            .map(|n| GcEntry {
                name: n.clone(),
                verdict: verdict.clone(),
            })
            .collect()
    };
    let anchor_name = spill_anchor_name(uid);
    let anchor = match open_named(&anchor_name, OwnerCheck::ThisUserOnly) {
        Ok(file) => Some(file),
        Err(crate::os::shm::OpenNamedError::Os(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            None
        }
        // Another user's (or not a regular file): not ours to judge.
        Err(_) => return Vec::new(),
    };
    if let Some(file) = &anchor {
        match shm_names::try_hold_exclusive(file) {
            Ok(Hold::Taken) => {}
            _ => return entries(Verdict::Held),
        }
        if let Some((name, id)) = read_anchor(file) {
            if shm_names::name_id(&name).ok().flatten() == Some(id) {
                return entries(Verdict::Held);
            }
        }
    }
    if dry_run {
        return entries(Verdict::WouldRemove);
    }
    // Held exclusively (or no anchor): no process can start receiving
    // from this queue while its spills go.
    names
        .iter()
        .filter_map(|n| {
            let gone = match (&anchor, n == &anchor_name) {
                (Some(file), true) => shm_names::file_id(file)
                    .and_then(|id| shm_names::unlink_if_id(n, id))
                    .unwrap_or(false),
                // Only our own files (another user's are not ours to judge).
                _ => match open_named(n, OwnerCheck::ThisUserOnly) {
                    Ok(file) => shm_names::file_id(&file)
                        .and_then(|id| shm_names::unlink_if_id(n, id))
                        .unwrap_or(false),
                    Err(crate::os::shm::OpenNamedError::Untrusted(_)) => return None,
                    Err(_) => false,
                },
            };
            Some(GcEntry {
                name: n.clone(),
                verdict: if gone {
                    Verdict::Removed
                } else {
                    Verdict::Gone
                },
            })
        })
        .collect()
}
