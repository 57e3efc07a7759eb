//! Logging: `tracing` to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`, in the
//! format of `--log-format` (`log_format`).
//!
//! Under systemd, stderr is the journal: there the lines carry sd-daemon(3)'s `<N>` priority
//! prefix and no timestamp (the journal keeps its own), so `journalctl -p warning -u lorad`
//! shows the warnings and errors alone; without the prefix every line would be stored at the
//! unit's default priority, `info`. `json` writes one object a line for log shippers (Vector,
//! Promtail, Fluent Bit), as text-generation-inference's `--json-output` does.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::exit::{ExitKind, coded};

/// How log lines are written (`--log-format`, `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// `journal` when stderr is the systemd journal (`$JOURNAL_STREAM` names it), else `text`.
    #[default]
    Auto,
    /// Timestamp, level, target and fields; colored on a terminal.
    Text,
    /// `text` without the timestamp, each line led by its syslog priority (`<3>` error,
    /// `<4>` warning, `<6>` info, `<7>` debug and trace), which journald stores as the entry's.
    Journal,
    /// One JSON object a line: `timestamp`, `level`, `target`, the event's fields (`message`
    /// among them) at the top level, and `span` with the innermost span's fields.
    Json,
}

impl LogFormat {
    /// The format `auto` stands for in this process: `journal` when stderr is the journal.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_journal() => LogFormat::Journal,
            LogFormat::Auto => LogFormat::Text,
            other => other,
        }
    }
}

/// Installs the global subscriber. An invalid filter is a usage error.
pub fn init(level: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    // The filter's own error repeats its cause in `source()`, so only its message is kept.
    let invalid = |what: &str, value: &str, e: &dyn fmt::Display| {
        coded(ExitKind::Usage, anyhow::anyhow!("invalid {what} '{value}': {e}"))
    };
    let filter = match (level, std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty())) {
        (Some(l), _) => EnvFilter::try_new(l).map_err(|e| invalid("--log-level", l, &e))?,
        (None, Some(env)) => EnvFilter::try_new(&env).map_err(|e| invalid("RUST_LOG", &env, &e))?,
        (None, None) => EnvFilter::new("info"),
    };
    let format = format.resolve();
    // The filter sits behind a reload handle so SIGHUP can change the level of a running
    // daemon ([`set_level`]).
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    tracing_subscriber::registry()
        .with(filter)
        .with(layer(format, ansi, std::io::stderr))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    let _ = FILTER.set(handle);
    let _ = FORMAT.set(format);
    Ok(())
}

/// Sends panics through the logger, so that a crash reaches the journal at priority 3
/// (`journalctl -p err` lists it) or a log shipper as a JSON line, with the thread and where;
/// the backtrace too when `RUST_BACKTRACE` asks for one. A panic the code catches on purpose
/// ([`lorad_model::panic_is_expected`]: a malformed GGUF that candle's reader chokes on,
/// reported as an error naming the file) is logged at debug level instead. Until the logger
/// is installed, and in processes that never install it, the default hook prints.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tracing::dispatcher::has_been_set() {
            return default(info);
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a non-text payload)");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        report_panic(message, &location, &backtrace, lorad_model::panic_is_expected());
    }));
}

/// One panic as a log event (see [`install_panic_hook`]).
fn report_panic(
    message: &str,
    location: &str,
    backtrace: &std::backtrace::Backtrace,
    expected: bool,
) {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    if expected {
        tracing::debug!(thread, location, "caught panic: {message}");
        return;
    }
    match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => {
            tracing::error!(thread, location, backtrace = %backtrace, "panic: {message}")
        }
        _ => tracing::error!(thread, location, "panic: {message}"),
    }
}

/// The formatting layer of `format` (resolved: not `auto`), writing to `writer`.
fn layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Auto | LogFormat::Text => fmt.boxed(),
        LogFormat::Journal => {
            fmt.event_format(Prioritized(tracing_subscriber::fmt::format().without_time())).boxed()
        }
        LogFormat::Json => {
            fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed()
        }
    }
}

/// An event format that leads each line with the event's syslog priority (sd-daemon(3)).
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3)'s priority for a tracing level.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Whether stderr is the journal: systemd.exec(5) sets `$JOURNAL_STREAM` to the journal
/// stream's `device:inode`, which the process's stderr keeps unless something redirected it
/// (a shell's `2>file` in an `ExecStart=` script, say), so it is compared, not trusted.
fn stderr_is_journal() -> bool {
    let Ok(var) = std::env::var("JOURNAL_STREAM") else { return false };
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    meta.is_ok_and(|m| names(&var, m.dev(), m.ino()))
}

/// Whether a `$JOURNAL_STREAM` value (`device:inode`, decimal) names this device and inode.
fn names(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Replaces the log filter of the running process (`log_level` on SIGHUP).
pub fn set_level(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| coded(ExitKind::Usage, anyhow::anyhow!("invalid log level '{level}': {e}")))?;
    let handle = FILTER.get().ok_or_else(|| anyhow::anyhow!("the logger is not installed"))?;
    handle.reload(filter).map_err(|e| anyhow::anyhow!("cannot change the log level: {e}"))
}

