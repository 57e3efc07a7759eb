//! The Altair light-client sync protocol (consensus-specs `altair/light-client/
//! sync-protocol.md`, with the Capella/Deneb/Electra changes), over a [`LightClientStore`].
//!
//! Verification and state change are separate: `verify_*` take `&self` and do no I/O and
//! no mutation; `apply_*` mutate only after verification passed. `process_*` is the spec's
//! composition of the two.

use std::sync::{Arc, OnceLock};

use alloy_primitives::B256;

use super::bls::{CommitteeKeys, verify_sync_aggregate};
use super::config::{
    EXECUTION_PAYLOAD_GINDEX, Fork, NetworkConfig, current_sync_committee_gindex,
    finalized_root_gindex, next_sync_committee_gindex, signing_root,
};
use super::ssz::{
    gindex_depth, is_valid_merkle_branch, is_valid_normalized_merkle_branch, subtree_index,
};
use super::types::{LightClientBootstrap, LightClientHeader, LightClientUpdate, SyncCommittee};
use crate::error::LightClientError;

/// `MIN_SYNC_COMMITTEE_PARTICIPANTS`.
pub const MIN_SYNC_COMMITTEE_PARTICIPANTS: u64 = 1;

/// A sync committee with its lazily decompressed keys.
#[derive(Debug)]
pub struct Committee {
    /// The committee as proven.
    pub committee: SyncCommittee,
    keys: OnceLock<Arc<CommitteeKeys>>,
}

impl Clone for Committee {
    fn clone(&self) -> Self {
        let keys = OnceLock::new();
        if let Some(k) = self.keys.get() {
            let _ = keys.set(Arc::clone(k));
        }
        Committee { committee: self.committee.clone(), keys }
    }
}

impl Committee {
    fn new(committee: SyncCommittee) -> Self {
        Committee { committee, keys: OnceLock::new() }
    }

    /// The decompressed keys (computed once; an invalid key is reported every time).
    fn keys(&self) -> Result<&CommitteeKeys, LightClientError> {
        if let Some(k) = self.keys.get() {
            return Ok(k);
        }
        let keys = Arc::new(CommitteeKeys::new(&self.committee)?);
        Ok(self.keys.get_or_init(|| keys))
    }
}

/// `LightClientStore`.
#[derive(Debug, Clone)]
pub struct LightClientStore {
    /// The latest finalized header.
    pub finalized_header: LightClientHeader,
    /// Committee of the finalized header's period.
    pub current_sync_committee: Committee,
    /// Committee of the next period, once proven.
    pub next_sync_committee: Option<Committee>,
    /// Best update seen for the current period, kept for [`Self::force_update`].
    pub best_valid_update: Option<LightClientUpdate>,
    /// The latest header signed by enough of the committee (not necessarily final).
    pub optimistic_header: LightClientHeader,
    /// Highest participation seen in the previous period.
    pub previous_max_active_participants: u64,
    /// Highest participation seen in the current period.
    pub current_max_active_participants: u64,
}

/// What an accepted update changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The finalized header moved forward.
    pub finalized_advanced: bool,
    /// The optimistic header moved forward.
    pub optimistic_advanced: bool,
    /// The store moved into the next sync-committee period.
    pub period_advanced: bool,
    /// The store learned the next period's committee.
    pub next_committee_learned: bool,
}

