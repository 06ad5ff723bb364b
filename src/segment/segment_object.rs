//! [`SegmentObject`]: the constructor set every object that lives in its
//! own segment shares, written once.

use super::header::{Lifetime, OpenOptions};
use super::object::{open_object_segment, open_or_create};
use super::raw::Segment;
use crate::error::{AttachError, Error};

/// A shmkit object that lives in a segment of its own: queues, rings,
/// dicts and maps, arrays, and every [`ShmBox`](super::ShmBox) (locks,
/// events, values, …).
///
/// A type writes only what is its own: how to make one in a fresh segment
/// ([`create_in`](Self::create_in)), how to check and view one in a mapped
/// segment ([`from_segment`](Self::from_segment)), and which segment a
/// handle maps ([`segment`](Self::segment)). The trait provides the rest:
/// [`create`](Self::create), [`anonymous`](Self::anonymous),
/// [`open`](Self::open), [`open_with`](Self::open_with) and
/// [`open_or_create`](Self::open_or_create). Every `SegmentObject` is also
/// a [`Handoff`](crate::process::Handoff), so it can be an argument of a
/// spawned child.
///
/// Most types also keep constructors with their natural arguments (e.g.
/// `MpmcQueue::create(name, slot_size, capacity)`); those forward here.
///
/// ```
/// use shmkit::queue::{MpmcQueue, QueueConfig};
/// use shmkit::{DictConfig, SegmentObject, ShmDict};
///
/// // Generic code over any segment object.
/// fn meet<T: SegmentObject>(name: &str, config: T::Config) -> Result<(T, T), shmkit::Error>
/// where
///     T::Config: Clone,
/// {
///     let first = T::open_or_create(name, config.clone())?; // creates
///     let second = T::open_or_create(name, config)?; // attaches
///     Ok((first, second))
/// }
///
/// let name = format!("doc-segobj-{}", std::process::id());
/// let (a, b) = meet::<MpmcQueue>(&name, QueueConfig::new(16, 4))?;
/// a.sender()?.try_send(b"hi").unwrap();
/// let mut buf = Vec::new();
/// b.receiver()?.try_recv(&mut buf).unwrap();
/// assert_eq!(buf, b"hi");
/// # drop((a, b));
/// # shmkit::Segment::unlink(&name)?;
///
/// let d = <ShmDict as SegmentObject>::anonymous(DictConfig::new(16, 1024))?;
/// assert!(d.segment().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait SegmentObject: Sized {
    /// What creating one needs (sizes, capacities, initial value).
    type Config;

    /// Creates the object in a new segment: named `name` (failing with
    /// [`Error::AlreadyExists`] when the name is taken), or anonymous with
    /// `None` (a memfd shared with children forked or spawned with it
    /// afterwards).
    fn create_in(name: Option<&str>, config: Self::Config) -> Result<Self, Error>;

    /// Attaches to the object in an already-mapped segment (a freshly
    /// opened name, or an inherited file descriptor): validates the header
    /// (kind, version, parameters) and the object's own shared state, and
    /// registers this process in the segment's attach table.
    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError>;

    /// The segment behind this handle (`None` for an object in this
    /// process's heap, for types that have such a form).
    fn segment(&self) -> Option<&Segment>;

    /// Creates the object under `name`; this handle owns the name and
    /// unlinks it when dropped (see the lifetimes table in
    /// [`segment`](crate::segment)).
    fn create(name: &str, config: Self::Config) -> Result<Self, Error> {
        Self::create_in(Some(name), config)
    }

    /// Creates the object in an anonymous segment.
    fn anonymous(config: Self::Config) -> Result<Self, Error> {
        Self::create_in(None, config)
    }

    /// Attaches to the object another process created under `name`.
    fn open(name: &str) -> Result<Self, AttachError> {
        Self::open_with(name, &OpenOptions::new())
    }

    /// [`open`](Self::open) with explicit options (e.g. wait for the name
    /// to appear: [`OpenOptions::wait`]).
    fn open_with(name: &str, opts: &OpenOptions) -> Result<Self, AttachError> {
        Self::from_segment(open_object_segment(name, opts)?, opts)
    }

    /// Opens the object called `name`, or creates it with `config` if there
    /// is none, race-free between processes (see
    /// [`open_or_create`](super::open_or_create())). When this call
    /// creates it, the name gets the [`Lifetime::Holders`] lifetime: it
    /// lives while any process holds it.
    fn open_or_create(name: &str, config: Self::Config) -> Result<Self, Error>
    where
        Self::Config: Clone,
    {
        open_or_create(
            name,
            Lifetime::Holders,
            &OpenOptions::new(),
            || Self::create(name, config.clone()),
            |o| Self::open_with(name, o),
        )
    }
}

/// Writes a type's inherent `open`, `open_with` and `from_segment` as
/// forwards to its [`SegmentObject`] impl, so that callers find them
/// without importing the trait. `$what` names the object in the docs
/// ("queue", "dict", …).
macro_rules! inherent_opens {
    ($what:literal) => {
        #[doc = concat!("Attaches to the ", $what, " another process created under `name`, validating")]
        /// its header and shared state ([`SegmentObject::open`](crate::SegmentObject::open)).
        pub fn open(name: &str) -> Result<Self, $crate::AttachError> {
            <Self as $crate::SegmentObject>::open(name)
        }

        /// [`open`](Self::open) with explicit options
        /// ([`SegmentObject::open_with`](crate::SegmentObject::open_with)).
        pub fn open_with(
            name: &str,
            opts: &$crate::segment::OpenOptions,
        ) -> Result<Self, $crate::AttachError> {
            <Self as $crate::SegmentObject>::open_with(name, opts)
        }

        #[doc = concat!("Attaches to the ", $what, " in an already-mapped segment (e.g. an inherited")]
        /// descriptor; [`SegmentObject::from_segment`](crate::SegmentObject::from_segment)).
        pub fn from_segment(
            seg: $crate::Segment,
            opts: &$crate::segment::OpenOptions,
        ) -> Result<Self, $crate::AttachError> {
            <Self as $crate::SegmentObject>::from_segment(seg, opts)
        }
    };
}
pub(crate) use inherent_opens;
