//! The Merkle commitment over a Datanet's record hashes, shaped for cheap verification on the EVM.
//!
//! - leaf = keccak256(0x00 ‖ record_hash)
//! - inner node = keccak256(0x01 ‖ min(a, b) ‖ max(a, b)), comparing the 32 bytes as a big-endian
//!   number (which is how Solidity compares `bytes32`)
//! - leaves in record order; at each level an odd last node is promoted unchanged.
//!
//! Sorting each pair means a proof is just the list of siblings, with no left/right bits (like
//! OpenZeppelin's `MerkleProof` with commutative hashing); the 0x00 / 0x01 domain bytes keep an
//! inner node from passing as a leaf (second-preimage attacks). `docs/datanet-format.md` has the
//! Solidity verifier.

use sha3::{Digest, Keccak256};

/// The name of the Merkle scheme, as written in the manifest.
pub const MERKLE_SCHEME: &str = "keccak256-sorted-pairs-v1";

/// The leaf of a record: keccak256(0x00 ‖ record_hash).
pub fn leaf_hash(record_hash: &[u8; 32]) -> [u8; 32] {
    let mut k = Keccak256::new();
    k.update([0x00]);
    k.update(record_hash);
    k.finalize().into()
}

/// An inner node: keccak256(0x01 ‖ min(a, b) ‖ max(a, b)).
pub fn node_hash(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut k = Keccak256::new();
    k.update([0x01]);
    k.update(lo);
    k.update(hi);
    k.finalize().into()
}

/// A whole tree, kept level by level so that proofs cost O(log n) each.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves; the last level holds the root alone (empty for no leaves).
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    /// Builds the tree over `record_hashes` (in record order).
    pub fn new(record_hashes: &[[u8; 32]]) -> Self {
        let mut levels = vec![record_hashes.iter().map(leaf_hash).collect::<Vec<_>>()];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                // A pair is hashed; the odd last node (a chunk of one) goes up unchanged.
                .filter_map(|pair| pair.iter().copied().reduce(|a, b| node_hash(&a, &b)))
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root; all zero bytes for an empty tree.
    pub fn root(&self) -> [u8; 32] {
        self.levels.last().and_then(|l| l.first().copied()).unwrap_or([0; 32])
    }

    /// The siblings on the path from leaf `index` to the root, bottom up; levels where the node is
    /// promoted have no sibling and add nothing. `None` when `index` is out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.len() {
            return None;
        }
        let mut proof = Vec::new();
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                proof.push(*sibling);
            }
            i /= 2;
        }
        Some(proof)
    }
}

/// The Merkle root over `record_hashes`, in order; all zero bytes when there are none.
pub fn merkle_root(record_hashes: &[[u8; 32]]) -> [u8; 32] {
    MerkleTree::new(record_hashes).root()
}

/// The proof that `record_hashes[index]` is in the tree: the siblings, bottom up.
///
/// # Panics
///
/// If `index >= record_hashes.len()`, like slice indexing.
pub fn merkle_proof(record_hashes: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    let n = record_hashes.len();
    MerkleTree::new(record_hashes)
        .proof(index)
        .unwrap_or_else(|| panic!("merkle_proof: index {index} out of range for {n} records"))
}

/// Whether `proof` takes `record_hash`'s leaf to `root`.
pub fn verify_merkle_proof(root: &[u8; 32], record_hash: &[u8; 32], proof: &[[u8; 32]]) -> bool {
    let node = proof.iter().fold(leaf_hash(record_hash), |node, sibling| node_hash(&node, sibling));
    node == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_leaf_root_is_the_leaf() {
        let h = [7u8; 32];
        assert_eq!(merkle_root(&[h]), leaf_hash(&h));
        assert!(merkle_proof(&[h], 0).is_empty());
        assert!(verify_merkle_proof(&leaf_hash(&h), &h, &[]));
    }

    #[test]
    fn empty_tree() {
        assert_eq!(merkle_root(&[]), [0; 32]);
        assert!(MerkleTree::new(&[]).proof(0).is_none());
    }
}
