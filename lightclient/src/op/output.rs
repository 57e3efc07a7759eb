//! OP Stack output roots (specs `protocol/proposals.md`, "L2 Output Commitment Construction").
//!
//! An output root is what L1 (the `L2OutputOracle` or a dispute game) records about an L2
//! block: `keccak256(version ‖ state_root ‖ message_passer_storage_root ‖ block_hash)`. Matching
//! a recomputed root against the L1 one anchors an L2 block hash (and so its state root) to L1.

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, address, keccak256};

use crate::LightClientError;

/// The `L2ToL1MessagePasser` predeploy, whose storage root is part of every output root.
pub const L2_TO_L1_MESSAGE_PASSER: Address = address!("0x4200000000000000000000000000000000000016");

/// Output root version 0, the only one defined.
pub const OUTPUT_VERSION_V0: B256 = B256::ZERO;

/// `keccak256(OUTPUT_VERSION_V0 ‖ state_root ‖ message_passer_storage_root ‖ block_hash)`.
pub fn output_root_v0(
    state_root: B256,
    message_passer_storage_root: B256,
    block_hash: B256,
) -> B256 {
    let mut preimage = [0u8; 128];
    preimage[..32].copy_from_slice(OUTPUT_VERSION_V0.as_slice());
    preimage[32..64].copy_from_slice(state_root.as_slice());
    preimage[64..96].copy_from_slice(message_passer_storage_root.as_slice());
    preimage[96..].copy_from_slice(block_hash.as_slice());
    keccak256(preimage)
}

/// The v0 output root of any L2 header, given the message-passer storage root proven
/// separately (e.g. by `eth_getProof` of [`L2_TO_L1_MESSAGE_PASSER`] against
/// `header.state_root`), as needed before Isthmus.
pub fn output_root_from_header(header: &Header, message_passer_storage_root: B256) -> B256 {
    output_root_v0(header.state_root, message_passer_storage_root, header.hash_slow())
}

/// The v0 output root of a post-Isthmus L2 header, whose `withdrawals_root` *is* the
/// message-passer storage root, so no storage proof is needed.
///
/// Only for Isthmus headers: before Isthmus the field holds the (empty) withdrawals trie root,
/// and this would compute a wrong root, which [`verify_output_root`] then rejects.
pub fn output_root_from_isthmus_header(header: &Header) -> Result<B256, LightClientError> {
    let storage_root = header.withdrawals_root.ok_or(LightClientError::MissingField {
        what: "Isthmus L2 header",
        field: "withdrawals_root",
    })?;
    Ok(output_root_from_header(header, storage_root))
}

/// Requires the recomputed output root to equal the one anchored on L1.
pub fn verify_output_root(expected: B256, computed: B256) -> Result<(), LightClientError> {
    if expected == computed {
        Ok(())
    } else {
        Err(LightClientError::OutputRoot { expected, computed })
    }
}
