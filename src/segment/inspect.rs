//! Looking at named segments without attaching to them: what `shmkit ls`
//! and `shmkit stat` print.
//!
//! [`inspect()`] maps a segment without holding it or registering in its
//! attach table, so looking never changes what it looks at. Whatever it
//! reads was written by other processes and is reported, not trusted: a
//! field that fails validation becomes [`SegmentReport::problem`].

use std::fmt;

use super::header::{
    identity_alive, HeaderInfo, ObjectKind, OpenOptions, SegmentState, LAYOUT_VERSION,
};
use super::layout::Region;
use super::raw::{validate_os_name, Segment};
use crate::error::{AttachError, Error};
use crate::os::shm_names;
use crate::primitives::Ordering;

/// A process named in a segment: its creator or an attached process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Pid (in the namespace of the process that recorded it).
    pub pid: u32,
    /// Start time in clock ticks after boot (0 if unknown).
    pub start: u64,
    /// Whether that process is running now (pid alive with that start
    /// time).
    pub alive: bool,
}

impl ProcessInfo {
    fn new(pid: u32, start: u64) -> Self {
        Self {
            pid,
            start,
            alive: pid != 0 && identity_alive(pid, start),
        }
    }
}

/// What a named segment's header and holds say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// Its name in `/dev/shm`.
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Layout version recorded in the header.
    pub version: u32,
    /// Object kind recorded in the header.
    pub kind: ObjectKind,
    /// Element-type fingerprint recorded in the header (0: untyped; see
    /// [`TypeTag`](super::TypeTag)).
    pub type_tag: u64,
    /// Whether the creator published it.
    pub ready: bool,
    /// The creating process.
    pub creator: ProcessInfo,
    /// Processes in the attach table (the creator included while it holds
    /// the segment).
    pub attached: Vec<ProcessInfo>,
    /// Attaches that found the attach table full.
    pub untracked: u32,
    /// Whether any process holds the segment now (`None`: this system
    /// cannot tell).
    pub held: Option<bool>,
    /// Lifetime and flags.
    pub state: SegmentState,
    /// The validated header (`None` when [`problem`](Self::problem) is
    /// set).
    pub info: Option<HeaderInfo>,
    /// Why the header does not validate (other layout version, corrupt
    /// field), if it does not.
    pub problem: Option<String>,
}

impl SegmentReport {
    /// Whether [`gc()`](super::gc()) would remove it: a valid segment of this
    /// layout version that nobody holds and nobody kept.
    pub fn is_stale(&self) -> bool {
        self.version == LAYOUT_VERSION
            && self.held == Some(false)
            && !self.state.persistent
            && !self.state.kept
    }

    /// A one-word summary: `live`, `stale`, `kept`, `persistent`,
    /// `unknown` (holds cannot be checked) or `incompatible`.
    pub fn status(&self) -> &'static str {
        if self.version != LAYOUT_VERSION {
            return "incompatible";
        }
        match self.held {
            Some(true) => "live",
            None => "unknown",
            Some(false) if self.state.persistent => "persistent",
            Some(false) if self.state.kept => "kept",
            Some(false) => "stale",
        }
    }
}

/// Why a name could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No such name.
    #[error("no shared segment named {0:?}")]
    NotFound(String),
    /// Another user's file.
    #[error("permission denied for {0:?}: it belongs to another user")]
    PermissionDenied(String),
    /// The name is not valid (see [`validate_name`](super::validate_name)).
    #[error("{0}")]
    InvalidName(AttachError),
    /// Not a shmkit segment: another program's file, or not a regular file.
    #[error("{name:?} is not a shmkit segment: {reason}")]
    Foreign {
        /// The name.
        name: String,
        /// What gave it away.
        reason: &'static str,
    },
    /// An OS error.
    #[error("I/O error inspecting {name:?}: {source}")]
    Io {
        /// The name.
        name: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A named segment mapped for inspection (not held, not registered).
pub struct Inspection {
    seg: Segment,
    report: SegmentReport,
}

impl fmt::Debug for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspection")
            .field("report", &self.report)
            .finish()
    }
}

impl Inspection {
    /// What the header and holds say.
    pub fn report(&self) -> &SegmentReport {
        &self.report
    }

