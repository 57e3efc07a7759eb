//! Anchoring OP Stack L2 blocks to verified L1 state.
//!
//! The client never trusts an output root a server returns. It proves what the rollup's L1
//! contracts store (EIP-1186 storage proofs against a *verified* L1 execution state root),
//! then recomputes the output root from the L2 header and requires equality. Three L1
//! sources are supported; the storage slots they rely on, and the contract versions those
//! slots hold for, are listed in `docs/lightclient.md`:
//!
//! - legacy `L2OutputOracle` (`l2Outputs` array at slot 3);
//! - a `DisputeGameFactory` game (`_disputeGameList` at slot 104 by default) and the game
//!   proxy itself (status in slot 0, root claim and L2 block number in its clone args);
//! - the `AnchorStateRegistry` anchor (`anchorGame` at slot 2, `startingAnchorRoot` at 3–4).
//!
//! Unsafe blocks come from sequencer gossip: the signer must equal the address in L1
//! `SystemConfig` storage at `UNSAFE_BLOCK_SIGNER_SLOT`, again proven from L1.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use serde::{Deserialize, Serialize};

use super::gossip::{GossipEnvelope, UNSAFE_BLOCK_SIGNER_SLOT};
use super::output::{L2_TO_L1_MESSAGE_PASSER, output_root_v0};
use crate::error::LightClientError;
use crate::proof::{VerifiedProof, verify_account_proof, verify_code, verify_eip1186};

/// How far an L2 block is proven. Ordered: `Unsafe < Safe < Finalized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L2Label {
    /// Signed by the sequencer key proven from L1 `SystemConfig`; not yet on L1.
    Unsafe,
    /// Its output root is posted on L1 (at a finalized L1 block) but not yet final:
    /// an oracle proposal inside its finalization period, or an unresolved game.
    Safe,
    /// Its output root is final on L1: an oracle proposal past its finalization period,
    /// a game resolved for the defender and past the finality delay, or the registry's anchor.
    Finalized,
}

/// The verified L1 execution block every L1 proof is checked against (from the consensus
/// store's finalized header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1Anchor {
    /// L1 block number.
    pub block_number: u64,
    /// L1 block hash.
    pub block_hash: B256,
    /// L1 state root.
    pub state_root: B256,
    /// L1 block timestamp (finalization periods are measured against it).
    pub timestamp: u64,
}

/// Where a proven output root came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSource {
    /// `L2OutputOracle.l2Outputs[index]`.
    Oracle {
        /// The oracle contract.
        oracle: Address,
        /// Output index.
        index: u64,
    },
    /// `DisputeGameFactory` game `index`.
    Game {
        /// The factory.
        factory: Address,
        /// Game index in the factory's list.
        index: u64,
        /// The game proxy.
        game: Address,
        /// Game status byte (0 in progress, 1 challenger wins, 2 defender wins).
        status: u8,
    },
    /// `AnchorStateRegistry` anchor.
    Anchor {
        /// The registry.
        registry: Address,
        /// The anchor game, or `None` for the starting anchor root.
        game: Option<Address>,
    },
}

/// An output root proven from L1 storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenOutput {
    /// The output root stored on L1.
    pub output_root: B256,
    /// The L2 block number it commits to.
    pub l2_block_number: u64,
    /// How final it is.
    pub label: L2Label,
    /// Where it came from.
    pub source: OutputSource,
    /// The L1 block it was proven at.
    pub l1: L1Anchor,
}

/// An L2 block whose header is proven to the given label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedL2Block {
    /// L2 block number.
    pub number: u64,
    /// L2 block hash.
    pub hash: B256,
    /// L2 state root: L2 storage proofs verify against it.
    pub state_root: B256,
    /// L2 block timestamp (max-age policies use it).
    pub timestamp: u64,
    /// How far it is proven.
    pub label: L2Label,
    /// The L1 block the proof is anchored at.
    pub l1: L1Anchor,
}

