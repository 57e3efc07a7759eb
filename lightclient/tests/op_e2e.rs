//! OP Stack end to end, on generated data: the whole chain of trust from a beacon checkpoint
//! root to an L2 storage slot, through the public API only.
//!
//! checkpoint root → bootstrap → sync-committee update (period 0 → 1) → finality update whose
//! finalized header carries the L1 state root → EIP-1186 proofs of the L1 rollup contracts
//! (`L2OutputOracle`, `DisputeGameFactory` + game proxy, `AnchorStateRegistry`,
//! `SystemConfig`) → output root → L2 header → `VerifiedState` → `verified_storage` of the
//! L2 registry under a read policy.
//!
//! The data (`synth/`) is built from fixed seeds: real BLS signatures over real SSZ Merkle
//! branches, real Merkle-Patricia proofs from alloy-trie, contract storage in the documented
//! layouts. Each test also checks the forged or out-of-policy variant is refused with the
//! specific error, so none of them can pass vacuously.

mod synth;

use alloy_primitives::{Address, B256, U256};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use k256::ecdsa::SigningKey;
use lorad_lightclient::LightClientError;

use lorad_lightclient::consensus::LightClientStore;
use lorad_lightclient::l2::finalized_l1_anchor;
use lorad_lightclient::op::anchor::{
    FACTORY_GAME_LIST_SLOT, GAME_DEFENDER_WINS, GAME_STATUS_SLOT, GameQuery, L1Anchor, L2Label,
    ORACLE_OUTPUTS_SLOT, OutputSource, ProvenOutput, REGISTRY_ANCHOR_GAME_SLOT,
    REGISTRY_STARTING_ROOT_SLOT, VerifiedL2Block, array_element_slot, verify_game_output,
    verify_l2_header, verify_oracle_output, verify_registry_anchor, verify_unsafe_block,
    verify_unsafe_signer,
};
use lorad_lightclient::op::{GossipEnvelope, L2_TO_L1_MESSAGE_PASSER, UNSAFE_BLOCK_SIGNER_SLOT};
use lorad_lightclient::rpc::ExecutionRpc;
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use lorad_lightclient::verify_eip1186;
use synth::chain::{Lie, Rpc, signed_envelope};
use synth::l1::{GAME_TYPE_CANNON, Game, deploy_game, factory_push};
use synth::mpt::slot;
use synth::trust::l1_anchor;
use synth::world::{
    ADAPTER_A, ADAPTER_B, FACTORY, FINALITY_DELAY, FINALIZATION_PERIOD, FRESH_REGISTRY, GAME_IMPL,
    L2_CHAIN_ID, L2_FINAL, L2_OLD, L2_REGISTRY, L2_SAFE, L2_UNSAFE, ORACLE, PROPOSER, REGISTRY,
    SYSTEM_CONFIG, World, adapter_slot, world,
};

// ---------------------------------------------------------------------------------------
// The chain of trust, step by step
// ---------------------------------------------------------------------------------------

fn plus_one(s: B256) -> B256 {
    B256::from(U256::from_be_bytes(s.0).wrapping_add(U256::from(1)).to_be_bytes::<32>())
}

/// Slots `verify_oracle_output` needs for output `index`.
fn oracle_slots(index: u64) -> Vec<B256> {
    let root = array_element_slot(ORACLE_OUTPUTS_SLOT, index, 2);
    vec![slot(ORACLE_OUTPUTS_SLOT), root, plus_one(root)]
}

fn oracle_output(
    l1: &L1Anchor,
    l1_rpc: &Rpc<'_>,
    index: u64,
    period: u64,
) -> Result<ProvenOutput, LightClientError> {
    let proof = l1_rpc.get_proof(ORACLE, &oracle_slots(index), l1.block_number)?;
    verify_oracle_output(l1, ORACLE, index, period, &proof)
}

/// The game address at factory `index`, read (and proven) the way a client learns it.
fn listed_game(
    l1: &L1Anchor,
    l1_rpc: &Rpc<'_>,
    index: u64,
) -> (EIP1186AccountProofResponse, Address) {
    let slots =
        [slot(FACTORY_GAME_LIST_SLOT), array_element_slot(FACTORY_GAME_LIST_SLOT, index, 1)];
    let proof = l1_rpc.get_proof(FACTORY, &slots, l1.block_number).unwrap();
    let id = verify_eip1186(l1.state_root, &proof).unwrap().storage[1].1;
    let game = Address::from_slice(&id.to_be_bytes::<32>()[12..]);
    (proof, game)
}

