//! [`ShmMap<K, V>`]: a typed view of a [`ShmDict`] for serde types, encoded
//! with postcard.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{DictError, ShmDict};

/// A typed map over a [`ShmDict`]: keys and values are any serde types,
/// stored as their postcard encoding (so a key's encoding, not its `Eq`,
/// decides identity — fine for integers, strings, tuples and plain
/// structs). Bytes that do not decode as `V` (written by a process using
/// another type) give [`DictError::Decode`], never a panic.
///
/// ```
/// use shmkit::{DictConfig, ShmDict, ShmMap};
///
/// let map: ShmMap<String, i32> = ShmMap::new(ShmDict::anonymous(DictConfig::new(64, 8192))?);
/// map.insert(&"number1".to_string(), &25)?;
/// map.update(&"number1".to_string(), |v| v.map(|n| n + 5))?;
/// assert_eq!(map.get(&"number1".to_string())?, Some(30));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmMap<K, V> {
    dict: ShmDict,
    _types: PhantomData<Types<K, V>>,
}

/// Marks the key/value types without owning either (Send/Sync come from
/// the dict alone).
type Types<K, V> = fn(K, V) -> (K, V);

fn encode<T: Serialize + ?Sized>(t: &T) -> Result<Vec<u8>, DictError> {
    postcard::to_allocvec(t).map_err(|e| DictError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, DictError> {
    Ok(postcard::from_bytes(b)?)
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> ShmMap<K, V> {
    /// Wraps a dict (every process must use the same `K` and `V`).
    pub fn new(dict: ShmDict) -> Self {
        Self {
            dict,
            _types: PhantomData,
        }
    }

    /// The underlying byte dict.
    pub fn dict(&self) -> &ShmDict {
        &self.dict
    }

    /// Unwraps the byte dict.
    pub fn into_inner(self) -> ShmDict {
        self.dict
    }

    /// Inserts, returning the previous value.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>, DictError> {
        let k = encode(key)?;
        let v = encode(value)?;
        self.dict.insert(&k, &v)?.map(|b| decode(&b)).transpose()
    }

    /// Stores `value` for `key` without decoding the previous value
    /// (Python's `d[k] = v`); returns whether the key was present.
    pub fn set(&self, key: &K, value: &V) -> Result<bool, DictError> {
        let k = encode(key)?;
        let v = encode(value)?;
        self.dict.set(&k, &v)
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>, DictError> {
        let k = encode(key)?;
        self.dict.get_with(&k, decode::<V>)?.transpose()
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool, DictError> {
        self.dict.contains_key(&encode(key)?)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>, DictError> {
        let k = encode(key)?;
        self.dict.remove(&k)?.map(|b| decode(&b)).transpose()
    }

    /// Atomic read-modify-write (see [`ShmDict::update`]). A stored value
    /// that does not decode fails with `Decode` and is left unchanged.
    pub fn update(
        &self,
        key: &K,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, DictError> {
        let k = encode(key)?;
        let mut err = None;
        let mut out = None;
        self.dict.update(&k, |old| {
            let old = match old.map(decode::<V>).transpose() {
                Ok(o) => o,
                Err(e) => {
                    err = Some(e);
                    return old.map(<[u8]>::to_vec);
                }
            };
            let new = f(old)?;
            match encode(&new) {
                Ok(b) => {
                    out = Some(new);
                    Some(b)
                }
                Err(e) => {
                    err = Some(e);
                    None
                }
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Number of entries (see [`ShmDict::len`]).
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), DictError> {
        self.dict.clear()
    }

    /// All entries, weakly consistent (see [`ShmDict::iter`]).
    pub fn to_vec(&self) -> Result<Vec<(K, V)>, DictError> {
        let mut out = Vec::new();
        let mut err = None;
        self.dict.for_each(|k, v| match (decode(k), decode(v)) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Err(e), _) | (_, Err(e)) => {
                err.get_or_insert(e);
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

impl<K, V> std::fmt::Debug for ShmMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmMap").field("dict", &self.dict).finish()
    }
}
