//! Element-type fingerprints of typed objects (issue 10, item 4): opening a
//! typed object as another type is refused with
//! `AttachError::TypeMismatch` on every path (open, open_with,
//! open_or_create, from_segment / from_mpmc / from_dict, handoff), the same
//! type defined in two places matches, and explicit tags override.

mod common;

use common::unique_name;
use serde::{Deserialize, Serialize};
use shmkit::process::{Handoff, Shared};
use shmkit::queue::{JoinableQueue, MpmcQueue, PodQueue, Queue};
use shmkit::segment::{OpenOptions, TypeTag};
use shmkit::{AttachError, DictConfig, Error, Mutex, SegmentObject, ShmArray, ShmBox, ShmMap};

/// The producer's definition.
mod producer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    pub struct Trade {
        pub id: u64,
        pub px: f64,
    }

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u32,
        pub px: f32,
    }
}

/// The consumer's own copy, as a separately built binary would have it.
mod consumer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    pub struct Trade {
        pub id: u64,
        pub px: f64,
    }

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u32,
        pub px: f32,
    }
}

/// A later version with one field's type changed.
mod changed {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Trade {
        pub id: u64,
        pub px: f32,
    }
}

/// A later version with one field renamed.
mod renamed {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Trade {
        pub id: u64,
        pub price: f64,
    }
}

use producer::Trade;

fn trade() -> Trade {
    Trade { id: 7, px: 101.5 }
}

/// Asserts a type mismatch naming both tags.
#[track_caller]
fn assert_mismatch<T>(r: Result<T, AttachError>, found: TypeTag, expected: TypeTag) {
    match r {
        Err(AttachError::TypeMismatch {
            found: f,
            expected: e,
            type_name,
        }) => {
            assert_eq!((f, e), (found.get(), expected.get()), "tags in the error");
            assert!(!type_name.is_empty());
        }
        Err(other) => panic!("expected TypeMismatch, got {other}"),
        Ok(_) => panic!("expected TypeMismatch, the open succeeded"),
    }
}

#[test]
fn queue_of_tuple_is_refused_on_a_queue_of_trade() {
    let name = unique_name("ty-q");
    let q = Queue::<Trade>::create(&name, 64, 4).unwrap();
    q.put(trade()).unwrap();
    let mine = TypeTag::of_serde::<Trade>();
    let wrong = TypeTag::of_serde::<(u8, String)>();

    assert_mismatch(Queue::<(u8, String)>::open(&name), mine, wrong);
    assert_mismatch(
        Queue::<(u8, String)>::open_with(&name, &OpenOptions::new()),
        mine,
        wrong,
    );
    match Queue::<(u8, String)>::open_or_create(&name, 64, 4) {
        Err(Error::Attach(e)) => assert_mismatch::<()>(Err(e), mine, wrong),
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let bytes = MpmcQueue::open(&name).unwrap();
    assert_mismatch(Queue::<(u8, String)>::from_mpmc(bytes), mine, wrong);
    let e = Queue::<(u8, String)>::open(&name).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("{:#018x}", mine.get()))
            && msg.contains(&format!("{:#018x}", wrong.get()))
            && msg.contains("TypeTag::ANY"),
        "the message names both tags and the override: {msg}"
    );
    // The right type still reads the value.
    let ok = Queue::<Trade>::open(&name).unwrap();
    assert_eq!(ok.get_nowait(), Ok(trade()));
}

#[test]
fn same_struct_in_two_modules_matches() {
    let name = unique_name("ty-same");
    let q = Queue::<producer::Trade>::create(&name, 64, 4).unwrap();
    let r = Queue::<consumer::Trade>::open(&name).unwrap();
    q.put(trade()).unwrap();
    assert_eq!(r.get_nowait(), Ok(consumer::Trade { id: 7, px: 101.5 }));

    let pname = unique_name("ty-same-pod");
    let p = PodQueue::<producer::Tick>::create(&pname, 4).unwrap();
    let c = PodQueue::<consumer::Tick>::open(&pname).unwrap();
    p.put(producer::Tick { seq: 1, px: 2.5 }).unwrap();
    assert_eq!(c.get_nowait(), Ok(consumer::Tick { seq: 1, px: 2.5 }));

    let bname = unique_name("ty-same-box");
    let m = ShmBox::<Mutex<producer::Tick>>::create(&bname, producer::Tick { seq: 3, px: 0.5 })
        .unwrap();
    let n = ShmBox::<Mutex<consumer::Tick>>::open(&bname).unwrap();
    assert_eq!(n.lock().unwrap().seq, 3);
    drop(m);
}

