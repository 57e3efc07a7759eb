//! SSZ helpers: hash_tree_root of the basic types the light-client containers use, Merkle
//! branch checks, and small decoding shims over `ethereum_ssz`.
//!
//! The containers themselves (in `types.rs`) are decoded and hashed by hand rather than
//! with derive macros: their shapes depend on the fork and on the preset *at run time*
//! (sync committee of 512 on mainnet, 32 in the minimal preset; branch depths change at
//! Electra), and one runtime-parameterised code path is simpler to audit than a family of
//! type-level variants.

use alloy_primitives::{Address, B256, U256};
use sha2::{Digest, Sha256};
use ssz::{Decode, DecodeError};
use tree_hash::{merkle_root, mix_in_length};

use crate::error::LightClientError;

/// Root of a `uint64`.
pub(crate) fn u64_root(v: u64) -> B256 {
    let mut chunk = [0u8; 32];
    chunk[..8].copy_from_slice(&v.to_le_bytes());
    B256::from(chunk)
}

/// Root of a `uint256` (little-endian, one chunk).
pub(crate) fn u256_root(v: U256) -> B256 {
    B256::from(v.to_le_bytes::<32>())
}

/// Root of an `ExecutionAddress` (`Bytes20`, right-padded to a chunk).
pub(crate) fn address_root(a: Address) -> B256 {
    let mut chunk = [0u8; 32];
    chunk[..20].copy_from_slice(a.as_slice());
    B256::from(chunk)
}

/// Root of a fixed-size byte vector (`BLSPubkey`, `BLSSignature`, `ByteVector[256]`).
pub(crate) fn byte_vector_root(bytes: &[u8]) -> B256 {
    merkle_root(bytes, 0)
}

/// Root of a `ByteList[max_len]`.
pub(crate) fn byte_list_root(bytes: &[u8], max_len: usize) -> B256 {
    mix_in_length(&merkle_root(bytes, max_len.div_ceil(32)), bytes.len())
}

/// Root of a `Bitvector[n_bits]` given its packed bytes.
pub(crate) fn bitvector_root(bytes: &[u8], n_bits: usize) -> B256 {
    merkle_root(bytes, n_bits.div_ceil(256))
}

/// Root of a container (or a vector of composite items) from its field roots.
pub(crate) fn container_root(field_roots: &[B256]) -> B256 {
    let mut bytes = Vec::with_capacity(field_roots.len() * 32);
    for r in field_roots {
        bytes.extend_from_slice(r.as_slice());
    }
    merkle_root(&bytes, 0)
}

fn sha256_pair(a: &[u8], b: &[u8]) -> B256 {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    B256::from_slice(&h.finalize())
}

/// `floorlog2(gindex)`: the depth of a generalized index.
pub(crate) fn gindex_depth(gindex: u64) -> usize {
    63 - gindex.leading_zeros() as usize
}

/// `get_subtree_index(gindex)`: the index among the nodes at its depth.
pub(crate) fn subtree_index(gindex: u64) -> u64 {
    gindex % (1u64 << gindex_depth(gindex))
}

/// `is_valid_merkle_branch(leaf, branch, depth, index, root)`.
pub(crate) fn is_valid_merkle_branch(
    leaf: B256,
    branch: &[B256],
    depth: usize,
    index: u64,
    root: B256,
) -> bool {
    if branch.len() != depth {
        return false;
    }
    let mut value = leaf;
    for (i, sibling) in branch.iter().enumerate() {
        value = if (index >> i) & 1 == 1 {
            sha256_pair(sibling.as_slice(), value.as_slice())
        } else {
            sha256_pair(value.as_slice(), sibling.as_slice())
        };
    }
    value == root
}

