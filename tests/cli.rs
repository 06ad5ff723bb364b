//! Runs the real `shmkit` binary against real, stale, corrupt and foreign
//! segments in `/dev/shm`.
//!
//! `cargo test --release --features cli --test cli`
//!
//! Segments whose holder must be dead are made by a child process (this
//! test binary re-executed in a role, see [`role_child`]) that is then
//! SIGKILLed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use common::unique_name;
use serde_json::Value;
use shmkit::segment::{Lifetime, LAYOUT_VERSION};
use shmkit::{Event, Mutex, Segment, ShmBox, TypeTag};

/// `shmkit gc` is global: the tests that run it (and check what it
/// removed) take turns, or one test's gc removes another's stale segment
/// before that test's own gc can report it.
static GC_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gc_turn() -> std::sync::MutexGuard<'static, ()> {
    GC_TESTS.lock().unwrap_or_else(|e| e.into_inner())
}

const ROLE_ENV: &str = "SHMKIT_CLI_TEST_ROLE";

fn shmkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmkit"))
        .args(args)
        .output()
        .expect("run the shmkit binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(o)))
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// The `ls` table row for `name`, split into columns.
fn ls_row(name: &str) -> Option<Vec<String>> {
    let o = shmkit(&["ls"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    stdout(&o)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
}

/// A child process (this binary in a role) that creates `name` as a
/// locked `Mutex<u64>` and then sleeps until killed.
struct Holder(Child);

impl Holder {
    fn start(name: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "role_child", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, format!("lock:{name}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the role child");
        let out = child.stdout.take().unwrap();
        let ready = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.ends_with("role ready"));
        assert!(ready, "the role child did not get ready");
        Holder(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Does nothing in a normal run; in a re-executed child it plays a role.
#[test]
fn role_child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    if let Some(name) = role.strip_prefix("lock:") {
        let m = ShmBox::<Mutex<u64>>::create(name, 7).unwrap();
        let guard = m.lock().unwrap();
        println!("role ready");
        std::mem::forget(guard);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[test]
fn ls_and_stat_show_a_live_segment() {
    let name = unique_name("cli-live");
    let m = ShmBox::<Mutex<u64>>::create(&name, 1).unwrap();
    let guard = m.lock().unwrap();
    let me = std::process::id().to_string();

    let row = ls_row(&name).expect("ls lists the segment");
    // NAME KIND SIZE(2 words) LAYOUT CREATOR ALIVE ATTACHED STATUS
    assert_eq!(row[1], "mutex");
    assert_eq!(row[4], format!("v{LAYOUT_VERSION}"));
    assert_eq!(row[5], me);
    assert_eq!(row[6], "yes");
    assert_eq!(row[7], me, "this process is attached");
    assert_eq!(row.last().unwrap(), "live");

    let o = shmkit(&["stat", &name]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "kind:        mutex (0x101)".to_owned(),
        format!("type tag:    {}", TypeTag::of_pod::<Mutex<u64>>()),
        format!("creator:     pid {me} (alive"),
        "status:      live".to_owned(),
        "lifetime:    creator".to_owned(),
        format!("lock holder: pid {me} (alive)"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }

    let v = json(&shmkit(&["--json", "stat", &name]));
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["kind"], "mutex");
    assert_eq!(v["version"], LAYOUT_VERSION);
    assert_eq!(v["size"], m.segment().len() as u64);
    assert_eq!(v["held"], true);
    assert_eq!(v["creator"]["pid"], std::process::id());
    assert_eq!(v["object"]["lock_holder"], format!("pid {me} (alive)"));

    let all = json(&shmkit(&["ls", "--json"]));
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .expect("in ls --json");
    assert_eq!(entry["status"], "live");
    assert_eq!(entry["attached"][0]["pid"], std::process::id());
    drop(guard);
    let o = shmkit(&["stat", &name]);
    assert!(stdout(&o).contains("lock holder: none (unlocked)"));
}

#[test]
fn stat_shows_queue_and_dict_state() {
    let qname = unique_name("cli-queue");
    let q = shmkit::queue::MpmcQueue::create(&qname, 16, 5).unwrap();
    let tx = q.sender().unwrap();
    for i in 0..3u8 {
        tx.send(&[i]).unwrap();
    }
    let attached_before = shmkit::segment::inspect(&qname)
        .unwrap()
        .report()
        .attached
        .len();
    let o = shmkit(&["stat", &qname]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        "length:      3",
        "capacity:    5",
        "slot size:   16 bytes",
        "senders:     1",
        "receivers:   0",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let v = json(&shmkit(&["--json", "stat", &qname]));
    assert_eq!(v["object"]["length"], "3");
    assert_eq!(v["object"]["senders"], "1");
    let after = shmkit::segment::inspect(&qname).unwrap();
    assert_eq!(
        after.report().attached.len(),
        attached_before,
        "stat does not make the CLI a holder"
    );
    assert!(!after.report().state.handed_over, "stat is not a hand-over");
    drop(tx);
    let rx = q.receiver().unwrap();
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf), Ok(1));
    assert_eq!(buf, [0u8]);

    // A typed queue (its segment carries a type tag) reads the same way.
    let tname = unique_name("cli-typed");
    let typed = shmkit::Queue::<String>::create(&tname, 64, 7).unwrap();
    typed.put("x".to_owned()).unwrap();
    let o = shmkit(&["stat", &tname]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("length:      1") && text.contains("capacity:    7"),
        "{text}"
    );

    let dname = unique_name("cli-dict");
    let d = shmkit::ShmDict::create(&dname, shmkit::DictConfig::for_entries(64, 8, 8).unwrap())
        .unwrap();
    d.insert(b"a", b"1").unwrap();
    d.insert(b"b", b"2").unwrap();
    let o = shmkit(&["stat", &dname]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("entries:     2"), "{}", stdout(&o));
}

#[test]
fn dead_holder_is_stale_and_gc_removes_it() {
    let _turn = gc_turn();
    let name = unique_name("cli-stale");
    let mut holder = Holder::start(&name);
    let pid = holder.pid().to_string();
    let o = shmkit(&["stat", &name]);
    assert!(stdout(&o).contains(&format!("lock holder: pid {pid} (alive)")));
    holder.kill();

    let o = shmkit(&["stat", &name]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    for want in [
        format!("creator:     pid {pid} (dead"),
        "held:        no".to_owned(),
        "status:      stale".to_owned(),
        format!("lock holder: pid {pid} (dead)"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    let row = ls_row(&name).unwrap();
    assert_eq!(row[6], "no", "creator not alive");
    assert_eq!(row.last().unwrap(), "stale");

    let o = shmkit(&["gc", "--dry-run"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o)
        .lines()
        .any(|l| l.starts_with(&name) && l.contains("would remove")));
    assert!(exists(&name), "a dry run removes nothing");

    let v = json(&shmkit(&["gc", "--json"]));
    let entry = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name.as_str())
        .expect("gc reports the name");
    assert_eq!(entry["removed"], true);
    assert!(!exists(&name));
    let o = shmkit(&["stat", &name]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("no shared segment"), "{}", stderr(&o));
}

#[test]
fn gc_leaves_live_and_kept_segments() {
    let _turn = gc_turn();
    let live = unique_name("cli-gc-live");
    let kept = unique_name("cli-gc-kept");
    let l = ShmBox::<Event>::create(&live, ()).unwrap();
    {
        let k = ShmBox::<Event>::create(&kept, ()).unwrap();
        k.segment().set_lifetime(Lifetime::Holders).unwrap();
    }
    let o = shmkit(&["gc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text
        .lines()
        .any(|l| l.starts_with(&live) && l.contains("held by a live process")));
    assert!(text
        .lines()
        .any(|l| l.starts_with(&kept) && l.contains("waiting for its first opener")));
    assert!(exists(&live) && exists(&kept));
    assert_eq!(ls_row(&kept).unwrap().last().unwrap(), "kept");
    drop(l);
    Segment::unlink(&kept).unwrap();
}

#[test]
fn rm_removes_and_reports_missing_names() {
    let a = unique_name("cli-rm-a");
    let b = unique_name("cli-rm-b");
    for n in [&a, &b] {
        let mut e = ShmBox::<Event>::create(n, ()).unwrap();
        e.keep();
    }
    let o = shmkit(&["rm", &a, &b]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("removed {a}\nremoved {b}\n"));
    assert!(!exists(&a) && !exists(&b));

    let o = shmkit(&["rm", &a]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains(&format!("no shared segment named {a:?}")));

    // A live one is removed too; its holders keep their mapping.
    let live = ShmBox::<Event>::create(&a, ()).unwrap();
    let o = shmkit(&["rm", &a]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("still mapped by live processes"));
    assert!(!exists(&a));
    live.set();
    assert!(live.is_set());
}

#[test]
fn foreign_files_are_refused_and_left_alone() {
    let _turn = gc_turn();
    let name = unique_name("cli-foreign");
    std::fs::write(format!("/dev/shm/{name}"), b"some other program's data").unwrap();
    for args in [vec!["stat", &name], vec!["rm", &name]] {
        let o = shmkit(&args);
        assert_eq!(code(&o), 5, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is not a shmkit segment"),
            "{}",
            stderr(&o)
        );
    }
    assert!(exists(&name), "rm refused it");
    assert!(ls_row(&name).is_none(), "ls lists shmkit segments only");
    let o = shmkit(&["gc"]);
    assert!(!stdout(&o).contains(&name));
    assert!(exists(&name));
    std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();

    let dir = unique_name("cli-dir");
    std::fs::create_dir(format!("/dev/shm/{dir}")).unwrap();
    let o = shmkit(&["stat", &dir]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    std::fs::remove_dir(format!("/dev/shm/{dir}")).unwrap();
}

/// A raw segment starting with shmkit's magic and `version`, a body that
/// runs past the end, nobody else holding it.
fn crafted(tag: &str, version: u32) -> (String, Segment) {
    let name = unique_name(tag);
    let seg = Segment::create(&name, 4096).unwrap();
    let mut img = [0u8; 64];
    img[0..8].copy_from_slice(b"SHMKIT\0\x01");
    img[8..12].copy_from_slice(&version.to_le_bytes());
    img[12..16].copy_from_slice(&0x0104u32.to_le_bytes()); // event
    img[16..24].copy_from_slice(&4096u64.to_le_bytes());
    img[24..32].copy_from_slice(&1152u64.to_le_bytes());
    img[32..40].copy_from_slice(&1_000_000u64.to_le_bytes()); // past the end
                                                              // SAFETY: 4096 writable bytes; nobody else uses them yet.
    unsafe { std::ptr::copy_nonoverlapping(img.as_ptr(), seg.as_ptr(), img.len()) };
    (name, seg)
}

#[test]
fn corrupt_and_other_version_segments_are_reported() {
    let (bad, _b) = crafted("cli-corrupt", LAYOUT_VERSION);
    let o = shmkit(&["stat", &bad]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert!(stderr(&o).contains("body extends past"), "{}", stderr(&o));
    assert!(stdout(&o).contains("kind:        event"));
    let v = json(&shmkit(&["stat", "--json", &bad]));
    assert!(v["problem"].as_str().unwrap().contains("corrupt"));

    let (old, _o) = crafted("cli-oldver", 1);
    let o = shmkit(&["stat", &old]);
    assert_eq!(code(&o), 6);
    assert!(
        stderr(&o).contains("layout version mismatch"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ls_row(&old).unwrap().last().unwrap(), "incompatible");

    // Both are still shmkit's to remove.
    let o = shmkit(&["rm", &bad, &old]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!exists(&bad) && !exists(&old));
}

#[test]
fn bad_names_and_usage_are_errors() {
    let o = shmkit(&["stat", "../etc"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("invalid segment name"),
        "{}",
        stderr(&o)
    );
    let o = shmkit(&["rm", "a/b"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("'/'"), "{}", stderr(&o));
    {
        use std::os::unix::ffi::OsStrExt;
        let o = Command::new(env!("CARGO_BIN_EXE_shmkit"))
            .arg("stat")
            .arg(std::ffi::OsStr::from_bytes(b"bad\xffname"))
            .output()
            .unwrap();
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("UTF-8"), "{}", stderr(&o));
    }
    let missing = unique_name("cli-missing");
    let o = shmkit(&["stat", &missing]);
    assert_eq!(code(&o), 3);
    let o = shmkit(&[]);
    assert_eq!(code(&o), 2, "no subcommand is a usage error");
    let o = shmkit(&["frobnicate"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn another_users_segment_is_permission_denied() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root to run the tool as another user");
        return;
    }
    let name = unique_name("cli-perm");
    let _seg = ShmBox::<Event>::create(&name, ()).unwrap(); // root, 0600
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // The build tree may sit in a directory only root can enter (a clone
    // in `mktemp -d`, mode 0700): run a world-executable copy of the tool.
    let tool = std::env::temp_dir().join(format!("{name}-tool"));
    std::fs::copy(env!("CARGO_BIN_EXE_shmkit"), &tool).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [["stat", name.as_str()], ["rm", name.as_str()]] {
        let o = Command::new(&tool)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output();
        let o = match o {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let _ = std::fs::remove_file(&tool);
                println!("skipped: user 65534 cannot run {}: {e}", tool.display());
                return;
            }
            Err(e) => panic!("cannot run {}: {e}", tool.display()),
        };
        assert_eq!(code(&o), 4, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
    }
    let _ = std::fs::remove_file(&tool);
    assert!(exists(&name));
}
