//! Fixture loading and a secp256k1 signer (`k256`) for `op_gossip.rs`.

use std::path::Path;

use alloy_primitives::{B256, U256, hex};
use lorad_lightclient::op::{OpExecutionPayload, OpWithdrawal, PayloadVersion};
use serde_json::Value;

use crate::common::read;

pub(crate) const VERSIONS: [PayloadVersion; 4] =
    [PayloadVersion::V1, PayloadVersion::V2, PayloadVersion::V3, PayloadVersion::V4];

/// One op-alloy vector: version, network bytes, and the fixture's expectations.
pub(crate) struct Vector {
    pub(crate) version: PayloadVersion,
    pub(crate) network: Vec<u8>,
    pub(crate) json: Value,
}

pub(crate) fn vectors(dir: &Path) -> (Vec<Vector>, Value) {
    let doc: Value =
        serde_json::from_str(&read(dir, "alloy-rs-op-alloy/op_network_payload_envelopes.json"))
            .unwrap();
    let vectors = doc["network_envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(VERSIONS)
        .map(|(v, version)| {
            assert_eq!(v["version"], format!("v{}", version as u8 + 1));
            let network = hex::decode(v["snappy_block_compressed_hex"].as_str().unwrap()).unwrap();
            Vector { version, network, json: v.clone() }
        })
        .collect();
    (vectors, doc["signature_message_vector"].clone())
}

pub(crate) fn b256_of(v: &Value) -> B256 {
    serde_json::from_value(v.clone()).unwrap()
}

/// A secp256k1 signer for tests (`k256`), keyed by a `U256` secret.
pub(crate) mod ecdsa {
    use alloy_primitives::{Address, B256, U256, keccak256};
    use k256::ecdsa::SigningKey;

    fn key(secret: U256) -> SigningKey {
        SigningKey::from_slice(&secret.to_be_bytes::<32>()).expect("valid secret")
    }

    /// The Ethereum address of `secret`.
    pub(crate) fn address(secret: U256) -> Address {
        let point = key(secret).verifying_key().to_encoded_point(false);
        Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..])
    }

    /// `r ‖ s ‖ y_parity` over the prehashed `msg`.
    pub(crate) fn sign(secret: U256, msg: B256) -> [u8; 65] {
        let (sig, recid) = key(secret).sign_prehash_recoverable(msg.as_slice()).expect("signs");
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }
}

pub(crate) fn field<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> T {
    serde_json::from_value(v[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// A REAL beacon execution payload (Bellatrix = V1 layout, Capella = V2) and its block hash
/// and roots from `eth_getBlockByHash`.
pub(crate) fn lodestar_payload(dir: &Path, file: &str) -> (OpExecutionPayload, Value) {
    let doc: Value = serde_json::from_str(&read(
        dir,
        &format!("chainsafe-lodestar-prover/packages/prover/test/fixtures/{file}"),
    ))
    .unwrap();
    let p = &doc["beacon"]["executionPayload"];
    let dec = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let withdrawals = p["withdrawals"].as_array().map(|ws| {
        ws.iter()
            .map(|w| OpWithdrawal {
                index: dec(&w["index"]),
                validator_index: dec(&w["validator_index"]),
                address: serde_json::from_value(w["address"].clone()).unwrap(),
                amount: dec(&w["amount"]),
            })
            .collect()
    });
    let payload = OpExecutionPayload {
        parent_hash: field(p, "parent_hash"),
        fee_recipient: field(p, "fee_recipient"),
        state_root: field(p, "state_root"),
        receipts_root: field(p, "receipts_root"),
        logs_bloom: field(p, "logs_bloom"),
        prev_randao: field(p, "prev_randao"),
        block_number: dec(&p["block_number"]),
        gas_limit: dec(&p["gas_limit"]),
        gas_used: dec(&p["gas_used"]),
        timestamp: dec(&p["timestamp"]),
        extra_data: field(p, "extra_data"),
        base_fee_per_gas: U256::from_str_radix(p["base_fee_per_gas"].as_str().unwrap(), 10)
            .unwrap(),
        block_hash: field(p, "block_hash"),
        transactions: field(p, "transactions"),
        withdrawals,
        ..Default::default()
    };
    (payload, doc["execution"]["block"].clone())
}

pub(crate) const REAL_PAYLOADS: [&str; 3] = [
    "sepolia/eth_getBlock_with_contractCreation.json",
    "sepolia/eth_getBlock_with_no_accessList.json",
    "mainnet/eth_call.json",
];
