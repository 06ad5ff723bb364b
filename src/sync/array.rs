//! [`ShmArray<T>`]: a fixed-length array of `Pod` values in shared memory,
//! guarded by a robust lock (Python's `multiprocessing.Array`).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use super::guard_count::Held;
use super::mutex::{owner_died, LockResult, TryLockError};
use super::raw_mutex::RawMutex;
use crate::error::{AttachError, Error};
use crate::os::Deadline;
use crate::segment::{
    attach_object, create_object, type_tag, LayoutBuilder, ObjectKind, OpenOptions, Region,
    Segment, SegmentObject, TypeTag,
};

/// Offsets inside an array body: lock at 0, elements after it.
fn layout<T>(len: usize) -> Result<(usize, usize), Error> {
    let mut l = LayoutBuilder::new();
    let lock = l.add::<RawMutex>();
    let data = l.add_array::<T>(len)?;
    debug_assert_eq!(lock, 0);
    Ok((data, l.size()))
}

/// A bounded [`ShmArray`] operation gave up: a live process held the lock
/// until the deadline.
///
/// ```
/// use shmkit::sync::LockTimedOut;
/// use shmkit::ShmArray;
/// use std::time::Duration;
///
/// let a = ShmArray::<u8>::anonymous(1)?;
/// let g = a.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| assert_eq!(a.get_timeout(0, Duration::from_millis(2)), Err(LockTimedOut)));
/// });
/// drop(g);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the array's lock (held by a live process); retry, or find the stuck holder")]
pub struct LockTimedOut;

/// What to put in a new array.
enum Contents<'a, T> {
    /// `len` zeroed elements: the fresh segment already is all zeroes.
    Zeroed(usize),
    /// A copy of these values.
    Copy(&'a [T]),
}

