//! EIP-1186 (`eth_getProof`) verification against a verified state root.
//!
//! The state trie maps `keccak256(address)` to `rlp([nonce, balance, storage_root,
//! code_hash])`; each account's storage trie maps `keccak256(slot)` to `rlp(value)`. A proof
//! is the list of trie nodes from the root down to the key. Keys are hashed by the verifier,
//! never taken from the response, so a proof for one account/slot cannot be passed off as
//! another's.
//!
//! Absent keys are proven by an *exclusion proof*: the walk ends at an empty branch slot or a
//! leaf/extension whose path diverges from the key. The trie never stores empty accounts or
//! zero storage values, so:
//! - an absent account is only accepted when the response claims the empty account
//!   (nonce 0, balance 0, `EMPTY_ROOT_HASH`, `KECCAK_EMPTY`);
//! - a zero storage value is only accepted with an exclusion proof.

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_rpc_types_eth::{EIP1186AccountProofResponse, EIP1186StorageProof};
use alloy_trie::{Nibbles, TrieAccount, nodes::TrieNode, proof::verify_proof};

use crate::error::{LightClientError, parse_rpc_result};

/// An account whose fields were proven against a state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccount {
    /// The account address.
    pub address: Address,
    /// Proven nonce.
    pub nonce: u64,
    /// Proven balance in wei.
    pub balance: U256,
    /// Proven storage-trie root; storage proofs of this account verify against it.
    pub storage_root: B256,
    /// Proven code hash; `KECCAK_EMPTY` for accounts without code.
    pub code_hash: B256,
    /// `false` when the account was proven absent from the state trie (then all other
    /// fields are those of the empty account).
    pub exists: bool,
}

/// An account and storage slots proven by one `eth_getProof` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The proven account.
    pub account: VerifiedAccount,
    /// `(slot, value)` for every requested slot, in response order; zero for absent slots.
    pub storage: Vec<(B256, U256)>,
}

impl VerifiedProof {
    /// The proven value of `slot`, looked up by slot (a server may reorder or omit proofs);
    /// `None` when the response carried no proof for it.
    pub fn value_of(&self, slot: B256) -> Option<U256> {
        self.storage.iter().find(|(s, _)| *s == slot).map(|(_, v)| *v)
    }
}

/// Verifies the account part of an `eth_getProof` response against `state_root`.
///
/// `state_root` must come from a header whose hash was verified (see
/// [`crate::verify_header_hash`]); this function only links the account to that root.
pub fn verify_account_proof(
    state_root: B256,
    proof: &EIP1186AccountProofResponse,
) -> Result<VerifiedAccount, LightClientError> {
    let address = proof.address;
    let key = Nibbles::unpack(keccak256(address));
    let claimed = TrieAccount::new(proof.nonce, proof.balance, proof.storage_hash, proof.code_hash);
    let verified = |exists| VerifiedAccount {
        address,
        nonce: claimed.nonce,
        balance: claimed.balance,
        storage_root: claimed.storage_root,
        code_hash: claimed.code_hash,
        exists,
    };

    let inclusion =
        verify_proof(state_root, key, Some(alloy_rlp::encode(claimed)), &proof.account_proof);
    let Err(reason) = inclusion else {
        return Ok(verified(true));
    };
    // Only the empty account may be "proven" by an exclusion proof: the trie never stores
    // it, so absence is the only way its state can be shown.
    if claimed == TrieAccount::default()
        && verify_proof(state_root, key, None, &proof.account_proof).is_ok()
    {
        return Ok(verified(false));
    }

    // The claim failed; find out whether the proof itself is sound and just shows other
    // fields, which is a more useful diagnosis than a bare trie error.
    match proven_value(state_root, key, &proof.account_proof) {
        Some(proven) => {
            let proven = match proven {
                None => None,
                Some(raw) => match TrieAccount::decode(&mut raw.as_slice()) {
                    Ok(account) => Some(Box::new(account)),
                    Err(_) => {
                        return Err(LightClientError::AccountProof {
                            address,
                            reason: Box::new(reason),
                        });
                    }
                },
            };
            Err(LightClientError::AccountMismatch { address, claimed: Box::new(claimed), proven })
        }
        None => Err(LightClientError::AccountProof { address, reason: Box::new(reason) }),
    }
}