fn game_output(
    l1: &L1Anchor,
    l1_rpc: &Rpc<'_>,
    index: u64,
    delay: u64,
) -> Result<ProvenOutput, LightClientError> {
    let (factory_proof, game) = listed_game(l1, l1_rpc, index);
    let game_proof = l1_rpc.get_proof(game, &[slot(GAME_STATUS_SLOT)], l1.block_number)?;
    let code = l1_rpc.get_code(game, l1.block_number)?;
    verify_game_output(
        l1,
        &GameQuery {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            index,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: delay,
        },
        &factory_proof,
        &game_proof,
        &code,
    )
}

fn registry_slots() -> [B256; 3] {
    [
        slot(REGISTRY_ANCHOR_GAME_SLOT),
        slot(REGISTRY_STARTING_ROOT_SLOT),
        slot(REGISTRY_STARTING_ROOT_SLOT + 1),
    ]
}

/// The L2 header from the (untrusted) L2 RPC, proven against `output`; `message_passer`
/// selects the pre-Isthmus path (an `eth_getProof` of the message passer at that block).
fn prove_l2(
    output: &ProvenOutput,
    l2_rpc: &Rpc<'_>,
    message_passer: bool,
) -> Result<VerifiedL2Block, LightClientError> {
    let n = output.l2_block_number;
    let (header, _claimed_hash) = l2_rpc.get_header(n)?;
    let mp = if message_passer {
        Some(l2_rpc.get_proof(L2_TO_L1_MESSAGE_PASSER, &[], n)?)
    } else {
        None
    };
    verify_l2_header(output, &header, mp.as_ref())
}

fn policy(min_label: L2Label, max_age_secs: Option<u64>) -> ReadPolicy {
    ReadPolicy { min_label, max_age_secs }
}

/// Reads adapter A's content hash (and the never-set adapter at 0xdd, zero by exclusion
/// proof) under `p`; checks values against the L2 trie of `expect_block`, the label, and that
/// the second read is cached and costs no RPC call.
fn read_registry(
    state: &mut VerifiedState,
    w: &World,
    l2_rpc: &Rpc<'_>,
    p: ReadPolicy,
    expect_block: u64,
    expect_label: L2Label,
) {
    let s = adapter_slot(ADAPTER_A);
    let truth = w.l2.block(expect_block).state.get(L2_REGISTRY, s);
    assert!(!truth.is_zero());
    let calls = l2_rpc.calls();
    let r = state.verified_storage(l2_rpc, L2_REGISTRY, s, p, w.now).unwrap();
    assert_eq!(r.value, truth);
    assert_eq!(r.block_number, expect_block);
    assert_eq!(r.block_hash, w.l2.block(expect_block).header.hash_slow());
    assert_eq!(r.label, expect_label);
    assert!(!r.cached);
    assert_eq!(l2_rpc.calls(), calls + 1);
    let again = state.verified_storage(l2_rpc, L2_REGISTRY, s, p, w.now).unwrap();
    assert!(again.cached);
    assert_eq!(again.value, truth);
    assert_eq!(l2_rpc.calls(), calls + 1, "a cached read makes no RPC call");
    let absent = state
        .verified_storage(l2_rpc, L2_REGISTRY, adapter_slot(B256::repeat_byte(0xdd)), p, w.now)
        .unwrap();
    assert_eq!(absent.value, U256::ZERO);
    assert_eq!(absent.block_number, expect_block);
}

const FINALIZED_FRESH: ReadPolicy =
    ReadPolicy { min_label: L2Label::Finalized, max_age_secs: Some(3600) };

// ---------------------------------------------------------------------------------------
// Proven to finalized
// ---------------------------------------------------------------------------------------