/// Storage slot of element `index` (of `width` slots each) of the dynamic array at `slot`.
pub fn array_element_slot(slot: u64, index: u64, width: u64) -> B256 {
    let base = U256::from_be_bytes(keccak256(U256::from(slot).to_be_bytes::<32>()).0);
    let at = base.wrapping_add(U256::from(index).wrapping_mul(U256::from(width)));
    B256::from(at.to_be_bytes::<32>())
}

/// Storage slot of `mapping[key]` for a mapping at `slot` (key left-padded to 32 bytes).
pub fn mapping_slot(key: B256, slot: u64) -> B256 {
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(key.as_slice());
    preimage[32..].copy_from_slice(&U256::from(slot).to_be_bytes::<32>());
    keccak256(preimage)
}

/// `L2OutputOracle.l2Outputs` array slot (stable across versions).
pub const ORACLE_OUTPUTS_SLOT: u64 = 3;
/// `DisputeGameFactory._disputeGameList` slot in factory v1.0.0+ (after OZ
/// `OwnableUpgradeable` gaps, `gameImpls` 101, `initBonds` 102, `_disputeGames` 103).
pub const FACTORY_GAME_LIST_SLOT: u64 = 104;
/// `FaultDisputeGame` slot 0: `createdAt` (bytes 0–7), `resolvedAt` (8–15), `status` (16).
pub const GAME_STATUS_SLOT: u64 = 0;
/// `AnchorStateRegistry.anchorGame` slot (registry v3).
pub const REGISTRY_ANCHOR_GAME_SLOT: u64 = 2;
/// `AnchorStateRegistry.startingAnchorRoot` slots: root at 3, L2 block number at 4.
pub const REGISTRY_STARTING_ROOT_SLOT: u64 = 3;

/// `AnchorStateRegistry.disputeGameBlacklist` (`mapping(IDisputeGame => bool)`, registry v3).
pub const REGISTRY_BLACKLIST_SLOT: u64 = 5;
/// `AnchorStateRegistry` slot packing `respectedGameType` (low 4 bytes) and
/// `retirementTimestamp` (the 8 above them), registry v3.
pub const REGISTRY_RETIREMENT_SLOT: u64 = 6;

/// Game status `DEFENDER_WINS`.
pub const GAME_DEFENDER_WINS: u8 = 2;
/// Game status `CHALLENGER_WINS`.
pub const GAME_CHALLENGER_WINS: u8 = 1;

/// The storage slots `verify_oracle_output` needs for output `index`: the array length,
/// the output root and the packed `(l2BlockNumber, timestamp)` word.
pub fn oracle_output_slots(index: u64) -> [B256; 3] {
    let root = array_element_slot(ORACLE_OUTPUTS_SLOT, index, 2);
    let meta =
        B256::from(U256::from_be_bytes(root.0).wrapping_add(U256::from(1)).to_be_bytes::<32>());
    [slot_b256(ORACLE_OUTPUTS_SLOT), root, meta]
}

/// The storage slots `verify_game_output` needs from the factory: the game list's length
/// and its element `index`.
pub fn factory_game_slots(list_slot: u64, index: u64) -> [B256; 2] {
    [slot_b256(list_slot), array_element_slot(list_slot, index, 1)]
}

/// The storage slots `verify_registry_anchor` needs: `anchorGame` and the starting root.
pub fn registry_anchor_slots() -> [B256; 3] {
    [
        slot_b256(REGISTRY_ANCHOR_GAME_SLOT),
        slot_b256(REGISTRY_STARTING_ROOT_SLOT),
        slot_b256(REGISTRY_STARTING_ROOT_SLOT + 1),
    ]
}

/// The storage slots `verify_game_proper` needs from the registry for `game`: its blacklist
/// entry and the retirement timestamp.
pub fn registry_game_slots(game: Address) -> [B256; 2] {
    let key = B256::left_padding_from(game.as_slice());
    [mapping_slot(key, REGISTRY_BLACKLIST_SLOT), slot_b256(REGISTRY_RETIREMENT_SLOT)]
}

/// The storage slot numbered `slot` as a 32-byte key.
pub fn slot_b256(slot: u64) -> B256 {
    B256::from(U256::from(slot).to_be_bytes::<32>())
}