#[test]
fn a_changed_or_renamed_field_is_refused() {
    let name = unique_name("ty-changed");
    let _q = Queue::<Trade>::create(&name, 64, 4).unwrap();
    assert_mismatch(
        Queue::<changed::Trade>::open(&name),
        TypeTag::of_serde::<Trade>(),
        TypeTag::of_serde::<changed::Trade>(),
    );
    assert_mismatch(
        Queue::<renamed::Trade>::open(&name),
        TypeTag::of_serde::<Trade>(),
        TypeTag::of_serde::<renamed::Trade>(),
    );
}

#[test]
fn explicit_tag_matches_across_rust_types() {
    let name = unique_name("ty-named");
    let v1 = TypeTag::named("trade-v1");
    let q = v1.scope(|| Queue::<Trade>::create(&name, 64, 4)).unwrap();
    // Another Rust type with the same encoding, opened with the same tag.
    let r = Queue::<(u64, f64)>::open_with(&name, &OpenOptions::new().type_tag(v1)).unwrap();
    q.put(trade()).unwrap();
    assert_eq!(r.get_nowait(), Ok((7, 101.5)));
    // ... also inside a scope, and through open_or_create.
    let s = v1.scope(|| Queue::<(u64, f64)>::open(&name)).unwrap();
    let t = v1
        .scope(|| Queue::<(u64, f64)>::open_or_create(&name, 64, 4))
        .unwrap();
    assert_eq!((s.capacity(), t.capacity()), (4, 4));
    // The explicit tag replaced the derived one: even Trade itself needs it.
    assert_mismatch(
        Queue::<Trade>::open(&name),
        v1,
        TypeTag::of_serde::<Trade>(),
    );
    let v2 = TypeTag::named("trade-v2");
    assert_mismatch(
        Queue::<(u64, f64)>::open_with(&name, &OpenOptions::new().type_tag(v2)),
        v1,
        v2,
    );
    // Opting out on the opener's side accepts anything.
    let any = Queue::<(u8, String)>::open_with(&name, &OpenOptions::new().type_tag(TypeTag::ANY));
    assert!(any.is_ok());
}

#[test]
fn untyped_creators_are_accepted() {
    // A creator scoped with ANY records no type.
    let name = unique_name("ty-any");
    let _q = TypeTag::ANY
        .scope(|| Queue::<Trade>::create(&name, 64, 4))
        .unwrap();
    assert!(Queue::<(u8, String)>::open(&name).is_ok());
    // So does a byte queue: wrapping it in a typed view is accepted.
    let bname = unique_name("ty-bytes");
    let b = MpmcQueue::create(&bname, 16, 4).unwrap();
    b.sender().unwrap().try_send(&[3, 0]).unwrap();
    let typed = Queue::<(u8, u8)>::open(&bname).unwrap();
    assert_eq!(typed.get_nowait(), Ok((3, 0)));
}

#[test]
fn pod_queue_of_same_size_other_type_is_refused() {
    let name = unique_name("ty-pod");
    let _q = PodQueue::<[f32; 2]>::create(&name, 4).unwrap();
    assert_mismatch(
        PodQueue::<[u32; 2]>::open(&name),
        TypeTag::of_pod::<[f32; 2]>(),
        TypeTag::of_pod::<[u32; 2]>(),
    );
    assert_mismatch(
        PodQueue::<consumer::Tick>::open(&name),
        TypeTag::of_pod::<[f32; 2]>(),
        TypeTag::of_pod::<consumer::Tick>(),
    );
    // Another size is still the more specific parameter mismatch.
    assert!(matches!(
        PodQueue::<u32>::open(&name),
        Err(AttachError::ParamMismatch {
            found: 8,
            expected: 4,
            ..
        })
    ));
}

#[test]
fn joinable_queue_is_refused() {
    let name = unique_name("ty-jq");
    let _q = JoinableQueue::<Trade>::create(&name, 64, 4).unwrap();
    assert_mismatch(
        JoinableQueue::<(u8, String)>::open(&name),
        TypeTag::of_serde::<Trade>(),
        TypeTag::of_serde::<(u8, String)>(),
    );
    assert!(JoinableQueue::<consumer::Trade>::open(&name).is_ok());
    let pname = unique_name("ty-jq-pod");
    let _p = JoinableQueue::<u64, _>::create_pod(&pname, 4).unwrap();
    assert_mismatch(
        JoinableQueue::<i64, shmkit::queue::PodCodec>::open(&pname),
        TypeTag::of_pod::<u64>(),
        TypeTag::of_pod::<i64>(),
    );
}

#[test]
fn map_is_refused() {
    let name = unique_name("ty-map");
    let cfg = DictConfig::for_entries(16, 16, 8).unwrap();
    let m = ShmMap::<String, u32>::create(&name, cfg).unwrap();
    m.set("a", &1).unwrap();
    assert_mismatch(
        ShmMap::<String, i32>::open(&name),
        TypeTag::of_map::<String, u32>(),
        TypeTag::of_map::<String, i32>(),
    );
    assert_mismatch(
        ShmMap::<u32, u32>::open(&name),
        TypeTag::of_map::<String, u32>(),
        TypeTag::of_map::<u32, u32>(),
    );
    let ok = ShmMap::<String, u32>::open(&name).unwrap();
    assert_eq!(ok.get("a").unwrap(), Some(1));
}

