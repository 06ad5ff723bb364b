//! `shmkit`: list, inspect, remove and garbage-collect shmkit segments in
//! `/dev/shm`.
//!
//! ```text
//! shmkit ls                 every shmkit segment: kind, size, creator, holders
//! shmkit stat NAME          one segment's header and its object's state
//! shmkit rm NAME...         remove names (processes that have them mapped keep working)
//! shmkit gc [--dry-run]     remove segments nobody holds any more
//! ```
//!
//! Tables for people by default, `--json` for scripts. Exit status: 0 on
//! success, 2 for a usage error or an invalid name, 3 no such segment, 4
//! permission denied, 5 not a shmkit segment, 6 corrupt or of another
//! layout version, 1 any other error.
//!
//! Build with `cargo build --release --features cli --bin shmkit` (or
//! `cargo install shmkit --features cli`).

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::{json, Value};
use shmkit::segment::{
    self, GcReport, InspectError, Lifetime, ProcessInfo, SegmentReport, Verdict,
};

const EXIT_OTHER: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_PERMISSION: u8 = 4;
const EXIT_FOREIGN: u8 = 5;
const EXIT_CORRUPT: u8 = 6;

fn cli() -> Command {
    let json = Arg::new("json")
        .long("json")
        .global(true)
        .action(ArgAction::SetTrue)
        .help("print JSON instead of a table");
    let name = |many: bool| {
        let a = Arg::new("name")
            .required(true)
            .value_parser(clap::builder::OsStringValueParser::new())
            .help("segment name (as in /dev/shm)");
        if many {
            a.num_args(1..).action(ArgAction::Append)
        } else {
            a
        }
    };
    Command::new("shmkit")
        .about("List, inspect, remove and garbage-collect shmkit shared-memory segments")
        .after_help(
            "Exit status: 0 ok, 2 usage error or invalid name, 3 no such segment, \
             4 permission denied, 5 not a shmkit segment, 6 corrupt or other layout \
             version, 1 other errors.",
        )
        .subcommand_required(true)
        .arg(json)
        .subcommand(Command::new("ls").about(
            "List shmkit segments: name, kind, size, layout version, creator (alive?), \
             attached processes, status (live / stale / kept / persistent)",
        ))
        .subcommand(
            Command::new("stat")
                .about("Show one segment's header, holders and object state")
                .arg(name(false)),
        )
        .subcommand(
            Command::new("rm")
                .about("Remove shmkit segments by name (mappings stay valid)")
                .arg(name(true)),
        )
        .subcommand(
            Command::new("gc")
                .about("Remove shmkit segments that no live process holds")
                .arg(
                    Arg::new("dry-run")
                        .long("dry-run")
                        .action(ArgAction::SetTrue)
                        .help("only say what would be removed"),
                ),
        )
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    let json = matches.get_flag("json");
    let code = match matches.subcommand() {
        Some(("ls", _)) => ls(json),
        Some(("stat", m)) => stat(m, json),
        Some(("rm", m)) => rm(m, json),
        Some(("gc", m)) => gc(m.get_flag("dry-run"), json),
        _ => EXIT_USAGE,
    };
    ExitCode::from(code)
}

// ---------------------------------------------------------------------
// Formatting

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn lifetime_name(l: Lifetime) -> &'static str {
    match l {
        Lifetime::Creator => "creator",
        Lifetime::Holders => "holders",
    }
}