    /// The object's bytes, if the header validated. Another process may
    /// change them at any time: read them only through atomics or types
    /// that are valid for any bit pattern.
    pub fn body(&self) -> Option<Region> {
        let info = self.report.info.as_ref()?;
        // SAFETY: the mapping covers [0, len) while `self.seg` lives, and
        // the region does not outlive `self` in any safe use (its pointer
        // is only dereferenced through further unsafe code by the caller).
        let whole = unsafe { Region::new(self.seg.as_ptr(), self.seg.len()) };
        whole.sub(info.body_offset, info.body_len).ok()
    }

    /// The object's own state as `(label, value)` lines: queue length,
    /// capacity and which processes hold its ends; dict entries; lock
    /// holder and whether it is alive; event and semaphore state. Empty for
    /// kinds it does not know. Queues and dicts are attached for this
    /// without entering the attach table (so looking does not make the
    /// looker a holder), and their layout is validated as on any attach;
    /// a live-holder count sweeps the slots of dead holders, as every
    /// attach does.
    ///
    /// ```
    /// use shmkit::segment::inspect;
    ///
    /// let name = format!("doc-objstate-{}", std::process::id());
    /// let q = shmkit::queue::MpmcQueue::create(&name, 32, 4)?;
    /// q.sender()?.send(b"hi")?;
    /// let state = inspect(&name)?.object_state()?;
    /// assert!(state.contains(&("length", "1".to_owned())));
    /// assert!(state.contains(&("capacity", "4".to_owned())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn object_state(&self) -> Result<Vec<(&'static str, String)>, AttachError> {
        let Some(info) = self.report.info.as_ref() else {
            return Ok(Vec::new());
        };
        let Some(body) = self.body() else {
            return Ok(Vec::new());
        };
        let attach = || -> Result<Segment, AttachError> { Segment::open_unheld(&self.report.name) };
        let mut opts = OpenOptions::new();
        opts.inspect = true;
        let alive = |pid: u32| {
            if crate::os::process_alive(pid) {
                "alive"
            } else {
                "dead"
            }
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut out = Vec::new();
        match info.kind {
            ObjectKind::SPSC_RING => {
                let ring = crate::queue::SpscRing::from_segment(attach()?, &opts)?;
                let (producer, consumer) = ring.endpoints_held();
                out.push(("length", ring.len().to_string()));
                out.push(("capacity", format!("{} bytes", ring.capacity())));
                out.push(("producer", yes_no(producer)));
                out.push(("consumer", yes_no(consumer)));
            }
            ObjectKind::MPMC_QUEUE | ObjectKind::JOINABLE_QUEUE => {
                let q = crate::queue::MpmcQueue::attach_kind(attach()?, info.kind, &opts)?;
                let (senders, receivers) = q.endpoints_held();
                out.push(("length", q.len().to_string()));
                out.push(("capacity", q.capacity().to_string()));
                out.push(("slot size", format!("{} bytes", q.slot_size())));
                out.push(("senders", senders.to_string()));
                out.push(("receivers", receivers.to_string()));
                if info.kind == ObjectKind::JOINABLE_QUEUE {
                    out.push((
                        "unfinished",
                        q.joinable().0.load(Ordering::Relaxed).to_string(),
                    ));
                }
            }
            ObjectKind::DICT => {
                let d = crate::ShmDict::from_segment(attach()?, &opts)?;
                let cfg = d.config();
                out.push(("entries", d.len().to_string()));
                out.push(("max entries", cfg.max_entries.to_string()));
                out.push(("arena", format!("{} bytes", cfg.arena_bytes)));
                out.push(("repairs", d.repairs().to_string()));
            }
            ObjectKind::MUTEX | ObjectKind::RAW_MUTEX => {
                // A `Mutex<T>` starts with its `RawMutex` (repr(C)).
                let p = body.ptr_at::<crate::sync::RawMutex>(0)?;
                // SAFETY: in bounds and aligned (ptr_at); a RawMutex is
                // atomics only, valid for any bytes another process wrote;
                // the mapping lives as long as `self`, which outlives `m`.
                let m = unsafe { &*p };
                let holder = match m.owner() {
                    None => "none (unlocked)".to_owned(),
                    Some(pid) => format!("pid {pid} ({})", alive(pid)),
                };
                out.push(("lock holder", holder));
                out.push(("consistent", yes_no(m.is_consistent())));
            }
            ObjectKind::EVENT => {
                let p = body.ptr_at::<crate::Event>(0)?;
                // SAFETY: in bounds and aligned; an Event is a ShmObject
                // (any bit pattern valid); the mapping outlives `e`.
                let e = unsafe { &*p };
                out.push(("event set", yes_no(e.is_set())));
            }
            ObjectKind::SEMAPHORE => {
                let p = body.ptr_at::<crate::Semaphore>(0)?;
                // SAFETY: in bounds and aligned; a Semaphore is a ShmObject
                // (any bit pattern valid); the mapping outlives `s`.
                let s = unsafe { &*p };
                out.push(("semaphore value", s.value().to_string()));
            }
            _ => {}
        }
        Ok(out)
    }
}