/// Verifies storage proofs against a (verified) account `storage_root`.
///
/// Returns `(slot, value)` per proof, in order. A zero value must come with an exclusion
/// proof; a non-zero value with an inclusion proof of `rlp(value)` at `keccak256(slot)`.
pub fn verify_storage_proofs(
    storage_root: B256,
    proofs: &[EIP1186StorageProof],
) -> Result<Vec<(B256, U256)>, LightClientError> {
    proofs.iter().map(|proof| verify_storage_proof(storage_root, proof)).collect()
}

fn verify_storage_proof(
    storage_root: B256,
    proof: &EIP1186StorageProof,
) -> Result<(B256, U256), LightClientError> {
    let slot = proof.key.as_b256();
    let key = Nibbles::unpack(keccak256(slot));
    let claimed = proof.value;
    // Zero is never stored in the storage trie, so it is encoded as "absent".
    let expected = (!claimed.is_zero()).then(|| alloy_rlp::encode(claimed));
    let Err(reason) = verify_proof(storage_root, key, expected, &proof.proof) else {
        return Ok((slot, claimed));
    };
    match proven_value(storage_root, key, &proof.proof) {
        Some(None) => {
            Err(LightClientError::StorageValueMismatch { slot, claimed, proven: U256::ZERO })
        }
        Some(Some(raw)) => match U256::decode(&mut raw.as_slice()) {
            Ok(proven) => Err(LightClientError::StorageValueMismatch { slot, claimed, proven }),
            Err(_) => Err(LightClientError::StorageProof { slot, reason: Box::new(reason) }),
        },
        None => Err(LightClientError::StorageProof { slot, reason: Box::new(reason) }),
    }
}

/// Verifies a whole `eth_getProof` response: the account against `state_root`, then every
/// storage proof against the account's *proven* storage root.
pub fn verify_eip1186(
    state_root: B256,
    response: &EIP1186AccountProofResponse,
) -> Result<VerifiedProof, LightClientError> {
    let account = verify_account_proof(state_root, response)?;
    let storage = verify_storage_proofs(account.storage_root, &response.storage_proof)?;
    Ok(VerifiedProof { account, storage })
}

/// Checks that `keccak256(code) == code_hash`, where `code_hash` is a proven account's.
pub fn verify_code(code_hash: B256, code: &[u8]) -> Result<(), LightClientError> {
    let computed = keccak256(code);
    if computed == code_hash {
        Ok(())
    } else {
        Err(LightClientError::CodeHash { expected: code_hash, computed })
    }
}

/// Parses an `eth_getProof` response (bare result object or `{"result": ...}` envelope).
pub fn parse_eip1186_response(json: &str) -> Result<EIP1186AccountProofResponse, LightClientError> {
    parse_rpc_result(json, "eth_getProof")
}

