//! `lorad lightclient sync|status|storage`: the light client against live endpoints.
//!
//! The last verified finalized root is saved under `<home>/lightclient/<network>/state.json`
//! so the next start bootstraps from it (a fresh checkpoint only the first time), the way
//! helios keeps its checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};
use anyhow::Context;
use lorad_lightclient::consensus::{LightClientStore, NetworkConfig};
use lorad_lightclient::l2::{
    RollupConfig, finalized_l1_anchor, prove_l2_block, prove_latest_output,
};
use lorad_lightclient::op::anchor::L2Label;
use lorad_lightclient::rpc::ExecutionRpc;
use lorad_lightclient::rpc::http::{HttpBeacon, HttpExecution};
use lorad_lightclient::sync::{HeadSummary, SyncOptions, SyncReport, SyncStep, sync};
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use lorad_lightclient::verify_eip1186;
use serde::{Deserialize, Serialize};

use super::{network_config, parse_root, print_json, step_line};
use crate::cli::LightclientSyncArgs;
use crate::exit::{ExitKind, coded};

/// What is kept between runs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedState {
    pub(crate) network: String,
    /// The checkpoint the last sync started from.
    pub(crate) checkpoint: B256,
    pub(crate) finalized: HeadSummary,
    pub(crate) optimistic: HeadSummary,
    pub(crate) synced_at_unix: u64,
}

pub(crate) fn state_path(home: &Path, network: &str) -> PathBuf {
    // A custom network's config path is not a directory name; its `name` field is.
    home.join("lightclient").join(network.replace(['/', '\\'], "_")).join("state.json")
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

pub(crate) fn load_state(path: &Path) -> anyhow::Result<Option<SavedState>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| {
                format!("{} is corrupt; pass --checkpoint to start over", path.display())
            })
            .map(Some)
            .map_err(|e| coded(ExitKind::DataErr, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(coded(
            ExitKind::Runtime,
            anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
        )),
    }
}

