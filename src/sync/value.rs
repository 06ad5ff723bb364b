//! [`ShmValue<T>`]: one shared atomic scalar (Python's
//! `multiprocessing.Value`, lock-free).

use crate::primitives::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{ObjectKind, ShmObject};

mod sealed {
    pub trait Sealed {}
}

/// Scalars a [`ShmValue`] can hold: `u32`, `i32`, `u64`, `i64`, `bool`,
/// `f64`. Each is stored in a `u32` or `u64` atomic so that every bit
/// pattern another process writes is a valid value (`bool` is "nonzero").
pub trait AtomicValue: Copy + sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    type Repr: Send + Sync;
    #[doc(hidden)]
    fn new_repr(v: Self) -> Self::Repr;
    #[doc(hidden)]
    fn load(r: &Self::Repr) -> Self;
    #[doc(hidden)]
    fn store(r: &Self::Repr, v: Self);
    #[doc(hidden)]
    fn swap(r: &Self::Repr, v: Self) -> Self;
    #[doc(hidden)]
    fn compare_exchange(r: &Self::Repr, current: Self, new: Self) -> Result<Self, Self>;
    #[doc(hidden)]
    fn code() -> u64;
}

/// Numeric [`AtomicValue`]s with `fetch_add` / `fetch_sub` (wrapping for
/// integers; a CAS loop for `f64`).
pub trait AtomicNumber: AtomicValue {
    #[doc(hidden)]
    fn fetch_add(r: &Self::Repr, v: Self) -> Self;
    #[doc(hidden)]
    fn fetch_sub(r: &Self::Repr, v: Self) -> Self;
}

macro_rules! int_value {
    ($t:ty, $atom:ty, $raw:ty, $code:expr) => {
        impl sealed::Sealed for $t {}
        impl AtomicValue for $t {
            type Repr = $atom;
            fn new_repr(v: Self) -> $atom {
                <$atom>::new(v as $raw)
            }
            fn load(r: &$atom) -> Self {
                r.load(Ordering::SeqCst) as $t
            }
            fn store(r: &$atom, v: Self) {
                r.store(v as $raw, Ordering::SeqCst)
            }
            fn swap(r: &$atom, v: Self) -> Self {
                r.swap(v as $raw, Ordering::SeqCst) as $t
            }
            fn compare_exchange(r: &$atom, c: Self, n: Self) -> Result<Self, Self> {
                r.compare_exchange(c as $raw, n as $raw, Ordering::SeqCst, Ordering::SeqCst)
                    .map(|v| v as $t)
                    .map_err(|v| v as $t)
            }
            fn code() -> u64 {
                $code
            }
        }
        impl AtomicNumber for $t {
            fn fetch_add(r: &$atom, v: Self) -> Self {
                r.fetch_add(v as $raw, Ordering::SeqCst) as $t
            }
            fn fetch_sub(r: &$atom, v: Self) -> Self {
                r.fetch_sub(v as $raw, Ordering::SeqCst) as $t
            }
        }
    };
}

int_value!(u32, AtomicU32, u32, 1);
int_value!(i32, AtomicU32, u32, 2);
int_value!(u64, AtomicU64, u64, 3);
int_value!(i64, AtomicU64, u64, 4);

impl sealed::Sealed for bool {}
impl AtomicValue for bool {
    type Repr = AtomicU32;
    fn new_repr(v: Self) -> AtomicU32 {
        AtomicU32::new(v as u32)
    }
    fn load(r: &AtomicU32) -> Self {
        r.load(Ordering::SeqCst) != 0
    }
    fn store(r: &AtomicU32, v: Self) {
        r.store(v as u32, Ordering::SeqCst)
    }
    fn swap(r: &AtomicU32, v: Self) -> Self {
        r.swap(v as u32, Ordering::SeqCst) != 0
    }
    fn compare_exchange(r: &AtomicU32, c: Self, n: Self) -> Result<Self, Self> {
        // Any nonzero word means `true`, so compare by truth value.
        let mut cur = r.load(Ordering::SeqCst);
        loop {
            if (cur != 0) != c {
                return Err(cur != 0);
            }
            match r.compare_exchange(cur, n as u32, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(c),
                Err(now) => cur = now,
            }
        }
    }
    fn code() -> u64 {
        5
    }
}

