//! [`log_to_stderr`]: a `tracing` subscriber that prefixes each line with
//! the level and the process name (Python's `multiprocessing.log_to_stderr`).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as `[LEVEL/process name] message key=value…`.
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

/// Installs a global `tracing` subscriber writing events at `level` and
/// above to stderr as `[INFO/Process-1] message`. shmkit's process layer
/// logs start, entry call and exit of children at `INFO`/`DEBUG`, as
/// Python's multiprocessing logger does. Returns `false` (and changes
/// nothing) if a global subscriber was already installed. Spawned children
/// are separate programs: call it in the entry (or before `init()`) there
/// too; forked children inherit it.
///
/// ```
/// shmkit::process::log_to_stderr(tracing::Level::INFO);
/// tracing::info!("hello"); // stderr: [INFO/MainProcess] hello
/// ```
pub fn log_to_stderr(level: Level) -> bool {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .event_format(ProcessNameFormat)
        .finish();
    tracing::subscriber::set_global_default(subscriber).is_ok()
}
