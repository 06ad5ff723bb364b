//! [`ShmMap<K, V>`]: a typed view of a [`ShmDict`] for serde types, encoded
//! with postcard.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{DictConfig, DictError, ShmDict};
use crate::error::{AttachError, Error};
use crate::segment::{type_tag, OpenOptions, Segment, SegmentObject, TypeTag};

/// A typed map over a [`ShmDict`]: keys and values are any serde types,
/// stored as their postcard encoding (so a key's encoding, not its `Eq`,
/// decides identity — fine for integers, strings, tuples and plain
/// structs). Bytes that do not decode as `V` (written by a process using
/// another type) give [`DictError::Decode`], never a panic; and a map
/// opened with other `K`/`V` than its creator used is refused up front with
/// [`AttachError::TypeMismatch`] (the header records both types' traced
/// serde shapes; see [`type_tag`](crate::segment::type_tag)).
///
/// **Borrowed keys and values.** Lookups take any `&Q` where `K:
/// Borrow<Q>` — `&str` for `String` keys, `&[T]` for `Vec<T>`, `&T` for
/// `Box<T>` — like `HashMap`. Identity is the encoding, so `Q` must encode
/// exactly as the `K` it stands for; postcard encodes `str`/`String`,
/// `[T]`/`Vec<T>` and `T`/`Box<T>` identically, and a `Borrow` pair whose
/// serde forms differ simply finds nothing. Values stored with
/// [`insert`](Self::insert)/[`set`](Self::set) may likewise be given as a
/// `&W` where `V: Borrow<W>`.
///
/// ```
/// use shmkit::{DictConfig, ShmMap};
///
/// let map = ShmMap::<String, i32>::anonymous(DictConfig::for_entries(64, 16, 8)?)?;
/// map.insert("number1", &25)?;
/// map.update("number1", |v| v.map(|n| n + 5))?;
/// assert_eq!(map.get("number1")?, Some(30));
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

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> SegmentObject
    for ShmMap<K, V>
{
    type Config = DictConfig;

    fn create_in(name: Option<&str>, config: DictConfig) -> Result<Self, Error> {
        let tag = type_tag::creation_tag(TypeTag::of_map::<K, V>());
        type_tag::create_tagged(tag, || ShmDict::create_in(name, config)).map(Self::new)
    }

    fn from_segment(seg: Segment, opts: &OpenOptions) -> Result<Self, AttachError> {
        let dict = <ShmDict as SegmentObject>::from_segment(seg, opts)?;
        Self::check_type(&dict, opts)?;
        Ok(Self::new(dict))
    }

    fn segment(&self) -> Option<&Segment> {
        self.dict.segment()
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> ShmMap<K, V> {
    /// Wraps a dict (every process must use the same `K` and `V`). No
    /// type check: [`open`](Self::open), [`from_segment`](Self::from_segment)
    /// and [`from_dict`](Self::from_dict) check the segment's type tag.
    pub fn new(dict: ShmDict) -> Self {
        Self {
            dict,
            _types: PhantomData,
        }
    }

    /// Wraps a dict after checking that a dict in a segment was created for
    /// these `K` and `V` (or untyped; see
    /// [`type_tag`](crate::segment::type_tag)).
    ///
    /// ```
    /// use shmkit::{AttachError, DictConfig, ShmDict, ShmMap};
    ///
    /// let cfg = DictConfig::for_entries(8, 8, 8)?;
    /// let map = ShmMap::<String, u32>::anonymous(cfg)?;
    /// let bytes: ShmDict = map.into_inner();
    /// let again = ShmMap::<String, String>::from_dict(bytes);
    /// assert!(matches!(again, Err(AttachError::TypeMismatch { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_dict(dict: ShmDict) -> Result<Self, AttachError> {
        Self::check_type(&dict, &OpenOptions::new())?;
        Ok(Self::new(dict))
    }

    fn check_type(dict: &ShmDict, opts: &OpenOptions) -> Result<(), AttachError> {
        match dict.segment().and_then(Segment::header_unchecked) {
            Some(h) => type_tag::check(
                h.type_tag(),
                TypeTag::of_map::<K, V>(),
                opts,
                std::any::type_name::<(K, V)>(),
            ),
            None => Ok(()),
        }
    }

    /// Creates a named map (this handle owns the name and unlinks it on
    /// drop); see [`ShmDict::create`].
    ///
    /// ```
    /// use shmkit::{DictConfig, ShmMap};
    ///
    /// let name = format!("doc-map-{}", std::process::id());
    /// let prices = ShmMap::<String, f64>::create(&name, DictConfig::for_entries(100, 32, 8)?)?;
    /// let seen = ShmMap::<String, f64>::open(&name)?; // e.g. in another process
    /// prices.set("apple", &1.25)?;
    /// assert_eq!(seen.get("apple")?, Some(1.25));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(name: &str, config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::create(name, config)
    }

    /// Creates an anonymous map, shared with the children this process
    /// forks or spawns with it afterwards.
    pub fn anonymous(config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::anonymous(config)
    }

    /// A map in this process's heap (single-process use and tests).
    pub fn in_heap(config: DictConfig) -> Result<Self, Error> {
        ShmDict::in_heap(config).map(Self::new)
    }

    crate::segment::inherent_opens!("map");

    /// Opens the named map, or creates it with `config` if there is none
    /// (race-free between processes; see
    /// [`SegmentObject::open_or_create`]).
    ///
    /// ```
    /// use shmkit::{DictConfig, ShmMap};
    ///
    /// let name = format!("doc-map-ooc-{}", std::process::id());
    /// let cfg = DictConfig::for_entries(10, 8, 8)?;
    /// let a = ShmMap::<String, u32>::open_or_create(&name, cfg)?; // creates
    /// let b = ShmMap::<String, u32>::open_or_create(&name, cfg)?; // attaches
    /// a.set("x", &1)?;
    /// assert_eq!(b.get("x")?, Some(1));
    /// # drop((a, b));
    /// # shmkit::Segment::unlink(&name)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(name: &str, config: DictConfig) -> Result<Self, Error> {
        <Self as SegmentObject>::open_or_create(name, config)
    }

    /// Keeps the segment's name after this (owning) handle is dropped.
    pub fn keep(&mut self) {
        self.dict.keep();
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
    pub fn insert<Q, W>(&self, key: &Q, value: &W) -> Result<Option<V>, DictError>
    where
        K: Borrow<Q>,
        V: Borrow<W>,
        Q: Serialize + ?Sized,
        W: Serialize + ?Sized,
    {
        let k = encode(key)?;
        let v = encode(value)?;
        self.dict.insert(&k, &v)?.map(|b| decode(&b)).transpose()
    }

    /// Stores `value` for `key` without decoding the previous value
    /// (Python's `d[k] = v`); returns whether the key was present.
    pub fn set<Q, W>(&self, key: &Q, value: &W) -> Result<bool, DictError>
    where
        K: Borrow<Q>,
        V: Borrow<W>,
        Q: Serialize + ?Sized,
        W: Serialize + ?Sized,
    {
        let k = encode(key)?;
        let v = encode(value)?;
        self.dict.set(&k, &v)
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, DictError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        self.dict.get_with(&k, decode::<V>)?.transpose()
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, DictError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.dict.contains_key(&encode(key)?)
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>, DictError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let k = encode(key)?;
        self.dict.remove(&k)?.map(|b| decode(&b)).transpose()
    }

    /// Atomic read-modify-write (see [`ShmDict::update`]). A stored value
    /// that does not decode fails with `Decode` and is left unchanged.
    pub fn update<Q>(
        &self,
        key: &Q,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, DictError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn map<K, V>() -> ShmMap<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        ShmMap::in_heap(DictConfig::for_entries(32, 32, 32).unwrap()).unwrap()
    }

    #[test]
    fn postcard_encodes_borrowed_forms_like_owned_ones() {
        assert_eq!(
            encode("héllo").unwrap(),
            encode(&"héllo".to_string()).unwrap()
        );
        assert_eq!(
            encode(&[1u16, 2][..]).unwrap(),
            encode(&vec![1u16, 2]).unwrap()
        );
        assert_eq!(encode(&7u64).unwrap(), encode(&Box::new(7u64)).unwrap());
        let boxed: Box<str> = "k".into();
        assert_eq!(encode("k").unwrap(), encode(&boxed).unwrap());
    }

    #[test]
    fn string_keys_are_found_by_str_and_back() {
        let m = map::<String, String>();
        assert_eq!(m.insert("a", "one").unwrap(), None);
        assert_eq!(m.get(&"a".to_string()).unwrap().as_deref(), Some("one"));
        assert_eq!(
            m.insert(&"b".to_string(), &"two".to_string()).unwrap(),
            None
        );
        assert_eq!(m.get("b").unwrap().as_deref(), Some("two"));
        assert!(m.contains_key("b").unwrap());
        assert!(m.set("b", "TWO").unwrap());
        assert_eq!(
            m.update("b", |v| v.map(|s| s + "!")).unwrap().as_deref(),
            Some("TWO!")
        );
        assert_eq!(m.remove("a").unwrap().as_deref(), Some("one"));
        assert!(!m.contains_key(&"a".to_string()).unwrap());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn vec_keys_are_found_by_slice() {
        let m = map::<Vec<u32>, u8>();
        m.insert(&vec![1, 2, 3], &9).unwrap();
        assert_eq!(m.get(&[1u32, 2, 3][..]).unwrap(), Some(9));
        assert_eq!(m.get(&[1u32, 2][..]).unwrap(), None);
    }
}
