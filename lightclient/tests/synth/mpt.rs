//! In-memory execution state (accounts, code, storage) with Merkle-Patricia roots and real
//! EIP-1186 proofs, built with alloy-trie's `HashBuilder` + `ProofRetainer` (the same trie
//! code reth uses to serve `eth_getProof`).

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rpc_types_eth::{EIP1186AccountProofResponse, EIP1186StorageProof};
use alloy_trie::proof::ProofRetainer;
use alloy_trie::{EMPTY_ROOT_HASH, HashBuilder, KECCAK_EMPTY, Nibbles, TrieAccount};

/// Root of the trie holding `leaves` (hashed key → RLP value) and the proof nodes, root
/// first, on the path to `target` (an inclusion proof if present, exclusion otherwise).
pub(crate) fn trie_root_and_proof(
    leaves: &BTreeMap<B256, Vec<u8>>,
    target: Option<B256>,
) -> (B256, Vec<Bytes>) {
    if leaves.is_empty() {
        // Clients answer an empty trie with an empty proof; the verifier accepts it against
        // `EMPTY_ROOT_HASH`.
        return (EMPTY_ROOT_HASH, Vec::new());
    }
    let targets: Vec<Nibbles> = target.iter().map(|t| Nibbles::unpack(t)).collect();
    let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(targets.clone()));
    // `BTreeMap<B256, _>` iterates in byte order, which is nibble order: what the builder needs.
    for (key, value) in leaves {
        hb.add_leaf(Nibbles::unpack(key), value);
    }
    let root = hb.root();
    let proof = match targets.first() {
        Some(t) => {
            hb.take_proof_nodes().matching_nodes_sorted(t).into_iter().map(|(_, n)| n).collect()
        }
        None => Vec::new(),
    };
    (root, proof)
}

/// One account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) nonce: u64,
    pub(crate) balance: U256,
    pub(crate) code: Bytes,
    /// Slot → value; zero values are never stored (as in a real trie).
    pub(crate) storage: BTreeMap<B256, U256>,
}

impl Account {
    fn storage_leaves(&self) -> BTreeMap<B256, Vec<u8>> {
        self.storage.iter().map(|(slot, v)| (keccak256(slot), alloy_rlp::encode(v))).collect()
    }

    /// The storage trie root.
    pub(crate) fn storage_root(&self) -> B256 {
        trie_root_and_proof(&self.storage_leaves(), None).0
    }

    /// `keccak256(code)` (`KECCAK_EMPTY` for no code).
    pub(crate) fn code_hash(&self) -> B256 {
        if self.code.is_empty() { KECCAK_EMPTY } else { keccak256(&self.code) }
    }

    fn trie_account(&self) -> TrieAccount {
        TrieAccount::new(self.nonce, self.balance, self.storage_root(), self.code_hash())
    }
}

/// A whole execution state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) accounts: BTreeMap<Address, Account>,
}

impl State {
    /// The account at `address`, created empty (nonce 1, like a deployed contract) if absent.
    pub(crate) fn account(&mut self, address: Address) -> &mut Account {
        self.accounts.entry(address).or_insert_with(|| Account { nonce: 1, ..Default::default() })
    }

    /// Sets a storage slot (a zero value deletes it, as `SSTORE 0` does).
    pub(crate) fn set(&mut self, address: Address, slot: B256, value: U256) {
        let storage = &mut self.account(address).storage;
        if value.is_zero() {
            storage.remove(&slot);
        } else {
            storage.insert(slot, value);
        }
    }

    /// Sets a storage slot to a 32-byte word.
    pub(crate) fn set_word(&mut self, address: Address, slot: B256, word: B256) {
        self.set(address, slot, U256::from_be_bytes(word.0));
    }

    /// A storage value (zero if unset).
    pub(crate) fn get(&self, address: Address, slot: B256) -> U256 {
        self.accounts.get(&address).and_then(|a| a.storage.get(&slot).copied()).unwrap_or_default()
    }

    fn account_leaves(&self) -> BTreeMap<B256, Vec<u8>> {
        self.accounts
            .iter()
            .map(|(addr, a)| (keccak256(addr), alloy_rlp::encode(a.trie_account())))
            .collect()
    }

    /// The state root.
    pub(crate) fn root(&self) -> B256 {
        trie_root_and_proof(&self.account_leaves(), None).0
    }

    /// The storage root of `address` (`EMPTY_ROOT_HASH` if absent).
    pub(crate) fn storage_root(&self, address: Address) -> B256 {
        self.accounts.get(&address).map_or(EMPTY_ROOT_HASH, Account::storage_root)
    }

    /// `eth_getProof(address, slots)`, as an honest node answers it.
    pub(crate) fn proof(&self, address: Address, slots: &[B256]) -> EIP1186AccountProofResponse {
        let (_, account_proof) =
            trie_root_and_proof(&self.account_leaves(), Some(keccak256(address)));
        let account = self.accounts.get(&address).cloned();
        let fields = account.as_ref().map_or_else(TrieAccount::default, Account::trie_account);
        let leaves = account.as_ref().map(Account::storage_leaves).unwrap_or_default();
        let storage_proof = slots
            .iter()
            .map(|slot| {
                let (_, proof) = trie_root_and_proof(&leaves, Some(keccak256(slot)));
                let value = self.get(address, *slot);
                EIP1186StorageProof { key: (*slot).into(), value, proof }
            })
            .collect();
        EIP1186AccountProofResponse {
            address,
            balance: fields.balance,
            code_hash: fields.code_hash,
            nonce: fields.nonce,
            storage_hash: fields.storage_root,
            account_proof,
            storage_proof,
        }
    }
}

/// A slot number as a 32-byte key.
pub(crate) fn slot(n: u64) -> B256 {
    B256::from(U256::from(n).to_be_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;
    use lorad_lightclient::verify_eip1186;

    #[test]
    fn proofs_verify_for_present_and_absent_keys() {
        let mut s = State::default();
        let (a, b) =
            (address!("0x00000000000000000000000000000000000000aa"), Address::repeat_byte(7));
        for i in 0..20u64 {
            s.set(a, slot(i), U256::from(i * 1000 + 1));
        }
        s.set(b, slot(1), U256::from(5));
        let root = s.root();
        let p = s.proof(a, &[slot(3), slot(99)]);
        let v = verify_eip1186(root, &p).unwrap();
        assert!(v.account.exists);
        assert_eq!(v.storage, vec![(slot(3), U256::from(3001)), (slot(99), U256::ZERO)]);
        let absent = s.proof(Address::repeat_byte(0x55), &[slot(0)]);
        let v = verify_eip1186(root, &absent).unwrap();
        assert!(!v.account.exists);
        // A single-leaf storage trie.
        let v = verify_eip1186(root, &s.proof(b, &[slot(1), slot(2)])).unwrap();
        assert_eq!(v.storage[0].1, U256::from(5));
    }
}
