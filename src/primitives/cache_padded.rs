//! [`CachePadded`]: keeps a value on cache lines of its own.

use std::ops::{Deref, DerefMut};

/// A value aligned (and so padded) to 128 bytes: two 64-byte cache lines,
/// because x86's adjacent-line prefetcher pulls lines in pairs, so two hot
/// fields 64 bytes apart still contend. `#[repr(C)]`: the value sits at
/// offset 0 and the size is the value's rounded up to a multiple of 128,
/// which makes it usable in segment layouts.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> CachePadded<T> {
    /// Pads `value`.
    pub(crate) const fn new(value: T) -> Self {
        CachePadded(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CachePadded<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::CachePadded;

    #[test]
    fn pads_to_128() {
        assert_eq!(std::mem::align_of::<CachePadded<u8>>(), 128);
        assert_eq!(std::mem::size_of::<CachePadded<u64>>(), 128);
        assert_eq!(std::mem::size_of::<CachePadded<[u8; 129]>>(), 256);
        let p = CachePadded::new(7u32);
        assert_eq!(*p, 7);
    }
}