#[test]
fn l2_storage_slot_proven_to_finalized_via_oracle() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));

    let out = oracle_output(&l1, &l1_rpc, 0, FINALIZATION_PERIOD).unwrap();
    assert_eq!(out.label, L2Label::Finalized);
    assert_eq!(out.l2_block_number, L2_FINAL);
    assert_eq!(out.output_root, w.l2.block(L2_FINAL).output_root());
    assert_eq!(out.source, OutputSource::Oracle { oracle: ORACLE, index: 0 });
    assert_eq!(out.l1, l1);

    // Isthmus: the header's withdrawals_root is the message-passer storage root.
    let block = prove_l2(&out, &l2_rpc, false).unwrap();
    // Pre-Isthmus path: the storage root from a message-passer proof gives the same block.
    assert_eq!(prove_l2(&out, &l2_rpc, true).unwrap(), block);
    assert_eq!(block.number, L2_FINAL);
    assert_eq!(block.label, L2Label::Finalized);
    assert_eq!(block.state_root, w.l2.block(L2_FINAL).header.state_root);

    let mut state = VerifiedState::new(8);
    state.insert(block);
    read_registry(&mut state, w, &l2_rpc, FINALIZED_FRESH, L2_FINAL, L2Label::Finalized);
    // Adapter B was registered at block 1000, so it is visible there.
    let b = state
        .verified_storage(&l2_rpc, L2_REGISTRY, adapter_slot(ADAPTER_B), FINALIZED_FRESH, w.now)
        .unwrap();
    assert_eq!(b.value, w.l2.block(L2_FINAL).state.get(L2_REGISTRY, adapter_slot(ADAPTER_B)));
    assert!(!b.value.is_zero());
}

#[test]
fn l2_storage_slot_proven_to_finalized_via_dispute_game() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));

    let out = game_output(&l1, &l1_rpc, 0, FINALITY_DELAY).unwrap();
    let game = w.games[0].proxy;
    assert_eq!(
        out.source,
        OutputSource::Game { factory: FACTORY, index: 0, game, status: GAME_DEFENDER_WINS }
    );
    // Resolved at T - 350, delay 300: final at T - 50 <= T.
    assert_eq!(out.label, L2Label::Finalized);
    assert_eq!(out.l2_block_number, L2_FINAL);

    let block = prove_l2(&out, &l2_rpc, true).unwrap();
    assert_eq!(prove_l2(&out, &l2_rpc, false).unwrap(), block);
    let mut state = VerifiedState::new(8);
    state.insert(block);
    read_registry(&mut state, w, &l2_rpc, FINALIZED_FRESH, L2_FINAL, L2Label::Finalized);

    // The game code is checked against the proven code hash.
    let (factory_proof, _) = listed_game(&l1, &l1_rpc, 0);
    let game_proof = l1_rpc.get_proof(game, &[slot(GAME_STATUS_SLOT)], l1.block_number).unwrap();
    let mut code = l1_rpc.get_code(game, l1.block_number).unwrap().to_vec();
    let last = code.len() - 40;
    code[last] ^= 1; // a byte of the root claim
    let err = verify_game_output(
        &l1,
        &GameQuery {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            index: 0,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: FINALITY_DELAY,
        },
        &factory_proof,
        &game_proof,
        &code,
    )
    .unwrap_err();
    assert!(matches!(err, LightClientError::CodeHash { .. }), "{err:?}");
    // A proof of another game than the one the factory lists.
    let other =
        l1_rpc.get_proof(w.games[1].proxy, &[slot(GAME_STATUS_SLOT)], l1.block_number).unwrap();
    let code = l1_rpc.get_code(w.games[1].proxy, l1.block_number).unwrap();
    let err = verify_game_output(
        &l1,
        &GameQuery {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            index: 0,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: FINALITY_DELAY,
        },
        &factory_proof,
        &other,
        &code,
    )
    .unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
}

#[test]
fn l2_storage_slot_proven_to_finalized_via_anchor_registry() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));

    // Registry whose anchor is game 0.
    let proof = l1_rpc.get_proof(REGISTRY, &registry_slots(), l1.block_number).unwrap();
    let anchor_game = w.games[0].proxy;
    let game_proof =
        l1_rpc.get_proof(anchor_game, &[slot(GAME_STATUS_SLOT)], l1.block_number).unwrap();
    let code = l1_rpc.get_code(anchor_game, l1.block_number).unwrap();
    let out = verify_registry_anchor(&l1, REGISTRY, &proof, Some((&game_proof, &code))).unwrap();
    assert_eq!(out.source, OutputSource::Anchor { registry: REGISTRY, game: Some(anchor_game) });
    assert_eq!((out.l2_block_number, out.label), (L2_FINAL, L2Label::Finalized));
    let block = prove_l2(&out, &l2_rpc, false).unwrap();
    let mut state = VerifiedState::new(8);
    state.insert(block);
    read_registry(&mut state, w, &l2_rpc, FINALIZED_FRESH, L2_FINAL, L2Label::Finalized);
    // Without the anchor game's proof and code the anchor cannot be read.
    let err = verify_registry_anchor(&l1, REGISTRY, &proof, None).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");

    // A registry with no anchor game yet: the starting anchor root (block 900, whose header
    // is pre-Isthmus, so only the message-passer proof path works).
    let proof = l1_rpc.get_proof(FRESH_REGISTRY, &registry_slots(), l1.block_number).unwrap();
    let out = verify_registry_anchor(&l1, FRESH_REGISTRY, &proof, None).unwrap();
    assert_eq!(out.source, OutputSource::Anchor { registry: FRESH_REGISTRY, game: None });
    assert_eq!((out.l2_block_number, out.label), (L2_OLD, L2Label::Finalized));
    let err = prove_l2(&out, &l2_rpc, false).unwrap_err();
    assert!(matches!(err, LightClientError::OutputRoot { .. }), "{err:?}");
    let block = prove_l2(&out, &l2_rpc, true).unwrap();
    let mut state = VerifiedState::new(8);
    state.insert(block);
    read_registry(
        &mut state,
        w,
        &l2_rpc,
        policy(L2Label::Finalized, None),
        L2_OLD,
        L2Label::Finalized,
    );
    // Adapter B did not exist yet at block 900: proven zero.
    let b = state
        .verified_storage(
            &l2_rpc,
            L2_REGISTRY,
            adapter_slot(ADAPTER_B),
            policy(L2Label::Finalized, None),
            w.now,
        )
        .unwrap();
    assert_eq!(b.value, U256::ZERO);
}

