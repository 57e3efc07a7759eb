//! Real mainnet light-client sync (helios' saved Beacon-API responses): bootstrap from the
//! trusted checkpoint, six sync-committee periods, finality, then the optimistic head.

mod common;

use lorad_lightclient::LightClientError;
use lorad_lightclient::consensus::{LightClientStore, NetworkConfig, verify_checkpoint_age};

/// The clock the data was saved at: the optimistic update's signature slot.
const DATA_SLOT: u64 = 7_109_432;

#[test]
fn mainnet_bootstrap_updates_finality_and_optimistic_head() {
    let Some(dir) = common::fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let chain = common::mainnet_chain(&dir);
    assert_eq!(chain.bootstrap.header.execution.block_number, 17_883_333);

    let mut store =
        LightClientStore::bootstrap(&cfg, common::MAINNET_CHECKPOINT, chain.bootstrap).unwrap();
    assert_eq!(store.period(&cfg), 862);

    for (i, update) in chain.updates.into_iter().enumerate() {
        let outcome = store
            .process_update(&cfg, update, DATA_SLOT)
            .unwrap_or_else(|e| panic!("update {i}: {e}"));
        // The first update is older than the checkpoint: it only supplies the next committee.
        assert!(
            outcome.finalized_advanced || outcome.next_committee_learned,
            "update {i} changed nothing: {outcome:?}"
        );
    }
    assert_eq!(store.period(&cfg), 867, "six committee hand-overs");

    store.process_finality_update(&cfg, chain.finality, DATA_SLOT).unwrap();
    assert_eq!(store.finalized_header.beacon.slot, 7_109_344);
    assert_eq!(store.finalized_header.execution.block_number, 17_923_026);
    assert_eq!(
        store.optimistic_header.execution.block_number, 17_923_112,
        "finality update's attested header"
    );

    store.process_update(&cfg, chain.optimistic, DATA_SLOT).unwrap();
    assert_eq!(store.optimistic_header.beacon.slot, 7_109_431);
    assert_eq!(store.optimistic_header.execution.block_number, 17_923_113);
    assert_eq!(
        store.finalized_header.execution.block_number, 17_923_026,
        "optimistic updates never finalize"
    );
}

#[test]
fn verified_headers_match_the_saved_beacon_blocks() {
    let Some(dir) = common::fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let chain = common::mainnet_chain(&dir);
    let mut store =
        LightClientStore::bootstrap(&cfg, common::MAINNET_CHECKPOINT, chain.bootstrap).unwrap();
    for update in chain.updates {
        store.process_update(&cfg, update, DATA_SLOT).unwrap();
    }
    store.process_finality_update(&cfg, chain.finality, DATA_SLOT).unwrap();
    let block: serde_json::Value = serde_json::from_str(&common::read(
        &dir,
        &format!("{}/blocks/7109344.json", common::HELIOS_LC),
    ))
    .unwrap();
    let message = &block["data"]["message"];
    let payload = &message["body"]["execution_payload"];
    let header = &store.finalized_header;
    assert_eq!(message["state_root"].as_str().unwrap(), header.beacon.state_root.to_string());
    assert_eq!(payload["block_hash"].as_str().unwrap(), header.execution.block_hash.to_string());
    assert_eq!(payload["state_root"].as_str().unwrap(), header.execution.state_root.to_string());
}

#[test]
fn wrong_checkpoint_and_old_checkpoint_are_refused() {
    let Some(dir) = common::fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let chain = common::mainnet_chain(&dir);
    let slot = chain.bootstrap.header.beacon.slot;
    let mut other = common::MAINNET_CHECKPOINT;
    other.0[31] ^= 1;
    let err = LightClientStore::bootstrap(&cfg, other, chain.bootstrap).unwrap_err();
    assert!(matches!(err, LightClientError::CheckpointMismatch { .. }), "{err}");

    // Two weeks is helios' default policy; the saved data is from 2023.
    let two_weeks = 14 * 24 * 3600;
    let saved_at = cfg.slot_start_time(DATA_SLOT);
    verify_checkpoint_age(&cfg, slot, saved_at, two_weeks).unwrap();
    let err = verify_checkpoint_age(&cfg, slot, saved_at + two_weeks * 10, two_weeks).unwrap_err();
    assert!(matches!(err, LightClientError::CheckpointTooOld { .. }), "{err}");
}

#[test]
fn replay_of_the_saved_directory_reports_each_step_and_names_a_failing_one() {
    use lorad_lightclient::replay::{SavedChain, replay};
    let Some(dir) = common::fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let saved = SavedChain::read_dir(&dir.join(common::HELIOS_LC)).unwrap();
    let mut seen = Vec::new();
    let report =
        replay(&cfg, common::MAINNET_CHECKPOINT, &saved, None, None, |s| seen.push(s.what.clone()))
            .unwrap();
    assert_eq!(seen.len(), 9, "bootstrap + 6 updates + finality + optimistic: {seen:?}");
    assert_eq!(report.current_slot, DATA_SLOT);
    assert_eq!(report.finalized.execution_block_number, 17_923_026);
    assert_eq!(report.optimistic.execution_block_number, 17_923_113);

    // Corrupt the third update's signature in the saved text: the error names that step.
    let mut updates: serde_json::Value =
        serde_json::from_str(saved.updates.as_deref().unwrap()).unwrap();
    let sig = updates[2]["data"]["sync_aggregate"]["sync_committee_signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped =
        format!("{}{}", &sig[..40], if &sig[40..41] == "0" { "1" } else { "0" }) + &sig[41..];
    updates[2]["data"]["sync_aggregate"]["sync_committee_signature"] = flipped.into();
    let bad = SavedChain { updates: Some(updates.to_string()), ..saved.clone() };
    let err = replay(&cfg, common::MAINNET_CHECKPOINT, &bad, None, None, |_| {}).unwrap_err();
    assert!(matches!(&err, LightClientError::Step { step, .. } if step == "update 2"), "{err}");

    // A clock before the data's signatures is refused.
    let err = replay(&cfg, common::MAINNET_CHECKPOINT, &saved, Some(7_080_000), None, |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, LightClientError::Step { source, .. } if matches!(**source, LightClientError::InvalidTiming { .. })),
        "{err}"
    );
}