/// `is_valid_light_client_header` (Capella onwards).
pub fn verify_light_client_header(
    cfg: &NetworkConfig,
    header: &LightClientHeader,
) -> Result<(), LightClientError> {
    let fork = cfg.fork_at_slot(header.beacon.slot);
    if fork < Fork::Deneb
        && (header.execution.blob_gas_used != 0 || header.execution.excess_blob_gas != 0)
    {
        return Err(LightClientError::UnexpectedField { what: "blob gas fields before Deneb" });
    }
    if fork < Fork::Capella {
        if header.execution != LightClientHeader::empty().execution
            || header.execution_branch.iter().any(|b| !b.is_zero())
        {
            return Err(LightClientError::UnexpectedField {
                what: "execution header before Capella",
            });
        }
        return Ok(());
    }
    let ok = is_valid_merkle_branch(
        header.execution_root(cfg),
        &header.execution_branch,
        gindex_depth(EXECUTION_PAYLOAD_GINDEX),
        subtree_index(EXECUTION_PAYLOAD_GINDEX),
        header.beacon.body_root,
    );
    if !ok {
        return Err(LightClientError::InvalidBranch {
            what: "execution payload",
            slot: header.beacon.slot,
        });
    }
    Ok(())
}

/// Checks a bootstrap against the trusted block root (the first half of
/// `initialize_light_client_store`).
pub fn verify_bootstrap(
    cfg: &NetworkConfig,
    trusted_block_root: B256,
    bootstrap: &LightClientBootstrap,
) -> Result<(), LightClientError> {
    verify_light_client_header(cfg, &bootstrap.header)?;
    let computed = bootstrap.header.beacon.hash_tree_root();
    if computed != trusted_block_root {
        return Err(LightClientError::CheckpointMismatch {
            expected: trusted_block_root,
            computed,
        });
    }
    check_committee_size(cfg, &bootstrap.current_sync_committee)?;
    let slot = bootstrap.header.beacon.slot;
    let ok = is_valid_normalized_merkle_branch(
        bootstrap.current_sync_committee.hash_tree_root(),
        &bootstrap.current_sync_committee_branch,
        current_sync_committee_gindex(cfg.fork_at_slot(slot)),
        bootstrap.header.beacon.state_root,
    );
    if !ok {
        return Err(LightClientError::InvalidBranch { what: "current sync committee", slot });
    }
    Ok(())
}

/// Weak-subjectivity policy: refuses a checkpoint older than `max_age_secs` at `now`.
pub fn verify_checkpoint_age(
    cfg: &NetworkConfig,
    checkpoint_slot: u64,
    now_unix: u64,
    max_age_secs: u64,
) -> Result<(), LightClientError> {
    let age_secs = now_unix.saturating_sub(cfg.slot_start_time(checkpoint_slot));
    if age_secs > max_age_secs {
        return Err(LightClientError::CheckpointTooOld {
            slot: checkpoint_slot,
            age_secs,
            max_age_secs,
        });
    }
    Ok(())
}

fn check_committee_size(cfg: &NetworkConfig, c: &SyncCommittee) -> Result<(), LightClientError> {
    if c.pubkeys.len() != cfg.preset.sync_committee_size {
        return Err(LightClientError::CommitteeSize {
            expected: cfg.preset.sync_committee_size,
            got: c.pubkeys.len(),
        });
    }
    Ok(())
}

fn header_root_or_zero(h: &LightClientHeader) -> B256 {
    h.beacon.hash_tree_root()
}

impl LightClientStore {
    /// `initialize_light_client_store`: verifies the bootstrap, then starts from it.
    pub fn bootstrap(
        cfg: &NetworkConfig,
        trusted_block_root: B256,
        bootstrap: LightClientBootstrap,
    ) -> Result<Self, LightClientError> {
        verify_bootstrap(cfg, trusted_block_root, &bootstrap)?;
        Ok(LightClientStore {
            finalized_header: bootstrap.header.clone(),
            current_sync_committee: Committee::new(bootstrap.current_sync_committee),
            next_sync_committee: None,
            best_valid_update: None,
            optimistic_header: bootstrap.header,
            previous_max_active_participants: 0,
            current_max_active_participants: 0,
        })
    }

    /// Period of the finalized header.
    pub fn period(&self, cfg: &NetworkConfig) -> u64 {
        cfg.period_at_slot(self.finalized_header.beacon.slot)
    }

