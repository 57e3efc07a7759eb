//! Offline replay of saved Beacon-API light-client responses (the air-gapped audit).
//!
//! An operator saves `bootstrap.json`, `updates.json`, `finality.json` and
//! `optimistic.json` (the last three optional) from any beacon node; an auditor replays
//! them against a checkpoint root they trust and gets the verified finalized execution
//! block. [`SavedChain::read_dir`] is the only I/O; [`replay`] is pure.

use std::path::{Path, PathBuf};

use alloy_primitives::B256;
use serde::Serialize;

use crate::consensus::{
    LightClientHeader, LightClientStore, LightClientUpdate, NetworkConfig, UpdateOutcome,
    parse_bootstrap_json, parse_finality_update_json, parse_optimistic_update_json,
    parse_updates_json, verify_checkpoint_age,
};
use crate::error::LightClientError;

/// The saved responses, as text.
#[derive(Debug, Clone, Default)]
pub struct SavedChain {
    /// `light_client/bootstrap/{root}` response (required).
    pub bootstrap: String,
    /// `light_client/updates` response: a list of updates, oldest first.
    pub updates: Option<String>,
    /// `light_client/finality_update` response.
    pub finality: Option<String>,
    /// `light_client/optimistic_update` response.
    pub optimistic: Option<String>,
}

fn read_file(path: PathBuf, required: bool) -> Result<Option<String>, LightClientError> {
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LightClientError::Io { path, source }),
    }
}

impl SavedChain {
    /// Reads the four files from `dir` (helios' fixture layout); only the bootstrap is
    /// required.
    pub fn read_dir(dir: &Path) -> Result<Self, LightClientError> {
        Ok(SavedChain {
            bootstrap: read_file(dir.join("bootstrap.json"), true)?.unwrap_or_default(),
            updates: read_file(dir.join("updates.json"), false)?,
            finality: read_file(dir.join("finality.json"), false)?,
            optimistic: read_file(dir.join("optimistic.json"), false)?,
        })
    }
}

/// Replay options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// The clock's slot. `None`: the latest signature slot in the data, i.e. verify the
    /// data as of when it was saved.
    pub current_slot: Option<u64>,
    /// `(now_unix, max_age_secs)`: refuse a checkpoint older than this.
    pub max_checkpoint_age: Option<(u64, u64)>,
}

/// A verified header, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadSummary {
    /// Beacon slot.
    pub slot: u64,
    /// Beacon block root.
    pub beacon_root: B256,
    /// Execution block number.
    pub execution_block_number: u64,
    /// Execution block hash.
    pub execution_block_hash: B256,
    /// Execution state root (what storage proofs verify against).
    pub execution_state_root: B256,
}

impl HeadSummary {
    /// Summarises a verified header.
    pub fn of(h: &LightClientHeader) -> Self {
        HeadSummary {
            slot: h.beacon.slot,
            beacon_root: h.beacon.hash_tree_root(),
            execution_block_number: h.execution.block_number,
            execution_block_hash: h.execution.block_hash,
            execution_state_root: h.execution.state_root,
        }
    }
}

/// One verified step.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStep {
    /// `bootstrap`, `update N`, `finality` or `optimistic`.
    pub what: String,
    /// Signature slot (the checkpoint slot for the bootstrap).
    pub signature_slot: u64,
    /// Sync-committee participants (0 for the bootstrap).
    pub participants: u64,
    /// Store period after the step.
    pub period: u64,
    /// What the step changed.
    #[serde(skip)]
    pub outcome: UpdateOutcome,
    /// Finalized head after the step.
    pub finalized: HeadSummary,
    /// Optimistic head after the step.
    pub optimistic: HeadSummary,
}

/// The result of a full replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Network replayed on.
    pub network: String,
    /// The trusted checkpoint.
    pub checkpoint: B256,
    /// The clock slot used.
    pub current_slot: u64,
    /// Every verified step, in order.
    pub steps: Vec<ReplayStep>,
    /// Final finalized head.
    pub finalized: HeadSummary,
    /// Final optimistic head.
    pub optimistic: HeadSummary,
}

/// Verifies the saved chain from `checkpoint`; `on_step` sees each step as it verifies.
/// Stops at the first error, which names the step.
pub fn replay(
    cfg: &NetworkConfig,
    checkpoint: B256,
    saved: &SavedChain,
    opts: ReplayOptions,
    mut on_step: impl FnMut(&ReplayStep),
) -> Result<ReplayReport, LightClientError> {
    cfg.validate()?;
    let size = cfg.preset.sync_committee_size;
    let (bootstrap, _) = parse_bootstrap_json(&saved.bootstrap, size)?;
    let checkpoint_slot = bootstrap.header.beacon.slot;
    if let Some((now, max_age)) = opts.max_checkpoint_age {
        verify_checkpoint_age(cfg, checkpoint_slot, now, max_age)?;
    }
    let mut queue: Vec<(String, LightClientUpdate, bool)> = Vec::new();
    if let Some(json) = &saved.updates {
        for (i, (u, _)) in parse_updates_json(json, size)?.into_iter().enumerate() {
            queue.push((format!("update {i}"), u, false));
        }
    }
    if let Some(json) = &saved.finality {
        queue.push(("finality".into(), parse_finality_update_json(json, size)?.0, true));
    }
    if let Some(json) = &saved.optimistic {
        queue.push(("optimistic".into(), parse_optimistic_update_json(json, size)?.0, false));
    }
    let current_slot = opts.current_slot.unwrap_or_else(|| {
        queue.iter().map(|(_, u, _)| u.signature_slot).max().unwrap_or(checkpoint_slot)
    });

    let mut store = LightClientStore::bootstrap(cfg, checkpoint, bootstrap)?;
    let mut steps = Vec::with_capacity(queue.len() + 1);
    let step = |what: String, slot: u64, participants: u64, outcome, store: &LightClientStore| {
        ReplayStep {
            what,
            signature_slot: slot,
            participants,
            period: store.period(cfg),
            outcome,
            finalized: HeadSummary::of(&store.finalized_header),
            optimistic: HeadSummary::of(&store.optimistic_header),
        }
    };
    let first = step("bootstrap".into(), checkpoint_slot, 0, UpdateOutcome::default(), &store);
    on_step(&first);
    steps.push(first);
    for (what, update, finality) in queue {
        let (slot, participants) = (update.signature_slot, update.sync_aggregate.participants());
        let result = if finality {
            store.process_finality_update(cfg, update, current_slot)
        } else {
            store.process_update(cfg, update, current_slot)
        };
        let outcome = result
            .map_err(|e| LightClientError::Step { step: what.clone(), source: Box::new(e) })?;
        let s = step(what, slot, participants, outcome, &store);
        on_step(&s);
        steps.push(s);
    }
    Ok(ReplayReport {
        network: cfg.name.clone(),
        checkpoint,
        current_slot,
        steps,
        finalized: HeadSummary::of(&store.finalized_header),
        optimistic: HeadSummary::of(&store.optimistic_header),
    })
}
