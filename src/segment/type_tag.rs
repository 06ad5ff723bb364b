//! [`TypeTag`]: the fingerprint of a typed object's element type, stored in
//! the segment header (offset 112) so that a process opening the object as
//! another type is refused with [`AttachError::TypeMismatch`] instead of
//! decoding garbage.
//!
//! # What the fingerprint is
//!
//! A tag is a 64-bit FNV-1a hash (offset basis `0xcbf29ce484222325`, prime
//! `0x100000001b3`, over the bytes of a UTF-8 description) of a text that
//! depends only on the *shape* of the type, never on the module it is
//! defined in, so the same `struct Trade { id: u64, px: f64 }` written in a
//! producer binary and in a separately built consumer binary gets the same
//! tag. FNV-1a is fixed by this documentation (unlike `DefaultHasher`, whose
//! output may change between Rust releases). The value 0 is reserved for
//! [`TypeTag::ANY`]; a description that happens to hash to 0 uses 1.
//!
//! * **serde types** ([`Queue<T>`](crate::queue::Queue),
//!   [`JoinableQueue<T>`](crate::queue::JoinableQueue),
//!   [`ShmMap<K, V>`](crate::ShmMap)): the type is traced with
//!   `serde-reflection` (what its `Deserialize` asks for: container names,
//!   field and variant names and their formats), and the description is
//!   `serde:` + the root format + `;Name=container` for every named
//!   container reached, in name order. Formats are written `unit bool i8 …
//!   i128 u8 … u128 f32 f64 char str bytes`, `opt(F)`, `seq(F)`,
//!   `map(K,V)`, `tup(F,…)`, `arr(F;N)` and `@Name` (a named container);
//!   containers `unit`, `newtype(F)`, `tuple(F,…)`, `{field:F,…}`, and
//!   `enum{index:Variant=…,…}` with each variant's body written like a
//!   container. So renaming a field, changing its type, or adding one
//!   changes the tag; the Rust module path does not. A type the tracer
//!   cannot describe (a hand-written `Deserialize` that needs real samples
//!   or `deserialize_any`, such as `serde_json::Value`; a value type that
//!   refuses the tracer's zero values; an enum whose first variant
//!   contains the enum itself; nesting deeper than 64 levels) falls back
//!   to `name:` + its [`std::any::type_name`] with every path stripped to
//!   its last segment (`alloc::vec::Vec<producer::Trade>` → `Vec<Trade>`).
//! * **`Pod` and in-place types** ([`PodQueue<T>`](crate::queue::PodQueue),
//!   [`ShmArray<T>`](crate::ShmArray), every [`ShmBox<T>`](crate::ShmBox):
//!   `Mutex<T>`, `ShmValue<T>`, …): `pod:` + the path-stripped type name +
//!   `:` + size + `:` + alignment. These types have no field names to
//!   trace, so the (stripped) name stands for the shape: rename the type
//!   and the tag changes. `type_name`'s text is not promised to be stable
//!   across compiler versions; binaries built by different compilers that
//!   disagree on it need an explicit tag.
//! * **maps** hash `map:` + the key's description + `|` + the value's.
//!
//! # Explicit tags and opting out
//!
//! [`TypeTag::named`]`("trade-v1")` hashes `tag:trade-v1`: the same name
//! matches across Rust types (a producer's `Trade` and a consumer's
//! `(u64, f64)`), and replaces the derived tag on both sides. The creator
//! sets it for everything it creates inside [`TypeTag::scope`]; an opener
//! either opens inside the same kind of scope (this also covers
//! `open_or_create` and [`Shared::attach`](crate::process::Shared::attach)
//! in a spawned child) or passes [`OpenOptions::type_tag`].
//!
//! [`TypeTag::ANY`] (0) opts out: a creator scoped with it records 0
//! ("untyped", the creator promises nothing), and an opener expecting it
//! accepts any tag. A header tag of 0, also what untyped objects such as a
//! byte [`MpmcQueue`](crate::queue::MpmcQueue) or [`ShmDict`](crate::ShmDict)
//! record, is accepted by every typed opener: the check refuses only when
//! both sides named a type and the names differ. Everything else is
//! strict by default.
//!
//! The cost is paid at create and open only (tracing a type takes
//! microseconds); nothing is checked per message.

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Samples, Tracer, TracerConfig,
};

use super::header::OpenOptions;
use super::trace_depth;
use crate::error::AttachError;