    /// `get_safety_threshold`.
    pub fn safety_threshold(&self) -> u64 {
        self.previous_max_active_participants.max(self.current_max_active_participants) / 2
    }

    /// `validate_light_client_update`: every check, no state change.
    pub fn verify_update(
        &self,
        cfg: &NetworkConfig,
        update: &LightClientUpdate,
        current_slot: u64,
    ) -> Result<(), LightClientError> {
        let participants = update.sync_aggregate.participants();
        if participants < MIN_SYNC_COMMITTEE_PARTICIPANTS {
            return Err(LightClientError::NotEnoughParticipants {
                participants,
                required: MIN_SYNC_COMMITTEE_PARTICIPANTS,
            });
        }
        verify_light_client_header(cfg, &update.attested_header)?;
        let attested_slot = update.attested_header.beacon.slot;
        let finalized_slot = update.finalized_header.beacon.slot;
        if !(current_slot >= update.signature_slot
            && update.signature_slot > attested_slot
            && attested_slot >= finalized_slot)
        {
            return Err(LightClientError::InvalidTiming {
                current_slot,
                signature_slot: update.signature_slot,
                attested_slot,
                finalized_slot,
            });
        }
        let store_period = self.period(cfg);
        let signature_period = cfg.period_at_slot(update.signature_slot);
        let next_known = self.next_sync_committee.is_some();
        let period_ok = if next_known {
            signature_period == store_period || signature_period == store_period + 1
        } else {
            signature_period == store_period
        };
        if !period_ok {
            return Err(LightClientError::WrongPeriod {
                signature_period,
                store_period,
                next_known,
            });
        }
        let attested_period = cfg.period_at_slot(attested_slot);
        let has_next_committee =
            !next_known && update.is_sync_committee_update() && attested_period == store_period;
        if !(attested_slot > self.finalized_header.beacon.slot || has_next_committee) {
            return Err(LightClientError::IrrelevantUpdate {
                attested_slot,
                finalized_slot: self.finalized_header.beacon.slot,
            });
        }
        let attested_fork = cfg.fork_at_slot(attested_slot);
        let state_root = update.attested_header.beacon.state_root;

        if !update.is_finality_update() {
            if !update.finalized_header.is_empty() {
                return Err(LightClientError::UnexpectedField {
                    what: "finalized header of an update without finality branch",
                });
            }
        } else {
            let finalized_root = if finalized_slot == 0 {
                if !update.finalized_header.is_empty() {
                    return Err(LightClientError::UnexpectedField {
                        what: "finalized header at genesis",
                    });
                }
                B256::ZERO
            } else {
                verify_light_client_header(cfg, &update.finalized_header)?;
                header_root_or_zero(&update.finalized_header)
            };
            let ok = is_valid_normalized_merkle_branch(
                finalized_root,
                &update.finality_branch,
                finalized_root_gindex(attested_fork),
                state_root,
            );
            if !ok {
                return Err(LightClientError::InvalidBranch {
                    what: "finality",
                    slot: attested_slot,
                });
            }
        }

        if !update.is_sync_committee_update() {
            if !update.next_sync_committee.is_empty() {
                return Err(LightClientError::UnexpectedField {
                    what: "next sync committee of an update without its branch",
                });
            }
        } else {
            check_committee_size(cfg, &update.next_sync_committee)?;
            if attested_period == store_period
                && let Some(next) = &self.next_sync_committee
                && next.committee != update.next_sync_committee
            {
                return Err(LightClientError::NextCommitteeMismatch);
            }
            let ok = is_valid_normalized_merkle_branch(
                update.next_sync_committee.hash_tree_root(),
                &update.next_sync_committee_branch,
                next_sync_committee_gindex(attested_fork),
                state_root,
            );
            if !ok {
                return Err(LightClientError::InvalidBranch {
                    what: "next sync committee",
                    slot: attested_slot,
                });
            }
        }

        let committee = if signature_period == store_period {
            &self.current_sync_committee
        } else {
            // `period_ok` guarantees the next committee is known here.
            self.next_sync_committee.as_ref().ok_or(LightClientError::WrongPeriod {
                signature_period,
                store_period,
                next_known,
            })?
        };
        let fork_version_slot = update.signature_slot.max(1) - 1;
        let version = cfg.fork_version_at_epoch(cfg.epoch_at_slot(fork_version_slot));
        let domain = cfg.sync_committee_domain(version);
        let message = signing_root(update.attested_header.beacon.hash_tree_root(), domain);
        verify_sync_aggregate(
            committee.keys()?,
            &update.sync_aggregate,
            message,
            update.signature_slot,
        )
    }

