//! Logging: `tracing` to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::exit::{ExitKind, coded};

/// Installs the global subscriber. An invalid filter is a usage error.
pub fn init(level: Option<&str>) -> anyhow::Result<()> {
    // The filter's own error repeats its cause in `source()`, so only its message is kept.
    let invalid = |what: &str, value: &str, e: &dyn std::fmt::Display| {
        coded(ExitKind::Usage, anyhow::anyhow!("invalid {what} '{value}': {e}"))
    };
    let filter = match (level, std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty())) {
        (Some(l), _) => EnvFilter::try_new(l).map_err(|e| invalid("--log-level", l, &e))?,
        (None, Some(env)) => EnvFilter::try_new(&env).map_err(|e| invalid("RUST_LOG", &env, &e))?,
        (None, None) => EnvFilter::new("info"),
    };
    // The filter sits behind a reload handle so SIGHUP can change the level of a running
    // daemon ([`set_level`]).
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    let _ = FILTER.set(handle);
    Ok(())
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Replaces the log filter of the running process (`log_level` on SIGHUP).
pub fn set_level(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| coded(ExitKind::Usage, anyhow::anyhow!("invalid log level '{level}': {e}")))?;
    let handle = FILTER.get().ok_or_else(|| anyhow::anyhow!("the logger is not installed"))?;
    handle.reload(filter).map_err(|e| anyhow::anyhow!("cannot change the log level: {e}"))
}