fn held_text(held: Option<bool>) -> &'static str {
    match held {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// `1234,1240 (+1 dead)`.
fn attached_text(r: &SegmentReport) -> String {
    let live: Vec<String> = r
        .attached
        .iter()
        .filter(|p| p.alive)
        .map(|p| p.pid.to_string())
        .collect();
    let dead = r.attached.iter().filter(|p| !p.alive).count();
    let mut s = if live.is_empty() {
        "-".to_owned()
    } else {
        live.join(",")
    };
    if dead > 0 {
        s.push_str(&format!(" (+{dead} dead)"));
    }
    if r.untracked > 0 {
        s.push_str(&format!(" (+{} untracked)", r.untracked));
    }
    s
}

/// The element-type fingerprint in hex, or "none" for an untyped object.
fn type_tag_text(tag: u64) -> String {
    if tag == 0 {
        "none".to_owned()
    } else {
        format!("{tag:#018x}")
    }
}

fn process_json(p: &ProcessInfo) -> Value {
    json!({ "pid": p.pid, "start_time": p.start, "alive": p.alive })
}

fn report_json(r: &SegmentReport) -> Value {
    json!({
        "name": r.name,
        "kind": r.kind.to_string(),
        "kind_code": r.kind.0,
        "type_tag": type_tag_text(r.type_tag),
        "size": r.size,
        "version": r.version,
        "ready": r.ready,
        "creator": process_json(&r.creator),
        "attached": r.attached.iter().map(process_json).collect::<Vec<_>>(),
        "untracked": r.untracked,
        "held": r.held,
        "status": r.status(),
        "lifetime": lifetime_name(r.state.lifetime),
        "persistent": r.state.persistent,
        "handed_over": r.state.handed_over,
        "kept": r.state.kept,
        "body_offset": r.info.as_ref().map(|i| i.body_offset),
        "body_len": r.info.as_ref().map(|i| i.body_len),
        "params": r.info.as_ref().map(|i| i.params.to_vec()),
        "problem": r.problem,
    })
}

/// Prints rows as a left-aligned table with a header line.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

// ---------------------------------------------------------------------
// Errors

fn inspect_error_code(e: &InspectError) -> u8 {
    match e {
        InspectError::NotFound(_) => EXIT_NOT_FOUND,
        InspectError::PermissionDenied(_) => EXIT_PERMISSION,
        InspectError::InvalidName(_) => EXIT_USAGE,
        InspectError::Foreign { .. } => EXIT_FOREIGN,
        InspectError::Io { .. } => EXIT_OTHER,
    }
}

fn fail(msg: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("shmkit: {msg}");
    code
}

/// Validates a name from the command line (non-UTF-8 included).
fn arg_name(raw: &std::ffi::OsStr) -> Result<&str, u8> {
    segment::validate_os_name(raw).map_err(|e| fail(e, EXIT_USAGE))
}

// ---------------------------------------------------------------------
// Commands

fn ls(json: bool) -> u8 {
    let reports = match segment::list() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot list /dev/shm: {e}"), EXIT_OTHER),
    };
    if json {
        print_json(&Value::Array(reports.iter().map(report_json).collect()));
        return 0;
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.kind.to_string(),
                human_size(r.size),
                format!("v{}", r.version),
                r.creator.pid.to_string(),
                yes_no(r.creator.alive).to_owned(),
                attached_text(r),
                r.status().to_owned(),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME", "KIND", "SIZE", "LAYOUT", "CREATOR", "ALIVE", "ATTACHED", "STATUS",
        ],
        &rows,
    );
    0
}

fn stat(m: &ArgMatches, json: bool) -> u8 {
    let Some(raw) = m.get_one::<std::ffi::OsString>("name") else {
        return EXIT_USAGE;
    };
    let name = match arg_name(raw) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let seen = match segment::inspect(name) {
        Ok(s) => s,
        Err(e) => return fail(&e, inspect_error_code(&e)),
    };
    let r = seen.report();
    let object = match seen.object_state() {
        Ok(lines) => lines,
        Err(e) => vec![("object", format!("unreadable: {e}"))],
    };
    if json {
        let mut v = report_json(r);
        if let Value::Object(map) = &mut v {
            let obj: serde_json::Map<String, Value> = object
                .iter()
                .map(|(k, val)| (k.replace(' ', "_"), Value::String(val.clone())))
                .collect();
            map.insert("object".into(), Value::Object(obj));
        }
        print_json(&v);
    } else {
        let mut lines: Vec<(&str, String)> = vec![
            ("name", r.name.clone()),
            ("kind", format!("{} ({:#x})", r.kind, r.kind.0)),
            ("type tag", type_tag_text(r.type_tag)),
            ("size", format!("{} bytes ({})", r.size, human_size(r.size))),
            ("layout", format!("v{}", r.version)),
            ("ready", yes_no(r.ready).to_owned()),
            (
                "creator",
                format!(
                    "pid {} ({}, start time {})",
                    r.creator.pid,
                    if r.creator.alive { "alive" } else { "dead" },
                    r.creator.start
                ),
            ),
            ("held", held_text(r.held).to_owned()),
            ("status", r.status().to_owned()),
            ("lifetime", lifetime_name(r.state.lifetime).to_owned()),
            ("persistent", yes_no(r.state.persistent).to_owned()),
            ("handed over", yes_no(r.state.handed_over).to_owned()),
            ("kept", yes_no(r.state.kept).to_owned()),
        ];
        let attached: Vec<String> = r
            .attached
            .iter()
            .map(|p| format!("pid {} ({})", p.pid, if p.alive { "alive" } else { "dead" }))
            .collect();
        lines.push((
            "attached",
            if attached.is_empty() {
                "-".into()
            } else {
                attached.join(", ")
            },
        ));
        lines.push(("untracked", r.untracked.to_string()));
        if let Some(i) = &r.info {
            lines.push((
                "body",
                format!("offset {}, {} bytes", i.body_offset, i.body_len),
            ));
            lines.push(("params", format!("{:?}", i.params)));
        }
        lines.extend(object);
        for (k, v) in lines {
            println!("{:<12} {v}", format!("{k}:"));
        }
    }
    match &r.problem {
        Some(p) => fail(format!("segment {name:?} is not usable: {p}"), EXIT_CORRUPT),
        None => 0,
    }
}

