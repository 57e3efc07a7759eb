//! The sync driver: bootstrap from a checkpoint, walk sync-committee periods up to the
//! clock, then apply the latest finality and optimistic updates. Fetches through
//! [`BeaconApi`]; every byte it receives goes through the pure verifiers.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::consensus::{
    LightClientHeader, LightClientStore, NetworkConfig, UpdateOutcome, parse_bootstrap_json,
    parse_finality_update_json, parse_optimistic_update_json, parse_updates_json,
    verify_checkpoint_age,
};
use crate::error::LightClientError;
use crate::rpc::{BeaconApi, MAX_REQUEST_LIGHT_CLIENT_UPDATES};

/// Sync options.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// The clock's slot (from wall time, or the data's time for an offline replay).
    pub current_slot: u64,
    /// `(now_unix, max_age_secs)`: refuse a checkpoint older than this.
    pub max_checkpoint_age: Option<(u64, u64)>,
    /// Apply the latest finality update after the periods.
    pub finality: bool,
    /// Apply the latest optimistic update last.
    pub optimistic: bool,
}

/// A verified header, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Execution block timestamp.
    pub execution_timestamp: u64,
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
            execution_timestamp: h.execution.timestamp,
        }
    }
}

/// One verified step.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStep {
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

/// The result of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Network.
    pub network: String,
    /// The trusted checkpoint.
    pub checkpoint: B256,
    /// The clock slot used.
    pub current_slot: u64,
    /// Every verified step, in order.
    pub steps: Vec<SyncStep>,
    /// Final finalized head.
    pub finalized: HeadSummary,
    /// Final optimistic head.
    pub optimistic: HeadSummary,
}

fn step_of(
    cfg: &NetworkConfig,
    what: String,
    slot: u64,
    participants: u64,
    outcome: UpdateOutcome,
    store: &LightClientStore,
) -> SyncStep {
    SyncStep {
        what,
        signature_slot: slot,
        participants,
        period: store.period(cfg),
        outcome,
        finalized: HeadSummary::of(&store.finalized_header),
        optimistic: HeadSummary::of(&store.optimistic_header),
    }
}

fn in_step<T>(what: &str, r: Result<T, LightClientError>) -> Result<T, LightClientError> {
    r.map_err(|e| LightClientError::Step { step: what.to_owned(), source: Box::new(e) })
}

/// Syncs from `checkpoint` to `opts.current_slot`. `on_step` sees each verified step.
/// Returns the store (to keep following the chain) and the report.
pub fn sync(
    cfg: &NetworkConfig,
    beacon: &dyn BeaconApi,
    checkpoint: B256,
    opts: SyncOptions,
    mut on_step: impl FnMut(&SyncStep),
) -> Result<(LightClientStore, SyncReport), LightClientError> {
    cfg.validate()?;
    let size = cfg.preset.sync_committee_size;
    let (bootstrap, _) =
        in_step("bootstrap", parse_bootstrap_json(&beacon.bootstrap(checkpoint)?, size))?;
    let checkpoint_slot = bootstrap.header.beacon.slot;
    if let Some((now, max_age)) = opts.max_checkpoint_age {
        verify_checkpoint_age(cfg, checkpoint_slot, now, max_age)?;
    }
    let mut store = LightClientStore::bootstrap(cfg, checkpoint, bootstrap)?;
    let mut steps = Vec::new();
    let mut record = |s: SyncStep, steps: &mut Vec<SyncStep>| {
        on_step(&s);
        steps.push(s);
    };
    record(
        step_of(cfg, "bootstrap".into(), checkpoint_slot, 0, UpdateOutcome::default(), &store),
        &mut steps,
    );

    let target = cfg.period_at_slot(opts.current_slot);
    let mut n = 0usize;
    while store.period(cfg) < target || (store.next_sync_committee.is_none() && n == 0) {
        let start = store.period(cfg);
        let count = (target + 1 - start.min(target)).clamp(1, MAX_REQUEST_LIGHT_CLIENT_UPDATES);
        let updates = in_step("updates", parse_updates_json(&beacon.updates(start, count)?, size))?;
        if updates.is_empty() {
            break;
        }
        let before = (store.period(cfg), store.next_sync_committee.is_some());
        for (update, _) in updates {
            let what = format!("update {n}");
            n += 1;
            let (slot, participants) =
                (update.signature_slot, update.sync_aggregate.participants());
            let outcome = in_step(&what, store.process_update(cfg, update, opts.current_slot))?;
            record(step_of(cfg, what, slot, participants, outcome, &store), &mut steps);
        }
        if (store.period(cfg), store.next_sync_committee.is_some()) == before {
            break; // the server has nothing newer; finality updates may still move us
        }
    }
    if opts.finality {
        let (update, _) =
            in_step("finality", parse_finality_update_json(&beacon.finality_update()?, size))?;
        let (slot, participants) = (update.signature_slot, update.sync_aggregate.participants());
        let outcome =
            in_step("finality", store.process_finality_update(cfg, update, opts.current_slot))?;
        record(step_of(cfg, "finality".into(), slot, participants, outcome, &store), &mut steps);
    }
    if opts.optimistic {
        let (update, _) = in_step(
            "optimistic",
            parse_optimistic_update_json(&beacon.optimistic_update()?, size),
        )?;
        let (slot, participants) = (update.signature_slot, update.sync_aggregate.participants());
        let outcome = in_step("optimistic", store.process_update(cfg, update, opts.current_slot))?;
        record(step_of(cfg, "optimistic".into(), slot, participants, outcome, &store), &mut steps);
    }
    let report = SyncReport {
        network: cfg.name.clone(),
        checkpoint,
        current_slot: opts.current_slot,
        steps,
        finalized: HeadSummary::of(&store.finalized_header),
        optimistic: HeadSummary::of(&store.optimistic_header),
    };
    Ok((store, report))
}