/// The fingerprint of a typed object's element type (see the
/// [module docs](self) for how it is derived and compared).
///
/// ```
/// use shmkit::segment::TypeTag;
///
/// mod producer {
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub struct Trade { pub id: u64, pub px: f64 }
/// }
/// mod consumer {
///     #[derive(serde::Serialize, serde::Deserialize)]
///     pub struct Trade { pub id: u64, pub px: f64 }
/// }
/// // Same shape in two modules (or two binaries): same tag.
/// assert_eq!(TypeTag::of_serde::<producer::Trade>(), TypeTag::of_serde::<consumer::Trade>());
/// assert_ne!(TypeTag::of_serde::<producer::Trade>(), TypeTag::of_serde::<(u8, String)>());
/// assert_eq!(TypeTag::named("trade-v1"), TypeTag::named("trade-v1"));
/// assert!(TypeTag::ANY.is_any());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeTag(u64);

impl std::fmt::Debug for TypeTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TypeTag({:#018x})", self.0)
    }
}

impl std::fmt::Display for TypeTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

thread_local! {
    /// The explicit tag of the innermost [`TypeTag::scope`] on this thread.
    static SCOPE: Cell<Option<TypeTag>> = const { Cell::new(None) };
    /// The tag the next `create_object` on this thread writes (set by a
    /// typed constructor around its untyped creation call).
    static CREATING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Restores a thread-local cell on drop (so a panic inside a scope does
/// not leak the tag into later calls).
struct Restore {
    cell: &'static std::thread::LocalKey<Cell<Option<TypeTag>>>,
    prev: Option<TypeTag>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.cell.with(|c| c.set(self.prev));
    }
}

impl TypeTag {
    /// "No type": a creator that records it promises nothing (header word
    /// 0, accepted by every opener); an opener that expects it accepts any
    /// tag.
    pub const ANY: TypeTag = TypeTag(0);

    /// An explicit tag: the FNV-1a hash of `tag:` + `name`. Objects created
    /// and opened with the same name match whatever Rust types each side
    /// uses.
    ///
    /// ```
    /// use shmkit::segment::TypeTag;
    /// assert_ne!(TypeTag::named("trade-v1"), TypeTag::named("trade-v2"));
    /// assert!(!TypeTag::named("").is_any());
    /// ```
    pub fn named(name: &str) -> TypeTag {
        TypeTag::hash_of(&format!("tag:{name}"))
    }

    /// A tag from its raw header value (0 is [`TypeTag::ANY`]).
    ///
    /// ```
    /// use shmkit::segment::TypeTag;
    /// let t = TypeTag::named("x");
    /// assert_eq!(TypeTag::from_raw(t.get()), t);
    /// ```
    pub const fn from_raw(raw: u64) -> TypeTag {
        TypeTag(raw)
    }

    /// The raw value stored in the header.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether this is [`TypeTag::ANY`].
    pub const fn is_any(self) -> bool {
        self.0 == 0
    }

    /// The derived tag of a serde type (see the [module docs](self)).
    ///
    /// ```
    /// use shmkit::segment::TypeTag;
    /// assert_eq!(TypeTag::of_serde::<Vec<u32>>(), TypeTag::of_serde::<Vec<u32>>());
    /// assert_ne!(TypeTag::of_serde::<Vec<u32>>(), TypeTag::of_serde::<Vec<i32>>());
    /// ```
    pub fn of_serde<T: DeserializeOwned>() -> TypeTag {
        TypeTag::hash_of(&describe_serde::<T>())
    }

    /// The derived tag of a fixed-size, in-place type (`Pod` elements,
    /// locks, values): its path-stripped name, size and alignment.
    ///
    /// ```
    /// use shmkit::segment::TypeTag;
    /// assert_ne!(TypeTag::of_pod::<[f32; 2]>(), TypeTag::of_pod::<[u32; 2]>());
    /// assert_eq!(TypeTag::of_pod::<u64>(), TypeTag::of_pod::<u64>());
    /// ```
    pub fn of_pod<T>() -> TypeTag {
        TypeTag::hash_of(&describe_pod::<T>())
    }

    /// The tag of a map with keys `K` and values `V` (serde types).
    pub fn of_map<K: DeserializeOwned, V: DeserializeOwned>() -> TypeTag {
        TypeTag::hash_of(&format!(
            "map:{}|{}",
            describe_serde::<K>(),
            describe_serde::<V>()
        ))
    }

    fn hash_of(description: &str) -> TypeTag {
        match fnv1a64(description.as_bytes()) {
            0 => TypeTag(1),
            h => TypeTag(h),
        }
    }

    /// Runs `f` with this tag replacing the derived one of every typed
    /// object that `f` creates or opens on this thread (`create`,
    /// `anonymous`, `open`, `open_or_create`,
    /// [`Shared::attach`](crate::process::Shared::attach), …). Scopes
    /// nest; the innermost wins; the tag is restored when `f` returns or
    /// panics. An [`OpenOptions::type_tag`] passed to an open takes
    /// precedence.
    ///
    /// The scope covers *every* typed object made or opened inside `f`,
    /// including those a library makes there for itself (a `Pool`'s
    /// internal arrays, say): keep `f` to the one constructor or open the
    /// tag is meant for.
    ///
    /// ```
    /// use shmkit::queue::Queue;
    /// use shmkit::segment::TypeTag;
    ///
    /// let name = format!("doc-tag-scope-{}", std::process::id());
    /// let v1 = TypeTag::named("point-v1");
    /// let q = v1.scope(|| Queue::<(i32, i32)>::create(&name, 16, 4))?;
    /// // Another Rust type with the same postcard encoding, same explicit tag.
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Point { x: i32, y: i32 }
    /// let r = v1.scope(|| Queue::<Point>::open(&name))?;
    /// q.put((1, 2)).unwrap();
    /// assert_eq!(r.get().unwrap(), Point { x: 1, y: 2 });
    /// // Without the tag, the derived one (Point's shape) is refused.
    /// assert!(Queue::<Point>::open(&name).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        let prev = SCOPE.with(|c| c.replace(Some(self)));
        let _restore = Restore { cell: &SCOPE, prev };
        f()
    }

    /// The tag of the innermost [`scope`](Self::scope) on this thread.
    fn scoped() -> Option<TypeTag> {
        SCOPE.with(Cell::get)
    }
}