// ---------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------

#[test]
fn output_labels_follow_l1_finality() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));

    // Oracle output 1 was proposed at T - 180: inside a 300 s period it is only Safe.
    let out = oracle_output(&l1, &l1_rpc, 1, FINALIZATION_PERIOD).unwrap();
    assert_eq!((out.l2_block_number, out.label), (L2_SAFE, L2Label::Safe));
    let block = prove_l2(&out, &l2_rpc, false).unwrap();
    assert_eq!(block.label, L2Label::Safe);
    let mut state = VerifiedState::new(8);
    state.insert(block);
    let err = state
        .verified_storage(&l2_rpc, L2_REGISTRY, adapter_slot(ADAPTER_A), FINALIZED_FRESH, w.now)
        .unwrap_err();
    assert!(
        matches!(err, LightClientError::NoBlockForPolicy { min_label: L2Label::Finalized }),
        "{err:?}"
    );
    read_registry(
        &mut state,
        w,
        &l2_rpc,
        policy(L2Label::Safe, Some(3600)),
        L2_SAFE,
        L2Label::Safe,
    );
    // With a 100 s period the same output is final.
    let out = oracle_output(&l1, &l1_rpc, 1, 100).unwrap();
    assert_eq!(out.label, L2Label::Finalized);

    // Game 1 is in progress: Safe.
    let out = game_output(&l1, &l1_rpc, 1, FINALITY_DELAY).unwrap();
    assert_eq!((out.l2_block_number, out.label), (L2_SAFE, L2Label::Safe));
    assert!(matches!(out.source, OutputSource::Game { status: 0, .. }));
    assert_eq!(prove_l2(&out, &l2_rpc, false).unwrap().label, L2Label::Safe);
    // Game 4 was won by the defender at T - 100: Safe within a 300 s delay, final after 60 s.
    let out = game_output(&l1, &l1_rpc, 4, FINALITY_DELAY).unwrap();
    assert_eq!(out.label, L2Label::Safe);
    let out = game_output(&l1, &l1_rpc, 4, 60).unwrap();
    assert_eq!(out.label, L2Label::Finalized);

    // Game 2 was won by the challenger.
    let err = game_output(&l1, &l1_rpc, 2, FINALITY_DELAY).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
    // Oracle entry 2 is a deleted proposal: its storage is there, past the length.
    assert!(!w.l1.block(w.l1_number).state.get(ORACLE, oracle_slots(2)[1]).is_zero());
    let err = oracle_output(&l1, &l1_rpc, 2, 0).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
    // Past the factory's game count.
    let slots = [slot(FACTORY_GAME_LIST_SLOT), array_element_slot(FACTORY_GAME_LIST_SLOT, 9, 1)];
    let factory_proof = l1_rpc.get_proof(FACTORY, &slots, l1.block_number).unwrap();
    let game_proof =
        l1_rpc.get_proof(Address::ZERO, &[slot(GAME_STATUS_SLOT)], l1.block_number).unwrap();
    let err = verify_game_output(
        &l1,
        &GameQuery {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            index: 9,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: FINALITY_DELAY,
        },
        &factory_proof,
        &game_proof,
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
    // A proof that lacks a needed slot.
    let short = l1_rpc.get_proof(ORACLE, &oracle_slots(0)[..2], l1.block_number).unwrap();
    let err = verify_oracle_output(&l1, ORACLE, 0, 0, &short).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// Forgeries
// ---------------------------------------------------------------------------------------

#[test]
fn forged_output_root_is_rejected() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));
    let mut state = VerifiedState::new(8);

    // Game 3 claims a forged root for block 1100 (an unresolved game anyone could create).
    let out = game_output(&l1, &l1_rpc, 3, FINALITY_DELAY).unwrap();
    assert_eq!(out.l2_block_number, L2_SAFE);
    let real = w.l2.block(L2_SAFE).output_root();
    assert_ne!(out.output_root, real);
    for mp in [false, true] {
        let err = prove_l2(&out, &l2_rpc, mp).unwrap_err();
        assert!(
            matches!(err, LightClientError::OutputRoot { expected, computed } if expected == out.output_root && computed == real),
            "{err:?}"
        );
    }

    // An L2 header tampered with (state root, or any hashed field) no longer matches L1.
    let out = oracle_output(&l1, &l1_rpc, 0, FINALIZATION_PERIOD).unwrap();
    let honest = w.l2.block(L2_FINAL).header.clone();
    let mut forged = honest.clone();
    forged.state_root = w.l2.block(L2_SAFE).header.state_root;
    let err = verify_l2_header(&out, &forged, None).unwrap_err();
    assert!(matches!(err, LightClientError::OutputRoot { .. }), "{err:?}");
    let mut forged = honest.clone();
    forged.gas_used += 1;
    let err = verify_l2_header(&out, &forged, None).unwrap_err();
    assert!(matches!(err, LightClientError::OutputRoot { .. }), "{err:?}");
    // The header of another block against this output.
    let err = verify_l2_header(&out, &w.l2.block(L2_SAFE).header, None).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
    // A message-passer proof from another block does not prove against this header.
    let wrong_mp = l2_rpc.get_proof(L2_TO_L1_MESSAGE_PASSER, &[], L2_SAFE).unwrap();
    let err = verify_l2_header(&out, &honest, Some(&wrong_mp)).unwrap_err();
    assert!(matches!(err, LightClientError::AccountProof { .. }), "{err:?}");
    // Nor does a proof of some other account.
    let not_mp = l2_rpc.get_proof(L2_REGISTRY, &[], L2_FINAL).unwrap();
    let err = verify_l2_header(&out, &honest, Some(&not_mp)).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");

    // An L1 RPC lying about the oracle's slot values.
    l1_rpc.lie.set(Lie::StorageValue);
    let err = oracle_output(&l1, &l1_rpc, 0, FINALIZATION_PERIOD).unwrap_err();
    assert!(
        matches!(
            err,
            LightClientError::StorageValueMismatch { .. } | LightClientError::StorageProof { .. }
        ),
        "{err:?}"
    );
    // ... or editing one value in an honest response.
    l1_rpc.lie.set(Lie::None);
    let mut proof = l1_rpc.get_proof(ORACLE, &oracle_slots(0), l1.block_number).unwrap();
    proof.storage_proof[1].value = U256::from_be_bytes(w.l2.block(L2_SAFE).output_root().0);
    let err = verify_oracle_output(&l1, ORACLE, 0, FINALIZATION_PERIOD, &proof).unwrap_err();
    assert!(matches!(err, LightClientError::StorageValueMismatch { .. }), "{err:?}");
    // ... or answering from an L1 state the beacon chain never finalized (forged output 0).
    let forged_proof = w.l1_forged.proof(ORACLE, &oracle_slots(0));
    let err = verify_oracle_output(&l1, ORACLE, 0, FINALIZATION_PERIOD, &forged_proof).unwrap_err();
    assert!(matches!(err, LightClientError::AccountProof { .. }), "{err:?}");
    // ... or a proof of another account passed off as the oracle's.
    let other = l1_rpc.get_proof(FACTORY, &oracle_slots(0), l1.block_number).unwrap();
    let err = verify_oracle_output(&l1, ORACLE, 0, FINALIZATION_PERIOD, &other).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");

    // Nothing was proven, so nothing can be read.
    let err = state
        .verified_storage(
            &l2_rpc,
            L2_REGISTRY,
            adapter_slot(ADAPTER_A),
            policy(L2Label::Unsafe, None),
            w.now,
        )
        .unwrap_err();
    assert!(matches!(err, LightClientError::NoBlockForPolicy { .. }), "{err:?}");

    // An L2 RPC lying about the registry at a proven block.
    state.insert(prove_l2(&out, &l2_rpc, false).unwrap());
    let s = adapter_slot(ADAPTER_A);
    l2_rpc.lie.set(Lie::StorageValue);
    let err = state.verified_storage(&l2_rpc, L2_REGISTRY, s, FINALIZED_FRESH, w.now).unwrap_err();
    assert!(matches!(err, LightClientError::StorageValueMismatch { .. }), "{err:?}");
    l2_rpc.lie.set(Lie::OtherBlock(L2_SAFE));
    let err = state.verified_storage(&l2_rpc, L2_REGISTRY, s, FINALIZED_FRESH, w.now).unwrap_err();
    assert!(matches!(err, LightClientError::AccountProof { .. }), "{err:?}");
    // Failed reads are not cached: the honest answer is then accepted.
    l2_rpc.lie.set(Lie::None);
    read_registry(&mut state, w, &l2_rpc, FINALIZED_FRESH, L2_FINAL, L2Label::Finalized);
}

