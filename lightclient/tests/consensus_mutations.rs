//! Mutation testing of the sync protocol on real mainnet data: seeded random corruptions
//! of every update (branches, signature, participation bits, header fields, committee keys,
//! slots) must all be rejected with a typed error, and so must out-of-order data.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use alloy_primitives::B256;
use common::{MAINNET_CHECKPOINT, fixtures_dir, mainnet_chain};
use lorad_lightclient::LightClientError;
use lorad_lightclient::consensus::{
    LightClientHeader, LightClientStore, LightClientUpdate, NetworkConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0x5CC0_11EE;
const MUTATIONS_PER_UPDATE: usize = 60;
const DATA_SLOT: u64 = 7_109_432;

fn flip_b256(rng: &mut ChaCha8Rng, v: &mut B256) {
    let i = rng.random_range(0..32);
    v.0[i] ^= 1 << rng.random_range(0..8);
}

fn flip_in(rng: &mut ChaCha8Rng, bytes: &mut [u8]) {
    let i = rng.random_range(0..bytes.len());
    bytes[i] ^= 1 << rng.random_range(0..8);
}

/// Corrupts one field of a header; returns its name.
fn mutate_header(rng: &mut ChaCha8Rng, h: &mut LightClientHeader) -> &'static str {
    match rng.random_range(0..9) {
        0 => {
            h.beacon.slot ^= 1 << rng.random_range(0..20);
            "beacon.slot"
        }
        1 => {
            h.beacon.proposer_index ^= 1 << rng.random_range(0..20);
            "beacon.proposer_index"
        }
        2 => {
            flip_b256(rng, &mut h.beacon.parent_root);
            "beacon.parent_root"
        }
        3 => {
            flip_b256(rng, &mut h.beacon.state_root);
            "beacon.state_root"
        }
        4 => {
            flip_b256(rng, &mut h.beacon.body_root);
            "beacon.body_root"
        }
        5 => {
            flip_b256(rng, &mut h.execution.state_root);
            "execution.state_root"
        }
        6 => {
            flip_b256(rng, &mut h.execution.block_hash);
            "execution.block_hash"
        }
        7 => {
            h.execution.block_number ^= 1 << rng.random_range(0..20);
            "execution.block_number"
        }
        _ => {
            let i = rng.random_range(0..h.execution_branch.len());
            flip_b256(rng, &mut h.execution_branch[i]);
            "execution_branch"
        }
    }
}

/// Applies one random corruption; returns its kind.
fn mutate(rng: &mut ChaCha8Rng, u: &mut LightClientUpdate) -> &'static str {
    loop {
        match rng.random_range(0..9) {
            0 => return mutate_header(rng, &mut u.attested_header),
            1 if u.is_finality_update() => {
                mutate_header(rng, &mut u.finalized_header);
                return "finalized_header";
            }
            2 if u.is_finality_update() => {
                let i = rng.random_range(0..u.finality_branch.len());
                flip_b256(rng, &mut u.finality_branch[i]);
                return "finality_branch";
            }
            3 if u.is_sync_committee_update() => {
                let i = rng.random_range(0..u.next_sync_committee_branch.len());
                flip_b256(rng, &mut u.next_sync_committee_branch[i]);
                return "next_sync_committee_branch";
            }
            4 if u.is_sync_committee_update() => {
                let i = rng.random_range(0..u.next_sync_committee.pubkeys.len());
                flip_in(rng, &mut u.next_sync_committee.pubkeys[i].0);
                return "next_sync_committee.pubkey";
            }
            5 => {
                flip_in(rng, &mut u.sync_aggregate.sync_committee_signature.0);
                return "signature";
            }
            6 => {
                flip_in(rng, &mut u.sync_aggregate.sync_committee_bits);
                return "participation_bit";
            }
            7 => {
                // A different period (or a far-future slot): never the committee that signed.
                u.signature_slot += 8192 * rng.random_range(1..4);
                return "signature_slot";
            }
            8 => {
                u.sync_aggregate.sync_committee_bits.fill(0);
                return "no_participants";
            }
            _ => continue,
        }
    }
}