/// Writes via a temporary file and rename, so a crash never leaves half a state file.
pub(crate) fn save_state(path: &Path, state: &SavedState) -> anyhow::Result<()> {
    let dir = path.parent().context("state path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// Syncs per `args`, prints the steps (unless JSON), saves the state; returns the store.
fn sync_l1(
    home: &Path,
    args: &LightclientSyncArgs,
    quiet: bool,
) -> anyhow::Result<(NetworkConfig, LightClientStore, SyncReport)> {
    let cfg = network_config(&args.network)?;
    let path = state_path(home, &cfg.name);
    let checkpoint = match &args.checkpoint {
        Some(root) => parse_root("--checkpoint", root)?,
        None => match load_state(&path)? {
            Some(state) => state.finalized.beacon_root,
            None => {
                return Err(coded(
                    ExitKind::Usage,
                    anyhow::anyhow!(
                        "no saved light-client state at {}; pass --checkpoint <block root>",
                        path.display()
                    ),
                ));
            }
        },
    };
    let current_slot = args.current_slot.unwrap_or_else(|| cfg.slot_at_time(now_unix()));
    // The age policy is measured at the sync's clock, so audits of old data stay meaningful.
    let now = cfg.slot_start_time(current_slot);
    let opts = SyncOptions {
        current_slot,
        max_checkpoint_age: Some((now, args.max_checkpoint_age)),
        finality: true,
        optimistic: true,
    };
    let beacon = HttpBeacon::new(&args.beacon_url, Duration::from_secs(args.timeout_secs));
    let print = |s: &SyncStep| {
        if !args.json && !quiet {
            let _ = writeln!(std::io::stdout().lock(), "{}", step_line(s));
        }
    };
    let (store, report) = sync(&cfg, &beacon, checkpoint, opts, print)
        .map_err(|e| {
            let kind = if matches!(e, lorad_lightclient::LightClientError::Rpc { .. }) {
                ExitKind::Unavailable
            } else {
                ExitKind::DataErr
            };
            coded(kind, e)
        })
        .with_context(|| format!("light-client sync from {checkpoint} failed"))?;
    let state = SavedState {
        network: cfg.name.clone(),
        checkpoint,
        finalized: report.finalized.clone(),
        optimistic: report.optimistic.clone(),
        synced_at_unix: now_unix(),
    };
    save_state(&path, &state).map_err(|e| coded(ExitKind::Runtime, e))?;
    Ok((cfg, store, report))
}

/// `lorad lightclient sync`.
pub(super) fn run_sync(home: &Path, args: &LightclientSyncArgs) -> anyhow::Result<()> {
    let (_, _, report) = sync_l1(home, args, false)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        print_json(&mut out, &report)?;
    } else {
        let f = &report.finalized;
        writeln!(
            out,
            "synced: finalized execution block {} ({}) at slot {}",
            f.execution_block_number, f.execution_block_hash, f.slot
        )?;
    }
    Ok(())
}

/// `lorad lightclient status`.
pub(super) fn run_status(home: &Path, network: &str, json: bool) -> anyhow::Result<()> {
    let cfg = network_config(network)?;
    let path = state_path(home, &cfg.name);
    let state = load_state(&path)?.ok_or_else(|| {
        coded(
            ExitKind::Unavailable,
            anyhow::anyhow!("not synced yet: no {} (run `lorad lightclient sync`)", path.display()),
        )
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        return print_json(&mut out, &state);
    }
    let age = now_unix().saturating_sub(state.synced_at_unix);
    writeln!(out, "network     {}", state.network)?;
    writeln!(out, "synced      {age} s ago, from checkpoint {}", state.checkpoint)?;
    for (label, h) in [("finalized", &state.finalized), ("optimistic", &state.optimistic)] {
        writeln!(
            out,
            "{label:<11} slot {} root {}  execution block {} ({}) state root {}",
            h.slot,
            h.beacon_root,
            h.execution_block_number,
            h.execution_block_hash,
            h.execution_state_root
        )?;
    }
    Ok(())
}

fn parse_slot(s: &str) -> anyhow::Result<B256> {
    let v = if let Some(hex) = s.strip_prefix("0x") {
        U256::from_str_radix(hex, 16)
    } else {
        U256::from_str_radix(s, 10)
    };
    v.map(|v| B256::from(v.to_be_bytes::<32>())).map_err(|e| {
        coded(ExitKind::Usage, anyhow::anyhow!("slot {s:?} is not a 256-bit number: {e}"))
    })
}

/// `lorad lightclient storage`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_storage(
    home: &Path,
    address: &str,
    slot: &str,
    l2: bool,
    execution_url: &str,
    l2_url: Option<&str>,
    rollup: Option<&Path>,
    args: &LightclientSyncArgs,
) -> anyhow::Result<()> {
    let address: Address = address.parse().map_err(|e| {
        coded(ExitKind::Usage, anyhow::anyhow!("address {address:?} is invalid: {e}"))
    })?;
    let slot = parse_slot(slot)?;
    let (_, store, _) = sync_l1(home, args, true)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let l1_rpc = HttpExecution::new(execution_url, timeout);
    let l1 = finalized_l1_anchor(&store);
    let data_err = |e: lorad_lightclient::LightClientError| {
        let kind = if matches!(e, lorad_lightclient::LightClientError::Rpc { .. }) {
            ExitKind::Unavailable
        } else {
            ExitKind::DataErr
        };
        coded(kind, e)
    };
    let mut out = std::io::stdout().lock();
    if !l2 {
        let proof = l1_rpc.get_proof(address, &[slot], l1.block_number).map_err(data_err)?;
        let verified = verify_eip1186(l1.state_root, &proof).map_err(data_err)?;
        // A response without the slot's proof proves nothing about it: never print a zero.
        let value = verified.value_of(slot).ok_or_else(|| {
            coded(
                ExitKind::DataErr,
                anyhow::anyhow!("the eth_getProof answer has no proof for slot {slot}"),
            )
        })?;
        let line = serde_json::json!({"layer": "l1", "address": address, "slot": slot, "value": value,
            "block_number": l1.block_number, "block_hash": l1.block_hash, "label": "finalized"});
        return print_read(&mut out, args.json, &line);
    }
    let rollup = rollup.ok_or_else(|| {
        coded(ExitKind::Usage, anyhow::anyhow!("--l2 needs --rollup <config.json>"))
    })?;
    let l2_url =
        l2_url.ok_or_else(|| coded(ExitKind::Usage, anyhow::anyhow!("--l2 needs --l2-url")))?;
    let text = std::fs::read_to_string(rollup)
        .with_context(|| format!("cannot read {}", rollup.display()))
        .map_err(|e| coded(ExitKind::Config, e))?;
    let config: RollupConfig = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a rollup config", rollup.display()))
        .map_err(|e| coded(ExitKind::Config, e))?;
    let l2_rpc = HttpExecution::new(l2_url, timeout);
    let output = prove_latest_output(&l1, &l1_rpc, &config.anchor).map_err(data_err)?;
    let block = prove_l2_block(&output, &l2_rpc).map_err(data_err)?;
    let mut state = VerifiedState::new(16);
    state.insert(block.clone());
    let policy = ReadPolicy { min_label: L2Label::Safe, max_age_secs: None };
    let read =
        state.verified_storage(&l2_rpc, address, slot, policy, now_unix()).map_err(data_err)?;
    let line = serde_json::json!({"layer": "l2", "chain_id": config.chain_id, "address": address, "slot": slot,
        "value": read.value, "block_number": read.block_number, "block_hash": read.block_hash, "label": read.label,
        "output_root": output.output_root, "l1_block_number": l1.block_number});
    print_read(&mut out, args.json, &line)
}

fn print_read(out: &mut impl Write, json: bool, v: &serde_json::Value) -> anyhow::Result<()> {
    if json {
        print_json(out, v)?;
    } else {
        writeln!(
            out,
            "{} {} slot {} = {} (verified at {} block {} {}, {})",
            v["layer"].as_str().unwrap_or_default(),
            v["address"].as_str().unwrap_or_default(),
            v["slot"].as_str().unwrap_or_default(),
            v["value"].as_str().unwrap_or_default(),
            v["layer"].as_str().unwrap_or_default(),
            v["block_number"],
            v["block_hash"].as_str().unwrap_or_default(),
            v["label"].as_str().unwrap_or_default(),
        )?;
    }
    Ok(())
}