#[test]
fn wrong_sequencer_key_is_rejected() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));
    let key = w.sequencer_key();

    let proof =
        l1_rpc.get_proof(SYSTEM_CONFIG, &[UNSAFE_BLOCK_SIGNER_SLOT], l1.block_number).unwrap();
    let signer = verify_unsafe_signer(&l1, SYSTEM_CONFIG, &proof).unwrap();
    assert_eq!(signer, Address::from_private_key(&key));

    // The envelope as it travels (snappy + SSZ), decoded back.
    let env = signed_envelope(w.unsafe_payload.clone(), &key, L2_CHAIN_ID);
    let received = GossipEnvelope::decode(env.version, &env.encode().unwrap()).unwrap();
    assert_eq!(received, env);
    let block = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &received).unwrap();
    let truth = &w.l2.block(L2_UNSAFE).header;
    assert_eq!(block.label, L2Label::Unsafe);
    assert_eq!(
        (block.number, block.hash, block.state_root),
        (L2_UNSAFE, truth.hash_slow(), truth.state_root)
    );
    let mut state = VerifiedState::new(8);
    state.insert(block);
    read_registry(
        &mut state,
        w,
        &l2_rpc,
        policy(L2Label::Unsafe, Some(600)),
        L2_UNSAFE,
        L2Label::Unsafe,
    );

    // Another key.
    let other = SigningKey::from_bytes(&[0x77; 32].into()).unwrap();
    let forged = signed_envelope(w.unsafe_payload.clone(), &other, L2_CHAIN_ID);
    let err = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &forged).unwrap_err();
    assert!(
        matches!(err, LightClientError::UnsafeSigner { expected, recovered } if expected == signer && recovered == Address::from_private_key(&other)),
        "{err:?}"
    );
    // The right key, but for another chain.
    let other_chain = signed_envelope(w.unsafe_payload.clone(), &key, L2_CHAIN_ID + 1);
    let err = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &other_chain).unwrap_err();
    assert!(matches!(err, LightClientError::UnsafeSigner { .. }), "{err:?}");
    // A payload edited after signing.
    let mut edited = env.clone();
    edited.payload.state_root = w.l2.block(L2_SAFE).header.state_root;
    let err = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &edited).unwrap_err();
    assert!(matches!(err, LightClientError::UnsafeSigner { .. }), "{err:?}");
    // Re-signed by the sequencer but with a block hash that no longer recomputes.
    let resigned = signed_envelope(edited.payload, &key, L2_CHAIN_ID);
    let err = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &resigned).unwrap_err();
    assert!(matches!(err, LightClientError::HeaderHash { .. }), "{err:?}");
    // The signer slot is proven from L1: a lying value is caught.
    let mut lie = proof.clone();
    lie.storage_proof[0].value = U256::from_be_slice(Address::from_private_key(&other).as_slice());
    let err = verify_unsafe_signer(&l1, SYSTEM_CONFIG, &lie).unwrap_err();
    assert!(matches!(err, LightClientError::StorageValueMismatch { .. }), "{err:?}");
    // An honest proof that the slot is empty (another contract) yields no signer.
    let empty = l1_rpc.get_proof(ORACLE, &[UNSAFE_BLOCK_SIGNER_SLOT], l1.block_number).unwrap();
    let err = verify_unsafe_signer(&l1, ORACLE, &empty).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
}

