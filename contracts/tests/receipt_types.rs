//! The Rust receipt type against the compiled Solidity: EIP-712 hashes, storage slots the
//! light client proves, canonical bytes, share rounding, and the node key file.

mod common;

use std::os::unix::fs::PermissionsExt;

use alloy_primitives::{B256, U256, keccak256};
use alloy_sol_types::{SolStruct, SolValue};
use common::{World, addr};
use lorad_contracts::bindings::{DatanetRegistry, NodeRegistry, Settlement};
use lorad_contracts::receipt::{MAX_SHARES, shares_from_weights};
use lorad_contracts::{EvmBackendExt, NodeKey, OPEN, Share, SignedReceipt, slots};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn random_receipt(w: &World, rng: &mut ChaCha20Rng) -> lorad_contracts::Receipt {
    let mut r = w.receipt(rng.random(), rng.random(), rng.random());
    let n = rng.random_range(1..=MAX_SHARES);
    r.shares = (0..n)
        .map(|_| Share { contributor: B256::from(rng.random::<[u8; 32]>()), bps: rng.random() })
        .collect();
    r.promptHash = B256::from(rng.random::<[u8; 32]>());
    r.l2BlockNumber = rng.random();
    r
}

#[test]
fn rust_and_solidity_eip712_hashes_agree() {
    let mut w = World::new();
    let s = w.d.settlement;
    let typehash = w.chain.view(s, &Settlement::RECEIPT_TYPEHASHCall {}).expect("typehash");
    assert_eq!(typehash, keccak256(lorad_contracts::Receipt::eip712_encode_type().as_bytes()));
    let share_typehash = w.chain.view(s, &Settlement::SHARE_TYPEHASHCall {}).expect("typehash");
    assert_eq!(share_typehash, keccak256(Share::eip712_encode_type().as_bytes()));
    let separator = w.chain.view(s, &Settlement::domainSeparatorCall {}).expect("domain");
    assert_eq!(separator, w.domain.hash_struct());

    let mut rng = ChaCha20Rng::seed_from_u64(712);
    for _ in 0..50 {
        let r = random_receipt(&w, &mut rng);
        let on_chain =
            w.chain.view(s, &Settlement::hashReceiptCall { r: r.clone() }).expect("hashReceipt");
        assert_eq!(on_chain, r.eip712_hash_struct());
        let digest = w
            .chain
            .view(s, &Settlement::hashTypedReceiptCall { r: r.clone() })
            .expect("hashTypedReceipt");
        assert_eq!(digest, r.eip712_signing_hash(&w.domain));
    }
    // A one-bit change anywhere changes the hash (the test can fail).
    let r = w.receipt(1, 1, 1);
    let mut flipped = r.clone();
    flipped.shares[2].bps ^= 1;
    assert_ne!(r.eip712_hash_struct(), flipped.eip712_hash_struct());
}

