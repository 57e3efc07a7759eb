//! Logging: `tracing` to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
