//! Shared helpers for the fixture-driven integration tests.
//!
//! Fixtures are real public chain data kept outside the repository (see
//! `/work/shared/fixtures/lightclient/README.md`); they are read, never copied in.

// Each test binary compiles this module but uses a different subset of it.
#![allow(dead_code)]

use std::path::Path;

use alloy_primitives::B256;
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use lorad_lightclient::{parse_eip1186_response, parse_rpc_block_header, verify_header_hash};

pub(crate) use lorad_lightclient::testing::fixtures_dir;

/// Reads a fixture file relative to the fixtures dir.
pub(crate) fn read(dir: &Path, rel: &str) -> String {
    let path = dir.join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// helios' real mainnet execution data (block 21925176).
pub(crate) const HELIOS_RPC: &str = "a16z-helios/tests/testdata/rpc";

/// The block hash of mainnet block 21925176, from the fixture README (independent of block.json).
pub(crate) const BLOCK_21925176_HASH: B256 =
    alloy_primitives::b256!("0x92dabfa3f61ff1c349d12f5fd0dd4c99760a0a41b77dee8f0a80f83efdcb307a");

/// Parses block 21925176 and verifies its hash against the known value; returns the header.
pub(crate) fn verified_block_header(dir: &Path) -> alloy_consensus::Header {
    let (header, claimed) =
        parse_rpc_block_header(&read(dir, &format!("{HELIOS_RPC}/block.json"))).unwrap();
    assert_eq!(claimed, BLOCK_21925176_HASH);
    verify_header_hash(&header, BLOCK_21925176_HASH).unwrap();
    header
}

/// `account.json` is helios' own `Account` shape, not an `eth_getProof` response; this
/// reshapes it so the same verifier applies. Returns the response and the contract code.
pub(crate) fn helios_account(
    dir: &Path,
    file: &str,
    address: alloy_primitives::Address,
) -> (EIP1186AccountProofResponse, alloy_primitives::Bytes) {
    let v: serde_json::Value =
        serde_json::from_str(&read(dir, &format!("{HELIOS_RPC}/{file}"))).unwrap();
    let acct = &v["account"];
    let reshaped = serde_json::json!({
        "address": address,
        "nonce": acct["nonce"],
        "balance": acct["balance"],
        "storageHash": acct["storageRoot"],
        "codeHash": acct["codeHash"],
        "accountProof": v["accountProof"],
        "storageProof": v["storageProof"],
    });
    let response = parse_eip1186_response(&reshaped.to_string()).unwrap();
    let code = serde_json::from_value(v["code"].clone()).unwrap();
    (response, code)
}

/// All real `eth_getProof`-equivalent responses for block 21925176, with their labels.
pub(crate) fn block_proofs(dir: &Path) -> Vec<(&'static str, EIP1186AccountProofResponse)> {
    let proof = |f: &str| parse_eip1186_response(&read(dir, &format!("{HELIOS_RPC}/{f}"))).unwrap();
    let deposit = proof("proof.json");
    let miner = proof("block_miner_proof.json");
    let (deposit_acct, _) = helios_account(dir, "account.json", deposit.address);
    let (miner_acct, _) = helios_account(dir, "block_miner_account.json", miner.address);
    vec![
        ("proof.json", deposit),
        ("account.json", deposit_acct),
        ("block_miner_proof.json", miner),
        ("block_miner_account.json", miner_acct),
    ]
}

/// helios' real mainnet light-client chain (Capella, August 2023).
pub(crate) const HELIOS_LC: &str = "a16z-helios/ethereum/testdata";

/// The trusted checkpoint (weak-subjectivity root) the helios chain starts from.
pub(crate) const MAINNET_CHECKPOINT: B256 =
    alloy_primitives::b256!("0x5afc212a7924789b2bc86acad3ab3a6ffb1f6e97253ea50bee7f4f51422c9275");

/// The saved Beacon-API responses of the mainnet chain, parsed.
pub(crate) struct MainnetChain {
    pub(crate) bootstrap: lorad_lightclient::consensus::LightClientBootstrap,
    pub(crate) updates: Vec<lorad_lightclient::consensus::LightClientUpdate>,
    pub(crate) finality: lorad_lightclient::consensus::LightClientUpdate,
    pub(crate) optimistic: lorad_lightclient::consensus::LightClientUpdate,
}

/// Parses `bootstrap.json`, `updates.json`, `finality.json`, `optimistic.json`.
pub(crate) fn mainnet_chain(dir: &Path) -> MainnetChain {
    use lorad_lightclient::consensus::*;
    let size = Preset::MAINNET.sync_committee_size;
    let file = |f: &str| read(dir, &format!("{HELIOS_LC}/{f}"));
    MainnetChain {
        bootstrap: parse_bootstrap_json(&file("bootstrap.json"), size).unwrap().0,
        updates: parse_updates_json(&file("updates.json"), size)
            .unwrap()
            .into_iter()
            .map(|(u, _)| u)
            .collect(),
        finality: parse_finality_update_json(&file("finality.json"), size).unwrap().0,
        optimistic: parse_optimistic_update_json(&file("optimistic.json"), size).unwrap().0,
    }
}