#[test]
fn stale_block_under_max_age_is_rejected() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));
    let mut state = VerifiedState::new(8);

    let out = oracle_output(&l1, &l1_rpc, 0, FINALIZATION_PERIOD).unwrap();
    let finalized = prove_l2(&out, &l2_rpc, false).unwrap();
    let proof =
        l1_rpc.get_proof(SYSTEM_CONFIG, &[UNSAFE_BLOCK_SIGNER_SLOT], l1.block_number).unwrap();
    let signer = verify_unsafe_signer(&l1, SYSTEM_CONFIG, &proof).unwrap();
    let env = signed_envelope(w.unsafe_payload.clone(), &w.sequencer_key(), L2_CHAIN_ID);
    let unsafe_block = verify_unsafe_block(&l1, signer, L2_CHAIN_ID, &env).unwrap();
    assert!(unsafe_block.number > finalized.number && unsafe_block.timestamp > finalized.timestamp);
    state.insert(finalized.clone());
    state.insert(unsafe_block.clone());

    // Block 1000 is 460 s old at `now`.
    let age = w.now - finalized.timestamp;
    assert_eq!(age, 460);
    let s = adapter_slot(ADAPTER_A);
    let calls = l2_rpc.calls();
    let err = state
        .verified_storage(&l2_rpc, L2_REGISTRY, s, policy(L2Label::Finalized, Some(age - 1)), w.now)
        .unwrap_err();
    assert!(
        matches!(err, LightClientError::StaleBlock { number: L2_FINAL, age_secs, max_age_secs } if age_secs == age && max_age_secs == age - 1),
        "{err:?}"
    );
    assert_eq!(l2_rpc.calls(), calls, "a policy failure makes no RPC call");
    // At exactly the limit it is accepted.
    read_registry(
        &mut state,
        w,
        &l2_rpc,
        policy(L2Label::Finalized, Some(age)),
        L2_FINAL,
        L2Label::Finalized,
    );

    // The newer unsafe head is chosen by an Unsafe policy, never by Safe or Finalized ones.
    read_registry(
        &mut state,
        w,
        &l2_rpc,
        policy(L2Label::Unsafe, Some(600)),
        L2_UNSAFE,
        L2Label::Unsafe,
    );
    for min_label in [L2Label::Safe, L2Label::Finalized] {
        let r = state
            .verified_storage(&l2_rpc, L2_REGISTRY, s, policy(min_label, None), w.now)
            .unwrap();
        assert_eq!((r.block_number, r.label), (L2_FINAL, L2Label::Finalized));
    }
    assert_ne!(
        w.l2.block(L2_UNSAFE).state.get(L2_REGISTRY, s),
        w.l2.block(L2_FINAL).state.get(L2_REGISTRY, s),
        "the two blocks disagree, so the test sees which one was read"
    );
    // The unsafe head is 160 s old: stale under a 120 s policy.
    let err = state
        .verified_storage(&l2_rpc, L2_REGISTRY, s, policy(L2Label::Unsafe, Some(120)), w.now)
        .unwrap_err();
    assert!(
        matches!(err, LightClientError::StaleBlock { number: L2_UNSAFE, age_secs: 160, .. }),
        "{err:?}"
    );

    // A gossip block at a finalized height does not demote it.
    let mut gossip_copy = unsafe_block;
    gossip_copy.number = L2_FINAL;
    gossip_copy.hash = B256::repeat_byte(0x66);
    state.insert(gossip_copy);
    let r = state
        .verified_storage(&l2_rpc, L2_REGISTRY, s, policy(L2Label::Finalized, None), w.now)
        .unwrap();
    assert_eq!((r.block_number, r.block_hash, r.cached), (L2_FINAL, finalized.hash, true));
}

