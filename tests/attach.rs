//! Attaching to segments whose bytes we wrote ourselves: every malformed
//! header gives its precise `AttachError`, never UB, a panic or a hang.
//!
//! Headers are crafted at the offsets documented in `src/segment/header.rs`
//! (pinned there by `header_layout_is_pinned`).

mod common;

use std::time::Duration;

use common::unique_name;
use shmkit::error::UntrustedSegment;
use shmkit::segment::{ObjectKind, OpenOptions, HEADER_SIZE, LAYOUT_VERSION, MAX_NAME_LEN};
use shmkit::{AttachError, Error, Event, Mutex, Segment, ShmArray, ShmBox, ShmValue};

const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
const READY: u32 = 0x5245_4459;
/// A pid above Linux's `PID_MAX_LIMIT` (2^22): never a live process.
const DEAD_PID: u32 = 0x3FFF_FFFF;

fn short() -> OpenOptions {
    OpenOptions::new().ready_timeout(Duration::from_millis(20))
}

/// A header image, fields at their documented offsets.
#[derive(Clone, Copy)]
struct Header {
    magic: u64,
    version: u32,
    kind: u32,
    total_size: u64,
    body_offset: u64,
    body_len: u64,
    creator_pid: u32,
    ready: u32,
    params: [u64; 8],
}

impl Header {
    /// A valid, published header for an `Event` in a `total`-byte segment.
    fn event(total: u64) -> Self {
        Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            kind: ObjectKind::EVENT.0,
            total_size: total,
            body_offset: HEADER_SIZE as u64,
            body_len: std::mem::size_of::<Event>() as u64,
            creator_pid: std::process::id(),
            ready: READY,
            params: [
                std::mem::size_of::<Event>() as u64,
                std::mem::align_of::<Event>() as u64,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        }
    }

    /// A valid, published header for a `ShmArray<u32>` of `len` elements.
    fn array_u32(total: u64, len: u64) -> Self {
        Header {
            kind: ObjectKind::ARRAY.0,
            body_len: total - HEADER_SIZE as u64,
            params: [4, 4, len, 0, 0, 0, 0, 0],
            ..Header::event(total)
        }
    }

    fn bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.magic.to_le_bytes());
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.kind.to_le_bytes());
        b[16..24].copy_from_slice(&self.total_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.body_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.creator_pid.to_le_bytes());
        b[44..48].copy_from_slice(&self.ready.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            b[64 + 8 * i..72 + 8 * i].copy_from_slice(&p.to_le_bytes());
        }
        b
    }
}

/// A named raw segment of `size` bytes starting with `image`.
fn raw_segment(tag: &str, size: usize, image: &[u8]) -> (String, Segment) {
    let name = unique_name(tag);
    let seg = Segment::create(&name, size).expect("create raw segment");
    assert!(image.len() <= size);
    // SAFETY: the mapping is `size` bytes, freshly created, and nobody else
    // uses it yet.
    unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), seg.as_ptr(), image.len()) };
    (name, seg)
}

/// Opens `name` as an `Event` box and as a `ShmArray<u32>` (by name, and
/// through an already-mapped segment) and returns the three errors.
fn attach_errors(name: &str) -> [AttachError; 3] {
    let ev = ShmBox::<Event>::open_with(name, &short()).expect_err("Event attach must fail");
    let seg = Segment::open(name).expect("the raw segment exists");
    let arr = ShmArray::<u32>::from_segment(seg, &short()).expect_err("array attach must fail");
    let arr_named = ShmArray::<u32>::open(name).expect_err("array open must fail");
    [ev, arr, arr_named]
}

#[test]
fn truncated_header_is_too_small() {
    let (name, _seg) = raw_segment("trunc", 64, &[0xAB; 64]);
    match ShmBox::<Event>::open_with(&name, &short()) {
        Err(AttachError::TooSmall {
            actual: 64,
            required: 128,
        }) => {}
        other => panic!("{other:?}"),
    }
    let seg = Segment::open(&name).unwrap();
    assert!(matches!(
        ShmArray::<u32>::from_segment(seg, &short()),
        Err(AttachError::TooSmall {
            actual: 64,
            required: 128
        })
    ));
}

