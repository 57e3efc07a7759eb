//! The drivers the daemon and CLI run over the light client's verifiers, on generated data:
//! the sync driver over Beacon-API JSON, the L2 driver per anchor kind, and the follower round
//! `lorad serve` repeats. Each also checks a forged or out-of-policy input is refused.

mod synth;

use lorad_lightclient::LightClientError;
use lorad_lightclient::consensus::LightClientUpdate;
use lorad_lightclient::l2::{
    AnchorConfig, finalized_l1_anchor, follow_once, prove_l2_block, prove_latest_output,
};
use lorad_lightclient::op::anchor::{
    FACTORY_GAME_LIST_SLOT, GAME_STATUS_SLOT, L2Label, OutputSource, registry_game_slots,
    verify_game_proper,
};
use lorad_lightclient::rpc::ExecutionRpc;
use lorad_lightclient::sync::{SyncOptions, sync};
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use synth::chain::Rpc;
use synth::l1::GAME_TYPE_CANNON;
use synth::mpt::slot;
use synth::trust::{beacon_node, l1_anchor, synced_store};
use synth::world::{
    ADAPTER_A, FACTORY, FINALITY_DELAY, FINALIZATION_PERIOD, GUARD_REGISTRY, L2_FINAL, L2_REGISTRY,
    ORACLE, REGISTRY, World, adapter_slot, world,
};

/// The clock and policy every driver test syncs with: the world's slot, a one-hour
/// weak-subjectivity window, finality and optimistic updates.
fn sync_opts(w: &World) -> SyncOptions {
    SyncOptions {
        current_slot: w.current_slot,
        max_checkpoint_age: Some((w.now, 3600)),
        finality: true,
        optimistic: true,
    }
}

#[test]
fn sync_driver_over_beacon_api_json_reaches_the_same_l1_anchor() {
    let w = world();
    let cfg = &w.cfg;
    let node = |finality: &LightClientUpdate| beacon_node(w, finality);
    let opts = sync_opts(w);
    let honest = node(&w.finality_update);
    let (store, report) = sync(cfg, &honest, w.checkpoint, opts, |_| {}).unwrap();
    assert_eq!(store.finalized_header, synced_store(w).finalized_header);
    assert_eq!(finalized_l1_anchor(&store), l1_anchor(w));
    assert_eq!(report.finalized.execution_block_number, w.l1_number);
    assert_eq!(report.optimistic.slot, 80);
    let steps: Vec<&str> = report.steps.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(steps.first(), Some(&"bootstrap"));
    assert_eq!(&steps[steps.len() - 2..], ["finality", "optimistic"]);
    assert!(honest.requests.borrow().iter().any(|r| r.starts_with("updates?start_period=0")));

    // The checkpoint is too old for a 60 s weak-subjectivity window.
    let opts_old = SyncOptions { max_checkpoint_age: Some((w.now, 60)), ..opts };
    let err = sync(cfg, &honest, w.checkpoint, opts_old, |_| {}).unwrap_err();
    assert!(matches!(err, LightClientError::CheckpointTooOld { .. }), "{err:?}");
    // A node serving a finality update signed by the wrong committee: the step is named.
    let mut forged = w.finality_update.clone();
    forged.sync_aggregate =
        w.committees[0].sign(cfg, &forged.attested_header.beacon, forged.signature_slot, |_| true);
    let err = sync(cfg, &node(&forged), w.checkpoint, opts, |_| {}).unwrap_err();
    assert!(
        matches!(&err, LightClientError::Step { step, source } if step == "finality" && matches!(**source, LightClientError::SignatureInvalid { .. })),
        "{err:?}"
    );
}

/// The L2 driver the CLI uses (`l2::prove_latest_output` + `prove_l2_block`): for each
/// anchor kind it finds the newest anchored output through the RPC, proves it and the L2
/// block it names; a deployment respecting another game type gets nothing.
#[test]
fn l2_driver_proves_the_newest_anchored_block_per_anchor_kind() {
    let w = world();
    let l1 = l1_anchor(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));
    let kinds = [
        AnchorConfig::Oracle { address: ORACLE, finalization_period_secs: FINALIZATION_PERIOD },
        AnchorConfig::Game {
            factory: FACTORY,
            list_slot: FACTORY_GAME_LIST_SLOT,
            game_type: GAME_TYPE_CANNON,
            finality_delay_secs: FINALITY_DELAY,
            registry: None,
        },
        AnchorConfig::Registry { address: REGISTRY },
    ];
    for anchor in &kinds {
        let output =
            prove_latest_output(&l1, &l1_rpc, anchor).unwrap_or_else(|e| panic!("{anchor:?}: {e}"));
        let block = prove_l2_block(&output, &l2_rpc).unwrap_or_else(|e| panic!("{anchor:?}: {e}"));
        assert_eq!(block.number, output.l2_block_number);
        assert_eq!(block.hash, w.l2.block(block.number).header.hash_slow(), "{anchor:?}");
        assert_eq!(block.label, output.label);
    }
    // Newest game (index 4) is won by the defender but still inside its delay.
    let game = prove_latest_output(&l1, &l1_rpc, &kinds[1]).unwrap();
    assert!(matches!(game.source, OutputSource::Game { index: 4, .. }), "{:?}", game.source);
    assert_eq!(game.label, L2Label::Safe);
    let registry = prove_latest_output(&l1, &l1_rpc, &kinds[2]).unwrap();
    assert_eq!((registry.l2_block_number, registry.label), (L2_FINAL, L2Label::Finalized));

    let permissioned = AnchorConfig::Game {
        factory: FACTORY,
        list_slot: FACTORY_GAME_LIST_SLOT,
        game_type: 1,
        finality_delay_secs: FINALITY_DELAY,
        registry: None,
    };
    let err = prove_latest_output(&l1, &l1_rpc, &permissioned).unwrap_err();
    assert!(matches!(err, LightClientError::AnchorData { .. }), "{err:?}");
}