/// `is_valid_normalized_merkle_branch` (Electra): a branch longer than the gindex's depth
/// is accepted only if its extra leading nodes are zero, so a container of a later fork can
/// carry a proof made against an earlier fork's state.
pub(crate) fn is_valid_normalized_merkle_branch(
    leaf: B256,
    branch: &[B256],
    gindex: u64,
    root: B256,
) -> bool {
    let depth = gindex_depth(gindex);
    let Some(extra) = branch.len().checked_sub(depth) else {
        return false;
    };
    branch[..extra].iter().all(|b| b.is_zero())
        && is_valid_merkle_branch(leaf, &branch[extra..], depth, subtree_index(gindex), root)
}

/// Maps an `ethereum_ssz` decode error to the crate error for container `what`.
pub(crate) fn ssz_err(what: &'static str) -> impl Fn(DecodeError) -> LightClientError {
    move |e| LightClientError::Ssz { what, reason: format!("{e:?}") }
}

/// Decodes a fixed-length vector of 32-byte roots (a Merkle branch).
pub(crate) fn decode_branch(bytes: &[u8], depth: usize) -> Result<Vec<B256>, DecodeError> {
    if bytes.len() != depth * 32 {
        return Err(DecodeError::InvalidByteLength { len: bytes.len(), expected: depth * 32 });
    }
    Ok(bytes.chunks_exact(32).map(B256::from_slice).collect())
}

/// Decodes exactly `N` bytes.
pub(crate) fn decode_fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    bytes.try_into().map_err(|_| DecodeError::InvalidByteLength { len: bytes.len(), expected: N })
}

/// Decodes a `uint64`.
pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, DecodeError> {
    u64::from_ssz_bytes(bytes)
}

/// Appends a branch's bytes.
pub(crate) fn encode_branch(buf: &mut Vec<u8>, branch: &[B256]) {
    for b in branch {
        buf.extend_from_slice(b.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gindex_math_matches_the_spec_constants() {
        assert_eq!(gindex_depth(105), 6);
        assert_eq!(subtree_index(105), 41);
        assert_eq!(gindex_depth(54), 5);
        assert_eq!(subtree_index(54), 22);
        assert_eq!(gindex_depth(169), 7);
        assert_eq!(gindex_depth(87), 6);
        assert_eq!(gindex_depth(25), 4);
        assert_eq!(subtree_index(25), 9);
    }

    #[test]
    fn merkle_branch_accepts_the_right_path_only() {
        // A depth-2 tree of four leaves; prove leaf 2.
        let leaves: Vec<B256> = (1u8..=4).map(B256::repeat_byte).collect();
        let n01 = sha256_pair(leaves[0].as_slice(), leaves[1].as_slice());
        let n23 = sha256_pair(leaves[2].as_slice(), leaves[3].as_slice());
        let root = sha256_pair(n01.as_slice(), n23.as_slice());
        let branch = [leaves[3], n01];
        assert!(is_valid_merkle_branch(leaves[2], &branch, 2, 2, root));
        assert!(!is_valid_merkle_branch(leaves[2], &branch, 2, 3, root));
        assert!(!is_valid_merkle_branch(leaves[3], &branch, 2, 2, root));
        // Normalized: gindex 6 = depth 2 index 2; one extra zero node is tolerated, a
        // non-zero one is not.
        let padded = [B256::ZERO, leaves[3], n01];
        assert!(is_valid_normalized_merkle_branch(leaves[2], &padded, 6, root));
        let bad = [B256::repeat_byte(9), leaves[3], n01];
        assert!(!is_valid_normalized_merkle_branch(leaves[2], &bad, 6, root));
        assert!(!is_valid_normalized_merkle_branch(leaves[2], &branch[..1], 6, root));
    }

    #[test]
    fn byte_list_root_mixes_in_length() {
        // An empty ByteList[32] is hash(zero chunk, 0).
        let r = byte_list_root(&[], 32);
        assert_eq!(r, sha256_pair(&[0u8; 32], &[0u8; 32]));
        assert_ne!(byte_list_root(&[0], 32), r);
    }
}