/// Inspects the segment called `name` without attaching to it.
///
/// ```
/// use shmkit::segment::{inspect, ObjectKind};
/// use shmkit::{Event, ShmBox};
///
/// let name = format!("doc-inspect-{}", std::process::id());
/// let ev = ShmBox::<Event>::create(&name, ())?;
/// let seen = inspect(&name)?;
/// let r = seen.report();
/// assert_eq!(r.kind, ObjectKind::EVENT);
/// assert_eq!(r.creator.pid, std::process::id());
/// assert_eq!(r.held, Some(true));
/// assert_eq!(r.status(), "live");
/// # drop(ev);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(name: &str) -> Result<Inspection, InspectError> {
    super::raw::validate_name(name).map_err(InspectError::InvalidName)?;
    let seg = match Segment::open_unheld(name) {
        Ok(s) => s,
        Err(AttachError::NotFound(_)) => return Err(InspectError::NotFound(name.to_owned())),
        Err(AttachError::PermissionDenied(_)) => {
            return Err(InspectError::PermissionDenied(name.to_owned()))
        }
        Err(AttachError::TooSmall { .. }) => {
            return Err(InspectError::Foreign {
                name: name.to_owned(),
                reason: "empty file",
            })
        }
        Err(AttachError::Corrupt(reason)) => {
            return Err(InspectError::Foreign {
                name: name.to_owned(),
                reason,
            })
        }
        Err(AttachError::Untrusted { reason, .. }) => {
            return Err(match reason.foreign_reason() {
                Some(reason) => InspectError::Foreign {
                    name: name.to_owned(),
                    reason,
                },
                None => InspectError::PermissionDenied(name.to_owned()),
            })
        }
        Err(AttachError::Io(source)) => {
            return Err(InspectError::Io {
                name: name.to_owned(),
                source,
            })
        }
        Err(e) => {
            return Err(InspectError::Io {
                name: name.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    let foreign = |reason| InspectError::Foreign {
        name: name.to_owned(),
        reason,
    };
    let h = seg
        .header_unchecked()
        .ok_or_else(|| foreign("shorter than a shmkit header"))?;
    if !seg.has_magic() {
        return Err(foreign("no shmkit magic at offset 0"));
    }
    let held = shm_names::is_held(seg.file()).map_err(|source| InspectError::Io {
        name: name.to_owned(),
        source,
    })?;
    let (info, problem) = match h.validate_any(seg.len()) {
        Ok(info) => (Some(info), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (attached, untracked) = match h.attach_table(seg.len()).filter(|_| info.is_some()) {
        Some(t) => (
            t.entries()
                .into_iter()
                .map(|a| ProcessInfo::new(a.pid, a.start))
                .collect(),
            t.untracked(),
        ),
        None => (Vec::new(), 0),
    };
    let report = SegmentReport {
        name: name.to_owned(),
        size: seg.len() as u64,
        version: h.version(),
        kind: h.kind(),
        type_tag: h.type_tag(),
        ready: h.is_ready(),
        creator: ProcessInfo::new(h.creator_pid(), h.creator_start()),
        attached,
        untracked,
        held,
        state: info.map(|i| i.state).unwrap_or_default(),
        info,
        problem,
    };
    Ok(Inspection { seg, report })
}

/// Reports on every shmkit segment in `/dev/shm` this user can read, in
/// name order (other programs' files and other users' are skipped).
///
/// ```
/// let all = shmkit::segment::list()?;
/// for r in &all {
///     println!("{} {:?} {}", r.name, r.kind, r.status());
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn list() -> Result<Vec<SegmentReport>, Error> {
    let mut out = Vec::new();
    for os_name in shm_names::list_names()? {
        let Ok(name) = validate_os_name(&os_name) else {
            continue;
        };
        if let Ok(i) = inspect(name) {
            out.push(i.report);
        }
    }
    Ok(out)
}
