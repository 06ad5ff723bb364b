//! Cross-process tests of element-type fingerprints (issue 10, item 4): a
//! forked or spawned child that opens a typed object as another type than
//! its creator used is refused with `AttachError::TypeMismatch`; the same
//! type defined in the child's own module is accepted, and so is an
//! explicit tag both sides name.
//!
//! `harness = false`: `main` calls `shmkit::process::init()` first (so this
//! binary can be re-executed as a child), then runs the cases one after
//! another on the main thread with `common::run`.

mod common;

use std::time::Duration;

use common::{fork, unique_name, Exit};
use shmkit::process::{ExitStatus, Handoff, Process, Shared};
use shmkit::queue::{PodQueue, Queue};
use shmkit::segment::TypeTag;
use shmkit::{AttachError, Segment, SegmentObject, ShmArray};

/// A hang watchdog for waits on other processes, not a time limit.
const LONG: Duration = Duration::from_secs(60);

/// The parent's definition.
mod producer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Trade {
        pub id: u64,
        pub px: f64,
    }
}

/// The child's own copy (as a separately built binary would define it).
mod consumer {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    pub struct Trade {
        pub id: u64,
        pub px: f64,
    }
}

/// Exit codes of the children.
const REFUSED: i32 = 10;
const OPENED: i32 = 11;
const OTHER_ERROR: i32 = 12;
const RIGHT_VALUE: i32 = 13;
const WRONG_VALUE: i32 = 14;

fn verdict<T>(r: Result<T, AttachError>) -> i32 {
    match r {
        Err(AttachError::TypeMismatch { .. }) => REFUSED,
        Err(_) => OTHER_ERROR,
        Ok(_) => OPENED,
    }
}

// ----------------------------------------------------------------- entries

/// Re-creates the queue behind `seg` as a `Queue<(u8, String)>`.
fn attach_as_tuple(seg: Shared<Segment>) -> i32 {
    match seg.attach() {
        Ok(seg) => verdict(<Queue<(u8, String)> as Handoff>::from_handoff(seg)),
        Err(_) => OTHER_ERROR,
    }
}

/// Re-creates the queue behind `seg` as a `Queue<consumer::Trade>` and
/// checks the value the parent queued.
fn attach_as_own_trade(seg: Shared<Segment>) -> i32 {
    let Ok(seg) = seg.attach() else {
        return OTHER_ERROR;
    };
    match <Queue<consumer::Trade> as Handoff>::from_handoff(seg) {
        Ok(q) => match q.get_timeout(LONG) {
            Ok(consumer::Trade { id: 7, px: 1.5 }) => RIGHT_VALUE,
            _ => WRONG_VALUE,
        },
        Err(e) => verdict::<()>(Err(e)),
    }
}

/// Re-creates the array behind `seg` as an `ShmArray<u32>`.
fn attach_as_u32_array(seg: Shared<Segment>) -> i32 {
    match seg.attach() {
        Ok(seg) => verdict(<ShmArray<u32> as Handoff>::from_handoff(seg)),
        Err(_) => OTHER_ERROR,
    }
}

/// Re-creates the queue behind `seg` as a `PodQueue<[u32; 2]>` under the
/// explicit tag "pair".
fn attach_pair_tagged(seg: Shared<Segment>) -> i32 {
    let Ok(seg) = seg.attach() else {
        return OTHER_ERROR;
    };
    let r = TypeTag::named("pair").scope(|| <PodQueue<[u32; 2]> as Handoff>::from_handoff(seg));
    match r {
        Ok(q) => match q.get_timeout(LONG) {
            Ok([3, 4]) => RIGHT_VALUE,
            _ => WRONG_VALUE,
        },
        Err(e) => verdict::<()>(Err(e)),
    }
}

shmkit::entry! {
    static ATTACH_AS_TUPLE: Entry<Shared<Segment>> = attach_as_tuple;
    static ATTACH_AS_OWN_TRADE: Entry<Shared<Segment>> = attach_as_own_trade;
    static ATTACH_AS_U32_ARRAY: Entry<Shared<Segment>> = attach_as_u32_array;
    static ATTACH_PAIR_TAGGED: Entry<Shared<Segment>> = attach_pair_tagged;
}