/// What a typed constructor records: the scoped explicit tag, or `derived`.
pub(crate) fn creation_tag(derived: TypeTag) -> TypeTag {
    TypeTag::scoped().unwrap_or(derived)
}

/// Runs `create` (which makes exactly one segment through
/// [`create_object_with`](super::create_object_with)) so that the segment
/// records `tag` before it is published.
pub(crate) fn create_tagged<R>(tag: TypeTag, create: impl FnOnce() -> R) -> R {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            CREATING.with(|c| c.set(None));
        }
    }
    CREATING.with(|c| c.set(Some(tag.0)));
    let _clear = Clear;
    create()
}

/// The tag the segment being created on this thread records (taken once).
pub(crate) fn take_creating_tag() -> u64 {
    CREATING.with(|c| c.take()).unwrap_or(0)
}

/// Checks a header's tag `found` against what this opener expects: the
/// tag in `opts`, else the scoped tag, else `derived`. Accepted when either
/// side is [`TypeTag::ANY`] or both agree; otherwise
/// [`AttachError::TypeMismatch`] naming `type_name`.
pub(crate) fn check(
    found: u64,
    derived: TypeTag,
    opts: &OpenOptions,
    type_name: &'static str,
) -> Result<(), AttachError> {
    let expected = opts
        .get_type_tag()
        .or_else(TypeTag::scoped)
        .unwrap_or(derived);
    if found == 0 || expected.is_any() || found == expected.0 {
        return Ok(());
    }
    Err(AttachError::TypeMismatch {
        found,
        expected: expected.0,
        type_name,
    })
}

/// 64-bit FNV-1a of `bytes`.
///
/// ```
/// use shmkit::segment::type_tag::fnv1a64;
/// assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `name` with every path (`a::b::C`) cut to its last segment (`C`),
/// generic arguments included.
///
/// ```
/// use shmkit::segment::type_tag::strip_paths;
/// assert_eq!(strip_paths("alloc::vec::Vec<producer::Trade>"), "Vec<Trade>");
/// assert_eq!(strip_paths("(u8, alloc::string::String)"), "(u8, String)");
/// assert_eq!(strip_paths("[a::b::P; 4]"), "[P; 4]");
/// ```
pub fn strip_paths(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // Where the identifier being written started in `out`.
    let mut ident_start = 0;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(ident_start);
            continue;
        }
        if !(c.is_alphanumeric() || c == '_') {
            out.push(c);
            ident_start = out.len();
            continue;
        }
        out.push(c);
    }
    out
}

/// The description hashed by [`TypeTag::of_pod`].
pub fn describe_pod<T>() -> String {
    format!(
        "pod:{}:{}:{}",
        strip_paths(std::any::type_name::<T>()),
        std::mem::size_of::<T>(),
        std::mem::align_of::<T>()
    )
}