#[test]
fn zero_filled_is_not_ready_after_timeout() {
    let (name, _seg) = raw_segment("zero", 4096, &[]);
    assert!(matches!(
        ShmBox::<Event>::open_with(&name, &short()),
        Err(AttachError::NotReady(_))
    ));
    let seg = Segment::open(&name).unwrap();
    assert!(matches!(
        ShmArray::<u32>::from_segment(seg, &short()),
        Err(AttachError::NotReady(_))
    ));
}

#[test]
fn live_but_unpublished_creator_is_not_ready() {
    let h = Header {
        ready: 0,
        ..Header::event(4096)
    };
    let (name, _seg) = raw_segment("slow", 4096, &h.bytes());
    match ShmBox::<Event>::open_with(&name, &short()) {
        Err(AttachError::NotReady(why)) => assert!(why.contains("not finished"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn creator_died_before_publishing_is_not_ready() {
    let h = Header {
        ready: 0,
        creator_pid: DEAD_PID,
        ..Header::event(4096)
    };
    let (name, _seg) = raw_segment("died", 4096, &h.bytes());
    // A long ready timeout: the dead creator must be noticed without it.
    let patient = OpenOptions::new().ready_timeout(Duration::from_secs(600));
    for r in [
        ShmBox::<Event>::open_with(&name, &patient).unwrap_err(),
        ShmArray::<u32>::from_segment(Segment::open(&name).unwrap(), &patient).unwrap_err(),
        ShmArray::<u32>::open(&name).unwrap_err(),
    ] {
        match r {
            AttachError::NotReady(why) => assert!(why.contains("died"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn random_bytes_are_bad_magic() {
    let mut rng = common::Rng::new(0x5eed);
    for _ in 0..20 {
        let image: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let (name, _seg) = raw_segment("rand", 4096, &image);
        for e in attach_errors(&name) {
            match e {
                AttachError::Corrupt(why) => assert!(why.contains("magic"), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn wrong_version_is_version_mismatch() {
    let h = Header {
        version: LAYOUT_VERSION + 98,
        ..Header::event(4096)
    };
    let (name, _seg) = raw_segment("ver", 4096, &h.bytes());
    for e in attach_errors(&name) {
        match e {
            AttachError::VersionMismatch { found, expected } => {
                assert_eq!((found, expected), (LAYOUT_VERSION + 98, LAYOUT_VERSION))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn wrong_kind_is_kind_mismatch() {
    let h = Header {
        kind: ObjectKind::SEMAPHORE.0,
        ..Header::event(4096)
    };
    let (name, _seg) = raw_segment("kind", 4096, &h.bytes());
    let [ev, arr, arr_named] = attach_errors(&name);
    assert!(matches!(ev, AttachError::KindMismatch { found, expected }
        if found == ObjectKind::SEMAPHORE.0 && expected == ObjectKind::EVENT.0));
    for e in [arr, arr_named] {
        assert!(matches!(e, AttachError::KindMismatch { found, expected }
            if found == ObjectKind::SEMAPHORE.0 && expected == ObjectKind::ARRAY.0));
    }
    // And a real object of another kind.
    let name = unique_name("kind-real");
    let _ev = ShmBox::<Event>::create(&name, ()).unwrap();
    assert!(matches!(
        ShmBox::<shmkit::Semaphore>::open_with(&name, &short()),
        Err(AttachError::KindMismatch { .. })
    ));
    assert!(matches!(
        ShmArray::<u32>::open(&name),
        Err(AttachError::KindMismatch { .. })
    ));
}

#[test]
fn total_size_beyond_the_file_is_too_small() {
    for total in [1u64 << 20, 4097, u64::MAX] {
        let ev = Header {
            total_size: total,
            ..Header::event(4096)
        };
        let arr = Header {
            total_size: total,
            ..Header::array_u32(4096, 1)
        };
        for h in [ev, arr] {
            let (name, _seg) = raw_segment("total", 4096, &h.bytes());
            let [e_ev, e_arr, e_arr_named] = attach_errors(&name);
            let relevant = if h.kind == ObjectKind::EVENT.0 {
                vec![e_ev]
            } else {
                vec![e_arr, e_arr_named]
            };
            for e in relevant {
                match e {
                    AttachError::TooSmall { actual, required } => {
                        assert_eq!((actual, required), (4096, total))
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}

#[test]
fn body_out_of_range_is_corrupt() {
    let base = Header::event(4096);
    let bad = [
        Header {
            body_offset: 0,
            ..base
        },
        Header {
            body_offset: 64,
            ..base
        },
        Header {
            body_offset: 136,
            ..base
        },
        Header {
            body_offset: 4096,
            body_len: 16,
            ..base
        },
        Header {
            body_offset: 128,
            body_len: 4096,
            ..base
        },
        Header {
            body_offset: 1 << 62,
            body_len: 1 << 62,
            ..base
        },
        Header {
            body_offset: u64::MAX - 63,
            body_len: 64,
            ..base
        },
        Header {
            body_offset: 128,
            body_len: u64::MAX,
            ..base
        },
    ];
    for h in bad {
        let (name, _seg) = raw_segment("body", 4096, &h.bytes());
        let [ev, _, _] = attach_errors(&name);
        assert!(matches!(ev, AttachError::Corrupt(_)), "{ev:?}");
        let h = Header {
            kind: ObjectKind::ARRAY.0,
            params: [4, 4, 1, 0, 0, 0, 0, 0],
            ..h
        };
        let (name, _seg) = raw_segment("body-arr", 4096, &h.bytes());
        let [_, arr, arr_named] = attach_errors(&name);
        for e in [arr, arr_named] {
            assert!(matches!(e, AttachError::Corrupt(_)), "{e:?}");
        }
    }
    // An object body too short for the type itself.
    let h = Header {
        body_len: 8,
        ..base
    };
    let (name, _seg) = raw_segment("body-short", 4096, &h.bytes());
    let ev = ShmBox::<Event>::open_with(&name, &short()).unwrap_err();
    assert!(matches!(ev, AttachError::Corrupt(_)), "{ev:?}");
}

#[test]
fn array_length_beyond_the_body_is_refused() {
    // 1000 u32s do not fit in a 4096 - 128 byte body.
    let h = Header::array_u32(4096, 1000);
    let (name, _seg) = raw_segment("arr-len", 4096, &h.bytes());
    let [_, arr, arr_named] = attach_errors(&name);
    for e in [arr, arr_named] {
        assert!(matches!(e, AttachError::TooSmall { .. }), "{e:?}");
    }
    // Lengths whose byte size overflows are Corrupt (or too small), never
    // a panic, for every element size.
    for len in [
        u64::MAX,
        u64::MAX / 4,
        u64::MAX / 4 - 1,
        u64::MAX - 8,
        (1 << 62) - 4,
    ] {
        for (size, align) in [(1u64, 1u64), (4, 4), (8, 8)] {
            let h = Header {
                params: [size, align, len, 0, 0, 0, 0, 0],
                ..Header::array_u32(4096, 0)
            };
            let (name, seg) = raw_segment("arr-huge", 4096, &h.bytes());
            let r = match size {
                1 => ShmArray::<u8>::from_segment(seg, &short()).map(drop),
                4 => ShmArray::<u32>::from_segment(seg, &short()).map(drop),
                _ => ShmArray::<u64>::from_segment(seg, &short()).map(drop),
            };
            match r {
                Err(AttachError::Corrupt(_)) | Err(AttachError::TooSmall { .. }) => {}
                other => panic!("len {len} size {size}: {other:?}"),
            }
            drop(name);
        }
    }
    // A well-formed crafted array attaches and reads its elements.
    let mut image = Header::array_u32(4096, 3).bytes().to_vec();
    image.extend_from_slice(&[0u8; 8]); // the unlocked RawMutex
    for v in [11u32, 22, 33] {
        image.extend_from_slice(&v.to_le_bytes());
    }
    let (name, _seg) = raw_segment("arr-ok", 4096, &image);
    let a = ShmArray::<u32>::open(&name).unwrap();
    assert_eq!(a.to_vec(), vec![11, 22, 33]);
}

#[test]
fn param_mismatch_is_refused() {
    let name = unique_name("param-mutex");
    let _m = ShmBox::<Mutex<u64>>::create(&name, 5).unwrap();
    match ShmBox::<Mutex<u32>>::open_with(&name, &short()) {
        Err(AttachError::ParamMismatch {
            what,
            found,
            expected,
        }) => {
            assert_eq!(what, "object size");
            assert_eq!((found, expected), (16, 12));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        *ShmBox::<Mutex<u64>>::open(&name).unwrap().lock().unwrap(),
        5
    );

    let name = unique_name("param-value");
    let _v = ShmBox::<ShmValue<i64>>::create(&name, -1).unwrap();
    match ShmBox::<ShmValue<u64>>::open_with(&name, &short()) {
        Err(AttachError::ParamMismatch { what, .. }) => assert_eq!(what, "element type code"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ShmBox::<ShmValue<f64>>::open_with(&name, &short()),
        Err(AttachError::ParamMismatch { .. })
    ));
    assert_eq!(ShmBox::<ShmValue<i64>>::open(&name).unwrap().load(), -1);

    let name = unique_name("param-array");
    let _a = ShmArray::<u64>::create(&name, 4).unwrap();
    match ShmArray::<u32>::open(&name) {
        Err(AttachError::ParamMismatch {
            what,
            found,
            expected,
        }) => {
            assert_eq!((what, found, expected), ("element size", 8, 4))
        }
        other => panic!("{other:?}"),
    }
    // Same size, other type: refused by the type tag (issue 10, item 4),
    // unless the opener accepts any type.
    assert!(matches!(
        ShmArray::<i64>::open(&name),
        Err(AttachError::TypeMismatch { .. })
    ));
    let any = OpenOptions::new().type_tag(shmkit::TypeTag::ANY);
    assert!(matches!(
        ShmArray::<i64>::open_with(&name, &any).map(|a| a.len()),
        Ok(4)
    ));
}

#[test]
fn missing_segment_is_not_found() {
    let name = unique_name("missing");
    assert!(matches!(
        ShmBox::<Event>::open_with(&name, &short()),
        Err(AttachError::NotFound(n)) if n == name
    ));
    assert!(matches!(
        ShmArray::<u32>::open(&name),
        Err(AttachError::NotFound(_))
    ));
    assert!(matches!(
        Segment::open(&name),
        Err(AttachError::NotFound(_))
    ));
    assert!(matches!(
        Segment::unlink(&name),
        Err(AttachError::NotFound(_))
    ));
}

#[test]
fn invalid_names_are_refused() {
    let long = "a".repeat(MAX_NAME_LEN + 1);
    let exactly = "b".repeat(MAX_NAME_LEN);
    for bad in [
        "",
        "a/b",
        "/leading",
        ".hidden",
        "..",
        ".",
        "nul\0byte",
        "sp ace",
        "ü",
        long.as_str(),
    ] {
        assert!(
            matches!(
                ShmBox::<Event>::open_with(bad, &short()),
                Err(AttachError::InvalidName { .. })
            ),
            "open {bad:?}"
        );
        assert!(
            matches!(
                ShmBox::<Event>::create(bad, ()),
                Err(Error::Attach(AttachError::InvalidName { .. }))
            ),
            "create {bad:?}"
        );
        assert!(matches!(
            ShmArray::<u32>::open(bad),
            Err(AttachError::InvalidName { .. })
        ));
        assert!(matches!(
            Segment::unlink(bad),
            Err(AttachError::InvalidName { .. })
        ));
    }
    // The longest valid name is accepted by validation (it is simply absent).
    assert!(matches!(
        ShmBox::<Event>::open_with(&exactly, &short()),
        Err(AttachError::NotFound(_))
    ));
}

#[test]
fn double_create_is_already_exists() {
    let name = unique_name("dup");
    let first = ShmBox::<Event>::create(&name, ()).unwrap();
    assert!(matches!(
        ShmBox::<Event>::create(&name, ()),
        Err(Error::AlreadyExists(n)) if n == name
    ));
    assert!(matches!(
        Segment::create(&name, 4096),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        ShmArray::<u32>::create(&name, 3),
        Err(Error::AlreadyExists(_))
    ));
    // The failed creates did not unlink or clobber the first one.
    first.set();
    assert!(ShmBox::<Event>::open(&name).unwrap().is_set());
}

fn untrusted(r: Result<(), AttachError>) -> UntrustedSegment {
    match r {
        Err(AttachError::Untrusted { reason, .. }) => reason,
        other => panic!("expected AttachError::Untrusted, got {other:?}"),
    }
}

/// Every way of opening `name`: raw segment, typed box, array, dict, each
/// with default options.
fn open_all_ways(name: &str) -> Vec<Result<(), AttachError>> {
    vec![
        Segment::open(name).map(drop),
        ShmBox::<Event>::open_with(name, &short()).map(drop),
        ShmArray::<u32>::open(name).map(drop),
        shmkit::ShmDict::open(name).map(drop),
    ]
}

#[test]
fn symlink_in_dev_shm_is_refused() {
    let target = unique_name("symlink-target");
    let _real = ShmBox::<Event>::create(&target, ()).unwrap();
    let link = unique_name("symlink");
    let link_path = format!("/dev/shm/{link}");
    std::os::unix::fs::symlink(format!("/dev/shm/{target}"), &link_path).unwrap();
    let results = open_all_ways(&link);
    // Even the cross-user opt-out never follows a link.
    let opted_out = Segment::open_with(&link, &OpenOptions::new().allow_other_users(true));
    let create = ShmBox::<Event>::create(&link, ());
    let _ = std::fs::remove_file(&link_path);
    for r in results {
        assert_eq!(untrusted(r), UntrustedSegment::SymbolicLink);
    }
    assert_eq!(
        untrusted(opted_out.map(drop)),
        UntrustedSegment::SymbolicLink
    );
    // Creating over a planted symlink never writes through it.
    // (`create` first looks at what holds the name, to replace a stale
    // segment: a link is refused as untrusted, never followed.)
    assert!(
        matches!(
            create,
            Err(Error::AlreadyExists(_))
                | Err(Error::Attach(AttachError::Untrusted {
                    reason: UntrustedSegment::SymbolicLink,
                    ..
                }))
        ),
        "{create:?}"
    );
    assert!(ShmBox::<Event>::open(&target).is_ok());
}

#[test]
fn directory_at_the_name_is_refused() {
    let name = unique_name("dir");
    let path = format!("/dev/shm/{name}");
    std::fs::create_dir(&path).unwrap();
    let results = open_all_ways(&name);
    let _ = std::fs::remove_dir(&path);
    for r in results {
        assert_eq!(
            untrusted(r),
            UntrustedSegment::NotRegularFile {
                file_type: "directory"
            }
        );
    }
}

#[test]
fn fifo_at_the_name_is_refused_without_blocking() {
    let name = unique_name("fifo");
    let path = std::ffi::CString::new(format!("/dev/shm/{name}")).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    // A blocking open of a FIFO would hang here waiting for a writer.
    let results = open_all_ways(&name);
    let opted_out = Segment::open_with(&name, &OpenOptions::new().allow_other_users(true));
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    for r in results.into_iter().chain([opted_out.map(drop)]) {
        assert_eq!(
            untrusted(r),
            UntrustedSegment::NotRegularFile { file_type: "FIFO" }
        );
    }
}

fn chmod(name: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        format!("/dev/shm/{name}"),
        std::fs::Permissions::from_mode(mode),
    )
    .unwrap();
}

#[test]
fn group_or_other_access_is_refused_unless_opted_out() {
    for mode in [0o666, 0o644, 0o640, 0o604, 0o620, 0o602, 0o610] {
        let name = unique_name("mode");
        let ev = ShmBox::<Event>::create(&name, ()).unwrap();
        ev.set();
        // What the creator made (0600) opens.
        assert!(ShmBox::<Event>::open(&name).unwrap().is_set());
        chmod(&name, mode);
        for r in open_all_ways(&name) {
            assert_eq!(
                untrusted(r),
                UntrustedSegment::GroupOrOtherAccess { mode },
                "mode {mode:o}"
            );
        }
        // Deliberate sharing: the opt-out accepts it.
        let shared = OpenOptions::new()
            .allow_other_users(true)
            .ready_timeout(Duration::from_millis(20));
        assert!(ShmBox::<Event>::open_with(&name, &shared).unwrap().is_set());
        assert!(Segment::open_with(&name, &shared).is_ok());
    }
    // Owner-only bits beyond rw (e.g. 0700) are fine.
    let name = unique_name("mode-700");
    let _ev = ShmBox::<Event>::create(&name, ()).unwrap();
    chmod(&name, 0o700);
    assert!(ShmBox::<Event>::open(&name).is_ok());
}

#[test]
fn segment_of_another_user_is_refused_unless_opted_out() {
    let name = unique_name("owner");
    let ev = ShmBox::<Event>::create(&name, ()).unwrap();
    let path = std::ffi::CString::new(format!("/dev/shm/{name}")).unwrap();
    const NOBODY: u32 = 65534;
    // SAFETY: a valid NUL-terminated path; -1 keeps the group.
    if unsafe { libc::chown(path.as_ptr(), NOBODY, u32::MAX) } != 0 {
        println!(
            "skipped: cannot chown a segment to another user here ({}); \
             the owner check is only exercised when running as root",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: plain getter.
    let euid = unsafe { libc::geteuid() };
    for r in open_all_ways(&name) {
        assert_eq!(
            untrusted(r),
            UntrustedSegment::ForeignOwner {
                owner: NOBODY,
                euid
            }
        );
    }
    let shared = OpenOptions::new().allow_other_users(true);
    let opened = ShmBox::<Event>::open_with(&name, &shared).expect("opt-out accepts it");
    ev.set();
    assert!(opened.is_set());
}

#[test]
fn untrusted_errors_say_what_to_do() {
    let e = AttachError::Untrusted {
        name: "jobs".into(),
        reason: UntrustedSegment::GroupOrOtherAccess { mode: 0o666 },
    };
    let msg = e.to_string();
    assert!(msg.contains("\"jobs\"") && msg.contains("0o666"), "{msg}");
    assert!(msg.contains("allow_other_users(true)"), "{msg}");
}

#[test]
fn huge_arrays_are_errors_not_allocations() {
    // Sizes whose byte count overflows: InvalidArgument, before anything
    // is allocated (this used to build a Vec of the whole array first and
    // panic with "capacity overflow").
    let name = unique_name("arr-huge-create");
    for r in [
        ShmArray::<u64>::create(&name, usize::MAX / 4).map(drop),
        ShmArray::<u64>::anonymous(usize::MAX / 4).map(drop),
        ShmArray::<u32>::create(&name, usize::MAX).map(drop),
        ShmArray::<[u64; 4]>::anonymous(usize::MAX / 8).map(drop),
    ] {
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    // Sizes that fit the address space but no machine's memory: NoSpace,
    // refused before any page is reserved (this used to abort with
    // "memory allocation failed").
    for r in [
        ShmArray::<u8>::create(&name, usize::MAX / 4).map(drop),
        ShmArray::<u8>::anonymous(usize::MAX / 4).map(drop),
        ShmArray::<u64>::create(&name, 1 << 50).map(drop),
        ShmArray::<u64>::anonymous(1 << 50).map(drop),
    ] {
        assert!(matches!(r, Err(Error::NoSpace(_))), "{r:?}");
    }
    // The failed named creates left no name behind.
    assert!(matches!(
        Segment::open(&name),
        Err(AttachError::NotFound(_))
    ));
    // Ordinary sizes still work, zero-filled.
    let a = ShmArray::<u64>::create(&name, 1000).unwrap();
    assert_eq!(a.len(), 1000);
    assert!(a.to_vec().iter().all(|&v| v == 0));
    assert_eq!(ShmArray::<u8>::anonymous(0).unwrap().len(), 0);
}

#[test]
fn valid_crafted_event_attaches() {
    // Sanity check of the crafting itself: a correct header attaches.
    let mut image = Header::event(4096).bytes().to_vec();
    image.extend_from_slice(&1u32.to_le_bytes()); // flag set
    let (name, _seg) = raw_segment("ok", 4096, &image);
    let ev = ShmBox::<Event>::open_with(&name, &short()).unwrap();
    assert!(ev.is_set());
}
