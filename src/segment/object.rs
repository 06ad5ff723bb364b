//! The create/open pattern shared by every object: [`create_object`],
//! [`open_object`], [`attach_object`], [`open_or_create`], and the typed
//! [`ShmBox`] over them.

use std::ops::Deref;
use std::ptr::NonNull;

use super::header::{
    HeaderInfo, Lifetime, ObjectKind, OpenOptions, SegmentHeader, ATTACH_SLOTS, BODY_OFFSET,
    HEADER_SIZE,
};
use super::layout::Region;
use super::raw::Segment;
use super::segment_object::SegmentObject;
use super::type_tag::{self, TypeTag};
use crate::error::{AttachError, Error};
use crate::os::shm_names::NameWatch;
use crate::os::Deadline;

/// Creates a segment holding one object: writes the header (with an empty
/// attach table), lets `init` initialise the (zeroed) body at
/// [`BODY_OFFSET`], publishes, and only then gives the segment its name, so
/// no process ever opens a half-made object. `name: None` makes an
/// anonymous segment. The name's [`Lifetime`] is
/// [`Creator`](Lifetime::Creator); see [`create_object_with`].
///
/// This is the pattern every shmkit type uses; other crates can use it for
/// their own kinds (≥ [`ObjectKind::USER`]).
///
/// ```
/// use shmkit::segment::{create_object, open_object, ObjectKind, OpenOptions};
///
/// let kind = ObjectKind(ObjectKind::USER.0 + 1);
/// let name = format!("doc-obj-{}", std::process::id());
/// let (seg, body) = create_object(Some(&name), kind, &[42], 64, |body| {
///     // SAFETY: the body is 64 writable bytes.
///     unsafe { body.as_ptr().write(7) };
///     Ok(())
/// })?;
/// let (_seg2, info, body2) = open_object(&name, kind, &OpenOptions::new())?;
/// assert_eq!(info.params[0], 42);
/// // SAFETY: the validated body has 64 bytes.
/// assert_eq!(unsafe { body2.as_ptr().read() }, 7);
/// # drop(seg);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn create_object(
    name: Option<&str>,
    kind: ObjectKind,
    params: &[u64],
    body_len: usize,
    init: impl FnOnce(Region) -> Result<(), Error>,
) -> Result<(Segment, Region), Error> {
    create_object_with(name, kind, params, body_len, Lifetime::Creator, init)
}

/// [`create_object`] with the name's [`Lifetime`] chosen.
///
/// ```
/// use shmkit::segment::{create_object_with, Lifetime, ObjectKind};
///
/// let kind = ObjectKind(ObjectKind::USER.0 + 2);
/// let name = format!("doc-objl-{}", std::process::id());
/// let (seg, _body) =
///     create_object_with(Some(&name), kind, &[], 8, Lifetime::Holders, |_| Ok(()))?;
/// assert_eq!(seg.state().unwrap().lifetime, Lifetime::Holders);
/// drop(seg); // nobody else opened it yet: the name is kept for its first opener
/// assert!(shmkit::Segment::open(&name).is_ok());
/// # shmkit::Segment::unlink(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn create_object_with(
    name: Option<&str>,
    kind: ObjectKind,
    params: &[u64],
    body_len: usize,
    lifetime: Lifetime,
    init: impl FnOnce(Region) -> Result<(), Error>,
) -> Result<(Segment, Region), Error> {
    if params.len() > super::header::PARAM_WORDS {
        return Err(Error::InvalidArgument("too many header parameters"));
    }
    let total = BODY_OFFSET
        .checked_add(body_len)
        .ok_or(Error::InvalidArgument("object size overflows"))?;
    // Taken before anything can fail, so a failed create leaves nothing
    // behind for the next one.
    let type_tag = super::type_tag::take_creating_tag();
    let mut pending = Segment::create_pending(name, total)?;
    let seg = pending.segment();
    // SAFETY: the mapping is `total` bytes (≥ BODY_OFFSET: header and
    // attach table), page-aligned, freshly created and zero-filled; nobody
    // can open it before `finish` below gives it a name.
    unsafe {
        SegmentHeader::write(
            seg.as_ptr(),
            kind,
            total,
            BODY_OFFSET,
            body_len,
            params,
            ATTACH_SLOTS,
            lifetime,
        )
    };
    seg.track(true);
    // SAFETY: the mapping covers [0, total) and lives as long as `seg`.
    let whole = unsafe { Region::new(seg.as_ptr(), seg.len()) };
    let body = whole.sub(BODY_OFFSET, body_len)?;
    init(body)?;
    let h = header(seg)?;
    h.set_type_tag(type_tag);
    h.publish();
    let seg = pending.finish()?;
    Ok((seg, body))
}

