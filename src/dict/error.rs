//! [`DictError`]: what a dict operation can fail with.

/// Why a [`ShmDict`](super::ShmDict) operation failed. A failed operation
/// changes nothing: every entry already in the dict is still there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DictError {
    /// The key's stripe has no free table slot or no arena space left for
    /// the entry. Remove entries, or create the dict with a larger
    /// [`DictConfig`](super::DictConfig).
    #[error("dict capacity exceeded: no free slot or arena space for this entry; remove entries or create a larger dict")]
    CapacityExceeded,
    /// The key is longer than [`MAX_KEY_LEN`](super::MAX_KEY_LEN) or than
    /// one stripe's arena can hold.
    #[error("key of {len} bytes is too large (at most {max} bytes)")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The largest key this dict accepts.
        max: usize,
    },
    /// The value does not fit in the largest arena block of one stripe.
    #[error("value of {len} bytes is too large (at most {max} bytes with this key)")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The largest value this dict accepts for this key.
        max: usize,
    },
    /// The shared memory holds an impossible value (an offset or length out
    /// of bounds, a broken block header). Some process wrote garbage into the
    /// segment; the operation was refused without touching it further.
    #[error("dict is corrupt: {0}")]
    Corrupt(&'static str),
    /// The stripe lock was not acquired within the handle's lock timeout
    /// (see [`ShmDict::set_lock_timeout`](super::ShmDict::set_lock_timeout)).
    #[error("timed out waiting for a dict stripe lock held by a live process")]
    LockTimeout,
    /// A stored value could not be decoded as the requested type.
    #[error("could not decode the stored value: {0}")]
    Decode(String),
    /// A value could not be encoded (serde/postcard refused it).
    #[error("could not encode the value: {0}")]
    Encode(String),
}

impl From<postcard::Error> for DictError {
    fn from(e: postcard::Error) -> Self {
        DictError::Decode(e.to_string())
    }
}