/// The light client proves these slots; a reordered struct or mapping must fail here.
#[test]
fn storage_slots_match_the_layout_and_the_evm() {
    let layout = |json: &str, label: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(json).expect("artifact");
        let entry = v["storageLayout"]
            .as_array()
            .expect("layout")
            .iter()
            .find(|e| e["label"] == label)
            .cloned();
        entry.map(|e| e["slot"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
    };
    assert_eq!(layout(include_str!("../out/AdapterRegistry.json"), "adapters"), "0");
    assert_eq!(layout(include_str!("../out/NodeRegistry.json"), "nodes"), "0");
    assert_eq!(layout(include_str!("../out/Settlement.json"), "settledDigest"), "2");

    let mut w = World::new();
    let node = w.node.address();
    let word = |v: B256| U256::from_be_bytes(v.0);
    assert_eq!(
        w.chain.storage(w.d.adapter_registry, slots::adapter_content_hash(w.adapter_id)),
        word(w.adapter_hash)
    );
    assert_eq!(
        w.chain.storage(w.d.adapter_registry, slots::adapter_base_model_hash(w.adapter_id)),
        word(w.base_model_hash)
    );
    assert_eq!(
        w.chain.storage(w.d.node_registry, slots::node_stake(node)),
        U256::from(1_000 * OPEN)
    );
    assert!(!slots::flags_slashed(w.chain.storage(w.d.node_registry, slots::node_flags(node))));

    let signed = w.sign(w.receipt(5, 10, 10));
    w.settle(std::slice::from_ref(&signed)).expect("settles");
    assert_eq!(
        w.chain.storage(w.d.settlement, slots::settled_digest(signed.job_id())),
        word(signed.digest(&w.domain))
    );

    // Unbonding sets the ready time in the same word; slashing sets the flag.
    w.send(node, w.d.node_registry, &NodeRegistry::requestUnbondCall { amount: U256::from(1u64) });
    let flags = w.chain.storage(w.d.node_registry, slots::node_flags(node));
    assert!(!slots::flags_slashed(flags) && flags != U256::ZERO);
    let mut other = signed.receipt.clone();
    other.outputHash = keccak256("other");
    let b = w.sign(other);
    let report = Settlement::reportEquivocationCall {
        a: signed.receipt.clone(),
        sigA: signed.signature.clone(),
        b: b.receipt,
        sigB: b.signature,
    };
    w.send(addr("reporter"), w.d.settlement, &report);
    assert!(slots::flags_slashed(w.chain.storage(w.d.node_registry, slots::node_flags(node))));
    assert_eq!(w.chain.storage(w.d.node_registry, slots::node_stake(node)), U256::ZERO);
}

#[test]
fn signed_receipts_round_trip_and_garbage_is_an_error() {
    let w = World::new();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for _ in 0..20 {
        let signed = w.sign({
            let mut r = random_receipt(&w, &mut rng);
            r.shares = vec![Share { contributor: B256::ZERO, bps: 10_000 }];
            r
        });
        let bytes = signed.encode();
        assert_eq!(SignedReceipt::decode(&bytes).expect("decodes"), signed);
        signed.verify(&w.domain).expect("verifies");
        assert_eq!(signed.recover_signer(&w.domain).expect("recovers"), w.node.address());
        // Truncations, extensions and bit flips never panic; most are refused.
        for cut in [0, 1, 31, 32, bytes.len() / 2, bytes.len() - 1] {
            assert!(SignedReceipt::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0u8; 32]);
        let _ = SignedReceipt::decode(&longer);
        for _ in 0..20 {
            let mut flipped = bytes.clone();
            let i = rng.random_range(0..flipped.len());
            flipped[i] ^= 1 << rng.random_range(0..8);
            if let Ok(d) = SignedReceipt::decode(&flipped) {
                // A flip that still parses changes the receipt, so the signature no longer holds.
                assert!(
                    d.verify(&w.domain).is_err() || d == signed,
                    "flip at byte {i} still verifies"
                );
            }
        }
    }
    let random: Vec<u8> = (0..700).map(|_| rng.random()).collect();
    assert!(SignedReceipt::decode(&random).is_err());
    // A wrong signature length is refused even when the ABI parses.
    let signed = w.sign(w.receipt(1, 1, 1));
    let short =
        (signed.receipt.clone(), alloy_primitives::Bytes::from(vec![1u8; 64])).abi_encode_params();
    assert!(SignedReceipt::decode(&short).is_err());
}

#[test]
fn attribution_weights_become_shares_summing_to_ten_thousand() {
    let id = |i: u8| B256::repeat_byte(i);
    let shares = shares_from_weights(&[(id(1), 1.0), (id(2), 1.0), (id(3), 1.0)]).expect("shares");
    assert_eq!(shares.iter().map(|s| s.bps).collect::<Vec<_>>(), vec![3_334, 3_333, 3_333]);
    let shares = shares_from_weights(&[
        (id(1), 0.7),
        (id(2), f64::NAN),
        (id(3), 0.0),
        (id(4), -1.0),
        (id(5), 0.3),
    ])
    .expect("shares");
    assert_eq!(
        shares.iter().map(|s| (s.contributor, s.bps)).collect::<Vec<_>>(),
        vec![(id(1), 7_000), (id(5), 3_000)]
    );
    assert!(shares_from_weights(&[]).is_err());
    assert!(shares_from_weights(&[(id(1), 0.0), (id(2), f64::INFINITY)]).is_err());

    let mut rng = ChaCha20Rng::seed_from_u64(10_000);
    for _ in 0..200 {
        let n = rng.random_range(1..100);
        let weights: Vec<(B256, f64)> = (0..n)
            .map(|_| (B256::from(rng.random::<[u8; 32]>()), rng.random::<f64>().powi(3)))
            .collect();
        let shares = shares_from_weights(&weights).expect("shares");
        assert!(shares.len() <= MAX_SHARES && !shares.is_empty());
        assert_eq!(shares.iter().map(|s| u32::from(s.bps)).sum::<u32>(), 10_000);
        assert!(
            shares.windows(2).all(|p| p[0].bps + 1 >= p[1].bps),
            "heavier first (up to one bp of rounding)"
        );
    }
}

#[test]
fn node_key_file_is_created_private_and_refused_when_exposed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.key");
    let (key, created) = NodeKey::load_or_create(&path).expect("create");
    assert!(created);
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    let (again, created) = NodeKey::load_or_create(&path).expect("load");
    assert!(!created);
    assert_eq!(again.address(), key.address());
    let secret = std::fs::read_to_string(&path).expect("read");
    assert!(
        !format!("{key:?}").contains(secret.trim().trim_start_matches("0x")),
        "Debug must not show the secret"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = NodeKey::load(&path).expect_err("group/world readable");
    assert!(err.to_string().contains("0644") && err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    assert!(NodeKey::load(&link).expect_err("symlink").to_string().contains("symlink"));

    let garbage = dir.path().join("garbage.key");
    for contents in ["", "zz", "0x1234", &format!("0x{}", "00".repeat(32)), &"ff".repeat(32)] {
        std::fs::write(&garbage, contents).expect("write");
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let err = NodeKey::load(&garbage).expect_err("garbage");
        assert!(err.to_string().contains("garbage.key"), "{err}");
    }
    // The key the file holds signs receipts the chain accepts (same address).
    let w = World::new();
    let mut r = w.receipt(1, 1, 1);
    r.node = key.address();
    let signed = key.sign_receipt(r, &w.domain).expect("sign");
    assert_eq!(signed.recover_signer(&w.domain).expect("recover"), key.address());
    // A key refuses to sign for another node.
    assert!(key.sign_receipt(w.receipt(1, 1, 1), &w.domain).is_err());
}

#[test]
fn datanet_registry_verifies_lorad_datanet_merkle_proofs() {
    let mut w = World::new();
    let hashes: Vec<[u8; 32]> = (0..13u8).map(|i| keccak256([i]).0).collect();
    let tree = lorad_datanet::MerkleTree::new(&hashes);
    let id = keccak256("datanet: proofs");
    w.send(
        w.datanet_owner,
        w.d.datanet_registry,
        &DatanetRegistry::createCall { datanetId: id, recordsRoot: tree.root().into() },
    );
    for (i, h) in hashes.iter().enumerate() {
        let proof: Vec<B256> = tree.proof(i).expect("proof").into_iter().map(B256::from).collect();
        let call = DatanetRegistry::containsRecordCall {
            datanetId: id,
            recordHash: (*h).into(),
            proof: proof.clone(),
        };
        assert!(w.chain.view(w.d.datanet_registry, &call).expect("view"), "record {i}");
        let wrong = DatanetRegistry::containsRecordCall {
            datanetId: id,
            recordHash: keccak256("not a record"),
            proof,
        };
        assert!(!w.chain.view(w.d.datanet_registry, &wrong).expect("view"));
    }
}