#[test]
fn forged_l1_data_is_rejected() {
    let w = world();
    let cfg = &w.cfg;

    // A bootstrap for another checkpoint.
    let err =
        LightClientStore::bootstrap(cfg, B256::repeat_byte(1), w.bootstrap.clone()).unwrap_err();
    assert!(matches!(err, LightClientError::CheckpointMismatch { .. }), "{err:?}");

    let mut store = LightClientStore::bootstrap(cfg, w.checkpoint, w.bootstrap.clone()).unwrap();
    store.process_update(cfg, w.sync_update.clone(), w.current_slot).unwrap();
    let before = store.finalized_header.clone();
    assert_eq!(before.execution.block_number, w.l1_old_number);

    // Signed by period 0's committee, which no longer signs in period 1.
    let mut u = w.finality_update.clone();
    u.sync_aggregate =
        w.committees[0].sign(cfg, &u.attested_header.beacon, u.signature_slot, |_| true);
    let err = store.clone().process_finality_update(cfg, u, w.current_slot).unwrap_err();
    assert!(matches!(err, LightClientError::SignatureInvalid { slot: 81 }), "{err:?}");
    // A flipped byte in the finality branch.
    let mut u = w.finality_update.clone();
    u.finality_branch[3].0[7] ^= 0x10;
    let err = store.clone().process_finality_update(cfg, u, w.current_slot).unwrap_err();
    assert!(matches!(err, LightClientError::InvalidBranch { what: "finality", .. }), "{err:?}");
    // The finalized header's L1 state root swapped for the forged L1 state's.
    let mut u = w.finality_update.clone();
    u.finalized_header.execution.state_root = w.l1_forged.root();
    let err = store.clone().process_finality_update(cfg, u, w.current_slot).unwrap_err();
    assert!(
        matches!(err, LightClientError::InvalidBranch { what: "execution payload", .. }),
        "{err:?}"
    );
    // The attested header changed after signing.
    let mut u = w.finality_update.clone();
    u.attested_header.beacon.proposer_index += 1;
    let err = store.clone().process_finality_update(cfg, u, w.current_slot).unwrap_err();
    assert!(matches!(err, LightClientError::SignatureInvalid { .. }), "{err:?}");
    // Too few signers to finalize: the optimistic head moves, finality does not.
    let mut u = w.finality_update.clone();
    u.sync_aggregate =
        w.committees[1].sign(cfg, &u.attested_header.beacon, u.signature_slot, |i| i < 20);
    let mut weak = store.clone();
    let o = weak.process_finality_update(cfg, u, w.current_slot).unwrap();
    assert!(o.optimistic_advanced && !o.finalized_advanced, "{o:?}");
    assert_eq!(weak.finalized_header, before);

    // After the rejections the store still holds the old L1 block, where nothing is posted:
    // proofs from the current L1 state do not verify against it, and honest proofs of the
    // old state show no output.
    let l1 = finalized_l1_anchor(&store);
    let l1_rpc = Rpc::new(&w.l1);
    let current = l1_rpc.get_proof(ORACLE, &oracle_slots(0), w.l1_number).unwrap();
    let err = verify_oracle_output(&l1, ORACLE, 0, 0, &current).unwrap_err();
    assert!(matches!(err, LightClientError::AccountProof { .. }), "{err:?}");
    let err = oracle_output(&l1, &l1_rpc, 0, 0).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");

    // The genuine update then moves the store to the L1 block holding the outputs.
    store.process_finality_update(cfg, w.finality_update.clone(), w.current_slot).unwrap();
    let l1 = finalized_l1_anchor(&store);
    assert_eq!(l1.block_number, w.l1_number);
    assert_eq!(
        oracle_output(&l1, &l1_rpc, 0, FINALIZATION_PERIOD).unwrap().l2_block_number,
        L2_FINAL
    );
}