/// The description hashed by [`TypeTag::of_serde`]: the traced serde shape,
/// or the path-stripped type name where tracing fails (see the
/// [module docs](self)).
///
/// ```
/// use shmkit::segment::type_tag::describe_serde;
///
/// #[derive(serde::Deserialize)]
/// struct Trade { id: u64, px: f64 }
/// assert_eq!(describe_serde::<Trade>(), "serde:@Trade;Trade={id:u64,px:f64}");
/// assert_eq!(describe_serde::<(u8, String)>(), "serde:tup(u8,str)");
/// ```
pub fn describe_serde<T: DeserializeOwned>() -> String {
    match trace::<T>() {
        Some(d) => d,
        None => format!("name:{}", strip_paths(std::any::type_name::<T>())),
    }
}

fn trace<T: DeserializeOwned>() -> Option<String> {
    let mut tracer = Tracer::new(TracerConfig::default());
    let samples = Samples::new();
    // Through a depth limit: the tracer recurses forever on an enum whose
    // first variant contains the enum itself.
    let (mut root, _) = tracer
        .trace_type_with_seed(&samples, trace_depth::Root::<T>::new())
        .ok()?;
    root.normalize().ok()?;
    let registry = tracer.registry().ok()?;
    let mut out = String::from("serde:");
    write_format(&mut out, &root);
    for (name, container) in &registry {
        out.push(';');
        out.push_str(name);
        out.push('=');
        write_container(&mut out, container);
    }
    Some(out)
}

fn write_list(out: &mut String, items: &[Format]) {
    for (i, f) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_format(out, f);
    }
}

fn write_fields(out: &mut String, fields: &[Named<Format>]) {
    out.push('{');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&f.name);
        out.push(':');
        write_format(out, &f.value);
    }
    out.push('}');
}

fn write_format(out: &mut String, f: &Format) {
    let word = match f {
        Format::Unit => "unit",
        Format::Bool => "bool",
        Format::I8 => "i8",
        Format::I16 => "i16",
        Format::I32 => "i32",
        Format::I64 => "i64",
        Format::I128 => "i128",
        Format::U8 => "u8",
        Format::U16 => "u16",
        Format::U32 => "u32",
        Format::U64 => "u64",
        Format::U128 => "u128",
        Format::F32 => "f32",
        Format::F64 => "f64",
        Format::Char => "char",
        Format::Str => "str",
        Format::Bytes => "bytes",
        // Normalized formats have no variables left; write a marker rather
        // than fail (the description stays deterministic).
        Format::Variable(_) => "?",
        Format::TypeName(name) => {
            out.push('@');
            out.push_str(name);
            return;
        }
        Format::Option(inner) => {
            out.push_str("opt(");
            write_format(out, inner);
            out.push(')');
            return;
        }
        Format::Seq(inner) => {
            out.push_str("seq(");
            write_format(out, inner);
            out.push(')');
            return;
        }
        Format::Map { key, value } => {
            out.push_str("map(");
            write_format(out, key);
            out.push(',');
            write_format(out, value);
            out.push(')');
            return;
        }
        Format::Tuple(items) => {
            out.push_str("tup(");
            write_list(out, items);
            out.push(')');
            return;
        }
        Format::TupleArray { content, size } => {
            out.push_str("arr(");
            write_format(out, content);
            out.push_str(&format!(";{size})"));
            return;
        }
    };
    out.push_str(word);
}

fn write_container(out: &mut String, c: &ContainerFormat) {
    match c {
        ContainerFormat::UnitStruct => out.push_str("unit"),
        ContainerFormat::NewTypeStruct(f) => {
            out.push_str("newtype(");
            write_format(out, f);
            out.push(')');
        }
        ContainerFormat::TupleStruct(items) => {
            out.push_str("tuple(");
            write_list(out, items);
            out.push(')');
        }
        ContainerFormat::Struct(fields) => write_fields(out, fields),
        ContainerFormat::Enum(variants) => {
            out.push_str("enum{");
            for (i, (index, v)) in variants.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{index}:{}", v.name));
                write_variant(out, &v.value);
            }
            out.push('}');
        }
    }
}

