//! `lorad receipts ...`: the node key and the receipt journal, from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use lorad_contracts::receipt::domain;
use lorad_contracts::{NodeKey, SignedReceipt};

use std::sync::Arc;

use lorad_receipts::Journal;
use lorad_receipts::gate::{GatePolicy, Notary};

use crate::api::ReceiptDesk;
use crate::cli::{ReceiptsCommand, ServeArgs};
use crate::exit::{ExitExt, ExitKind};

/// `<home>/node.key`: where the receipt-signing key lives unless `--node-key` says otherwise.
pub(crate) fn default_key_path(home: &Path) -> PathBuf {
    home.join("node.key")
}

/// `<home>/receipts/receipts.log`: the receipt journal.
pub(crate) fn journal_path(home: &Path) -> PathBuf {
    home.join("receipts").join("receipts.log")
}

/// Loads the node key, creating it on first use; a key file others can read is a config error.
pub(crate) fn load_key(path: &Path) -> anyhow::Result<NodeKey> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (key, created) = NodeKey::load_or_create(path).exit_kind(ExitKind::Config)?;
    if created {
        tracing::info!(address = %key.address(), path = %path.display(), "created a new node key");
    }
    Ok(key)
}

/// The receipt desk `lorad serve` runs with, when `--settlement` is given: the node key, the
/// journal (recovered after a crash) and the gate. Until the light client feeds it proven L2
/// state, every answer is refused with `no_verified_chain`.
pub(crate) fn open_desk(home: &Path, args: &ServeArgs) -> anyhow::Result<Option<Arc<ReceiptDesk>>> {
    let (Some(settlement), Some(chain_id)) = (args.settlement, args.chain_id) else {
        return Ok(None);
    };
    let key = load_key(&args.node_key.clone().unwrap_or_else(|| default_key_path(home)))?;
    let path = journal_path(home);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (journal, recovery) = Journal::open(&path).exit_kind(ExitKind::Config)?;
    if recovery.truncated_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = recovery.truncated_bytes,
            reason = recovery.truncated_reason.as_deref().unwrap_or(""),
            "cut an unfinished last record from the receipt journal (it was never acknowledged)"
        );
    }
    tracing::info!(node = %key.address(), %settlement, chain_id, receipts = recovery.records, "receipts on");
    let policy =
        GatePolicy { max_block_age_secs: args.receipt_max_block_age, min_stake: args.min_stake };
    let notary = Notary::new(key, Arc::new(journal), domain(chain_id, settlement), None, policy);
    Ok(Some(Arc::new(ReceiptDesk::new(notary))))
}

pub(crate) fn run(home: &Path, command: ReceiptsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        ReceiptsCommand::Key { node_key } => {
            let path = node_key.unwrap_or_else(|| default_key_path(home));
            let key = load_key(&path)?;
            writeln!(out, "{}", key.address()).context("writing to stdout")?;
        }
        ReceiptsCommand::Export { journal, chain_id, settlement } => {
            let explicit = journal.is_some();
            let path = journal.unwrap_or_else(|| journal_path(home));
            if !path.exists() {
                if explicit {
                    return Err(anyhow::anyhow!("no receipt journal at {}", path.display()))
                        .exit_kind(ExitKind::Usage);
                }
                eprintln!("0 receipts (no journal at {} yet)", path.display());
                return Ok(());
            }
            let domain = match (chain_id, settlement) {
                (Some(c), Some(s)) => Some(domain(c, s)),
                (None, None) => None,
                _ => {
                    return Err(anyhow::anyhow!("--chain-id and --settlement go together"))
                        .exit_kind(ExitKind::Usage);
                }
            };
            let mut lines = Vec::new();
            let mut bad = None;
            let end =
                lorad_receipts::read_records(&path, |f| match SignedReceipt::decode(&f.payload) {
                    Ok(r) => lines.push(r.to_json(domain.as_ref())),
                    Err(e) if bad.is_none() => {
                        bad = Some(format!("record at byte {}: {e}", f.offset))
                    }
                    Err(_) => {}
                })
                .exit_kind(ExitKind::DataErr)?;
            if let Some(bad) = bad {
                return Err(anyhow::anyhow!("{}: {bad}", path.display()))
                    .exit_kind(ExitKind::DataErr);
            }
            for line in &lines {
                serde_json::to_writer(&mut out, line).context("writing to stdout")?;
                writeln!(out).context("writing to stdout")?;
            }
            if let lorad_receipts::record::ScanEnd::TornTail { offset, .. } = end {
                eprintln!(
                    "note: the journal ends in an unfinished record at byte {offset} (being written, or cut at the next start)"
                );
            }
            eprintln!("{} receipts", lines.len());
        }
    }
    Ok(())
}