    /// `process_light_client_update` after verification: tracks the best update and
    /// participation, moves the optimistic and (with 2/3 of the committee) finalized headers.
    pub fn apply_update(
        &mut self,
        cfg: &NetworkConfig,
        update: LightClientUpdate,
    ) -> Result<UpdateOutcome, LightClientError> {
        let participants = update.sync_aggregate.participants();
        let mut outcome = UpdateOutcome::default();
        let replace_best = match &self.best_valid_update {
            None => true,
            Some(best) => is_better_update(cfg, &update, best),
        };
        if replace_best {
            self.best_valid_update = Some(update.clone());
        }
        self.current_max_active_participants =
            self.current_max_active_participants.max(participants);
        if participants > self.safety_threshold()
            && update.attested_header.beacon.slot > self.optimistic_header.beacon.slot
        {
            self.optimistic_header = update.attested_header.clone();
            outcome.optimistic_advanced = true;
        }
        let has_finalized_next_committee = self.next_sync_committee.is_none()
            && update.is_sync_committee_update()
            && update.is_finality_update()
            && cfg.period_at_slot(update.finalized_header.beacon.slot)
                == cfg.period_at_slot(update.attested_header.beacon.slot);
        let supermajority = participants * 3 >= update.sync_aggregate.size() as u64 * 2;
        if supermajority
            && (update.finalized_header.beacon.slot > self.finalized_header.beacon.slot
                || has_finalized_next_committee)
        {
            let applied = self.apply_light_client_update(cfg, update)?;
            outcome.finalized_advanced = applied.finalized_advanced;
            outcome.period_advanced = applied.period_advanced;
            outcome.next_committee_learned = applied.next_committee_learned;
            outcome.optimistic_advanced |= applied.optimistic_advanced;
            self.best_valid_update = None;
        }
        Ok(outcome)
    }

    /// `process_light_client_update`: verify, then apply.
    pub fn process_update(
        &mut self,
        cfg: &NetworkConfig,
        update: LightClientUpdate,
        current_slot: u64,
    ) -> Result<UpdateOutcome, LightClientError> {
        self.verify_update(cfg, &update, current_slot)?;
        self.apply_update(cfg, update)
    }

    /// `process_light_client_finality_update`, refusing a finalized header older than the
    /// store's: a finality update exists to move finality forward, and an older one is a
    /// lagging or lying server.
    pub fn process_finality_update(
        &mut self,
        cfg: &NetworkConfig,
        update: LightClientUpdate,
        current_slot: u64,
    ) -> Result<UpdateOutcome, LightClientError> {
        let (update_slot, store_slot) =
            (update.finalized_header.beacon.slot, self.finalized_header.beacon.slot);
        if update.is_finality_update() && update_slot < store_slot {
            return Err(LightClientError::StaleFinality { update_slot, store_slot });
        }
        self.process_update(cfg, update, current_slot)
    }