/// `AnchorStateRegistry` guard rails on factory games: the guard registry has blacklisted game
/// 4 and retired games created up to 188 s before the L1 block (games 0 and 1); the plain
/// registry neither.
#[test]
fn factory_games_pass_the_registrys_blacklist_and_retirement() {
    let w = world();
    let l1 = l1_anchor(w);
    let l1_rpc = Rpc::new(&w.l1);
    let check = |registry, i: usize| {
        let game = w.games[i].proxy;
        let proof = l1_rpc.get_proof(registry, &registry_game_slots(game), l1.block_number)?;
        let game_proof = l1_rpc.get_proof(game, &[slot(GAME_STATUS_SLOT)], l1.block_number)?;
        verify_game_proper(&l1, registry, &proof, game, &game_proof)
    };
    for i in 0..5 {
        check(REGISTRY, i).unwrap_or_else(|e| panic!("game {i}: {e}"));
    }
    let reason = |i| match check(GUARD_REGISTRY, i) {
        Err(LightClientError::AnchorData { reason }) => reason,
        other => panic!("game {i}: {other:?}"),
    };
    for i in [0, 1] {
        assert!(reason(i).contains("is retired"), "{}", reason(i));
    }
    check(GUARD_REGISTRY, 2).expect("created after the retirement, not blacklisted");
    check(GUARD_REGISTRY, 3).expect("created after the retirement, not blacklisted");
    assert!(reason(4).contains("is blacklisted"), "{}", reason(4));
    // The registry proof must hold this game's blacklist entry, not another's.
    let game = w.games[4].proxy;
    let other = registry_game_slots(w.games[2].proxy);
    let proof = l1_rpc.get_proof(GUARD_REGISTRY, &other, l1.block_number).unwrap();
    let game_proof = l1_rpc.get_proof(game, &[slot(GAME_STATUS_SLOT)], l1.block_number).unwrap();
    let err = verify_game_proper(&l1, GUARD_REGISTRY, &proof, game, &game_proof).unwrap_err();
    assert!(err.to_string().contains("lacks slot"), "{err}");

    // The driver: the newest game (4) is refused through the guard registry.
    let guarded = AnchorConfig::Game {
        factory: FACTORY,
        list_slot: FACTORY_GAME_LIST_SLOT,
        game_type: GAME_TYPE_CANNON,
        finality_delay_secs: FINALITY_DELAY,
        registry: Some(GUARD_REGISTRY),
    };
    let err = prove_latest_output(&l1, &l1_rpc, &guarded).unwrap_err();
    assert!(err.to_string().contains("blacklisted"), "{err}");
    let plain = AnchorConfig::Game {
        factory: FACTORY,
        list_slot: FACTORY_GAME_LIST_SLOT,
        game_type: GAME_TYPE_CANNON,
        finality_delay_secs: FINALITY_DELAY,
        registry: Some(REGISTRY),
    };
    let out = prove_latest_output(&l1, &l1_rpc, &plain).expect("game 4 through the plain registry");
    assert!(matches!(out.source, OutputSource::Game { index: 4, .. }), "{:?}", out.source);
}

/// The follower round the daemon runs (`l2::follow_once`): checkpoint → L1 finality over the
/// Beacon API → newest anchored output → L2 block, which then answers verified reads; a
/// node serving a forged finality update yields nothing.
#[test]
fn follower_round_goes_from_checkpoint_to_a_readable_l2_block() {
    let w = world();
    let cfg = &w.cfg;
    let node = |finality: &LightClientUpdate| beacon_node(w, finality);
    let opts = sync_opts(w);
    let (l1_rpc, l2_rpc) = (Rpc::new(&w.l1), Rpc::new(&w.l2));
    let anchor = AnchorConfig::Registry { address: REGISTRY };
    let (block, report) =
        follow_once(cfg, &node(&w.finality_update), w.checkpoint, opts, &l1_rpc, &l2_rpc, &anchor)
            .unwrap();
    assert_eq!((block.number, block.label), (L2_FINAL, L2Label::Finalized));
    assert_eq!(block.hash, w.l2.block(L2_FINAL).header.hash_slow());
    assert_eq!(report.finalized.execution_block_number, w.l1_number);
    let mut state = VerifiedState::new(4);
    state.insert(block);
    let policy = ReadPolicy { min_label: L2Label::Safe, max_age_secs: None };
    let read = state
        .verified_storage(&l2_rpc, L2_REGISTRY, adapter_slot(ADAPTER_A), policy, w.now)
        .unwrap();
    assert_eq!(read.block_number, L2_FINAL);

    let mut forged = w.finality_update.clone();
    forged.sync_aggregate =
        w.committees[0].sign(cfg, &forged.attested_header.beacon, forged.signature_slot, |_| true);
    let err = follow_once(cfg, &node(&forged), w.checkpoint, opts, &l1_rpc, &l2_rpc, &anchor)
        .unwrap_err();
    assert!(matches!(err, LightClientError::Step { .. }), "{err:?}");
}