#[test]
fn every_mutation_of_real_updates_is_rejected_with_a_typed_error() {
    let Some(dir) = fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let chain = mainnet_chain(&dir);
    let mut store = LightClientStore::bootstrap(&cfg, MAINNET_CHECKPOINT, chain.bootstrap).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_error: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;

    let mut targets: Vec<(LightClientUpdate, bool)> =
        chain.updates.into_iter().map(|u| (u, false)).collect();
    targets.push((chain.finality, true));
    targets.push((chain.optimistic, false));
    for (update, finality) in targets {
        // Warm the committee keys so every clone below shares them.
        store.verify_update(&cfg, &update, DATA_SLOT).unwrap();
        for _ in 0..MUTATIONS_PER_UPDATE {
            let mut bad = update.clone();
            let kind = mutate(&mut rng, &mut bad);
            if bad == update {
                continue;
            }
            let mut trial = store.clone();
            let result = if finality {
                trial.process_finality_update(&cfg, bad, DATA_SLOT)
            } else {
                trial.process_update(&cfg, bad, DATA_SLOT)
            };
            let err = match result {
                Err(e) => e,
                Ok(o) => panic!(
                    "mutation {kind} of the update at slot {} was accepted: {o:?}",
                    update.signature_slot
                ),
            };
            let variant =
                format!("{err:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned();
            *by_error.entry(variant).or_default() += 1;
            *by_kind.entry(kind).or_default() += 1;
            total += 1;
        }
        if finality {
            store.process_finality_update(&cfg, update, DATA_SLOT).unwrap();
        } else {
            store.process_update(&cfg, update, DATA_SLOT).unwrap();
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{total} mutations rejected; by kind {by_kind:?}; by error {by_error:?}"
    );
    assert!(total >= 400, "only {total} mutations generated");
    assert!(by_kind.len() >= 12, "mutation kinds not all exercised: {by_kind:?}");
}

#[test]
fn out_of_order_data_is_rejected() {
    let Some(dir) = fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let chain = mainnet_chain(&dir);
    let mut store = LightClientStore::bootstrap(&cfg, MAINNET_CHECKPOINT, chain.bootstrap).unwrap();

    // An update two periods ahead: the store has no committee for it.
    let err = store.clone().process_update(&cfg, chain.updates[3].clone(), DATA_SLOT).unwrap_err();
    assert!(matches!(err, LightClientError::WrongPeriod { .. }), "{err}");

    // The finality update before the committees that signed it are known.
    let err = store.clone().process_update(&cfg, chain.finality.clone(), DATA_SLOT).unwrap_err();
    assert!(matches!(err, LightClientError::WrongPeriod { .. }), "{err}");

    // A clock earlier than the signature.
    let early = chain.updates[0].signature_slot - 1;
    let err = store.clone().process_update(&cfg, chain.updates[0].clone(), early).unwrap_err();
    assert!(matches!(err, LightClientError::InvalidTiming { .. }), "{err}");

    for u in &chain.updates {
        store.process_update(&cfg, u.clone(), DATA_SLOT).unwrap();
    }
    store.process_finality_update(&cfg, chain.finality.clone(), DATA_SLOT).unwrap();

    // Replaying an older period's update, as a finality update: an older finalized header.
    let err = store
        .clone()
        .process_finality_update(&cfg, chain.updates[5].clone(), DATA_SLOT)
        .unwrap_err();
    assert!(matches!(err, LightClientError::StaleFinality { .. }), "{err}");
    // ... and as a plain update it is irrelevant: nothing newer than what is final.
    let err = store.clone().process_update(&cfg, chain.updates[5].clone(), DATA_SLOT).unwrap_err();
    assert!(matches!(err, LightClientError::IrrelevantUpdate { .. }), "{err}");

    // An optimistic update that carries a finalized header without a branch.
    let mut bad = chain.optimistic.clone();
    bad.finalized_header = chain.finality.finalized_header.clone();
    let err = store.clone().process_update(&cfg, bad, DATA_SLOT).unwrap_err();
    assert!(matches!(err, LightClientError::UnexpectedField { .. }), "{err}");
}

#[test]
fn bootstrap_mutations_are_rejected() {
    let Some(dir) = fixtures_dir() else { return };
    let cfg = NetworkConfig::mainnet();
    let bootstrap = mainnet_chain(&dir).bootstrap;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 1);
    for round in 0..60 {
        let mut bad = bootstrap.clone();
        match round % 3 {
            0 => {
                let i = rng.random_range(0..bad.current_sync_committee_branch.len());
                flip_b256(&mut rng, &mut bad.current_sync_committee_branch[i]);
            }
            1 => {
                let i = rng.random_range(0..bad.current_sync_committee.pubkeys.len());
                flip_in(&mut rng, &mut bad.current_sync_committee.pubkeys[i].0);
            }
            _ => {
                mutate_header(&mut rng, &mut bad.header);
            }
        }
        let err = LightClientStore::bootstrap(&cfg, MAINNET_CHECKPOINT, bad).unwrap_err();
        assert!(
            matches!(
                err,
                LightClientError::InvalidBranch { .. }
                    | LightClientError::CheckpointMismatch { .. }
            ),
            "round {round}: {err}"
        );
    }
}