/// Verifies `proof` against the L1 state root, requires it to be for `address` and to
/// contain every slot of `needed`; returns the proven values in `needed` order.
fn proven_slots(
    l1: &L1Anchor,
    address: Address,
    proof: &EIP1186AccountProofResponse,
    needed: &[B256],
) -> Result<(VerifiedProof, Vec<U256>), LightClientError> {
    if proof.address != address {
        return Err(LightClientError::AnchorData {
            reason: format!("proof is for {}, expected {address}", proof.address),
        });
    }
    let verified = verify_eip1186(l1.state_root, proof)?;
    let mut values = Vec::with_capacity(needed.len());
    for slot in needed {
        let value = verified.value_of(*slot).ok_or_else(|| LightClientError::AnchorData {
            reason: format!("proof for {address} lacks slot {slot}"),
        })?;
        values.push(value);
    }
    Ok((verified, values))
}

/// The address in the low 20 bytes of a storage word (an `address` field, a GameId's proxy).
pub fn low_address(v: U256) -> Address {
    Address::from_slice(&v.to_be_bytes::<32>()[12..])
}

fn to_u64(v: U256, what: &str) -> Result<u64, LightClientError> {
    u64::try_from(v)
        .map_err(|_| LightClientError::AnchorData { reason: format!("{what} {v} exceeds u64") })
}

/// Proves `L2OutputOracle.l2Outputs[index]` at the L1 anchor. `proof` must hold slot 3
/// (the array length: entries past it are deleted proposals whose storage was never
/// cleared) and the element's two slots. The label is `Finalized` once the L1 block is
/// `finalization_period_secs` past the proposal's timestamp.
pub fn verify_oracle_output(
    l1: &L1Anchor,
    oracle: Address,
    index: u64,
    finalization_period_secs: u64,
    proof: &EIP1186AccountProofResponse,
) -> Result<ProvenOutput, LightClientError> {
    let (_, values) = proven_slots(l1, oracle, proof, &oracle_output_slots(index))?;
    let length = to_u64(values[0], "l2Outputs length")?;
    if index >= length {
        return Err(LightClientError::AnchorData {
            reason: format!(
                "output index {index} is past l2Outputs length {length} (deleted or never proposed)"
            ),
        });
    }
    // OutputProposal { bytes32 outputRoot; uint128 timestamp; uint128 l2BlockNumber }:
    // timestamp in the low 16 bytes of the second slot, block number in the high 16.
    let meta = values[2];
    let timestamp = to_u64(meta & U256::from(u128::MAX), "proposal timestamp")?;
    let l2_block_number = to_u64(meta >> 128, "proposal l2BlockNumber")?;
    // Strictly after, as `OptimismPortal._isFinalizationPeriodElapsed`.
    let label = if l1.timestamp > timestamp.saturating_add(finalization_period_secs) {
        L2Label::Finalized
    } else {
        L2Label::Safe
    };
    Ok(ProvenOutput {
        output_root: B256::from(values[1].to_be_bytes::<32>()),
        l2_block_number,
        label,
        source: OutputSource::Oracle { oracle, index },
        l1: *l1,
    })
}

/// The implementation address and immutable args of a clone proxy's runtime code.
///
/// Two layouts are accepted: the classic clones-with-immutable-args proxy (56-byte prefix,
/// args, then `u16(args.len() + 2)`) used by `DisputeGameFactory` up to now, and an EIP-1167
/// minimal proxy with args appended (newer Solady `LibClone`).
pub fn parse_clone_args(code: &[u8]) -> Result<(Address, &[u8]), LightClientError> {
    const CWIA_HEAD: [u8; 5] = [0x36, 0x3d, 0x3d, 0x37, 0x61];
    const EIP1167_HEAD: [u8; 10] = [0x36, 0x3d, 0x3d, 0x37, 0x3d, 0x3d, 0x3d, 0x36, 0x3d, 0x73];
    const EIP1167_TAIL: [u8; 15] =
        [0x5a, 0xf4, 0x3d, 0x82, 0x80, 0x3e, 0x90, 0x3d, 0x91, 0x60, 0x2b, 0x57, 0xfd, 0x5b, 0xf3];
    let bad =
        |reason: &str| LightClientError::AnchorData { reason: format!("game code: {reason}") };
    if code.len() >= 56 && code[..5] == CWIA_HEAD && code[18..21] == [0x01, 0x3d, 0x73] {
        let extra = usize::from(u16::from_be_bytes([code[5], code[6]]));
        if code.len() != 56 + extra || extra < 2 {
            return Err(bad("clone length does not match its encoded args length"));
        }
        let tail = usize::from(u16::from_be_bytes([code[code.len() - 2], code[code.len() - 1]]));
        if tail != extra {
            return Err(bad("clone args length suffix mismatch"));
        }
        return Ok((Address::from_slice(&code[21..41]), &code[56..code.len() - 2]));
    }
    if code.len() >= 45 && code[..10] == EIP1167_HEAD && code[30..45] == EIP1167_TAIL {
        return Ok((Address::from_slice(&code[10..30]), &code[45..]));
    }
    Err(bad("not a clone proxy"))
}

