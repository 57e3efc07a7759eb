//! `lorad lightclient ...`: offline audits (`verify-proof`, `replay`) here, live sync and
//! verified reads in [`online`].

pub(crate) mod online;

use std::io::Write;
use std::path::Path;

use alloy_primitives::B256;
use anyhow::Context;
use lorad_lightclient::consensus::NetworkConfig;
use lorad_lightclient::replay::{SavedChain, replay};
use lorad_lightclient::sync::SyncStep;

use crate::cli::LightclientCommand;
use crate::exit::{ExitKind, coded};

/// Runs a lightclient subcommand.
pub(crate) fn run(home: &Path, command: LightclientCommand) -> anyhow::Result<()> {
    match command {
        LightclientCommand::VerifyProof { file, state_root } => {
            let root = parse_root("--state-root", &state_root)?;
            let json = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(|e| coded(ExitKind::Usage, e))?;
            let response = lorad_lightclient::parse_eip1186_response(&json)
                .map_err(|e| coded(ExitKind::DataErr, e))
                .with_context(|| format!("{} is not an eth_getProof response", file.display()))?;
            let proof = lorad_lightclient::verify_eip1186(root, &response)
                .map_err(|e| coded(ExitKind::DataErr, e))
                .with_context(|| {
                    format!("{} does not verify against state root {root}", file.display())
                })?;
            let a = &proof.account;
            let mut out = std::io::stdout().lock();
            if a.exists {
                writeln!(
                    out,
                    "account {} verified: nonce {}, balance {} wei, storage root {}, code hash {}",
                    a.address, a.nonce, a.balance, a.storage_root, a.code_hash
                )?;
            } else {
                writeln!(out, "account {} verified absent", a.address)?;
            }
            for (slot, value) in &proof.storage {
                writeln!(out, "storage {slot} = {value:#x} verified")?;
            }
            writeln!(out, "all proofs verify against state root {root}")?;
        }
        LightclientCommand::Replay {
            dir,
            checkpoint,
            network,
            current_slot,
            max_checkpoint_age,
            json,
        } => {
            let checkpoint = parse_root("--checkpoint", &checkpoint)?;
            let cfg = network_config(&network)?;
            let saved = SavedChain::read_dir(&dir).map_err(|e| coded(ExitKind::Usage, e))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let print = |s: &SyncStep| {
                if !json {
                    let _ = writeln!(std::io::stdout().lock(), "{}", step_line(s));
                }
            };
            let max_age = max_checkpoint_age.map(|age| (now, age));
            let report = replay(&cfg, checkpoint, &saved, current_slot, max_age, print)
                .map_err(|e| coded(ExitKind::DataErr, e))
                .with_context(|| {
                    format!("replay of {} from checkpoint {checkpoint} failed", dir.display())
                })?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                let f = &report.finalized;
                writeln!(
                    out,
                    "verified finalized execution block {} (hash {}, state root {}) at beacon slot {}",
                    f.execution_block_number,
                    f.execution_block_hash,
                    f.execution_state_root,
                    f.slot
                )?;
                let o = &report.optimistic;
                writeln!(
                    out,
                    "verified optimistic execution block {} (hash {}) at beacon slot {}",
                    o.execution_block_number, o.execution_block_hash, o.slot
                )?;
            }
        }
        LightclientCommand::Sync(args) => online::run_sync(home, &args)?,
        LightclientCommand::Status { network, json } => online::run_status(home, &network, json)?,
        LightclientCommand::Storage { address, slot, l2, execution_url, l2_url, rollup, sync } => {
            online::run_storage(
                home,
                &address,
                &slot,
                l2,
                &execution_url,
                l2_url.as_deref(),
                rollup.as_deref(),
                &sync,
            )?;
        }
    }
    Ok(())
}

/// Pretty JSON and a newline.
fn print_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

pub(crate) fn parse_root(flag: &str, value: &str) -> anyhow::Result<B256> {
    value.parse().map_err(|e| {
        coded(ExitKind::Usage, anyhow::anyhow!("{flag} {value:?} is not a 32-byte hex value: {e}"))
    })
}

/// A built-in network by name, or a custom one from a JSON file.
pub(crate) fn network_config(network: &str) -> anyhow::Result<NetworkConfig> {
    if let Ok(cfg) = NetworkConfig::by_name(network) {
        return Ok(cfg);
    }
    let path = Path::new(network);
    if !path.is_file() {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!("--network {network:?} is neither mainnet, sepolia nor a config file"),
        ));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(|e| coded(ExitKind::Config, e))?;
    let cfg: NetworkConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a network config", path.display()))
        .map_err(|e| coded(ExitKind::Config, e))?;
    cfg.validate().map_err(|e| coded(ExitKind::Config, e))?;
    Ok(cfg)
}

fn step_line(s: &SyncStep) -> String {
    let mut changed = Vec::new();
    if s.outcome.next_committee_learned {
        changed.push("next committee");
    }
    if s.outcome.period_advanced {
        changed.push("new period");
    }
    if s.outcome.finalized_advanced {
        changed.push("finalized");
    }
    if s.outcome.optimistic_advanced {
        changed.push("optimistic");
    }
    let changed = if changed.is_empty() { "no change".to_owned() } else { changed.join(", ") };
    format!(
        "{:<11} ok  period {}  signers {:>3}  finalized slot {} (block {})  optimistic slot {} (block {})  [{changed}]",
        s.what,
        s.period,
        s.participants,
        s.finalized.slot,
        s.finalized.execution_block_number,
        s.optimistic.slot,
        s.optimistic.execution_block_number,
    )
}