#[test]
fn array_is_refused() {
    let name = unique_name("ty-arr");
    let _a = ShmArray::<f32>::create(&name, 4).unwrap();
    assert_mismatch(
        ShmArray::<u32>::open(&name),
        TypeTag::of_pod::<f32>(),
        TypeTag::of_pod::<u32>(),
    );
    assert_eq!(ShmArray::<f32>::open(&name).unwrap().len(), 4);
    let cname = unique_name("ty-arr-copy");
    let _b = ShmArray::<u16>::create_from(&cname, &[1, 2]).unwrap();
    assert_mismatch(
        ShmArray::<i16>::open(&cname),
        TypeTag::of_pod::<u16>(),
        TypeTag::of_pod::<i16>(),
    );
}

#[test]
fn boxed_mutex_is_refused() {
    let name = unique_name("ty-box");
    let _m = ShmBox::<Mutex<[u32; 2]>>::create(&name, [1, 2]).unwrap();
    assert_mismatch(
        ShmBox::<Mutex<[f32; 2]>>::open(&name),
        TypeTag::of_pod::<Mutex<[u32; 2]>>(),
        TypeTag::of_pod::<Mutex<[f32; 2]>>(),
    );
    assert_mismatch(
        ShmBox::<Mutex<producer::Tick>>::open(&name),
        TypeTag::of_pod::<Mutex<[u32; 2]>>(),
        TypeTag::of_pod::<Mutex<producer::Tick>>(),
    );
}

#[test]
fn anonymous_handoff_is_refused() {
    let q = Queue::<Trade>::anonymous(64, 4).unwrap();
    q.put(trade()).unwrap();
    // What a child re-creating the handle from the inherited segment does.
    let seg = Shared::new(q.segment().unwrap()).unwrap().attach().unwrap();
    assert_mismatch(
        <Queue<(u8, String)> as Handoff>::from_handoff(seg),
        TypeTag::of_serde::<Trade>(),
        TypeTag::of_serde::<(u8, String)>(),
    );
    let seg = Shared::new(q.segment().unwrap()).unwrap().attach().unwrap();
    let back = <Queue<consumer::Trade> as Handoff>::from_handoff(seg).unwrap();
    assert_eq!(back.get_nowait(), Ok(consumer::Trade { id: 7, px: 101.5 }));

    let a = ShmArray::<f64>::anonymous(2).unwrap();
    let seg = Shared::new(a.segment()).unwrap().attach().unwrap();
    assert_mismatch(
        <ShmArray<u64> as Handoff>::from_handoff(seg),
        TypeTag::of_pod::<f64>(),
        TypeTag::of_pod::<u64>(),
    );
}

#[test]
fn explicit_tag_through_handoff_scope() {
    let v = TypeTag::named("ticks");
    let q = v.scope(|| PodQueue::<[f32; 2]>::anonymous(4)).unwrap();
    q.put([1.0, 2.0]).unwrap();
    let seg = Shared::new(q.segment().unwrap()).unwrap().attach().unwrap();
    let r = v
        .scope(|| <PodQueue<consumer::Tick> as Handoff>::from_handoff(seg))
        .unwrap();
    assert_eq!(
        r.get_nowait().unwrap(),
        consumer::Tick {
            seq: 1.0f32.to_bits(),
            px: 2.0
        }
    );
}

#[derive(Serialize, Deserialize)]
struct Unused;

#[test]
fn scope_is_restored_after_a_panic() {
    let v = TypeTag::named("p");
    let r = std::panic::catch_unwind(|| v.scope(|| panic!("inside")));
    assert!(r.is_err());
    let name = unique_name("ty-scope");
    let _q = Queue::<Unused>::create(&name, 8, 2).unwrap();
    // Had the scope leaked, this create would have recorded "p".
    let seen = shmkit::segment::inspect(&name).unwrap();
    assert_eq!(seen.report().type_tag, TypeTag::of_serde::<Unused>().get());
}

#[test]
fn inspect_reports_the_recorded_tag() {
    let name = unique_name("ty-inspect");
    let v = TypeTag::named("x");
    let _a = v.scope(|| ShmArray::<u8>::create(&name, 1)).unwrap();
    let seen = shmkit::segment::inspect(&name).unwrap();
    assert_eq!(seen.report().type_tag, v.get());
    let bname = unique_name("ty-inspect-bytes");
    let _b = MpmcQueue::create(&bname, 8, 2).unwrap();
    let seen = shmkit::segment::inspect(&bname).unwrap();
    assert_eq!(seen.report().type_tag, 0, "byte queues are untyped");
}
