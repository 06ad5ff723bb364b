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

use super::header::{identity_alive, LAYOUT_VERSION};
use super::raw::{validate_os_name, Segment};
use crate::error::{AttachError, Error};
use crate::os::shm_names::{self, Hold};

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
    judge(name, false)
}

fn judge(name: &str, dry_run: bool) -> Result<Verdict, Error> {
    let seg = match Segment::open_unheld(name) {
        Ok(seg) => seg,
        Err(AttachError::NotFound(_)) => return Ok(Verdict::Gone),
        Err(AttachError::PermissionDenied(_)) => return Ok(Verdict::PermissionDenied),
        Err(AttachError::TooSmall { .. }) => return Ok(Verdict::Foreign("empty file")),
        Err(AttachError::Corrupt(why)) => return Ok(Verdict::Foreign(why)),
        Err(AttachError::Untrusted { reason, .. }) => {
            return Ok(reason
                .foreign_reason()
                .map_or(Verdict::PermissionDenied, Verdict::Foreign))
        }
        Err(e) => return Err(e.into()),
    };
    let Some(h) = seg.header_unchecked().filter(|_| seg.has_magic()) else {
        return Ok(Verdict::Foreign("no shmkit header"));
    };
    if h.version() != LAYOUT_VERSION {
        return Ok(Verdict::OtherVersion(h.version()));
    }
    match shm_names::try_hold_exclusive(seg.file())? {
        Hold::Busy | Hold::Unsupported => return Ok(Verdict::Held),
        Hold::Taken => {}
    }
    // Held exclusively: nobody holds it and nobody can start to; its state
    // is final. A corrupt state word in an unheld segment is just stale.
    let state = h.state().unwrap_or_default();
    if state.persistent || state.kept {
        return Ok(Verdict::Kept {
            persistent: state.persistent,
        });
    }
    if dry_run {
        return Ok(Verdict::WouldRemove);
    }
    if shm_names::unlink_if_id(name, seg.file_id())? {
        Ok(Verdict::Removed)
    } else {
        Ok(Verdict::Gone)
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
    for os_name in shm_names::list_names()? {
        let Some(raw) = os_name.to_str() else {
            continue;
        };
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
    Ok(report)
}
