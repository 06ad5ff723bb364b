//! [`ShmArray<T>`]: a fixed-length array of `Pod` values in shared memory,
//! guarded by a robust lock (Python's `multiprocessing.Array`).

use std::ops::{Deref, DerefMut};

use bytemuck::Pod;

use super::mutex::{owner_died, LockResult};
use super::raw_mutex::RawMutex;
use crate::error::{AttachError, Error};
use crate::segment::{
    attach_object, create_object, open_object, LayoutBuilder, ObjectKind, OpenOptions, Region,
    Segment,
};

/// Offsets inside an array body: lock at 0, elements after it.
fn layout<T>(len: usize) -> Result<(usize, usize), Error> {
    let mut l = LayoutBuilder::new();
    let lock = l.add::<RawMutex>();
    let data = l.add_array::<T>(len)?;
    debug_assert_eq!(lock, 0);
    Ok((data, l.size()))
}

/// A shared array of `len` `T`s behind a robust process-shared lock.
///
/// Body layout (after the 128-byte segment header): `RawMutex` (8 bytes)
/// at 0, then `len` elements at the next multiple of `align_of::<T>()`.
/// Header params: `[size_of::<T>(), align_of::<T>(), len]`.
///
/// ```
/// use shmkit::ShmArray;
///
/// let a = ShmArray::<f64>::anonymous_from(&[1.0, 2.0, 3.0])?;
/// a.lock().unwrap()[1] = 20.0;
/// assert_eq!(a.to_vec(), vec![1.0, 20.0, 3.0]);
/// assert_eq!(a.get(2), Some(3.0));
/// assert_eq!(a.len(), 3);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct ShmArray<T: Pod> {
    lock: *const RawMutex,
    data: *mut T,
    len: usize,
    seg: Segment,
}

// SAFETY: the elements are only reached under the robust lock; the mapping
// is shared memory valid for the handle's life; T: Pod has no affinity.
unsafe impl<T: Pod + Send> Send for ShmArray<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send> Sync for ShmArray<T> {}

impl<T: Pod> ShmArray<T> {
    fn params(len: usize) -> [u64; 3] {
        [
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
            len as u64,
        ]
    }

    fn create_in(name: Option<&str>, init: &[T]) -> Result<Self, Error> {
        if std::mem::align_of::<T>() > 64 {
            return Err(Error::InvalidArgument("element alignment above 64 bytes"));
        }
        let len = init.len();
        let (data_off, body_len) = layout::<T>(len)?;
        let (seg, body) = create_object(
            name,
            ObjectKind::ARRAY,
            &Self::params(len),
            body_len,
            |body| {
                // SAFETY: the body is fresh, zeroed and unpublished; offsets come
                // from the same layout that sized it.
                unsafe {
                    RawMutex::init_in(body.ptr_at::<RawMutex>(0)?);
                    let dst = body.sub(data_off, std::mem::size_of_val(init))?.as_ptr();
                    std::ptr::copy_nonoverlapping(
                        init.as_ptr().cast::<u8>(),
                        dst,
                        std::mem::size_of_val(init),
                    );
                }
                Ok(())
            },
        )?;
        Ok(Self::from_parts(seg, body, data_off, len)?)
    }

    fn from_parts(
        seg: Segment,
        body: Region,
        data_off: usize,
        len: usize,
    ) -> Result<Self, AttachError> {
        let lock = body.ptr_at::<RawMutex>(0)?;
        let bytes = std::mem::size_of::<T>()
            .checked_mul(len)
            .ok_or(AttachError::Corrupt("array length overflows"))?;
        let data = body.sub(data_off, bytes)?.as_ptr();
        if (data as usize) % std::mem::align_of::<T>() != 0 {
            return Err(AttachError::Corrupt("misaligned array data"));
        }
        Ok(Self {
            lock,
            data: data.cast(),
            len,
            seg,
        })
    }

    /// Creates a named array of `len` zeroed elements.
    pub fn create(name: &str, len: usize) -> Result<Self, Error> {
        Self::create_in(Some(name), &vec![T::zeroed(); len])
    }

    /// Creates a named array holding a copy of `values`.
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, Error> {
        Self::create_in(Some(name), values)
    }

    /// An anonymous array of `len` zeroed elements (shared over `fork`).
    pub fn anonymous(len: usize) -> Result<Self, Error> {
        Self::create_in(None, &vec![T::zeroed(); len])
    }

    /// An anonymous array holding a copy of `values`.
    pub fn anonymous_from(values: &[T]) -> Result<Self, Error> {
        Self::create_in(None, values)
    }

    /// Attaches to a named array created by another process.
    pub fn open(name: &str) -> Result<Self, AttachError> {
        let (seg, info, body) = open_object(name, ObjectKind::ARRAY, &OpenOptions::new())?;
        Self::attach(seg, info.params, body)
    }

    /// Attaches to an array in an already-mapped segment.
    pub fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, ObjectKind::ARRAY, opts)?;
        Self::attach(seg, info.params, body)
    }

    fn attach(seg: Segment, params: [u64; 8], body: Region) -> Result<Self, AttachError> {
        let want = Self::params(0);
        for (i, what) in [(0, "element size"), (1, "element alignment")] {
            if params[i] != want[i] {
                return Err(AttachError::ParamMismatch {
                    what,
                    found: params[i],
                    expected: want[i],
                });
            }
        }
        let len = usize::try_from(params[2])
            .map_err(|_| AttachError::Corrupt("array length overflows"))?;
        let (data_off, body_len) =
            layout::<T>(len).map_err(|_| AttachError::Corrupt("array length overflows"))?;
        if body_len > body.len() {
            return Err(AttachError::TooSmall {
                actual: body.len() as u64,
                required: body_len as u64,
            });
        }
        Self::from_parts(seg, body, data_off, len)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn raw(&self) -> &RawMutex {
        // SAFETY: `lock` was bounds- and alignment-checked and points into
        // the mapping owned by `self.seg`; RawMutex is valid for any bits.
        unsafe { &*self.lock }
    }

    /// Locks the array; the guard dereferences to `[T]`.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        let a = self.raw().lock();
        let g = ArrayGuard { array: self };
        if a.owner_died {
            Err(owner_died(g))
        } else {
            Ok(g)
        }
    }

    fn lock_any(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies element `i` out under the lock (`None` if out of range).
    pub fn get(&self, i: usize) -> Option<T> {
        self.lock_any().get(i).copied()
    }

    /// Writes element `i` under the lock; returns false if out of range.
    pub fn set(&self, i: usize, v: T) -> bool {
        match self.lock_any().get_mut(i) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    /// Copies the whole array out under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        self.lock_any().to_vec()
    }

    /// The segment holding the array.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: Pod> std::fmt::Debug for ShmArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmArray")
            .field("segment", &self.seg.name())
            .field("len", &self.len)
            .finish()
    }
}

/// Holds a [`ShmArray`] locked; dereferences to its elements.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a ShmArray<T>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Declares the data consistent after an owner-died recovery.
    pub fn mark_consistent(&self) {
        self.array.raw().mark_consistent();
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held; `data..data+len` was bounds-checked
        // against the mapping at construction and is aligned for T.
        unsafe { std::slice::from_raw_parts(self.array.data, self.array.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for Deref; `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.array.data, self.array.len) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves this process holds the lock.
        unsafe { self.array.raw().unlock() }
    }
}
