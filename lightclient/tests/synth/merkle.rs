//! A sparse SHA-256 binary Merkle tree (the SSZ `hash_tree_root` tree shape), enough to make
//! beacon-state and block-body roots that commit to chosen leaves at generalized indices.
//!
//! The library's own helpers are `pub(crate)`; this is an independent reimplementation, so a
//! branch the client accepts was built without the client's code.

use std::collections::HashMap;

use alloy_primitives::B256;
use sha2::{Digest, Sha256};

/// `sha256(a ‖ b)`.
pub(crate) fn sha256_pair(a: B256, b: B256) -> B256 {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    B256::from_slice(&h.finalize())
}

/// Root of a `uint64` (little-endian in the first 8 bytes of a chunk).
pub(crate) fn u64_chunk(v: u64) -> B256 {
    let mut chunk = [0u8; 32];
    chunk[..8].copy_from_slice(&v.to_le_bytes());
    B256::from(chunk)
}

fn depth(gindex: u64) -> u32 {
    63 - gindex.leading_zeros()
}

/// A tree whose only known nodes are the given leaves; every other subtree is an opaque,
/// deterministic filler hash (derived from `seed` and its gindex), as the rest of a real
/// beacon state would be.
#[derive(Debug)]
pub(crate) struct SparseTree {
    leaves: HashMap<u64, B256>,
    seed: u64,
    memo: HashMap<u64, B256>,
}

impl SparseTree {
    /// Leaves at generalized indices (none may be an ancestor of another).
    pub(crate) fn new(leaves: &[(u64, B256)], seed: u64) -> Self {
        for &(a, _) in leaves {
            for &(b, _) in leaves {
                assert!(a == b || !is_ancestor(a, b), "gindex {a} is an ancestor of {b}");
            }
        }
        SparseTree { leaves: leaves.iter().copied().collect(), seed, memo: HashMap::new() }
    }

    fn filler(&self, gindex: u64) -> B256 {
        sha256_pair(u64_chunk(self.seed), u64_chunk(gindex))
    }

    fn node(&mut self, gindex: u64) -> B256 {
        if let Some(v) = self.leaves.get(&gindex) {
            return *v;
        }
        if let Some(v) = self.memo.get(&gindex) {
            return *v;
        }
        let v = if self.leaves.keys().any(|&l| is_ancestor(gindex, l)) {
            let (l, r) = (self.node(2 * gindex), self.node(2 * gindex + 1));
            sha256_pair(l, r)
        } else {
            self.filler(gindex)
        };
        self.memo.insert(gindex, v);
        v
    }

    /// The root (gindex 1).
    pub(crate) fn root(&mut self) -> B256 {
        self.node(1)
    }

    /// The branch of `gindex`, leaf level first (the spec's `is_valid_merkle_branch` order).
    pub(crate) fn branch(&mut self, gindex: u64) -> Vec<B256> {
        let mut branch = Vec::with_capacity(depth(gindex) as usize);
        let mut g = gindex;
        while g > 1 {
            branch.push(self.node(g ^ 1));
            g >>= 1;
        }
        branch
    }
}

/// Whether `a` is a strict ancestor of `b`.
fn is_ancestor(a: u64, b: u64) -> bool {
    let (da, db) = (depth(a), depth(b));
    db > da && (b >> (db - da)) == a
}

/// Independent check of a branch, as the spec defines it.
pub(crate) fn branch_root(leaf: B256, branch: &[B256], gindex: u64) -> B256 {
    let mut v = leaf;
    for (i, sibling) in branch.iter().enumerate() {
        v = if (gindex >> i) & 1 == 1 {
            sha256_pair(*sibling, v)
        } else {
            sha256_pair(v, *sibling)
        };
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_recompute_the_root() {
        let leaves = [
            (86, B256::repeat_byte(1)),
            (87, B256::repeat_byte(2)),
            (168, B256::repeat_byte(3)),
            (169, B256::repeat_byte(4)),
        ];
        let mut t = SparseTree::new(&leaves, 7);
        let root = t.root();
        for (g, leaf) in leaves {
            let b = t.branch(g);
            assert_eq!(b.len(), depth(g) as usize);
            assert_eq!(branch_root(leaf, &b, g), root);
        }
        let mut other = SparseTree::new(&leaves, 8);
        assert_ne!(other.root(), root, "fillers depend on the seed");
    }
}