/// A shared array of `len` `T`s behind a robust process-shared lock.
///
/// Body layout (after the 128-byte segment header): `RawMutex` (8 bytes)
/// at 0, then `len` elements at the next multiple of `align_of::<T>()`.
/// Header params: `[size_of::<T>(), align_of::<T>(), len]`; the header's
/// type tag is `T`'s [`TypeTag::of_pod`], so an `ShmArray<f32>` opened as
/// an `ShmArray<u32>` is refused with
/// [`AttachError::TypeMismatch`](crate::AttachError::TypeMismatch).
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
///
/// Every locking call has a bounded form ([`try_lock`](Self::try_lock),
/// [`lock_timeout`](Self::lock_timeout), [`get_timeout`](Self::get_timeout),
/// [`set_timeout`](Self::set_timeout),
/// [`to_vec_timeout`](Self::to_vec_timeout)), for when a live process may
/// hold the lock and never let go.
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

    fn create_with(name: Option<&str>, contents: Contents<'_, T>) -> Result<Self, Error> {
        if std::mem::align_of::<T>() > 64 {
            return Err(Error::InvalidArgument("element alignment above 64 bytes"));
        }
        let len = match contents {
            Contents::Zeroed(n) => n,
            Contents::Copy(v) => v.len(),
        };
        // Checked sizes, before anything is allocated: an absurd length is
        // an error here (or `NoSpace` from the segment), never a heap
        // allocation of the whole array.
        let (data_off, body_len) = layout::<T>(len)?;
        if body_len > isize::MAX as usize {
            return Err(Error::InvalidArgument(
                "array larger than the address space",
            ));
        }
        let tag = type_tag::creation_tag(TypeTag::of_pod::<T>());
        let (seg, body) = type_tag::create_tagged(tag, || {
            create_object(
                name,
                ObjectKind::ARRAY,
                &Self::params(len),
                body_len,
                |body| {
                    let lock = body.ptr_at::<RawMutex>(0)?;
                    // SAFETY: the body is fresh, zeroed and unpublished, and
                    // `ptr_at` checked bounds and alignment.
                    unsafe { RawMutex::init_in(lock) };
                    if let Contents::Copy(init) = contents {
                        let bytes = std::mem::size_of_val(init);
                        let dst = body.sub(data_off, bytes)?.as_ptr();
                        // SAFETY: `dst..dst + bytes` is inside the body (checked
                        // by `sub`), unpublished, and cannot overlap `init`
                        // (a fresh mapping).
                        unsafe {
                            std::ptr::copy_nonoverlapping(init.as_ptr().cast::<u8>(), dst, bytes)
                        };
                    }
                    Ok(())
                },
            )
        })?;
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

    /// Creates a named array of `len` zeroed elements, initialised in
    /// place (no heap copy). A length whose size overflows is
    /// [`Error::InvalidArgument`]; one that memory or `/dev/shm` cannot
    /// hold is [`Error::NoSpace`].
    ///
    /// ```
    /// use shmkit::{Error, ShmArray};
    ///
    /// let name = format!("doc-array-{}", std::process::id());
    /// let a = ShmArray::<u32>::create(&name, 3)?;
    /// assert_eq!(a.to_vec(), vec![0, 0, 0]);
    /// let huge = ShmArray::<u64>::create(&name, usize::MAX / 4);
    /// assert!(matches!(huge, Err(Error::InvalidArgument(_))));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, len: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, len)
    }

    /// Creates a named array holding a copy of `values`.
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, Error> {
        Self::create_with(Some(name), Contents::Copy(values))
    }

    /// An anonymous array of `len` zeroed elements (shared over `fork`);
    /// sizes as for [`create`](Self::create).
    pub fn anonymous(len: usize) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(len)
    }

    /// An anonymous array holding a copy of `values`.
    pub fn anonymous_from(values: &[T]) -> Result<Self, Error> {
        Self::create_with(None, Contents::Copy(values))
    }

    crate::segment::inherent_opens!("array");

    fn attach(
        seg: Segment,
        params: [u64; crate::segment::header::PARAM_WORDS],
        body: Region,
    ) -> Result<Self, AttachError> {
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

    fn guard(&self, died: bool) -> LockResult<ArrayGuard<'_, T>> {
        let g = ArrayGuard {
            array: self,
            held: Held::enter(),
        };
        if died {
            Err(owner_died(g))
        } else {
            Ok(g)
        }
    }

    /// Locks the array; the guard dereferences to `[T]`. Waits as long as
    /// a live process holds the lock (a dead holder is recovered); see
    /// [`lock_timeout`](Self::lock_timeout) for a bounded wait.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        let a = self.raw().lock();
        self.guard(a.owner_died)
    }

    /// Locks the array if it is free (or its holder is dead).
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        match self.raw().try_lock() {
            None => Err(TryLockError::WouldBlock),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    /// Locks the array, waiting at most `timeout` for a live holder.
    ///
    /// ```
    /// use shmkit::{ShmArray, TryLockError};
    /// use std::time::Duration;
    ///
    /// let a = ShmArray::<u8>::anonymous(4)?;
    /// let g = a.lock().unwrap();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let r = a.lock_timeout(Duration::from_millis(5));
    ///         assert!(matches!(r, Err(TryLockError::TimedOut)));
    ///     });
    /// });
    /// drop(g);
    /// assert!(a.try_lock().is_ok());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        self.lock_deadline(Deadline::after(timeout))
    }

    /// Locks the array, waiting until `deadline` at the latest.
    pub fn lock_deadline(
        &self,
        deadline: Deadline,
    ) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        match self.raw().lock_until(Some(deadline)) {
            None => Err(TryLockError::TimedOut),
            Some(a) => self.guard(a.owner_died).map_err(TryLockError::OwnerDied),
        }
    }

    fn lock_any(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The guard (owner-died or not) or `LockTimedOut`.
    fn lock_any_until(&self, deadline: Deadline) -> Result<ArrayGuard<'_, T>, LockTimedOut> {
        match self.lock_deadline(deadline) {
            Ok(g) => Ok(g),
            Err(TryLockError::OwnerDied(e)) => Ok(e.into_inner()),
            Err(TryLockError::TimedOut | TryLockError::WouldBlock) => Err(LockTimedOut),
        }
    }

    /// Copies element `i` out under the lock (`None` if out of range).
    /// Unbounded like [`lock`](Self::lock); see
    /// [`get_timeout`](Self::get_timeout).
    pub fn get(&self, i: usize) -> Option<T> {
        self.lock_any().get(i).copied()
    }

    /// [`get`](Self::get), waiting at most `timeout` for the lock.
    ///
    /// ```
    /// use shmkit::ShmArray;
    /// use std::time::Duration;
    ///
    /// let a = ShmArray::<i32>::anonymous_from(&[5, 6])?;
    /// let t = Duration::from_secs(1);
    /// assert_eq!(a.get_timeout(1, t), Ok(Some(6)));
    /// assert_eq!(a.set_timeout(0, 9, t), Ok(true));
    /// assert_eq!(a.to_vec_timeout(t), Ok(vec![9, 6]));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_timeout(&self, i: usize, timeout: Duration) -> Result<Option<T>, LockTimedOut> {
        let g = self.lock_any_until(Deadline::after(timeout))?;
        Ok(g.get(i).copied())
    }

    /// Writes element `i` under the lock; returns false if out of range.
    /// Unbounded; see [`set_timeout`](Self::set_timeout).
    pub fn set(&self, i: usize, v: T) -> bool {
        Self::store(&mut self.lock_any(), i, v)
    }

    /// [`set`](Self::set), waiting at most `timeout` for the lock.
    pub fn set_timeout(&self, i: usize, v: T, timeout: Duration) -> Result<bool, LockTimedOut> {
        let mut g = self.lock_any_until(Deadline::after(timeout))?;
        Ok(Self::store(&mut g, i, v))
    }

    fn store(g: &mut ArrayGuard<'_, T>, i: usize, v: T) -> bool {
        match g.get_mut(i) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    /// Copies the whole array out under the lock. Unbounded; see
    /// [`to_vec_timeout`](Self::to_vec_timeout).
    pub fn to_vec(&self) -> Vec<T> {
        self.lock_any().to_vec()
    }

    /// [`to_vec`](Self::to_vec), waiting at most `timeout` for the lock.
    pub fn to_vec_timeout(&self, timeout: Duration) -> Result<Vec<T>, LockTimedOut> {
        Ok(self.lock_any_until(Deadline::after(timeout))?.to_vec())
    }

    /// The segment holding the array.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: Pod> SegmentObject for ShmArray<T> {
    /// The number of (zeroed) elements.
    type Config = usize;

    fn create_in(name: Option<&str>, len: usize) -> Result<Self, Error> {
        Self::create_with(name, Contents::Zeroed(len))
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let (seg, info, body) = attach_object(seg, ObjectKind::ARRAY, opts)?;
        // Sizes first (the more specific error), then the element type.
        let array = Self::attach(seg, info.params, body)?;
        type_tag::check(
            info.type_tag,
            TypeTag::of_pod::<T>(),
            opts,
            std::any::type_name::<T>(),
        )?;
        Ok(array)
    }

    fn segment(&self) -> Option<&Segment> {
        Some(&self.seg)
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
///
/// Like [`MutexGuard`](crate::MutexGuard), it belongs to the process that
/// took it: `fork` refuses while one is alive, and a copy in another
/// process panics on dereference and does not unlock on drop.
///
/// ```
/// use shmkit::ShmArray;
///
/// let a = ShmArray::<u16>::anonymous(2)?;
/// let mut g = a.lock().unwrap();
/// g.copy_from_slice(&[1, 2]);
/// drop(g);
/// assert_eq!(a.to_vec(), vec![1, 2]);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a ShmArray<T>,
    held: Held,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Declares the data consistent after an owner-died recovery.
    pub fn mark_consistent(&self) {
        self.held.assert_owner("ArrayGuard");
        self.array.raw().mark_consistent();
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.held.assert_owner("ArrayGuard");
        // SAFETY: this process took the lock and still holds it (checked
        // above); `data..data+len` was bounds-checked against the mapping
        // at construction and is aligned for T.
        unsafe { std::slice::from_raw_parts(self.array.data, self.array.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.held.assert_owner("ArrayGuard");
        // SAFETY: as for Deref; `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.array.data, self.array.len) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        // Only the process that took the lock releases it (not a copy of
        // the guard in a forked child).
        if self.held.in_owner_process() {
            // SAFETY: the guard proves this process holds the lock.
            unsafe { self.array.raw().unlock() }
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
