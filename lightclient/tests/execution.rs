//! Execution-layer verification against real mainnet/sepolia data: header hashing and
//! EIP-1186 account/storage proofs (fixtures: `a16z-helios`, `chainsafe-lodestar-prover`).

mod common;

use alloy_primitives::{B256, U256, address, b256, keccak256};
use alloy_rpc_types_eth::EIP1186StorageProof;
use alloy_trie::{KECCAK_EMPTY, Nibbles};
use common::{HELIOS_RPC, block_proofs, fixtures_dir, helios_account, read, verified_block_header};
use lorad_lightclient::{
    LightClientError, parse_eip1186_response, parse_rpc_block_header, verify_code, verify_eip1186,
    verify_header_hash, verify_storage_proofs,
};

const STATE_ROOT_21925176: B256 =
    b256!("0x7b3d5a01f69b7d2ea7479fd7ae35f4bac2700ab6d6d7b4807a7fedf53ced710e");
const DEPOSIT_CONTRACT: alloy_primitives::Address =
    address!("0x00000000219ab540356cbb839cbe05303d7705fa");

#[test]
fn block_21925176_header_hash_recomputes() {
    let Some(dir) = fixtures_dir() else { return };
    let header = verified_block_header(&dir);
    assert_eq!(header.number, 21_925_176);
    assert_eq!(header.state_root, STATE_ROOT_21925176);
    // Cancun fields are part of the hashed RLP; make sure alloy actually parsed them.
    assert!(header.parent_beacon_block_root.is_some());
    assert!(header.blob_gas_used.is_some());
}

#[test]
fn header_parser_accepts_jsonrpc_envelope_and_rejects_null() {
    let Some(dir) = fixtures_dir() else { return };
    let bare = read(&dir, &format!("{HELIOS_RPC}/block.json"));
    let wrapped = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{bare}}}"#);
    let (header, hash) = parse_rpc_block_header(&wrapped).unwrap();
    verify_header_hash(&header, hash).unwrap();
    assert!(matches!(
        parse_rpc_block_header(r#"{"jsonrpc":"2.0","id":1,"result":null}"#),
        Err(LightClientError::MissingResult { .. })
    ));
    assert!(matches!(parse_rpc_block_header("{not json"), Err(LightClientError::Json { .. })));
}

#[test]
fn deposit_contract_account_and_storage_proofs_verify() {
    let Some(dir) = fixtures_dir() else { return };
    let state_root = verified_block_header(&dir).state_root;
    let proofs = block_proofs(&dir);
    let (_, deposit) = &proofs[0];
    let verified = verify_eip1186(state_root, deposit).unwrap();
    assert!(verified.account.exists);
    assert_eq!(verified.account.address, DEPOSIT_CONTRACT);
    assert_eq!(verified.account.nonce, 1);
    assert_eq!(verified.account.balance, U256::from(0x2fb161afe600a5b2605040_u128));
    assert_eq!(verified.storage.len(), 1);
    assert_eq!(verified.storage[0].0, B256::with_last_byte(1));
    assert!(!verified.storage[0].1.is_zero());
}

#[test]
fn deposit_contract_code_matches_proven_code_hash() {
    let Some(dir) = fixtures_dir() else { return };
    let state_root = verified_block_header(&dir).state_root;
    let (response, code) = helios_account(&dir, "account.json", DEPOSIT_CONTRACT);
    let verified = verify_eip1186(state_root, &response).unwrap();
    assert!(!code.is_empty());
    verify_code(verified.account.code_hash, &code).unwrap();
    let mut bad = code.to_vec();
    bad[0] ^= 1;
    assert!(matches!(
        verify_code(verified.account.code_hash, &bad),
        Err(LightClientError::CodeHash { .. })
    ));
}

#[test]
fn block_miner_eoa_proofs_verify() {
    let Some(dir) = fixtures_dir() else { return };
    let header = verified_block_header(&dir);
    for (name, response) in block_proofs(&dir) {
        let verified =
            verify_eip1186(header.state_root, &response).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(verified.account.exists, "{name}");
        if name.starts_with("block_miner") {
            assert_eq!(verified.account.address, header.beneficiary);
            assert_eq!(verified.account.code_hash, KECCAK_EMPTY);
            assert_eq!(verified.account.nonce, 0x13e79e);
        }
    }
    let (_, code) = helios_account(&dir, "block_miner_account.json", header.beneficiary);
    verify_code(KECCAK_EMPTY, &code).unwrap();
}