    /// `process_light_client_store_force_update`: after a whole period without finality,
    /// adopt the best valid update so the client keeps following committees.
    pub fn force_update(
        &mut self,
        cfg: &NetworkConfig,
        current_slot: u64,
    ) -> Result<Option<UpdateOutcome>, LightClientError> {
        let timeout = cfg.preset.slots_per_period();
        if current_slot <= self.finalized_header.beacon.slot.saturating_add(timeout) {
            return Ok(None);
        }
        let Some(mut best) = self.best_valid_update.take() else {
            return Ok(None);
        };
        if best.finalized_header.beacon.slot <= self.finalized_header.beacon.slot {
            best.finalized_header = best.attested_header.clone();
        }
        self.apply_light_client_update(cfg, best).map(Some)
    }

    /// `apply_light_client_update`: adopt the committee and finalized header of `update`.
    fn apply_light_client_update(
        &mut self,
        cfg: &NetworkConfig,
        update: LightClientUpdate,
    ) -> Result<UpdateOutcome, LightClientError> {
        let mut outcome = UpdateOutcome::default();
        let store_period = self.period(cfg);
        let finalized_period = cfg.period_at_slot(update.finalized_header.beacon.slot);
        let learned = (!update.next_sync_committee.is_empty())
            .then(|| Committee::new(update.next_sync_committee.clone()));
        match self.next_sync_committee.take() {
            None => {
                if finalized_period != store_period {
                    return Err(LightClientError::WrongPeriod {
                        signature_period: finalized_period,
                        store_period,
                        next_known: false,
                    });
                }
                outcome.next_committee_learned = learned.is_some();
                self.next_sync_committee = learned;
            }
            Some(next) if finalized_period == store_period + 1 => {
                self.current_sync_committee = next;
                self.next_sync_committee = learned;
                self.previous_max_active_participants = self.current_max_active_participants;
                self.current_max_active_participants = 0;
                outcome.period_advanced = true;
            }
            Some(next) => self.next_sync_committee = Some(next),
        }
        if update.finalized_header.beacon.slot > self.finalized_header.beacon.slot {
            self.finalized_header = update.finalized_header;
            outcome.finalized_advanced = true;
            if self.finalized_header.beacon.slot > self.optimistic_header.beacon.slot {
                self.optimistic_header = self.finalized_header.clone();
                outcome.optimistic_advanced = true;
            }
        }
        Ok(outcome)
    }
}

/// `is_better_update`: the spec's ranking of two valid updates for the same period.
pub fn is_better_update(
    cfg: &NetworkConfig,
    new: &LightClientUpdate,
    old: &LightClientUpdate,
) -> bool {
    let max = new.sync_aggregate.size() as u64;
    let (new_active, old_active) =
        (new.sync_aggregate.participants(), old.sync_aggregate.participants());
    let (new_super, old_super) = (new_active * 3 >= max * 2, old_active * 3 >= max * 2);
    if new_super != old_super {
        return new_super;
    }
    if !new_super && new_active != old_active {
        return new_active > old_active;
    }
    let relevant_committee = |u: &LightClientUpdate| {
        u.is_sync_committee_update()
            && cfg.period_at_slot(u.attested_header.beacon.slot)
                == cfg.period_at_slot(u.signature_slot)
    };
    let (new_rel, old_rel) = (relevant_committee(new), relevant_committee(old));
    if new_rel != old_rel {
        return new_rel;
    }
    let (new_fin, old_fin) = (new.is_finality_update(), old.is_finality_update());
    if new_fin != old_fin {
        return new_fin;
    }
    if new_fin {
        let committee_finality = |u: &LightClientUpdate| {
            cfg.period_at_slot(u.finalized_header.beacon.slot)
                == cfg.period_at_slot(u.attested_header.beacon.slot)
        };
        let (n, o) = (committee_finality(new), committee_finality(old));
        if n != o {
            return n;
        }
    }
    if new_active != old_active {
        return new_active > old_active;
    }
    if new.attested_header.beacon.slot != old.attested_header.beacon.slot {
        return new.attested_header.beacon.slot < old.attested_header.beacon.slot;
    }
    new.signature_slot < old.signature_slot
}