/// Opens a named object of `kind`: waits (bounded by `opts`) for the name
/// to appear if asked to ([`OpenOptions::wait`]) and for its creator to
/// publish it, validates the header, registers this process in the
/// segment's attach table, and returns the segment, the header's
/// description and the body region.
pub fn open_object(
    name: &str,
    kind: ObjectKind,
    opts: &OpenOptions,
) -> Result<(Segment, HeaderInfo, Region), AttachError> {
    attach_object(open_object_segment(name, opts)?, kind, opts)
}

/// Opens the named segment of an object, waiting (bounded by `opts`) for
/// the name to appear if asked to ([`OpenOptions::wait`]) and for its
/// creator to size it; the header is checked by [`attach_object`].
pub(crate) fn open_object_segment(name: &str, opts: &OpenOptions) -> Result<Segment, AttachError> {
    let deadline = Deadline::after(opts.get_ready_timeout());
    let appear = opts.get_wait().map(Deadline::after);
    let mut watch: Option<NameWatch> = None;
    loop {
        // A creator sizes the segment right after creating it; an opener
        // racing it may see a short file. Retry until the deadline.
        match Segment::open_with(name, opts) {
            Ok(seg) if seg.len() >= HEADER_SIZE => return Ok(seg),
            Ok(seg) if deadline.has_passed() => {
                return Err(AttachError::TooSmall {
                    actual: seg.len() as u64,
                    required: HEADER_SIZE as u64,
                })
            }
            Err(e @ AttachError::TooSmall { .. }) if deadline.has_passed() => return Err(e),
            Ok(_) | Err(AttachError::TooSmall { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(AttachError::NotFound(n)) => match appear {
                Some(until) if !until.has_passed() => match &mut watch {
                    // Watch first, then look again: a name created between
                    // the failed open and the watch is not missed.
                    None => watch = Some(NameWatch::new()),
                    Some(w) => w.wait(until),
                },
                _ => return Err(AttachError::NotFound(n)),
            },
            Err(e) => return Err(e),
        }
    }
}

/// Validates an already-mapped segment (for example one inherited as a
/// file descriptor) as holding an object of `kind`, and registers this
/// process in its attach table.
pub fn attach_object(
    mut seg: Segment,
    kind: ObjectKind,
    opts: &OpenOptions,
) -> Result<(Segment, HeaderInfo, Region), AttachError> {
    let info = header(&seg)?.wait_and_validate(seg.len(), kind, opts)?;
    super::pid_scope::admit(header(&seg)?, opts)?;
    if !opts.inspect {
        seg.track(false);
    }
    // SAFETY: the mapping covers [0, len) and lives as long as `seg`.
    let whole = unsafe { Region::new(seg.as_ptr(), seg.len()) };
    let body = whole.sub(info.body_offset, info.body_len)?;
    Ok((seg, info, body))
}

/// Opens the object called `name`, or creates it if there is none —
/// race-free: of several processes calling this at the same moment,
/// exactly one creates and the others attach to what it made. A stale
/// segment of that name (nobody holds it; see [`gc`](super::gc())) is
/// replaced; a live or kept one is opened.
///
/// `create` makes the object (failing with [`Error::AlreadyExists`] when
/// the name is taken) and `open` attaches to it; every named shmkit type
/// has both, so supporting `open_or_create` is one line. When this call
/// creates, it then sets the segment's `lifetime` (normally
/// [`Lifetime::Holders`]: with symmetric processes, whoever happened to
/// create must not take the name away from the others when it exits).
///
/// ```
/// use shmkit::segment::{open_or_create, Lifetime, OpenOptions};
/// use shmkit::{Event, ShmBox};
///
/// let name = format!("doc-ooc-{}", std::process::id());
/// let open_or_make = || {
///     open_or_create(
///         &name,
///         Lifetime::Holders,
///         &OpenOptions::new(),
///         || ShmBox::<Event>::create(&name, ()),
///         |o| ShmBox::<Event>::open_with(&name, o),
///     )
/// };
/// let a = open_or_make()?; // creates
/// let b = open_or_make()?; // attaches
/// a.set();
/// assert!(b.is_set());
/// # drop((a, b));
/// # shmkit::Segment::unlink(&name)?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn open_or_create<T>(
    name: &str,
    lifetime: Lifetime,
    opts: &OpenOptions,
    mut create: impl FnMut() -> Result<T, Error>,
    mut open: impl FnMut(&OpenOptions) -> Result<T, AttachError>,
) -> Result<T, Error> {
    super::raw::validate_name(name)?;
    // The name is there already: attach without waiting for it.
    let mut open_opts = *opts;
    open_opts = open_opts.wait(std::time::Duration::ZERO);
    // Each round either returns or saw the name vanish between a failed
    // create and the open: someone else's segment came and went. Bounded so
    // a pathological churn of the name cannot spin forever.
    for _ in 0..1000 {
        match create() {
            Ok(t) => {
                if lifetime != Lifetime::Creator {
                    set_lifetime_by_name(name, lifetime)?;
                }
                return Ok(t);
            }
            Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        match open(&open_opts) {
            Ok(t) => return Ok(t),
            Err(AttachError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::AlreadyExists(name.to_owned()))
}

/// Sets the lifetime of the segment this process just created under
/// `name` (it holds it, so the name cannot have been replaced since).
fn set_lifetime_by_name(name: &str, lifetime: Lifetime) -> Result<(), Error> {
    let seg = Segment::open_unheld(name)?;
    let h = header(&seg)?;
    h.validate_any(seg.len())?;
    h.set_lifetime(lifetime);
    Ok(())
}

fn header(seg: &Segment) -> Result<&SegmentHeader, AttachError> {
    seg.header_unchecked().ok_or(AttachError::TooSmall {
        actual: seg.len() as u64,
        required: HEADER_SIZE as u64,
    })
}

/// A fixed-size type that can live in shared memory.
///
/// # Safety
/// Implementors guarantee that
/// * every bit pattern is a valid `Self` (only atomics and `Pod` data, no
///   pointers, references, enums with invalid discriminants, or `Drop`), so
///   a `&Self` over bytes written by anyone is sound;
/// * `Self` is `#[repr(C)]` with a layout that does not change without a
///   [`LAYOUT_VERSION`](super::LAYOUT_VERSION) bump;
/// * all mutation through `&Self` goes through atomics or through
///   `UnsafeCell` data guarded by the type's own lock.
pub unsafe trait ShmObject: Sync + Sized {
    /// The kind recorded in the segment header.
    const KIND: ObjectKind;
    /// What [`init_in_place`](ShmObject::init_in_place) needs.
    type Init;

    /// Writes a valid initial value at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `size_of::<Self>()` bytes, aligned,
    /// and not yet in use by any other thread or process.
    unsafe fn init_in_place(ptr: *mut Self, init: Self::Init);

    /// A number distinguishing instantiations of a generic type that share
    /// a size (e.g. `ShmValue<i64>` vs `ShmValue<u64>`); recorded in the
    /// header and checked on attach. Defaults to 0.
    fn type_code() -> u64 {
        0
    }

    /// Checks invariants of a value written by another process (called on
    /// attach). The default accepts everything.
    fn validate(&self) -> Result<(), AttachError> {
        Ok(())
    }
}

/// A typed handle to one [`ShmObject`] in its own segment, like a `Box` in
/// shared memory. Dereferences to the object.
///
/// The header records `T`'s [`TypeTag`] (its path-stripped name, size and
/// alignment), so opening a `ShmBox<Mutex<Trade>>` as a
/// `ShmBox<Mutex<Quote>>` of the same size is refused with
/// [`AttachError::TypeMismatch`].
///
/// ```
/// use shmkit::{ShmBox, Event};
///
/// let name = format!("doc-box-{}", std::process::id());
/// let ev = ShmBox::<Event>::create(&name, ())?; // creator (owns the name)
/// let seen = ShmBox::<Event>::open(&name)?; // e.g. in another process
/// ev.set();
/// assert!(seen.is_set());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmBox<T: ShmObject> {
    ptr: NonNull<T>,
    seg: Segment,
}

// SAFETY: `T: Sync` (required by ShmObject) and the box only hands out
// `&T`; the segment mapping itself is Send + Sync.
unsafe impl<T: ShmObject> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: ShmObject> Sync for ShmBox<T> {}

impl<T: ShmObject> ShmBox<T> {
    fn params() -> [u64; 3] {
        [
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
            T::type_code(),
        ]
    }

    /// Creates a named segment holding a new `T`.
    pub fn create(name: &str, init: T::Init) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, init)
    }

    /// Creates an anonymous segment holding a new `T` (shared with children
    /// forked afterwards).
    pub fn anonymous(init: T::Init) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(init)
    }

    /// Opens the named `T`, or creates it with `init` if there is none
    /// (race-free between processes; see [`open_or_create`]). When this
    /// call creates it, the name gets the [`Lifetime::Holders`] lifetime:
    /// it lives while any process holds it, and what a creator leaves
    /// behind waits for its first opener.
    ///
    /// ```
    /// use shmkit::{Mutex, ShmBox};
    ///
    /// let name = format!("doc-box-ooc-{}", std::process::id());
    /// let a = ShmBox::<Mutex<u64>>::open_or_create(&name, 0)?; // creates
    /// *a.lock().unwrap() += 5;
    /// let b = ShmBox::<Mutex<u64>>::open_or_create(&name, 0)?; // attaches
    /// assert_eq!(*b.lock().unwrap(), 5);
    /// drop((a, b));
    /// // Nobody but its creator has opened it: it waits for its first opener.
    /// let status = shmkit::segment::inspect(&name).unwrap().report().status();
    /// assert_eq!(status, "kept");
    /// # shmkit::Segment::unlink(&name)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_or_create(name: &str, init: T::Init) -> Result<Self, Error>
    where
        T::Init: Clone,
    {
        <Self as SegmentObject>::open_or_create(name, init)
    }

    crate::segment::inherent_opens!("object");

    fn finish_attach(
        seg: Segment,
        info: HeaderInfo,
        body: Region,
        opts: &OpenOptions,
    ) -> Result<Self, AttachError> {
        let [size, align, code] = Self::params();
        if info.params[0] != size {
            return Err(AttachError::ParamMismatch {
                what: "object size",
                found: info.params[0],
                expected: size,
            });
        }
        if info.params[1] != align {
            return Err(AttachError::ParamMismatch {
                what: "object alignment",
                found: info.params[1],
                expected: align,
            });
        }
        if info.params[2] != code {
            return Err(AttachError::ParamMismatch {
                what: "element type code",
                found: info.params[2],
                expected: code,
            });
        }
        type_tag::check(
            info.type_tag,
            TypeTag::of_pod::<T>(),
            opts,
            std::any::type_name::<T>(),
        )?;
        let ptr = NonNull::new(body.ptr_at::<T>(0)?).ok_or(AttachError::Corrupt("null mapping"))?;
        // SAFETY: in bounds and aligned (ptr_at); any bit pattern is a valid
        // T (ShmObject contract); the mapping lives as long as `seg`, which
        // we keep in the box.
        unsafe { ptr.as_ref() }.validate()?;
        Ok(Self { ptr, seg })
    }

    /// The segment holding the object.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Keeps the segment's name after every handle is dropped (marks it
    /// persistent; see [`Segment::keep`]).
    pub fn keep(&mut self) {
        self.seg.keep();
    }
}

