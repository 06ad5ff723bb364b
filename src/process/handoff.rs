//! Handing shared segments to a spawned child: [`Shared<H>`].
//!
//! A spawned child is a fresh `exec` of the binary: it inherits no memory,
//! only what the parent passes explicitly. Arguments travel as postcard
//! bytes; a segment cannot, so a [`Shared<H>`] inside the arguments stands
//! for a handle `H`: any [`SegmentObject`] (queues, dicts, arrays, every
//! `ShmBox`), or a bare [`Segment`]:
//!
//! * a **named** segment serialises as its name; the child re-opens it by
//!   name (full header validation).
//! * an **anonymous** segment (a sealed memfd) serialises as an index into
//!   a table of inherited file descriptors: while the parent serialises the
//!   arguments of a spawn, each such handle contributes a duplicate of its
//!   memfd; the spawn makes exactly those descriptors inheritable in the
//!   child (all others stay close-on-exec) and lists them in the child's
//!   environment. The child takes each descriptor out of that table once.
//!
//! The child calls [`Shared::attach`] to map it and get `H` back. Serialising
//! an anonymous `Shared` outside a spawn is an error (there is no channel
//! to carry the descriptor).

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Mutex as StdMutex;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::AttachError;
use crate::segment::{OpenOptions, Segment, SegmentObject};

/// A shmkit handle that can be re-created from its [`Segment`] in another
/// process: what a [`Shared<H>`] can carry.
///
/// Every [`SegmentObject`] is one (queues, rings, dicts and maps, arrays,
/// every [`ShmBox`](crate::ShmBox): locks, events, values, …), and so is
/// a bare [`Segment`]. What travels is the segment only; a handle's
/// process-local state is made afresh in the child: a typed queue's
/// sender and receiver registrations, for example, are taken on first use
/// there, as for any attached queue.
///
/// A [`Pipe`](crate::queue::Pipe) [`Connection`](crate::queue::Connection)
/// is not a `Handoff`: it is one *end* of two rings, and its producer and
/// consumer roles belong to the process that holds it. Giving them to a
/// child means the parent stops being that end, which a borrowed
/// `Shared::new(&conn)` cannot express; create a named pipe
/// ([`Pipe::create`](crate::queue::Pipe::create)) and let the child
/// [`Pipe::open`](crate::queue::Pipe::open) the other end, or pass the two
/// [`SpscRing`](crate::queue::SpscRing)s and take the roles in the child.
pub trait Handoff: Sized {
    /// The segment behind the handle (`None` for an in-process object,
    /// which cannot be handed to another process).
    fn handoff_segment(&self) -> Option<&Segment>;
    /// Re-creates the handle from a freshly opened or inherited segment,
    /// validating the header as an attach does.
    fn from_handoff(seg: Segment) -> Result<Self, AttachError>;
}

impl Handoff for Segment {
    fn handoff_segment(&self) -> Option<&Segment> {
        Some(self)
    }
    fn from_handoff(seg: Segment) -> Result<Self, AttachError> {
        Ok(seg)
    }
}

impl<T: SegmentObject> Handoff for T {
    fn handoff_segment(&self) -> Option<&Segment> {
        SegmentObject::segment(self)
    }
    fn from_handoff(seg: Segment) -> Result<Self, AttachError> {
        T::from_segment(seg, &OpenOptions::new())
    }
}

enum Source {
    /// A named segment: re-opened by name.
    Named(String),
    /// Parent side of an anonymous segment: a duplicate of its memfd.
    Fd(OwnedFd),
    /// Child side: the inherited descriptor (taken by `attach`).
    Inherited(Option<OwnedFd>),
}

/// A handle `H` on its way to a spawned child, as part of an entry's
/// arguments.
///
/// A named segment serialises as its name and the child re-opens it (full
/// header validation). An anonymous one (a sealed memfd) serialises as an
/// index into a table of inherited descriptors: while a spawn serialises its
/// arguments, each such `Shared` contributes a duplicate of its memfd, which
/// only that child inherits. The child calls [`Shared::attach`] to map the
/// segment and get `H` back. Serialising an anonymous `Shared` outside a
/// spawn is an error (there is no channel for the descriptor).
///
/// ```
/// use shmkit::process::Shared;
/// use shmkit::{Mutex, ShmBox};
///
/// let counter = ShmBox::<Mutex<u64>>::anonymous(7)?;
/// let shared = Shared::new(&counter)?; // what the parent puts in the args
/// assert!(!shared.is_named());
/// // In the child (here: the same process, by its fd) it maps the memfd again.
/// let again: ShmBox<Mutex<u64>> = shared.attach()?;
/// assert_eq!(*again.lock().unwrap(), 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shared<H: Handoff> {
    source: Source,
    _h: PhantomData<fn() -> H>,
}

