//! `lorad store verify | gc`.

use std::io::Write;
use std::path::Path;

use super::adapter::human_bytes;
use super::common::open_store;
use crate::cli::{StoreCommand, StoreIo};
use crate::exit::{ExitKind, coded};

/// Runs a store subcommand.
pub(crate) fn run(home: &Path, io: StoreIo, command: StoreCommand) -> anyhow::Result<()> {
    let store = open_store(home, io)?;
    let mut out = std::io::stdout().lock();
    match command {
        StoreCommand::Verify => {
            let report = store.verify();
            for (name, error) in &report.failed {
                writeln!(out, "FAILED {name}: {error}")?;
            }
            writeln!(out, "{} adapters verified, {} failed", report.ok, report.failed.len())?;
            if !report.failed.is_empty() {
                let names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
                return Err(coded(
                    ExitKind::DataErr,
                    anyhow::anyhow!("adapters failed verification: {}", names.join(", ")),
                ));
            }
        }
        StoreCommand::Gc { discard_damaged } => {
            let report = if discard_damaged { store.gc_discarding_damaged() } else { store.gc() };
            let report = report.map_err(|e| {
                let kind = if matches!(e, lorad_store::StoreError::DamagedIndex { .. }) {
                    ExitKind::DataErr
                } else {
                    ExitKind::Runtime
                };
                coded(kind, anyhow::Error::new(e).context("store gc failed"))
            })?;
            writeln!(
                out,
                "reclaimed {} ({} segments deleted, {} blobs moved)",
                human_bytes(report.bytes_reclaimed),
                report.segments_deleted,
                report.blobs_moved
            )?;
        }
    }
    Ok(())
}