fn rm(m: &ArgMatches, json: bool) -> u8 {
    let mut first_error = 0u8;
    let mut note = |code: u8| {
        if first_error == 0 {
            first_error = code;
        }
    };
    let mut removed = Vec::new();
    for raw in m
        .get_many::<std::ffi::OsString>("name")
        .into_iter()
        .flatten()
    {
        let name = match arg_name(raw) {
            Ok(n) => n,
            Err(code) => {
                note(code);
                continue;
            }
        };
        // Only shmkit segments: another program's file is refused.
        let live = match segment::inspect(name) {
            Ok(seen) => seen.report().held == Some(true),
            Err(e) => {
                note(fail(&e, inspect_error_code(&e)));
                continue;
            }
        };
        match shmkit::Segment::unlink(name) {
            Ok(()) => {
                if !json {
                    if live {
                        println!(
                            "removed {name} (still mapped by live processes; they keep working)"
                        );
                    } else {
                        println!("removed {name}");
                    }
                }
                removed.push(json!({ "name": name, "was_held": live }));
            }
            Err(shmkit::AttachError::NotFound(_)) => note(fail(
                format!("no shared segment named {name:?}"),
                EXIT_NOT_FOUND,
            )),
            Err(shmkit::AttachError::PermissionDenied(_)) => note(fail(
                format!("permission denied removing {name:?}"),
                EXIT_PERMISSION,
            )),
            Err(e) => note(fail(e, EXIT_OTHER)),
        }
    }
    if json {
        print_json(&json!({ "removed": removed }));
    }
    first_error
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Removed => "removed (stale)".into(),
        Verdict::WouldRemove => "would remove (stale)".into(),
        Verdict::Gone => "gone meanwhile".into(),
        Verdict::Held => "kept: held by a live process".into(),
        Verdict::Kept { persistent: true } => "kept: persistent".into(),
        Verdict::Kept { persistent: false } => "kept: waiting for its first opener".into(),
        Verdict::Foreign(why) => format!("skipped: not a shmkit segment ({why})"),
        Verdict::OtherVersion(v) => format!("skipped: layout v{v}"),
        Verdict::PermissionDenied => "skipped: another user's".into(),
    }
}

fn gc(dry_run: bool, json: bool) -> u8 {
    let result = if dry_run {
        segment::gc_dry_run()
    } else {
        segment::gc()
    };
    let report: GcReport = match result {
        Ok(r) => r,
        Err(e) => return fail(format!("gc failed: {e}"), EXIT_OTHER),
    };
    let removed = report.removed().count();
    if json {
        let entries: Vec<Value> = report
            .entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "removed": matches!(e.verdict, Verdict::Removed | Verdict::WouldRemove),
                    "verdict": verdict_text(&e.verdict),
                })
            })
            .collect();
        print_json(&json!({ "dry_run": dry_run, "removed": removed, "entries": entries }));
        return 0;
    }
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|e| vec![e.name.clone(), verdict_text(&e.verdict)])
        .collect();
    if !rows.is_empty() {
        print_table(&["NAME", "ACTION"], &rows);
    }
    if dry_run {
        println!("{removed} stale segment(s) would be removed");
    } else {
        println!("{removed} stale segment(s) removed");
    }
    0
}
