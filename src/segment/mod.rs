//! Named and anonymous shared segments, the header handshake, lifetimes
//! of names, and the create/open pattern every shared object uses.
//!
//! * [`Segment`]: one mapping of a shared memory object. Named segments
//!   appear in `/dev/shm` only once complete, are *held* by every process
//!   that maps them (a kernel-managed lock: death releases it), and are
//!   unlinked according to their [`Lifetime`].
//! * [`header`]: the 128-byte [`SegmentHeader`] at offset 0 of every
//!   shmkit segment (magic, version, kind, parameters, lifetime, ready
//!   word) and the [`AttachTable`] of attached processes after it.
//! * [`layout`]: offset-based placement of several objects in one segment.
//! * [`ShmBox`]: a typed handle to one fixed-size object in its own segment,
//!   for every type that implements [`ShmObject`].
//! * [`SegmentObject`]: the create/open/anonymous/open_or_create set
//!   every object in its own segment shares, written once.
//! * [`TypeTag`]: the element-type fingerprint a typed object records in
//!   its header, refusing an open as another type.
//! * [`pid_scope`](mod@pid_scope): the pid-namespace guard, which decides
//!   whether this process may judge the pids stored in a segment.
//! * [`open_or_create`], [`OpenOptions::wait`]: meeting by name, whoever
//!   comes first; [`gc()`] and [`inspect()`]/[`list`]: cleaning and looking.
//!
//! # Who creates, who unlinks, and what happens to undelivered data
//!
//! | how it was made | who unlinks the name | when | undelivered data |
//! |---|---|---|---|
//! | `create` ([`Lifetime::Creator`]) | the creating process | when its handle drops (if the name still points at that segment) | gone with the name; attached processes keep their mapping |
//! | `create` + `set_lifetime(Holders)`, or `open_or_create` ([`Lifetime::Holders`]) | the last process to drop a handle, once someone other than the creator has opened it | when the last holder drops | survives its creator's exit: the name waits (*kept*) for its first opener |
//! | any + [`keep`](Segment::keep) (*persistent*) | nobody automatically: [`Segment::unlink`], `shmkit rm`, or a handle with [`unlink_on_drop`](Segment::unlink_on_drop) | when asked | stays |
//! | creator and every holder died without dropping (`SIGKILL`, abort) | the next `create`/`open_or_create` of that name (replaces it), [`gc()`], or the last surviving holder on drop | — | a crash is not a hand-over: the stale segment is replaced |
//!
//! A forked child shares its parent's handle and hold: the segment counts
//! as held while any of them runs, but only the process that created or
//! opened the handle unlinks.

pub mod gc;
pub mod header;
pub mod inspect;
pub mod layout;
mod object;
pub mod pid_scope;
mod raw;
mod segment_object;
mod trace_depth;
pub mod type_tag;

pub use gc::{gc, gc_dry_run, GcEntry, GcReport, Verdict};
pub use header::HeaderInfo;
pub use header::{
    AttachSlot, AttachTable, Attachment, Claim, Lifetime, ObjectKind, OpenOptions, SegmentHeader,
    SegmentState, ATTACH_SLOTS, ATTACH_TABLE_SIZE, BODY_OFFSET, HEADER_SIZE, LAYOUT_VERSION,
};
pub use inspect::{inspect, list, InspectError, Inspection, ProcessInfo, SegmentReport};
pub use layout::{LayoutBuilder, Region};
pub use object::{
    attach_object, create_object, create_object_with, open_object, open_or_create, ShmBox,
    ShmObject,
};
pub use pid_scope::{creator_alive, holder_alive, pid_scope, PidScope};
pub use raw::{validate_name, validate_os_name, Segment, MAX_NAME_LEN};
pub(crate) use segment_object::inherent_opens;
pub use segment_object::SegmentObject;
pub use type_tag::TypeTag;