/// A dispute game's immutable args we rely on: root claim and L2 block number.
struct GameArgs {
    root_claim: B256,
    l2_block_number: u64,
}

/// Parses `proposer(20) ‖ rootClaim(32) ‖ l1Head(32) ‖ l2BlockNumber(32)`: exactly 116 bytes,
/// the fault-dispute-game layout. Longer layouts (factories that append a game type and
/// `gameArgs`) move the block number, so they are refused rather than misread.
fn game_args(args: &[u8]) -> Result<GameArgs, LightClientError> {
    if args.len() != 116 {
        return Err(LightClientError::AnchorData {
            reason: format!("game args are {} bytes; the supported layout has 116", args.len()),
        });
    }
    Ok(GameArgs {
        root_claim: B256::from_slice(&args[20..52]),
        l2_block_number: to_u64(U256::from_be_slice(&args[84..116]), "game l2BlockNumber")?,
    })
}

/// Proves a game proxy's account and code; returns its args and status slot.
fn proven_game(
    l1: &L1Anchor,
    game: Address,
    proof: &EIP1186AccountProofResponse,
    code: &[u8],
) -> Result<(GameArgs, U256), LightClientError> {
    let (verified, values) = proven_slots(l1, game, proof, &[slot_b256(GAME_STATUS_SLOT)])?;
    verify_code(verified.account.code_hash, code)?;
    let (_, args) = parse_clone_args(code)?;
    Ok((game_args(args)?, values[0]))
}

/// Which factory game to prove, and the deployment's rules for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameQuery {
    /// The `DisputeGameFactory`.
    pub factory: Address,
    /// Slot of `_disputeGameList` (normally [`FACTORY_GAME_LIST_SLOT`]).
    pub list_slot: u64,
    /// Game index in the list.
    pub index: u64,
    /// The game type the deployment respects (0 = permissionless cannon, 1 = permissioned);
    /// games of any other type are refused.
    pub game_type: u32,
    /// `disputeGameFinalityDelaySeconds`.
    pub finality_delay_secs: u64,
}

