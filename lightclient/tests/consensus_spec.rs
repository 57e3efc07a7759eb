//! consensus-spec-tests `light_client/sync` vectors (minimal preset, Deneb and Electra):
//! every step must be accepted and leave exactly the expected finalized and optimistic
//! headers in the store. Each container must also re-encode to its original SSZ bytes.

mod common;

use std::collections::HashMap;
use std::path::Path;

use alloy_primitives::{B256, FixedBytes};
use lorad_lightclient::consensus::config::ForkEntry;
use lorad_lightclient::consensus::{
    Fork, ForkedSsz, LightClientBootstrap, LightClientHeader, LightClientStore, LightClientUpdate,
    NetworkConfig, Preset,
};
use serde::Deserialize;

const SPEC_DIR: &str = "a16z-helios/ethereum/consensus-core/testdata";

#[derive(Deserialize)]
struct Meta {
    genesis_validators_root: B256,
    trusted_block_root: B256,
    bootstrap_fork_digest: FixedBytes<4>,
}

#[derive(Deserialize)]
struct HeaderCheck {
    slot: u64,
    beacon_root: B256,
    execution_root: B256,
}

#[derive(Deserialize)]
struct Checks {
    finalized_header: HeaderCheck,
    optimistic_header: HeaderCheck,
}

#[derive(Deserialize)]
struct ProcessUpdate {
    update_fork_digest: FixedBytes<4>,
    update: String,
    current_slot: u64,
    checks: Checks,
}

#[derive(Deserialize)]
struct ForceUpdate {
    current_slot: u64,
    checks: Checks,
}

/// One step: a map with exactly one of these keys (serde_norway wants tags for enums).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    process_update: Option<ProcessUpdate>,
    force_update: Option<ForceUpdate>,
}

/// Builds the network from the case's `config.yaml`. YAML reads unquoted `0x00000001` as
/// an integer, so versions are accepted as integers or strings.
fn network(case: &Path, gvr: B256) -> NetworkConfig {
    let yaml = std::fs::read_to_string(case.join("config.yaml")).unwrap();
    let map: HashMap<String, serde_norway::Value> = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(map["PRESET_BASE"].as_str(), Some("minimal"));
    let version = |key: &str| -> FixedBytes<4> {
        match &map[key] {
            serde_norway::Value::Number(n) => {
                FixedBytes((n.as_u64().unwrap() as u32).to_be_bytes())
            }
            serde_norway::Value::String(s) => s.parse().unwrap(),
            other => panic!("{key}: {other:?}"),
        }
    };
    let epoch = |key: &str| map[key].as_u64().unwrap();
    let mut forks =
        vec![ForkEntry { fork: Fork::Phase0, version: version("GENESIS_FORK_VERSION"), epoch: 0 }];
    for (fork, prefix) in [
        (Fork::Altair, "ALTAIR"),
        (Fork::Bellatrix, "BELLATRIX"),
        (Fork::Capella, "CAPELLA"),
        (Fork::Deneb, "DENEB"),
        (Fork::Electra, "ELECTRA"),
    ] {
        if !map.contains_key(&format!("{prefix}_FORK_EPOCH")) {
            continue;
        }
        forks.push(ForkEntry {
            fork,
            version: version(&format!("{prefix}_FORK_VERSION")),
            epoch: epoch(&format!("{prefix}_FORK_EPOCH")),
        });
    }
    let cfg = NetworkConfig {
        name: case.display().to_string(),
        genesis_validators_root: gvr,
        genesis_time: 0,
        seconds_per_slot: epoch("SECONDS_PER_SLOT"),
        preset: Preset::MINIMAL,
        forks,
    };
    cfg.validate().unwrap();
    cfg
}

fn ssz_snappy(path: &Path) -> Vec<u8> {
    let compressed = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    snap::raw::Decoder::new().decompress_vec(&compressed).unwrap()
}

fn check_header(cfg: &NetworkConfig, what: &str, header: &LightClientHeader, want: &HeaderCheck) {
    assert_eq!(header.beacon.slot, want.slot, "{what} slot");
    assert_eq!(header.beacon.hash_tree_root(), want.beacon_root, "{what} beacon root");
    assert_eq!(header.execution_root(cfg), want.execution_root, "{what} execution root");
}

fn check(cfg: &NetworkConfig, store: &LightClientStore, checks: &Checks, step: usize) {
    check_header(
        cfg,
        &format!("step {step} finalized"),
        &store.finalized_header,
        &checks.finalized_header,
    );
    check_header(
        cfg,
        &format!("step {step} optimistic"),
        &store.optimistic_header,
        &checks.optimistic_header,
    );
}

/// Runs one case; returns the number of steps executed.
fn run_case(case: &Path) -> usize {
    let meta: Meta =
        serde_norway::from_str(&std::fs::read_to_string(case.join("meta.yaml")).unwrap()).unwrap();
    let cfg = network(case, meta.genesis_validators_root);
    let size = cfg.preset.sync_committee_size;
    let fork = cfg.fork_for_digest(meta.bootstrap_fork_digest).expect("bootstrap fork digest");
    let bytes = ssz_snappy(&case.join("bootstrap.ssz_snappy"));
    let bootstrap = LightClientBootstrap::from_ssz(&bytes, fork, size).unwrap();
    assert!(bootstrap.to_ssz(fork) == bytes, "bootstrap SSZ round trip");
    let mut store = LightClientStore::bootstrap(&cfg, meta.trusted_block_root, bootstrap).unwrap();

    let steps: Vec<Step> =
        serde_norway::from_str(&std::fs::read_to_string(case.join("steps.yaml")).unwrap()).unwrap();
    for (i, step) in steps.iter().enumerate() {
        match (&step.process_update, &step.force_update) {
            (Some(ProcessUpdate { update_fork_digest, update, current_slot, checks }), None) => {
                let fork = cfg.fork_for_digest(*update_fork_digest).expect("update fork digest");
                let bytes = ssz_snappy(&case.join(format!("{update}.ssz_snappy")));
                let decoded = LightClientUpdate::from_ssz(&bytes, fork, size).unwrap();
                assert!(decoded.to_ssz(fork) == bytes, "{update}: SSZ round trip");
                store
                    .process_update(&cfg, decoded, *current_slot)
                    .unwrap_or_else(|e| panic!("{}: step {i} ({update}): {e}", case.display()));
                check(&cfg, &store, checks, i);
            }
            (None, Some(ForceUpdate { current_slot, checks })) => {
                store.force_update(&cfg, *current_slot).unwrap();
                check(&cfg, &store, checks, i);
            }
            _ => panic!("{}: step {i} is neither process_update nor force_update", case.display()),
        }
    }
    steps.len()
}

fn run_fork(fork: &str) {
    let Some(dir) = common::fixtures_dir() else { return };
    let root = dir.join(SPEC_DIR).join(fork);
    let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 3, "{fork}: expected the three sync cases");
    for case in cases {
        let steps = run_case(&case);
        assert!(steps > 0, "{}: no steps", case.display());
    }
}

#[test]
fn deneb_sync_vectors_match_the_expected_store_after_every_step() {
    run_fork("deneb");
}

#[test]
fn electra_sync_vectors_match_the_expected_store_after_every_step() {
    run_fork("electra");
}
