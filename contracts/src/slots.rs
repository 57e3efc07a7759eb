//! Storage slots lorad's light client proves before it signs a receipt. Solidity's layout
//! rules put `mapping(K => Struct) m` at slot `p` so that member `i` of `m[k]` lives at
//! `keccak256(pad32(k) ‖ pad32(p)) + i`; `tests/contracts.rs` pins each slot against the
//! artifacts' storage layout and against the EVM's actual storage.

use alloy_primitives::{Address, B256, U256, keccak256};

/// `keccak256(pad32(key) ‖ pad32(position))`: where `mapping[key]` starts.
fn mapping_slot(key: B256, position: u64) -> U256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(key.as_slice());
    buf[32..].copy_from_slice(&U256::from(position).to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(buf).0)
}

/// `AdapterRegistry.adapters[adapterId].contentHash` (mapping at slot 0, member 1).
pub fn adapter_content_hash(adapter_id: B256) -> U256 {
    mapping_slot(adapter_id, 0) + U256::from(1)
}

/// `AdapterRegistry.adapters[adapterId].baseModelHash` (member 2).
pub fn adapter_base_model_hash(adapter_id: B256) -> U256 {
    mapping_slot(adapter_id, 0) + U256::from(2)
}

/// `AdapterRegistry.adapters[adapterId].datanetId` (member 3).
pub fn adapter_datanet_id(adapter_id: B256) -> U256 {
    mapping_slot(adapter_id, 0) + U256::from(3)
}

/// `NodeRegistry.nodes[node].stake` (mapping at slot 0, member 0).
pub fn node_stake(node: Address) -> U256 {
    mapping_slot(node.into_word(), 0)
}

/// The word holding `NodeRegistry.nodes[node].unbondingReadyAt` (bytes 24..32) and
/// `.slashed` (byte 23), member 2.
pub fn node_flags(node: Address) -> U256 {
    mapping_slot(node.into_word(), 0) + U256::from(2)
}

/// Whether a [`node_flags`] word says the node was slashed.
pub fn flags_slashed(word: U256) -> bool {
    word.byte(8) != 0
}

/// `Settlement.settledDigest[jobId]` (mapping at slot 2).
pub fn settled_digest(job_id: B256) -> U256 {
    mapping_slot(job_id, 2)
}
