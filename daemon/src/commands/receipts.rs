//! `lorad receipts ...`: the node key and the receipt journal, from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use lorad_contracts::receipt::domain;
use lorad_contracts::{NodeKey, SignedReceipt};

use std::sync::Arc;

use lorad_contracts::Deployment;
use lorad_lightclient::op::anchor::L2Label;
use lorad_lightclient::rpc::http::HttpExecution;
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use lorad_receipts::Journal;
use lorad_receipts::facts::{BlockSource, HeadRpc, ProofFacts, RpcHeadBlocks, VerifiedStateBlocks};
use lorad_receipts::gate::FactSource;
use lorad_receipts::gate::{GatePolicy, Notary};
use lorad_receipts::submit::{Cursor, SubmitOptions, submit};

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

/// The receipt desk `lorad serve` runs with, when `--settlement` or `--deployment` is given:
/// the node key, the journal (recovered after a crash) and the gate. Without `--l2-rpc` the
/// gate has no proven L2 state and every answer is refused with `no_verified_chain`.
/// The light client's verified L2 blocks, when its follower runs (for `/metrics`).
pub(crate) type FollowedState = Arc<std::sync::Mutex<VerifiedState>>;

/// The follower's state, if it runs.
type Followed = Option<FollowedState>;

pub(crate) fn open_desk(
    home: &Path,
    args: &ServeArgs,
) -> anyhow::Result<(Option<Arc<ReceiptDesk>>, Option<FollowedState>)> {
    let deployment = match &args.deployment {
        Some(path) => Some(super::chain::read_deployment(path)?),
        None => None,
    };
    let (settlement, chain_id) = match (&deployment, args.settlement, args.chain_id) {
        (Some(d), _, _) => (d.settlement, d.chain_id),
        (None, Some(s), Some(c)) => (s, c),
        _ => return Ok((None, None)),
    };
    let (facts, followed) = fact_source(home, args, deployment.as_ref())?;
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
            saved_to = %recovery.saved_to.as_deref().map_or("-".into(), |p| p.display().to_string()),
            "cut an unfinished last record from the receipt journal (a crash leaves one that was \
             never acknowledged; the bytes are kept in saved_to unless they were zeros)"
        );
    }
    tracing::info!(node = %key.address(), %settlement, chain_id, receipts = recovery.records, "receipts on");
    let policy =
        GatePolicy { max_block_age_secs: args.receipt_max_block_age, min_stake: args.min_stake };
    let notary = Notary::new(key, Arc::new(journal), domain(chain_id, settlement), facts, policy);
    Ok((Some(Arc::new(ReceiptDesk::new(notary))), followed))
}

/// Where the gate's facts come from: storage proofs over `--l2-rpc`, at blocks the light
/// client's L2 follower proved from L1 or, on development chains (`--l2-trust-rpc-head`), at
/// the RPC's head.
fn fact_source(
    home: &Path,
    args: &ServeArgs,
    deployment: Option<&Deployment>,
) -> anyhow::Result<(Option<Arc<dyn FactSource>>, Followed)> {
    let (Some(url), Some(d)) = (&args.l2_rpc, deployment) else { return Ok((None, None)) };
    let mut followed = None;
    let rpc: Arc<dyn HeadRpc> =
        Arc::new(HttpExecution::new(url, std::time::Duration::from_secs(10)));
    let blocks: Arc<dyn BlockSource> = match super::follow::FollowConfig::from_args(home, args)? {
        Some(follow) => {
            let state = Arc::new(std::sync::Mutex::new(VerifiedState::new(64)));
            follow.spawn(state.clone())?;
            followed = Some(state.clone());
            let min_label = if args.receipt_min_label == "finalized" {
                L2Label::Finalized
            } else {
                L2Label::Safe
            };
            // The gate applies the age limit itself (with its own refusal code).
            let policy = ReadPolicy { min_label, max_age_secs: None };
            Arc::new(VerifiedStateBlocks { state, policy })
        }
        None => {
            tracing::warn!(
                %url,
                "receipts rest on the L2 RPC's newest block (--l2-trust-rpc-head): values are \
                 proven, but which block is canonical is the RPC's word. Development chains only."
            );
            Arc::new(RpcHeadBlocks { rpc: rpc.clone() })
        }
    };
    let facts: Arc<dyn FactSource> = Arc::new(ProofFacts::new(
        blocks,
        rpc,
        d.adapter_registry,
        d.node_registry,
        crate::api::unix_now,
    ));
    Ok((Some(facts), followed))
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
        ReceiptsCommand::Submit { conn, batch } => {
            if batch == 0 {
                return Err(anyhow::anyhow!("--batch must be at least 1"))
                    .exit_kind(ExitKind::Usage);
            }
            let d = super::chain::read_deployment(&super::chain::deployment_path(home, &conn))?;
            let (mut chain, me) = super::chain::connect(home, &conn)?;
            if lorad_contracts::EvmBackend::chain_id(&chain) != d.chain_id {
                return Err(anyhow::anyhow!(
                    "the RPC serves chain {}, the deployment is on chain {}",
                    lorad_contracts::EvmBackend::chain_id(&chain),
                    d.chain_id
                ))
                .exit_kind(ExitKind::Config);
            }
            let path = journal_path(home);
            let mut cursor = Cursor::open(&home.join("receipts").join("submitted"))
                .exit_kind(ExitKind::Config)?;
            let options = SubmitOptions { settlement: d.settlement, from: me, batch };
            let bar = indicatif::ProgressBar::new(0);
            let report = submit(&path, &mut cursor, &mut chain, &options, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            let report = report.exit_kind(ExitKind::Runtime)?;
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "journaled": report.journaled, "known_settled": report.known_settled,
                    "found_settled": report.found_settled, "other_domain": report.other_domain,
                    "submitted": report.submitted, "batches": report.batches, "gas_used": report.gas_used,
                    "conflicts": report.conflicts,
                    "rejected": report.rejected.iter().map(|(job, why)| serde_json::json!({"jobId": job, "reason": why})).collect::<Vec<_>>(),
                })
            )
            .context("writing to stdout")?;
            if !report.conflicts.is_empty() {
                return Err(anyhow::anyhow!(
                    "{} job ids were settled on chain with a different receipt than the journal's",
                    report.conflicts.len()
                ))
                .exit_kind(ExitKind::DataErr);
            }
        }
    }
    Ok(())
}
