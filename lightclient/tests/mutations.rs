//! Mutation testing: seeded random corruptions of real mainnet proofs and headers must all be
//! rejected, each with the error family that names what was corrupted.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use alloy_primitives::{B256, Bytes, U256, b256};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use common::{BLOCK_21925176_HASH, block_proofs, fixtures_dir, verified_block_header};
use lorad_lightclient::{LightClientError, verify_eip1186, verify_header_hash};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0x10AD_11C7;
const ROUNDS_PER_KIND: usize = 25;

/// Which part of the verification a mutation must be caught by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Account,
    Storage,
    /// Storage proof intact, claimed value changed: must be diagnosed as a value mismatch
    /// that reports the real value.
    StorageValue,
    Header,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    AccountNodeBitFlip,
    Balance,
    Nonce,
    StorageHash,
    CodeHash,
    Address,
    AccountTruncate,
    AccountDropNode,
    AccountExtraNode,
    WrongStateRoot,
    StorageNodeBitFlip,
    StorageValue,
    Slot,
    StorageTruncate,
    StorageDropNode,
    HeaderField,
}

const KINDS: [Kind; 16] = [
    Kind::AccountNodeBitFlip,
    Kind::Balance,
    Kind::Nonce,
    Kind::StorageHash,
    Kind::CodeHash,
    Kind::Address,
    Kind::AccountTruncate,
    Kind::AccountDropNode,
    Kind::AccountExtraNode,
    Kind::WrongStateRoot,
    Kind::StorageNodeBitFlip,
    Kind::StorageValue,
    Kind::Slot,
    Kind::StorageTruncate,
    Kind::StorageDropNode,
    Kind::HeaderField,
];

fn flip_bit_in_node(rng: &mut ChaCha8Rng, nodes: &mut [Bytes]) {
    let i = rng.random_range(0..nodes.len());
    let mut node = nodes[i].to_vec();
    let byte = rng.random_range(0..node.len());
    node[byte] ^= 1 << rng.random_range(0..8);
    nodes[i] = node.into();
}

fn flip_bit_b256(rng: &mut ChaCha8Rng, v: B256) -> B256 {
    let mut out = v;
    out[rng.random_range(0..32)] ^= 1 << rng.random_range(0..8);
    out
}

fn nonzero_bit_u256(rng: &mut ChaCha8Rng) -> U256 {
    U256::from(1_u8) << rng.random_range(0..256_usize)
}

fn family(err: &LightClientError) -> Option<Family> {
    match err {
        LightClientError::AccountProof { .. } | LightClientError::AccountMismatch { .. } => {
            Some(Family::Account)
        }
        LightClientError::StorageProof { .. } => Some(Family::Storage),
        LightClientError::StorageValueMismatch { .. } => Some(Family::StorageValue),
        LightClientError::HeaderHash { .. } => Some(Family::Header),
        _ => None,
    }
}

/// Applies `kind` to a copy of `base`; returns the mutated proof, the root to check it
/// against, and the family that must reject it. `None` when the kind does not apply
/// (storage mutations on an account without storage proofs).
fn mutate_proof(
    rng: &mut ChaCha8Rng,
    kind: Kind,
    base: &EIP1186AccountProofResponse,
    state_root: B256,
) -> Option<(EIP1186AccountProofResponse, B256, Family)> {
    let mut p = base.clone();
    let mut root = state_root;
    let family = match kind {
        Kind::AccountNodeBitFlip => {
            flip_bit_in_node(rng, &mut p.account_proof);
            Family::Account
        }
        Kind::Balance => {
            p.balance ^= nonzero_bit_u256(rng);
            Family::Account
        }
        Kind::Nonce => {
            p.nonce ^= 1 << rng.random_range(0..64);
            Family::Account
        }
        Kind::StorageHash => {
            p.storage_hash = flip_bit_b256(rng, p.storage_hash);
            Family::Account
        }
        Kind::CodeHash => {
            p.code_hash = flip_bit_b256(rng, p.code_hash);
            Family::Account
        }
        Kind::Address => {
            p.address[rng.random_range(0..20)] ^= 1 << rng.random_range(0..8);
            Family::Account
        }
        Kind::AccountTruncate => {
            let len = rng.random_range(0..p.account_proof.len());
            p.account_proof.truncate(len);
            Family::Account
        }
        Kind::AccountDropNode => {
            p.account_proof.remove(rng.random_range(0..p.account_proof.len()));
            Family::Account
        }
        Kind::AccountExtraNode => {
            // A trailing node after the leaf (here: a copy of a real node) must not be ignored.
            let extra = p.account_proof[rng.random_range(0..p.account_proof.len())].clone();
            p.account_proof.push(extra);
            Family::Account
        }
        Kind::WrongStateRoot => {
            // Half bit flips, half another real mainnet state root (lodestar's block 17463226).
            root = if rng.random_bool(0.5) {
                flip_bit_b256(rng, state_root)
            } else {
                b256!("0x48b1c9de2c29aad34db18bac2d2000244793d4c009092c96cf098da47de2a3d6")
            };
            Family::Account
        }
        Kind::StorageNodeBitFlip
        | Kind::StorageValue
        | Kind::Slot
        | Kind::StorageTruncate
        | Kind::StorageDropNode => {
            if p.storage_proof.is_empty() {
                return None;
            }
            let i = rng.random_range(0..p.storage_proof.len());
            let sp = &mut p.storage_proof[i];
            match kind {
                Kind::StorageNodeBitFlip => {
                    flip_bit_in_node(rng, &mut sp.proof);
                    Family::Storage
                }
                Kind::StorageValue => {
                    sp.value ^= nonzero_bit_u256(rng);
                    Family::StorageValue
                }
                Kind::Slot => {
                    sp.key = flip_bit_b256(rng, sp.key.as_b256()).into();
                    Family::Storage
                }
                Kind::StorageTruncate => {
                    let len = rng.random_range(0..sp.proof.len());
                    sp.proof.truncate(len);
                    Family::Storage
                }
                _ => {
                    sp.proof.remove(rng.random_range(0..sp.proof.len()));
                    Family::Storage
                }
            }
        }
        Kind::HeaderField => unreachable!("header mutations are handled separately"),
    };
    Some((p, root, family))
}

