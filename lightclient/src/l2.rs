//! The L2 driver: from a verified L1 block to a verified L2 block, fetching through
//! [`ExecutionRpc`] and checking everything with [`crate::op::anchor`].
//!
//! The rollup's L1 contracts are named in a [`RollupConfig`]; the newest proposal (oracle
//! output, factory game) or the registry anchor is proven at the L1 block, then the L2
//! header it names is fetched, hash-checked and tied to the output root through an L2
//! proof of the message passer's storage root (valid before and after Isthmus).

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::error::LightClientError;
use crate::header::verify_header_hash;
use crate::op::L2_TO_L1_MESSAGE_PASSER;
use crate::op::anchor::{
    FACTORY_GAME_LIST_SLOT, GAME_STATUS_SLOT, GameQuery, L1Anchor, ORACLE_OUTPUTS_SLOT,
    ProvenOutput, VerifiedL2Block, factory_game_slots, low_address, oracle_output_slots,
    registry_anchor_slots, registry_game_slots, slot_b256, verify_game_output, verify_game_proper,
    verify_l2_header, verify_oracle_output, verify_registry_anchor,
};
use crate::proof::{VerifiedProof, verify_eip1186};
use crate::rpc::ExecutionRpc;

/// Which L1 contract anchors the rollup's output roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnchorConfig {
    /// Legacy `L2OutputOracle`: the newest proposal.
    Oracle {
        /// Oracle address on L1.
        address: Address,
        /// `FINALIZATION_PERIOD_SECONDS` of the deployment.
        finalization_period_secs: u64,
    },
    /// `DisputeGameFactory`: the newest game.
    Game {
        /// Factory address on L1.
        factory: Address,
        /// Slot of `_disputeGameList` (104 for factory v1.0.0+).
        #[serde(default = "default_list_slot")]
        list_slot: u64,
        /// The respected game type (0 permissionless cannon, 1 permissioned).
        game_type: u32,
        /// `disputeGameFinalityDelaySeconds` of the deployment.
        finality_delay_secs: u64,
        /// The deployment's `AnchorStateRegistry` (v3): when set, a game it has blacklisted or
        /// retired is refused ([`crate::op::anchor::verify_game_proper`]).
        #[serde(default)]
        registry: Option<Address>,
    },
    /// `AnchorStateRegistry`: the anchor (finalized) root.
    Registry {
        /// Registry address on L1.
        address: Address,
    },
}

fn default_list_slot() -> u64 {
    FACTORY_GAME_LIST_SLOT
}

/// An OP Stack rollup as the light client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupConfig {
    /// L2 chain id (gossip signatures are bound to it).
    pub chain_id: u64,
    /// Where output roots are anchored on L1.
    pub anchor: AnchorConfig,
    /// L1 `SystemConfig` (holds the unsafe-block signer).
    pub system_config: Option<Address>,
}

/// Reads one proven storage word of `address` at the L1 anchor.
fn l1_word(
    l1: &L1Anchor,
    rpc: &dyn ExecutionRpc,
    address: Address,
    at: B256,
) -> Result<U256, LightClientError> {
    let proof = rpc.get_proof(address, &[at], l1.block_number)?;
    if proof.address != address {
        return Err(LightClientError::AnchorData {
            reason: format!("asked for {address}, got {}", proof.address),
        });
    }
    proven_value(&verify_eip1186(l1.state_root, &proof)?, at)
}

fn proven_value(proof: &VerifiedProof, at: B256) -> Result<U256, LightClientError> {
    proof.value_of(at).ok_or_else(|| LightClientError::AnchorData {
        reason: format!("no storage proof for {at}"),
    })
}

fn newest_index(len: U256, what: &str) -> Result<u64, LightClientError> {
    let len = u64::try_from(len).map_err(|_| LightClientError::AnchorData {
        reason: format!("{what} length {len} exceeds u64"),
    })?;
    len.checked_sub(1)
        .ok_or_else(|| LightClientError::AnchorData { reason: format!("{what} is empty") })
}

