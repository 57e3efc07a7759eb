//! Logging: `tracing` to stderr, filtered by `--log-level`, else `RUST_LOG`, else `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::exit::{ExitExt, ExitKind};

/// Installs the global subscriber. An invalid filter is a usage error.
pub fn init(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match (level, std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty())) {
        (Some(l), _) => EnvFilter::try_new(l).exit_kind(ExitKind::Usage).map_err(|e| e.context(format!("invalid --log-level '{l}'")))?,
        (None, Some(env)) => EnvFilter::try_new(&env).exit_kind(ExitKind::Usage).map_err(|e| e.context(format!("invalid RUST_LOG '{env}'")))?,
        (None, None) => EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