fn write_variant(out: &mut String, v: &serde_reflection::VariantFormat) {
    use serde_reflection::VariantFormat as V;
    out.push('=');
    match v {
        V::Unit => out.push_str("unit"),
        V::Variable(_) => out.push('?'),
        V::NewType(f) => {
            out.push_str("newtype(");
            write_format(out, f);
            out.push(')');
        }
        V::Tuple(items) => {
            out.push_str("tuple(");
            write_list(out, items);
            out.push(')');
        }
        V::Struct(fields) => write_fields(out, fields),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    mod a {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Trade {
            pub id: u64,
            pub px: f64,
        }
    }
    mod b {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Trade {
            pub id: u64,
            pub px: f64,
        }
    }
    mod changed {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Trade {
            pub id: u64,
            pub px: f32,
        }
    }

    #[derive(Serialize, Deserialize)]
    enum Side {
        Buy,
        Sell { qty: u32 },
        Cancel(u64),
    }

    #[derive(Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(u32, Box<List>),
    }

    /// The tracer takes the first variant of an enum it is already inside:
    /// without the depth limit this overflows the stack (an abort).
    #[derive(Serialize, Deserialize)]
    enum FirstVariantRecurses {
        Cons(u32, Box<FirstVariantRecurses>),
        Nil,
    }

    #[derive(Serialize, Deserialize)]
    struct Outer(Box<Inner>);
    #[derive(Serialize, Deserialize)]
    enum Inner {
        Again(Outer),
        End,
    }

    #[test]
    fn same_shape_in_two_modules_matches_and_a_change_does_not() {
        assert_eq!(
            TypeTag::of_serde::<a::Trade>(),
            TypeTag::of_serde::<b::Trade>()
        );
        assert_ne!(
            TypeTag::of_serde::<a::Trade>(),
            TypeTag::of_serde::<changed::Trade>()
        );
        assert_ne!(
            TypeTag::of_serde::<a::Trade>(),
            TypeTag::of_serde::<(u8, String)>()
        );
    }

    #[test]
    fn descriptions_are_pinned() {
        // The hash of a description is part of the on-segment format:
        // changing these strings breaks every peer built before the change.
        assert_eq!(
            describe_serde::<Side>(),
            "serde:@Side;Side=enum{0:Buy=unit,1:Sell={qty:u32},2:Cancel=newtype(u64)}"
        );
        assert_eq!(
            describe_serde::<List>(),
            "serde:@List;List=enum{0:Nil=unit,1:Cons=tuple(u32,@List)}"
        );
        assert_eq!(
            describe_serde::<Option<std::collections::BTreeMap<String, [u16; 3]>>>(),
            "serde:opt(map(str,arr(u16;3)))"
        );
        assert_eq!(describe_pod::<[u32; 2]>(), "pod:[u32; 2]:8:4");
        assert_eq!(
            TypeTag::named("trade-v1").get(),
            fnv1a64(b"tag:trade-v1"),
            "explicit tags hash their name with a prefix"
        );
    }

    #[test]
    fn untraceable_types_fall_back_to_the_stripped_name() {
        // NonZeroU32 refuses the tracer's zero value.
        let want = format!(
            "name:{}",
            strip_paths(std::any::type_name::<std::num::NonZeroU32>())
        );
        assert_eq!(describe_serde::<std::num::NonZeroU32>(), want);
        assert!(!want.contains("::"));
    }

    #[test]
    fn recursion_through_a_first_variant_falls_back_instead_of_overflowing() {
        assert_eq!(
            describe_serde::<FirstVariantRecurses>(),
            "name:FirstVariantRecurses"
        );
        assert_eq!(describe_serde::<Outer>(), "name:Outer");
        assert_eq!(describe_serde::<Vec<Outer>>(), "name:Vec<Outer>");
        // The limit is per nesting, not per call: tracing still works after.
        assert_eq!(describe_serde::<(u8, bool)>(), "serde:tup(u8,bool)");
    }

    #[test]
    fn check_accepts_any_on_either_side_and_refuses_a_difference() {
        let t = TypeTag::of_serde::<a::Trade>();
        let opts = OpenOptions::new();
        assert!(check(t.get(), t, &opts, "T").is_ok());
        assert!(check(0, t, &opts, "T").is_ok(), "untyped header");
        let other = TypeTag::of_serde::<u8>().get();
        assert!(matches!(
            check(other, t, &opts, "T"),
            Err(AttachError::TypeMismatch { found, expected, .. })
                if found == other && expected == t.get()
        ));
        let any = OpenOptions::new().type_tag(TypeTag::ANY);
        assert!(check(other, t, &any, "T").is_ok());
        let named = TypeTag::named("n");
        assert!(named.scope(|| check(named.get(), t, &opts, "T")).is_ok());
        assert!(check(named.get(), t, &opts, "T").is_err(), "scope ended");
    }
}