/// Proves the newest output root the rollup's L1 anchor holds at `l1`.
pub fn prove_latest_output(
    l1: &L1Anchor,
    l1_rpc: &dyn ExecutionRpc,
    anchor: &AnchorConfig,
) -> Result<ProvenOutput, LightClientError> {
    match anchor {
        AnchorConfig::Oracle { address, finalization_period_secs } => {
            let index = newest_index(
                l1_word(l1, l1_rpc, *address, slot_b256(ORACLE_OUTPUTS_SLOT))?,
                "l2Outputs",
            )?;
            let proof = l1_rpc.get_proof(*address, &oracle_output_slots(index), l1.block_number)?;
            verify_oracle_output(l1, *address, index, *finalization_period_secs, &proof)
        }
        AnchorConfig::Game { factory, list_slot, game_type, finality_delay_secs, registry } => {
            let index = newest_index(
                l1_word(l1, l1_rpc, *factory, slot_b256(*list_slot))?,
                "dispute game list",
            )?;
            let slots = factory_game_slots(*list_slot, index);
            let factory_proof = l1_rpc.get_proof(*factory, &slots, l1.block_number)?;
            let game_id = proven_value(&verify_eip1186(l1.state_root, &factory_proof)?, slots[1])?;
            let game = low_address(game_id);
            let game_proof =
                l1_rpc.get_proof(game, &[slot_b256(GAME_STATUS_SLOT)], l1.block_number)?;
            let code = l1_rpc.get_code(game, l1.block_number)?;
            if let Some(registry) = *registry {
                let slots = registry_game_slots(game);
                let proof = l1_rpc.get_proof(registry, &slots, l1.block_number)?;
                verify_game_proper(l1, registry, &proof, game, &game_proof)?;
            }
            let q = GameQuery {
                factory: *factory,
                list_slot: *list_slot,
                index,
                game_type: *game_type,
                finality_delay_secs: *finality_delay_secs,
            };
            verify_game_output(l1, &q, &factory_proof, &game_proof, &code)
        }
        AnchorConfig::Registry { address } => {
            let slots = registry_anchor_slots();
            let proof = l1_rpc.get_proof(*address, &slots, l1.block_number)?;
            let word = proven_value(&verify_eip1186(l1.state_root, &proof)?, slots[0])?;
            let anchor_game = low_address(word);
            if anchor_game.is_zero() {
                return verify_registry_anchor(l1, *address, &proof, None);
            }
            let game_proof =
                l1_rpc.get_proof(anchor_game, &[slot_b256(GAME_STATUS_SLOT)], l1.block_number)?;
            let code = l1_rpc.get_code(anchor_game, l1.block_number)?;
            verify_registry_anchor(l1, *address, &proof, Some((&game_proof, &code)))
        }
    }
}

/// Fetches the L2 header `output` names, checks its hash, proves the message passer's
/// storage root under it and the output root over both.
pub fn prove_l2_block(
    output: &ProvenOutput,
    l2_rpc: &dyn ExecutionRpc,
) -> Result<VerifiedL2Block, LightClientError> {
    let (header, claimed) = l2_rpc.get_header(output.l2_block_number)?;
    verify_header_hash(&header, claimed)?;
    let message_passer = l2_rpc.get_proof(L2_TO_L1_MESSAGE_PASSER, &[], header.number)?;
    verify_l2_header(output, &header, Some(&message_passer))
}

/// One round of the L2 follower the daemon runs: sync L1 from `checkpoint` (a verified
/// finalized beacon root, the previous round's), prove the newest output root the rollup's
/// anchor holds at the finalized L1 block, and the L2 block it names. Returns the block (to
/// insert into a [`crate::verified::VerifiedState`]) and the sync report, whose finalized
/// root is the next round's checkpoint.
pub fn follow_once(
    cfg: &crate::consensus::NetworkConfig,
    beacon: &dyn crate::rpc::BeaconApi,
    checkpoint: B256,
    opts: crate::sync::SyncOptions,
    l1_rpc: &dyn ExecutionRpc,
    l2_rpc: &dyn ExecutionRpc,
    anchor: &AnchorConfig,
) -> Result<(VerifiedL2Block, crate::sync::SyncReport), LightClientError> {
    let (store, report) = crate::sync::sync(cfg, beacon, checkpoint, opts, |_| {})?;
    let l1 = finalized_l1_anchor(&store);
    let output = prove_latest_output(&l1, l1_rpc, anchor)?;
    let block = prove_l2_block(&output, l2_rpc)?;
    Ok((block, report))
}

/// The L1 block every L1 proof is checked against: the store's verified finalized header.
pub fn finalized_l1_anchor(store: &crate::consensus::LightClientStore) -> L1Anchor {
    let e = &store.finalized_header.execution;
    L1Anchor {
        block_number: e.block_number,
        block_hash: e.block_hash,
        state_root: e.state_root,
        timestamp: e.timestamp,
    }
}