fn mutate_header(rng: &mut ChaCha8Rng, header: &mut alloy_consensus::Header) -> &'static str {
    match rng.random_range(0..14) {
        0 => {
            header.parent_hash = flip_bit_b256(rng, header.parent_hash);
            "parent_hash"
        }
        1 => {
            header.state_root = flip_bit_b256(rng, header.state_root);
            "state_root"
        }
        2 => {
            header.receipts_root = flip_bit_b256(rng, header.receipts_root);
            "receipts_root"
        }
        3 => {
            header.transactions_root = flip_bit_b256(rng, header.transactions_root);
            "transactions_root"
        }
        4 => {
            header.gas_used ^= 1 << rng.random_range(0..64);
            "gas_used"
        }
        5 => {
            header.timestamp ^= 1 << rng.random_range(0..64);
            "timestamp"
        }
        6 => {
            header.number ^= 1 << rng.random_range(0..64);
            "number"
        }
        7 => {
            let mut extra = header.extra_data.to_vec();
            extra.push(rng.random());
            header.extra_data = extra.into();
            "extra_data"
        }
        8 => {
            header.base_fee_per_gas = header.base_fee_per_gas.map(|f| f ^ 1);
            "base_fee_per_gas"
        }
        9 => {
            header.blob_gas_used = header.blob_gas_used.map(|g| g ^ (1 << rng.random_range(0..17)));
            "blob_gas_used"
        }
        10 => {
            header.parent_beacon_block_root =
                header.parent_beacon_block_root.map(|r| flip_bit_b256(rng, r));
            "parent_beacon_block_root"
        }
        11 => {
            header.withdrawals_root = header.withdrawals_root.map(|r| flip_bit_b256(rng, r));
            "withdrawals_root"
        }
        12 => {
            header.mix_hash = flip_bit_b256(rng, header.mix_hash);
            "mix_hash"
        }
        _ => {
            let byte = rng.random_range(0..256);
            header.logs_bloom.0[byte] ^= 1 << rng.random_range(0..8);
            "logs_bloom"
        }
    }
}

#[test]
fn every_mutation_of_real_proofs_and_header_is_rejected_with_typed_error() {
    let Some(dir) = fixtures_dir() else { return };
    let header = verified_block_header(&dir);
    let state_root = header.state_root;
    let bases = block_proofs(&dir);
    for (name, base) in &bases {
        verify_eip1186(state_root, base).unwrap_or_else(|e| panic!("unmutated {name}: {e}"));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for round in 0..ROUNDS_PER_KIND * KINDS.len() {
        let kind = KINDS[round % KINDS.len()];
        if let Kind::HeaderField = kind {
            let mut h = header.clone();
            let field = mutate_header(&mut rng, &mut h);
            let err = verify_header_hash(&h, BLOCK_21925176_HASH)
                .expect_err(&format!("header mutation of {field} accepted"));
            assert_eq!(family(&err), Some(Family::Header), "{field}: {err:?}");
        } else {
            // Storage mutations need a base with storage proofs; redraw until one applies.
            let (name, p, root, want) = loop {
                let (name, base) = &bases[rng.random_range(0..bases.len())];
                if let Some((p, root, want)) = mutate_proof(&mut rng, kind, base, state_root) {
                    break (*name, p, root, want);
                }
            };
            let err = verify_eip1186(root, &p)
                .expect_err(&format!("{kind:?} mutation of {name} accepted (round {round})"));
            assert_eq!(family(&err), Some(want), "{kind:?} on {name}: {err:?}");
            if let LightClientError::StorageValueMismatch { proven, slot, .. } = &err {
                // A sound proof with a lying value must report the real value.
                let real = bases
                    .iter()
                    .flat_map(|(_, b)| &b.storage_proof)
                    .find(|s| s.key.as_b256() == *slot)
                    .map(|s| s.value);
                assert_eq!(Some(*proven), real);
            }
        }
        *per_kind.entry(format!("{kind:?}")).or_default() += 1;
        total += 1;
    }
    let _ = writeln!(
        std::io::stderr(),
        "mutation test (seed {SEED:#x}): {total} mutations generated, {total} rejected with the expected error family; per kind: {per_kind:?}"
    );
    assert!(total >= 300);
}
