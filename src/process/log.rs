//! [`log_to_stderr`]: a `tracing` subscriber that prefixes each line with
//! the level and the process name (Python's `multiprocessing.log_to_stderr`).

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as `[LEVEL/process name] message key=value…`, for use
/// with a `tracing_subscriber::fmt` subscriber of your own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessNameFormat;

impl<S, N> FormatEvent<S, N> for ProcessNameFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Read at format time, so a forked child logs under its own name.
        write!(
            writer,
            "[{}/{}] ",
            event.metadata().level(),
            super::spawn::current_name()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The subscriber [`log_to_stderr`] installs: one `write` to stderr per
/// event, no span tracking, and no thread-local state, so it keeps working
/// inside the exit hook (which runs after `main`'s thread-locals are gone).
struct StderrLines {
    max: Level,
}

/// Collects an event's fields: the message first, then ` key=value`.
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for StderrLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut line);
        let text = format!(
            "[{}/{}] {}{}\n",
            event.metadata().level(),
            super::spawn::current_name(),
            line.message,
            line.fields
        );
        // One write per line, so lines from several processes sharing the
        // terminal do not interleave mid-line.
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs a global `tracing` subscriber writing events at `level` and
/// above to stderr as `[INFO/Process-1] message`. At `INFO` the process
/// layer then logs what Python's multiprocessing logger does: in a child
/// `child process calling entry NAME`, `process shutting down` and
/// `process exiting with exitcode N`; in every process at exit `process
/// shutting down`, `calling terminate() for daemon NAME` and `calling
/// join() for process NAME`. Returns `false` (and changes nothing) if a
/// global subscriber was already installed. Spawned children are separate
/// programs: call it before `init()` so that they install it too; forked
/// children inherit it.
///
/// ```
/// shmkit::process::log_to_stderr(tracing::Level::INFO);
/// tracing::info!("hello"); // stderr: [INFO/MainProcess] hello
/// ```
pub fn log_to_stderr(level: Level) -> bool {
    tracing::subscriber::set_global_default(StderrLines { max: level }).is_ok()
}