/// Builds a real exclusion proof from the deposit contract's storage trie: find a slot whose
/// hashed key leaves the real proof's path (at an empty branch child, or inside the final
/// leaf's path) and take the prefix of the real proof that shows it. The proof nodes are the
/// mainnet ones, untouched; only the queried key is new.
#[test]
fn zero_storage_slot_exclusion_proof_from_real_nodes() {
    let Some(dir) = fixtures_dir() else { return };
    let state_root = verified_block_header(&dir).state_root;
    let deposit = parse_eip1186_response(&read(&dir, &format!("{HELIOS_RPC}/proof.json"))).unwrap();
    let storage_root = verify_eip1186(state_root, &deposit).unwrap().account.storage_root;
    let real = &deposit.storage_proof[0];
    let real_key = Nibbles::unpack(keccak256(real.key.as_b256()));

    let mut found = None;
    'search: for n in 2_u64..200_000 {
        let slot = B256::from(U256::from(n));
        // Only slots sharing the first nibble can diverge inside the proof's nodes (the root
        // branch is full), which is what makes the proof prefix an exclusion proof.
        if Nibbles::unpack(keccak256(slot)).get(0) != real_key.get(0) {
            continue;
        }
        for len in 1..=real.proof.len() {
            let candidate = EIP1186StorageProof {
                key: slot.into(),
                value: U256::ZERO,
                proof: real.proof[..len].to_vec(),
            };
            if verify_storage_proofs(storage_root, std::slice::from_ref(&candidate)).is_ok() {
                found = Some(candidate);
                break 'search;
            }
        }
    }
    let exclusion = found.expect("no slot with an exclusion proof among the real nodes");
    let slot = exclusion.key.as_b256();
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "exclusion: slot {slot} proven zero with {} real nodes\n",
            exclusion.proof.len()
        ),
    );
    assert_eq!(
        verify_storage_proofs(storage_root, std::slice::from_ref(&exclusion)).unwrap(),
        vec![(slot, U256::ZERO)]
    );
    // The same exclusion proof must not support a non-zero claim.
    let lie = EIP1186StorageProof { value: U256::from(1_u64), ..exclusion };
    assert!(matches!(
        verify_storage_proofs(storage_root, &[lie]),
        Err(LightClientError::StorageValueMismatch { proven: U256::ZERO, .. })
    ));
}

/// Lodestar prover fixtures: every `eth_getProof` the prover issued verifies against the
/// state root of the (hash-checked) execution block the beacon payload names, and reproduces
/// the RPC answer the wallet was given.
#[test]
fn lodestar_prover_proofs_verify_and_reproduce_responses() {
    let Some(dir) = fixtures_dir() else { return };
    let fixtures = dir.join("chainsafe-lodestar-prover/packages/prover/test/fixtures");
    let mut files = 0;
    let mut proofs = 0;
    for network in ["mainnet", "sepolia"] {
        for entry in std::fs::read_dir(fixtures.join(network)).unwrap() {
            let path = entry.unwrap().path();
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let payload = &v["beacon"]["executionPayload"];
            let block_hash: B256 = serde_json::from_value(payload["block_hash"].clone()).unwrap();
            let payload_state_root: B256 =
                serde_json::from_value(payload["state_root"].clone()).unwrap();
            let (header, claimed) =
                parse_rpc_block_header(&v["execution"]["block"].to_string()).unwrap();
            assert_eq!(claimed, block_hash, "{}", path.display());
            verify_header_hash(&header, block_hash).unwrap();
            assert_eq!(header.state_root, payload_state_root);
            files += 1;

            let method = v["request"]["method"].as_str().unwrap_or_default();
            // Requests were recorded one by one (sepolia) or as JSON-RPC batches (mainnet).
            let mut pairs = Vec::new();
            for r in v["dependentRequests"].as_array().cloned().unwrap_or_default() {
                match (&r["payload"], &r["response"]) {
                    (serde_json::Value::Array(ps), serde_json::Value::Array(rs)) => {
                        pairs.extend(ps.iter().cloned().zip(rs.iter().cloned()));
                    }
                    (p, r) => pairs.push((p.clone(), r.clone())),
                }
            }
            for (request, reply) in pairs {
                if request["method"] != "eth_getProof" {
                    continue;
                }
                let response = parse_eip1186_response(&reply.to_string()).unwrap();
                let verified = verify_eip1186(header.state_root, &response)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                proofs += 1;
                let answer = &v["response"]["result"];
                match method {
                    "eth_getBalance" => assert_eq!(
                        serde_json::from_value::<U256>(answer.clone()).unwrap(),
                        verified.account.balance
                    ),
                    "eth_getTransactionCount" => assert_eq!(
                        serde_json::from_value::<U256>(answer.clone()).unwrap(),
                        U256::from(verified.account.nonce)
                    ),
                    "eth_getCode" => {
                        let code: alloy_primitives::Bytes =
                            serde_json::from_value(answer.clone()).unwrap();
                        verify_code(verified.account.code_hash, &code).unwrap();
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(files, 9);
    assert_eq!(proofs, 10, "every recorded eth_getProof is checked");
}
