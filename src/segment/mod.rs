//! Named and anonymous shared segments, the header handshake, and the
//! create/open pattern every shared object uses.
//!
//! * [`Segment`]: one mapping of a shared memory object. A segment made by
//!   [`Segment::create`] is *owned*: dropping it (in the creating process)
//!   unlinks the name. One made by [`Segment::open`] is *attached*.
//! * [`header`]: the 128-byte [`SegmentHeader`] at offset 0 of every
//!   shmkit segment (magic, version, kind, parameters, ready word).
//! * [`layout`]: offset-based placement of several objects in one segment.
//! * [`ShmBox`]: a typed handle to one fixed-size object in its own segment,
//!   for every type that implements [`ShmObject`].

pub mod header;
pub mod layout;
mod object;
mod raw;

pub use header::HeaderInfo;
pub use header::{ObjectKind, OpenOptions, SegmentHeader, HEADER_SIZE, LAYOUT_VERSION};
pub use layout::{LayoutBuilder, Region};
pub use object::{attach_object, create_object, open_object, ShmBox, ShmObject};
pub use raw::{validate_name, Segment, MAX_NAME_LEN};