/// What a proof actually proves at `key`, if it is a sound proof at all: `Some(None)` for a
/// valid exclusion proof, `Some(Some(raw))` for a valid inclusion of the raw leaf value, and
/// `None` when the proof is broken regardless of the value.
///
/// Only used on the failure path to tell "wrong claim" from "bad proof"; the candidate value
/// is re-checked with `verify_proof`, so nothing here is trusted on its own.
fn proven_value(root: B256, key: Nibbles, proof: &[Bytes]) -> Option<Option<Vec<u8>>> {
    if verify_proof(root, key, None, proof).is_ok() {
        return Some(None);
    }
    let last = proof.last()?;
    let value = match TrieNode::decode(&mut last.as_ref()) {
        Ok(TrieNode::Leaf(leaf)) => leaf.value,
        _ => return None,
    };
    verify_proof(root, key, Some(value.clone()), proof).ok().map(|()| Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256};
    use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY, nodes::LeafNode};

    /// A one-leaf state trie holding `present`; its root node alone proves any other key
    /// absent (the leaf path diverges from it).
    fn single_leaf_trie(present: Address, account: TrieAccount) -> (B256, Bytes) {
        let leaf = LeafNode::new(Nibbles::unpack(keccak256(present)), alloy_rlp::encode(account));
        let node = Bytes::from(alloy_rlp::encode(&leaf));
        (keccak256(&node), node)
    }

    fn response(
        address: Address,
        account: TrieAccount,
        node: Bytes,
    ) -> EIP1186AccountProofResponse {
        EIP1186AccountProofResponse {
            address,
            balance: account.balance,
            code_hash: account.code_hash,
            nonce: account.nonce,
            storage_hash: account.storage_root,
            account_proof: vec![node],
            storage_proof: vec![],
        }
    }

    const PRESENT: Address = address!("0x1111111111111111111111111111111111111111");
    const ABSENT: Address = address!("0x2222222222222222222222222222222222222222");

    fn rich() -> TrieAccount {
        TrieAccount::new(
            7,
            U256::from(1_000_u64),
            EMPTY_ROOT_HASH,
            b256!("0x0101010101010101010101010101010101010101010101010101010101010101"),
        )
    }

    #[test]
    fn inclusion_in_single_leaf_trie() {
        let (root, node) = single_leaf_trie(PRESENT, rich());
        let account = verify_account_proof(root, &response(PRESENT, rich(), node)).unwrap();
        assert!(account.exists);
        assert_eq!(account.nonce, 7);
    }

    #[test]
    fn exclusion_accepted_only_for_empty_account() {
        let (root, node) = single_leaf_trie(PRESENT, rich());
        let empty = TrieAccount::default();
        let account = verify_account_proof(root, &response(ABSENT, empty, node.clone())).unwrap();
        assert!(!account.exists);
        assert_eq!(account.code_hash, KECCAK_EMPTY);

        // Claiming funds for an account the proof shows absent must fail.
        let mut claim = empty;
        claim.balance = U256::from(1_u64);
        let err = verify_account_proof(root, &response(ABSENT, claim, node)).unwrap_err();
        assert!(matches!(err, LightClientError::AccountMismatch { proven: None, .. }), "{err:?}");
    }

    #[test]
    fn present_account_claimed_empty_is_rejected() {
        let (root, node) = single_leaf_trie(PRESENT, rich());
        let err = verify_account_proof(root, &response(PRESENT, TrieAccount::default(), node))
            .unwrap_err();
        assert!(
            matches!(err, LightClientError::AccountMismatch { proven: Some(_), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_storage_root_proves_every_slot_zero() {
        let slot = B256::with_last_byte(3);
        let proof = EIP1186StorageProof { key: slot.into(), value: U256::ZERO, proof: vec![] };
        assert_eq!(
            verify_storage_proofs(EMPTY_ROOT_HASH, std::slice::from_ref(&proof)).unwrap(),
            vec![(slot, U256::ZERO)]
        );
        let lie = EIP1186StorageProof { value: U256::from(5_u64), ..proof };
        let err = verify_storage_proofs(EMPTY_ROOT_HASH, &[lie]).unwrap_err();
        assert!(matches!(err, LightClientError::StorageValueMismatch { .. }), "{err:?}");
    }

    #[test]
    fn code_hash_check() {
        assert!(verify_code(KECCAK_EMPTY, &[]).is_ok());
        assert!(matches!(
            verify_code(KECCAK_EMPTY, &[0x00]),
            Err(LightClientError::CodeHash { .. })
        ));
    }
}