/// Proves game `q.index` of a `DisputeGameFactory` and the game it points to.
///
/// `factory_proof` must hold the game list's length slot and element slot; `game_proof` the
/// game's account and slot 0; `game_code` its runtime code (checked against the proven code
/// hash). The game must be of `q.game_type`. A game won by the challenger is rejected; one
/// won by the defender and resolved more than `q.finality_delay_secs` before the L1 block is
/// `Finalized` (strictly more, as `AnchorStateRegistry.isGameFinalized`); otherwise `Safe`.
pub fn verify_game_output(
    l1: &L1Anchor,
    q: &GameQuery,
    factory_proof: &EIP1186AccountProofResponse,
    game_proof: &EIP1186AccountProofResponse,
    game_code: &[u8],
) -> Result<ProvenOutput, LightClientError> {
    let GameQuery { factory, list_slot, index, game_type, finality_delay_secs } = *q;
    let (_, values) =
        proven_slots(l1, factory, factory_proof, &factory_game_slots(list_slot, index))?;
    let count = to_u64(values[0], "game count")?;
    if index >= count {
        return Err(LightClientError::AnchorData {
            reason: format!("game index {index} is past the game count {count}"),
        });
    }
    // GameId = gameType (4 bytes) ‖ timestamp (8) ‖ proxy (20), big-endian.
    let id = values[1].to_be_bytes::<32>();
    let listed_type = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    if listed_type != game_type {
        return Err(LightClientError::AnchorData {
            reason: format!(
                "game {index} is of type {listed_type}, the deployment respects type {game_type}"
            ),
        });
    }
    let game = low_address(values[1]);
    if game_proof.address != game {
        return Err(LightClientError::AnchorData {
            reason: format!("game proof is for {}, the factory lists {game}", game_proof.address),
        });
    }
    // The factory listing this proxy, and the proxy's code proven by hash, tie the game to
    // the factory; the clone's first arg is the proposer (`msg.sender` of `create`).
    let (args, status_word) = proven_game(l1, game, game_proof, game_code)?;
    let word = status_word.to_be_bytes::<32>();
    // Packed from the low-order end: createdAt bytes 24..32, resolvedAt 16..24, status 15.
    let resolved_at = u64::from_be_bytes(word[16..24].try_into().unwrap_or_default());
    let status = word[15];
    let label = match status {
        GAME_CHALLENGER_WINS => {
            return Err(LightClientError::AnchorData {
                reason: format!("game {game} was won by the challenger"),
            });
        }
        GAME_DEFENDER_WINS if l1.timestamp > resolved_at.saturating_add(finality_delay_secs) => {
            L2Label::Finalized
        }
        _ => L2Label::Safe,
    };
    Ok(ProvenOutput {
        output_root: args.root_claim,
        l2_block_number: args.l2_block_number,
        label,
        source: OutputSource::Game { factory, index, game, status },
        l1: *l1,
    })
}

/// Checks the `AnchorStateRegistry` (v3) rules a factory game must pass besides its status
/// (`isGameProper`): the Guardian has not blacklisted it, and it was created after the
/// registry's retirement timestamp (`isGameRetired` is `createdAt <= retirementTimestamp`; the
/// Guardian retires every older game at once, e.g. after a game type switch). `registry_proof`
/// must hold [`registry_game_slots`]`(game)`; `game_proof` the game's slot 0.
///
/// Not checked: the superchain-wide pause (its flag lives in another contract), and
/// `wasRespectedGameTypeWhenCreated`, for which the configured game type stands in.
pub fn verify_game_proper(
    l1: &L1Anchor,
    registry: Address,
    registry_proof: &EIP1186AccountProofResponse,
    game: Address,
    game_proof: &EIP1186AccountProofResponse,
) -> Result<(), LightClientError> {
    let (_, values) = proven_slots(l1, registry, registry_proof, &registry_game_slots(game))?;
    if !values[0].is_zero() {
        return Err(LightClientError::AnchorData {
            reason: format!("game {game} is blacklisted by the AnchorStateRegistry {registry}"),
        });
    }
    let word = values[1].to_be_bytes::<32>();
    let retirement = u64::from_be_bytes(word[20..28].try_into().unwrap_or_default());
    let (_, status) = proven_slots(l1, game, game_proof, &[slot_b256(GAME_STATUS_SLOT)])?;
    let created_at =
        u64::from_be_bytes(status[0].to_be_bytes::<32>()[24..32].try_into().unwrap_or_default());
    if created_at <= retirement {
        return Err(LightClientError::AnchorData {
            reason: format!(
                "game {game} is retired: created at {created_at}, the registry {registry} \
                 retires games created up to {retirement}"
            ),
        });
    }
    Ok(())
}