impl<H: Handoff> Shared<H> {
    /// Prepares `handle` for a child: records the name of a named segment,
    /// or duplicates the memfd of an anonymous one (close-on-exec; only a
    /// spawn that serialises this value makes it inheritable).
    pub fn new(handle: &H) -> std::io::Result<Self> {
        let seg = handle.handoff_segment().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an in-process object has no segment to hand to another process",
            )
        })?;
        let source = match seg.name() {
            Some(name) => Source::Named(name.to_owned()),
            None => Source::Fd(seg.file().try_clone()?.into()),
        };
        Ok(Self {
            source,
            _h: PhantomData,
        })
    }

    /// Whether this refers to a named segment.
    pub fn is_named(&self) -> bool {
        matches!(self.source, Source::Named(_))
    }

    /// Maps the segment (re-opening a name, or mapping the descriptor) and
    /// returns the handle. An inherited descriptor is consumed by the first
    /// call; a second call on the same value fails with `NotFound`.
    pub fn attach(mut self) -> Result<H, AttachError> {
        let seg = match &mut self.source {
            Source::Named(name) => Segment::open(name)?,
            Source::Fd(fd) => Segment::from_file(File::from(fd.try_clone()?), None)?,
            Source::Inherited(fd) => {
                let fd = fd
                    .take()
                    .ok_or_else(|| AttachError::NotFound("<inherited descriptor>".into()))?;
                Segment::from_file(File::from(fd), None)?
            }
        };
        H::from_handoff(seg)
    }
}

impl<H: Handoff> fmt::Debug for Shared<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Named(n) => f.debug_tuple("Shared::Named").field(n).finish(),
            Source::Fd(fd) => f.debug_tuple("Shared::Fd").field(fd).finish(),
            Source::Inherited(fd) => f.debug_tuple("Shared::Inherited").field(fd).finish(),
        }
    }
}

/// What a `Shared` looks like in the serialised arguments.
#[derive(Serialize, Deserialize)]
enum Wire {
    Named(String),
    Fd(u32),
}

thread_local! {
    /// Descriptors collected while a spawn serialises its arguments.
    static COLLECTING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
}

/// Descriptors this child inherited for `Shared` handles, by index.
static INHERITED: StdMutex<Vec<Option<OwnedFd>>> = StdMutex::new(Vec::new());

impl<H: Handoff> Serialize for Shared<H> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.source {
            Source::Named(n) => Wire::Named(n.clone()).serialize(s),
            Source::Fd(fd) => {
                let dup = fd.try_clone().map_err(S::Error::custom)?;
                let idx = COLLECTING.with(|c| {
                    c.borrow_mut().as_mut().map(|v| {
                        v.push(dup);
                        v.len() - 1
                    })
                });
                match idx {
                    Some(i) => Wire::Fd(i as u32).serialize(s),
                    None => Err(S::Error::custom(
                        "an anonymous segment can only be serialised as part of a shmkit spawn",
                    )),
                }
            }
            Source::Inherited(_) => Err(S::Error::custom(
                "an inherited segment cannot be handed on; attach it and make a new Shared",
            )),
        }
    }
}

impl<'de, H: Handoff> Deserialize<'de> for Shared<H> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = match Wire::deserialize(d)? {
            Wire::Named(n) => {
                crate::segment::validate_name(&n).map_err(D::Error::custom)?;
                Source::Named(n)
            }
            Wire::Fd(i) => {
                let mut table = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
                let fd = table
                    .get_mut(i as usize)
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        D::Error::custom(format!("inherited descriptor #{i} is missing"))
                    })?;
                Source::Inherited(Some(fd))
            }
        };
        Ok(Self {
            source,
            _h: PhantomData,
        })
    }
}

/// Serialises `args`, collecting the descriptors of anonymous `Shared`
/// handles inside them.
pub(crate) fn encode_args<A: Serialize + ?Sized>(
    args: &A,
) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let prev = COLLECTING.with(|c| c.borrow_mut().replace(Vec::new()));
    let bytes = postcard::to_allocvec(args);
    let fds = COLLECTING
        .with(|c| std::mem::replace(&mut *c.borrow_mut(), prev))
        .unwrap_or_default();
    bytes.map(|b| (b, fds)).map_err(|e| e.to_string())
}

/// Decodes an entry's arguments in the child (descriptors come from the
/// table [`set_inherited`] filled).
pub(crate) fn decode_args<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

/// Installs the descriptors a spawned child inherited.
pub(crate) fn set_inherited(fds: Vec<OwnedFd>) {
    let mut table = INHERITED.lock().unwrap_or_else(|e| e.into_inner());
    *table = fds.into_iter().map(Some).collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mutex, ShmBox};

    #[test]
    #[cfg_attr(miri, ignore = "memfd needs syscalls")]
    fn anonymous_shared_round_trips_through_the_fd_table() {
        let b = ShmBox::<Mutex<u64>>::anonymous(41).unwrap();
        let shared = Shared::new(&b).unwrap();
        assert!(
            postcard::to_allocvec(&shared).is_err(),
            "no spawn, no channel"
        );
        let (bytes, fds) = encode_args(&(5u8, &shared)).unwrap();
        assert_eq!(fds.len(), 1);
        set_inherited(fds);
        let (five, back): (u8, Shared<ShmBox<Mutex<u64>>>) = decode_args(&bytes).unwrap();
        assert_eq!(five, 5);
        let again = back.attach().unwrap();
        *again.lock().unwrap() += 1;
        assert_eq!(*b.lock().unwrap(), 42);
        // The descriptor was taken: decoding again reports it missing.
        assert!(decode_args::<(u8, Shared<ShmBox<Mutex<u64>>>)>(&bytes).is_err());
    }
}