fn spawn_code(entry: &'static shmkit::process::Entry<Shared<Segment>>, seg: &Segment) -> i32 {
    let kid = Process::builder()
        .spawn(entry, &Shared::new(seg).unwrap())
        .unwrap();
    match kid.join_timeout(LONG).unwrap() {
        Some(ExitStatus::Code(c)) => c,
        other => panic!("child ended with {other:?}"),
    }
}

// ------------------------------------------------------------------- cases

fn forked_child_opening_the_wrong_type_is_refused() {
    let name = unique_name("xty-fork");
    let q = Queue::<producer::Trade>::create(&name, 64, 4).unwrap();
    q.put(producer::Trade { id: 7, px: 1.5 }).unwrap();
    let n = name.clone();
    let mut wrong = fork(move || verdict(Queue::<(u8, String)>::open(&n)));
    assert_eq!(wrong.wait(LONG, "wrong-type child"), Exit::Code(REFUSED));
    let n = name.clone();
    let mut right = fork(move || match Queue::<consumer::Trade>::open(&n) {
        Ok(q) => match q.get_timeout(LONG) {
            Ok(consumer::Trade { id: 7, px: 1.5 }) => RIGHT_VALUE,
            _ => WRONG_VALUE,
        },
        Err(e) => verdict::<()>(Err(e)),
    });
    assert_eq!(
        right.wait(LONG, "same-shape child"),
        Exit::Code(RIGHT_VALUE)
    );
    assert!(q.is_empty(), "the child took the value");
}

fn spawned_child_attaching_the_wrong_type_is_refused() {
    // Anonymous (inherited memfd) and named segments.
    let anon = Queue::<producer::Trade>::anonymous(64, 4).unwrap();
    let seg = anon.segment().unwrap();
    assert_eq!(spawn_code(&ATTACH_AS_TUPLE, seg), REFUSED);
    anon.put(producer::Trade { id: 7, px: 1.5 }).unwrap();
    assert_eq!(spawn_code(&ATTACH_AS_OWN_TRADE, seg), RIGHT_VALUE);

    let name = unique_name("xty-spawn");
    let named = Queue::<producer::Trade>::create(&name, 64, 4).unwrap();
    assert_eq!(
        spawn_code(&ATTACH_AS_TUPLE, named.segment().unwrap()),
        REFUSED
    );

    let arr = ShmArray::<f32>::anonymous(3).unwrap();
    assert_eq!(spawn_code(&ATTACH_AS_U32_ARRAY, arr.segment()), REFUSED);
}

fn spawned_child_with_the_explicit_tag_is_accepted() {
    let tagged = TypeTag::named("pair")
        .scope(|| PodQueue::<[f32; 2]>::anonymous(4))
        .unwrap();
    tagged.put([f32::from_bits(3), f32::from_bits(4)]).unwrap();
    assert_eq!(
        spawn_code(&ATTACH_PAIR_TAGGED, tagged.segment().unwrap()),
        RIGHT_VALUE
    );
    // Without the tag in the child's scope, the derived tag is refused.
    let untagged = PodQueue::<[f32; 2]>::anonymous(4).unwrap();
    assert_eq!(
        spawn_code(&ATTACH_PAIR_TAGGED, untagged.segment().unwrap()),
        REFUSED
    );
}

fn main() {
    shmkit::process::init();
    common::run(
        &[
            (
                "forked_child_opening_the_wrong_type_is_refused",
                forked_child_opening_the_wrong_type_is_refused,
            ),
            (
                "spawned_child_attaching_the_wrong_type_is_refused",
                spawned_child_attaching_the_wrong_type_is_refused,
            ),
            (
                "spawned_child_with_the_explicit_tag_is_accepted",
                spawned_child_with_the_explicit_tag_is_accepted,
            ),
        ],
        120,
    );
}