/// Proves the `AnchorStateRegistry` anchor: the anchor game's claim, or the starting anchor
/// root when no game has become the anchor yet. `registry_proof` must hold slots 2, 3 and
/// 4; `game` the anchor game's account proof (slot 0) and code when slot 2 is non-zero.
pub fn verify_registry_anchor(
    l1: &L1Anchor,
    registry: Address,
    registry_proof: &EIP1186AccountProofResponse,
    game: Option<(&EIP1186AccountProofResponse, &[u8])>,
) -> Result<ProvenOutput, LightClientError> {
    let (_, values) = proven_slots(l1, registry, registry_proof, &registry_anchor_slots())?;
    let anchor_game = low_address(values[0]);
    let (output_root, l2_block_number, game_addr) = if anchor_game.is_zero() {
        (B256::from(values[1].to_be_bytes::<32>()), to_u64(values[2], "anchor l2 block")?, None)
    } else {
        let (proof, code) = game.ok_or_else(|| LightClientError::AnchorData {
            reason: format!("registry anchor is game {anchor_game}; its proof and code are needed"),
        })?;
        let (args, _) = proven_game(l1, anchor_game, proof, code)?;
        (args.root_claim, args.l2_block_number, Some(anchor_game))
    };
    Ok(ProvenOutput {
        output_root,
        l2_block_number,
        label: L2Label::Finalized,
        source: OutputSource::Anchor { registry, game: game_addr },
        l1: *l1,
    })
}

/// Proves an L2 header against a proven output root: same block number, and
/// `keccak256(0 ‖ stateRoot ‖ messagePasserStorageRoot ‖ blockHash)` equal to the root.
///
/// The message-passer storage root comes from `message_passer` (an L2 `eth_getProof` of
/// `0x4200…0016` at this block, verified against the header's state root) or, when `None`,
/// from the header's `withdrawalsRoot`, which is that root from Isthmus on.
pub fn verify_l2_header(
    output: &ProvenOutput,
    header: &alloy_consensus::Header,
    message_passer: Option<&EIP1186AccountProofResponse>,
) -> Result<VerifiedL2Block, LightClientError> {
    if header.number != output.l2_block_number {
        return Err(LightClientError::AnchorData {
            reason: format!(
                "L2 header is block {}, the output root is for {}",
                header.number, output.l2_block_number
            ),
        });
    }
    let storage_root = match message_passer {
        Some(proof) => {
            if proof.address != L2_TO_L1_MESSAGE_PASSER {
                return Err(LightClientError::AnchorData {
                    reason: format!("message-passer proof is for {}", proof.address),
                });
            }
            verify_account_proof(header.state_root, proof)?.storage_root
        }
        None => header.withdrawals_root.ok_or(LightClientError::MissingField {
            what: "pre-Isthmus L2 header (pass a message-passer proof)",
            field: "withdrawalsRoot",
        })?,
    };
    let hash = header.hash_slow();
    let computed = output_root_v0(header.state_root, storage_root, hash);
    if computed != output.output_root {
        return Err(LightClientError::OutputRoot { expected: output.output_root, computed });
    }
    Ok(VerifiedL2Block {
        number: header.number,
        hash,
        state_root: header.state_root,
        timestamp: header.timestamp,
        label: output.label,
        l1: output.l1,
    })
}

/// Proves the unsafe-block signer from L1 `SystemConfig` storage.
pub fn verify_unsafe_signer(
    l1: &L1Anchor,
    system_config: Address,
    proof: &EIP1186AccountProofResponse,
) -> Result<Address, LightClientError> {
    let (_, values) = proven_slots(l1, system_config, proof, &[UNSAFE_BLOCK_SIGNER_SLOT])?;
    let signer = low_address(values[0]);
    if signer.is_zero() {
        return Err(LightClientError::AnchorData {
            reason: "SystemConfig has no unsafe block signer".into(),
        });
    }
    Ok(signer)
}

/// Verifies a sequencer gossip block: signed by `signer` (from [`verify_unsafe_signer`]) for
/// `chain_id`, and its block hash recomputes from the payload. Labeled `Unsafe`.
pub fn verify_unsafe_block(
    l1: &L1Anchor,
    signer: Address,
    chain_id: u64,
    envelope: &GossipEnvelope,
) -> Result<VerifiedL2Block, LightClientError> {
    envelope.verify_signer(chain_id, signer)?;
    let hash = envelope.verify_block_hash()?;
    Ok(VerifiedL2Block {
        number: envelope.payload.block_number,
        hash,
        state_root: envelope.payload.state_root,
        timestamp: envelope.payload.timestamp,
        label: L2Label::Unsafe,
        l1: *l1,
    })
}
