//! Offset-based placement of objects inside a segment.
//!
//! Segments are mapped at different addresses in different processes, so
//! nothing inside one may hold a pointer. [`LayoutBuilder`] computes
//! offsets once (the creator and every attacher run the same computation
//! from the header's parameters), and [`Region`] turns an offset back into
//! a pointer only after checking bounds and alignment.

use crate::error::{AttachError, Error};

/// A bounds-checked window `[ptr, ptr + len)` of a mapping.
///
/// ```
/// use shmkit::Segment;
/// use shmkit::segment::Region;
///
/// let seg = Segment::anonymous(4096)?;
/// // SAFETY: the mapping is valid for its whole length while `seg` lives.
/// let r = unsafe { Region::new(seg.as_ptr(), seg.len()) };
/// assert!(r.ptr_at::<u64>(8).is_ok());
/// assert!(r.ptr_at::<u64>(4092).is_err()); // would run past the end
/// assert!(r.ptr_at::<u64>(3).is_err()); // misaligned
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    /// Wraps `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr+len` must stay mapped and valid for reads and writes for
    /// as long as the region (or anything derived from it) is used.
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The sub-region `[offset, offset + len)`, if it lies inside this one.
    pub fn sub(&self, offset: usize, len: usize) -> Result<Region, AttachError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Region {
                // SAFETY: offset + len <= self.len, so the result stays
                // inside the mapping this region describes.
                ptr: unsafe { self.ptr.add(offset) },
                len,
            }),
            _ => Err(AttachError::Corrupt("offset or length outside the segment")),
        }
    }

    /// A pointer to a `T` at `offset`, if it is in bounds and aligned.
    pub fn ptr_at<T>(&self, offset: usize) -> Result<*mut T, AttachError> {
        let r = self.sub(offset, std::mem::size_of::<T>())?;
        if (r.ptr as usize) % std::mem::align_of::<T>() != 0 {
            return Err(AttachError::Corrupt("misaligned object offset"));
        }
        Ok(r.ptr.cast())
    }
}

/// Computes aligned offsets for objects packed one after another.
///
/// ```
/// use shmkit::segment::LayoutBuilder;
///
/// let mut l = LayoutBuilder::new();
/// let a = l.add::<u8>();
/// let b = l.add::<u64>();
/// let c = l.add_array::<u32>(10)?;
/// assert_eq!((a, b, c), (0, 8, 16));
/// assert_eq!(l.size(), 56);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LayoutBuilder {
    size: usize,
    align: usize,
}

impl LayoutBuilder {
    /// An empty layout.
    pub fn new() -> Self {
        Self { size: 0, align: 1 }
    }

    /// Appends one `T`; returns its offset.
    pub fn add<T>(&mut self) -> usize {
        // A single value of a real type cannot overflow.
        self.add_bytes(std::mem::size_of::<T>(), std::mem::align_of::<T>())
            .expect("size of one value overflows")
    }

    /// Appends `n` consecutive `T`s; returns the offset of the first.
    pub fn add_array<T>(&mut self, n: usize) -> Result<usize, Error> {
        let len = std::mem::size_of::<T>()
            .checked_mul(n)
            .ok_or(Error::InvalidArgument("array size overflows"))?;
        self.add_bytes(len, std::mem::align_of::<T>())
    }

    /// Appends `len` bytes aligned to `align` (a power of two); returns
    /// their offset.
    pub fn add_bytes(&mut self, len: usize, align: usize) -> Result<usize, Error> {
        if !align.is_power_of_two() {
            return Err(Error::InvalidArgument("alignment must be a power of two"));
        }
        let offset = self
            .size
            .checked_add(align - 1)
            .ok_or(Error::InvalidArgument("layout size overflows"))?
            & !(align - 1);
        let size = offset
            .checked_add(len)
            .ok_or(Error::InvalidArgument("layout size overflows"))?;
        let max_align = self.align.max(align);
        // `size()` rounds up to the largest alignment: keep that representable
        // (lengths come from untrusted headers; this must not overflow).
        size.checked_add(max_align - 1)
            .ok_or(Error::InvalidArgument("layout size overflows"))?;
        self.size = size;
        self.align = max_align;
        Ok(offset)
    }

    /// Total size, rounded up to the largest alignment seen.
    pub fn size(&self) -> usize {
        (self.size + self.align - 1) & !(self.align - 1)
    }

    /// The largest alignment of anything added.
    pub fn align(&self) -> usize {
        self.align
    }
}