/// On chain, a game's first clone arg is `msg.sender` of `DisputeGameFactory.create` (the
/// proposer), not the factory; the factory listing the proxy, whose code is proven by hash,
/// is what ties the game to the factory.
#[test]
fn game_created_by_a_proposer_is_accepted() {
    let w = world();
    let mut state = w.l1.block(w.l1_number).state.clone();
    let g = Game { proxy: Address::repeat_byte(0x9a), creator: PROPOSER, ..w.games[0] };
    deploy_game(&mut state, GAME_IMPL, &g);
    factory_push(&mut state, FACTORY, 5, g.created_at, g.proxy);
    // The verifiers are pure: an anchor on this (unfinalized) state is enough to show it.
    let l1 = L1Anchor { state_root: state.root(), ..l1_anchor(w) };
    let slots = [slot(FACTORY_GAME_LIST_SLOT), array_element_slot(FACTORY_GAME_LIST_SLOT, 5, 1)];
    let factory_proof = state.proof(FACTORY, &slots);
    let game_proof = state.proof(g.proxy, &[slot(GAME_STATUS_SLOT)]);
    let code = state.accounts[&g.proxy].code.clone();
    let out = verify_game_output(
        &l1,
        &GameQuery {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            index: 5,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: FINALITY_DELAY,
        },
        &factory_proof,
        &game_proof,
        &code,
    )
    .unwrap();
    assert_eq!(out.output_root, w.l2.block(L2_FINAL).output_root());
}