/// Writes the error that ends the process to stderr, in the log's format: `error: …` as text,
/// at priority 3 for the journal, as a JSON line of level `ERROR`. Never filtered: the reason
/// a unit failed must reach the journal whatever the log level.
pub fn fatal(message: &str) {
    let format = FORMAT.get().copied().unwrap_or_else(|| LogFormat::Auto.resolve());
    let line = fatal_line(format, message);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn fatal_line(format: LogFormat, message: &str) -> String {
    match format {
        LogFormat::Auto | LogFormat::Text => format!("error: {message}"),
        LogFormat::Journal => format!("<3>error: {}", message.replace('\n', " ")),
        LogFormat::Json => {
            let mut timestamp = String::new();
            let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
            // Written by hand to keep the order of the logger's own lines.
            let quoted = |s: &str| serde_json::Value::from(s).to_string();
            format!(
                r#"{{"timestamp":{},"level":"ERROR","message":{},"target":"lorad"}}"#,
                quoted(timestamp.trim()),
                quoted(message)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    /// The lines `format` writes for one event of each level, inside a span.
    fn lines(format: LogFormat) -> Vec<String> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new("trace")).with(layer(
            format,
            false,
            buffer.clone(),
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = "r-1");
            let _entered = span.enter();
            tracing::error!(code = 7, "engine failed");
            tracing::warn!("slow disk");
            tracing::info!(adapters = 3, "store opened");
            tracing::debug!("detail");
            tracing::trace!("more detail");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// A panic is an error line naming its thread and place; one the code expects is only a
    /// debug line.
    #[test]
    fn panics_are_logged_as_errors_unless_expected() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new("debug")).with(layer(
            LogFormat::Journal,
            false,
            buffer.clone(),
        ));
        let none = std::backtrace::Backtrace::disabled();
        tracing::subscriber::with_default(subscriber, || {
            report_panic("index out of bounds", "engine/src/x.rs:1:2", &none, false);
            report_panic("attempt to divide by zero", "candle/gguf.rs:3:4", &none, true);
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("<3>ERROR"), "{}", lines[0]);
        assert!(lines[0].contains("panic: index out of bounds"), "{}", lines[0]);
        assert!(lines[0].contains("location=\"engine/src/x.rs:1:2\""), "{}", lines[0]);
        assert!(lines[0].contains("thread="), "{}", lines[0]);
        assert!(lines[1].starts_with("<7>DEBUG"), "{}", lines[1]);
        assert!(lines[1].contains("caught panic: attempt to divide by zero"), "{}", lines[1]);
    }

    #[test]
    fn journal_lines_carry_the_syslog_priority_and_no_timestamp() {
        let lines = lines(LogFormat::Journal);
        let prefixes: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>", "<7>"], "{lines:#?}");
        assert!(lines[0].starts_with("<3>ERROR request{id=\"r-1\"}: "), "{}", lines[0]);
        assert!(lines[0].contains("engine failed code=7"), "{}", lines[0]);
        assert!(lines[2].contains("store opened adapters=3"), "{}", lines[2]);
        // Text has a timestamp where the journal has none.
        let text = super::tests::lines(LogFormat::Text);
        assert!(text[0].starts_with(|c: char| c.is_ascii_digit()), "{}", text[0]);
        assert!(!text[0].starts_with('<'), "{}", text[0]);
    }

    #[test]
    fn json_lines_are_objects_with_level_message_fields_and_span() {
        let lines = lines(LogFormat::Json);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "ERROR");
        assert_eq!(first["message"], "engine failed");
        assert_eq!(first["code"], 7);
        assert_eq!(first["target"], "lorad::logging::tests");
        assert_eq!(first["span"]["name"], "request");
        assert_eq!(first["span"]["id"], "r-1");
        assert!(first["timestamp"].as_str().is_some_and(|t| t.starts_with("20")), "{first}");
        let levels: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["level"].to_string())
            .collect();
        assert_eq!(levels, ["\"ERROR\"", "\"WARN\"", "\"INFO\"", "\"DEBUG\"", "\"TRACE\""]);
    }

    #[test]
    fn the_fatal_error_is_written_in_each_format() {
        assert_eq!(fatal_line(LogFormat::Text, "no model"), "error: no model");
        assert_eq!(fatal_line(LogFormat::Journal, "no model\nat all"), "<3>error: no model at all");
        let json: serde_json::Value =
            serde_json::from_str(&fatal_line(LogFormat::Json, "no \"model\"")).unwrap();
        assert_eq!(json["level"], "ERROR");
        assert_eq!(json["message"], "no \"model\"");
        assert!(json["timestamp"].as_str().is_some_and(|t| t.starts_with("20")), "{json}");
    }

    #[test]
    fn journal_stream_must_name_this_stderr() {
        assert!(names("64769:1234", 64769, 1234));
        assert!(!names("64769:1234", 64769, 1235));
        assert!(!names("64769:1234", 1, 1234));
        for bad in ["", ":", "64769", "64769:", "a:b", "64769:1234:5", " 64769:1234"] {
            assert!(!names(bad, 64769, 1234), "{bad:?}");
        }
        // Explicit formats are kept; `auto` becomes one of text or journal.
        assert_eq!(LogFormat::Json.resolve(), LogFormat::Json);
        assert_eq!(LogFormat::Journal.resolve(), LogFormat::Journal);
        assert_ne!(LogFormat::Auto.resolve(), LogFormat::Auto);
    }
}