impl sealed::Sealed for f64 {}
impl AtomicValue for f64 {
    type Repr = AtomicU64;
    fn new_repr(v: Self) -> AtomicU64 {
        AtomicU64::new(v.to_bits())
    }
    fn load(r: &AtomicU64) -> Self {
        f64::from_bits(r.load(Ordering::SeqCst))
    }
    fn store(r: &AtomicU64, v: Self) {
        r.store(v.to_bits(), Ordering::SeqCst)
    }
    fn swap(r: &AtomicU64, v: Self) -> Self {
        f64::from_bits(r.swap(v.to_bits(), Ordering::SeqCst))
    }
    /// Compares bit patterns (so NaN can be matched and `0.0 != -0.0`).
    fn compare_exchange(r: &AtomicU64, c: Self, n: Self) -> Result<Self, Self> {
        r.compare_exchange(c.to_bits(), n.to_bits(), Ordering::SeqCst, Ordering::SeqCst)
            .map(f64::from_bits)
            .map_err(f64::from_bits)
    }
    fn code() -> u64 {
        6
    }
}

impl AtomicNumber for f64 {
    fn fetch_add(r: &AtomicU64, v: Self) -> Self {
        update_f64(r, |x| x + v)
    }
    fn fetch_sub(r: &AtomicU64, v: Self) -> Self {
        update_f64(r, |x| x - v)
    }
}

fn update_f64(r: &AtomicU64, f: impl Fn(f64) -> f64) -> f64 {
    let mut cur = r.load(Ordering::SeqCst);
    loop {
        let new = f(f64::from_bits(cur)).to_bits();
        match r.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(old) => return f64::from_bits(old),
            Err(now) => cur = now,
        }
    }
}

/// One atomic scalar in shared memory. All operations are `SeqCst` and
/// lock-free, so a process dying mid-operation cannot leave it locked or
/// torn.
///
/// Layout: `#[repr(C)]` `{ value: u32 | u64 }` (the `T`'s storage word).
///
/// ```
/// use shmkit::{ShmBox, ShmValue};
///
/// let v = ShmBox::<ShmValue<i64>>::anonymous(10)?;
/// assert_eq!(v.fetch_add(5), 10);
/// assert_eq!(v.load(), 15);
/// assert_eq!(v.compare_exchange(15, 0), Ok(15));
/// let f = ShmValue::<f64>::new(1.5);
/// f.fetch_add(1.0);
/// assert_eq!(f.load(), 2.5);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[repr(C)]
pub struct ShmValue<T: AtomicValue> {
    repr: T::Repr,
}

// SAFETY: the storage is a single u32/u64 atomic: any bit pattern is a
// valid value of every supported T; repr(C).
unsafe impl<T: AtomicValue> ShmObject for ShmValue<T> {
    const KIND: ObjectKind = ObjectKind::VALUE;
    type Init = T;
    unsafe fn init_in_place(ptr: *mut Self, init: T) {
        // SAFETY: forwarded contract.
        unsafe { ptr.write(ShmValue::new(init)) }
    }
    fn type_code() -> u64 {
        T::code()
    }
}

impl<T: AtomicValue> ShmValue<T> {
    /// A value holding `v`.
    pub fn new(v: T) -> Self {
        Self {
            repr: T::new_repr(v),
        }
    }

    /// Reads the value.
    pub fn load(&self) -> T {
        T::load(&self.repr)
    }

    /// Writes the value.
    pub fn store(&self, v: T) {
        T::store(&self.repr, v)
    }

    /// Writes `v`, returning the previous value.
    pub fn swap(&self, v: T) -> T {
        T::swap(&self.repr, v)
    }

    /// Stores `new` if the value is `current`; returns the previous value
    /// (`Ok`) or the value found (`Err`).
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        T::compare_exchange(&self.repr, current, new)
    }

    /// A code naming `T` (stored in the segment header so a value opened
    /// as the wrong type is refused).
    pub fn type_code() -> u64 {
        T::code()
    }
}

impl<T: AtomicNumber> ShmValue<T> {
    /// Adds `v` (wrapping for integers), returning the previous value.
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(&self.repr, v)
    }

    /// Subtracts `v` (wrapping for integers), returning the previous value.
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(&self.repr, v)
    }
}

impl<T: AtomicValue + std::fmt::Debug> std::fmt::Debug for ShmValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ShmValue").field(&self.load()).finish()
    }
}