impl<T: ShmObject> SegmentObject for ShmBox<T> {
    type Config = T::Init;

    fn create_in(name: Option<&str>, init: T::Init) -> Result<Self, Error> {
        if std::mem::align_of::<T>() > HEADER_SIZE {
            return Err(Error::InvalidArgument("object alignment above 128 bytes"));
        }
        let tag = type_tag::creation_tag(TypeTag::of_pod::<T>());
        let (seg, body) = type_tag::create_tagged(tag, || {
            create_object(
                name,
                T::KIND,
                &Self::params(),
                std::mem::size_of::<T>(),
                |body| {
                    let ptr = body.ptr_at::<T>(0)?;
                    // SAFETY: `ptr` is in bounds and aligned (checked by ptr_at), the
                    // segment is fresh and unpublished, so nobody else uses it.
                    unsafe { T::init_in_place(ptr, init) };
                    Ok(())
                },
            )
        })?;
        let ptr =
            NonNull::new(body.ptr_at::<T>(0)?).ok_or(Error::InvalidArgument("null mapping"))?;
        Ok(Self { ptr, seg })
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, T::KIND, opts)?;
        Self::finish_attach(seg, info, body, opts)
    }

    fn segment(&self) -> Option<&Segment> {
        Some(&self.seg)
    }
}

impl<T: ShmObject> Deref for ShmBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into `self.seg`'s mapping (bounds and
        // alignment checked at construction) and the mapping lives as long
        // as `self`. `T` is valid for any bit pattern.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmObject> std::fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmBox")
            .field("segment", &self.seg.name())
            .field("kind", &T::KIND)
            .finish()
    }
}
