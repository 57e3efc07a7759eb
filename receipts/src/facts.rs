//! Proven facts for the gate: EIP-1186 storage proofs of the registries' slots, verified
//! against the state root of a verified L2 block.
//!
//! Which block counts as verified is a [`BlockSource`]:
//! - [`VerifiedStateBlocks`]: blocks the light client proved (L1 sync committee → OP Stack
//!   output root → L2 header), chosen by a [`ReadPolicy`]. This is the production source.
//! - [`RpcHeadBlocks`]: the L2 RPC's newest header, hash-checked but trusted to be canonical.
//!   For development chains only (a local node has no L1 to anchor to); the daemon asks for
//!   it by name (`--l2-trust-rpc-head`) and says so in its log.
//!
//! Either way every value comes from a proof checked here; an RPC cannot make the gate see a
//! registration or a stake that is not in the block's state.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, U256};
use lorad_contracts::slots;
use lorad_lightclient::rpc::ExecutionRpc;
use lorad_lightclient::verified::{ReadPolicy, VerifiedState};
use lorad_lightclient::{verify_eip1186, verify_header_hash};

use crate::gate::{FactSource, ProvenFacts};

/// A block whose state root the gate may read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedBlock {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// State root (proofs verify against it).
    pub state_root: B256,
    /// Timestamp (Unix seconds).
    pub timestamp: u64,
}

/// Where the newest usable block comes from.
pub trait BlockSource: Send + Sync + Debug {
    /// The block to read at now.
    fn newest(&self, now: u64) -> Result<TrustedBlock, String>;
}

/// Blocks the light client verified (fed by its follower), chosen by `policy`.
#[derive(Debug)]
pub struct VerifiedStateBlocks {
    /// The light client's verified L2 blocks.
    pub state: Arc<Mutex<VerifiedState>>,
    /// Minimum label and maximum age.
    pub policy: ReadPolicy,
}

impl BlockSource for VerifiedStateBlocks {
    fn newest(&self, now: u64) -> Result<TrustedBlock, String> {
        let state =
            self.state.lock().map_err(|_| "the verified state lock is poisoned".to_string())?;
        let b = state.select(self.policy, now).map_err(|e| e.to_string())?;
        Ok(TrustedBlock {
            number: b.number,
            hash: b.hash,
            state_root: b.state_root,
            timestamp: b.timestamp,
        })
    }
}

/// An RPC that can also name its newest block (for [`RpcHeadBlocks`]).
pub trait HeadRpc: ExecutionRpc + Send + Sync + Debug {
    /// `eth_blockNumber`.
    fn head_number(&self) -> Result<u64, String>;
}

impl HeadRpc for lorad_lightclient::rpc::http::HttpExecution {
    fn head_number(&self) -> Result<u64, String> {
        self.block_number().map_err(|e| e.to_string())
    }
}

/// Development only: the RPC's newest block, its header hash-checked.
#[derive(Debug)]
pub struct RpcHeadBlocks {
    /// The L2 RPC.
    pub rpc: Arc<dyn HeadRpc>,
}

impl BlockSource for RpcHeadBlocks {
    fn newest(&self, _now: u64) -> Result<TrustedBlock, String> {
        let number = self.rpc.head_number()?;
        let (header, claimed) = self.rpc.get_header(number).map_err(|e| e.to_string())?;
        verify_header_hash(&header, claimed).map_err(|e| e.to_string())?;
        Ok(TrustedBlock {
            number,
            hash: claimed,
            state_root: header.state_root,
            timestamp: header.timestamp,
        })
    }
}

/// Proven values of one block: `(contract, slots)` → values. Every answer reads the same
/// few slots, so a receipt burst costs two proofs per adapter per block, not two per answer.
type BlockCache = (B256, HashMap<(Address, Vec<U256>), Vec<U256>>);

/// The gate's facts, proven slot by slot at one block.
#[derive(Debug)]
pub struct ProofFacts {
    blocks: Arc<dyn BlockSource>,
    rpc: Arc<dyn HeadRpc>,
    adapter_registry: Address,
    node_registry: Address,
    now: fn() -> u64,
    cache: Mutex<BlockCache>,
}

impl ProofFacts {
    /// Facts about the registries at `adapter_registry` and `node_registry`, proven through
    /// `rpc` at the blocks `blocks` names; `now` is the clock of the block source's policy.
    pub fn new(
        blocks: Arc<dyn BlockSource>,
        rpc: Arc<dyn HeadRpc>,
        adapter_registry: Address,
        node_registry: Address,
        now: fn() -> u64,
    ) -> Self {
        let cache = Mutex::new((B256::ZERO, HashMap::new()));
        Self { blocks, rpc, adapter_registry, node_registry, now, cache }
    }

    /// The same reads, at the blocks another source names (sharing the RPC).
    pub fn with_blocks(&self, blocks: Arc<dyn BlockSource>) -> Self {
        Self::new(blocks, self.rpc.clone(), self.adapter_registry, self.node_registry, self.now)
    }

    fn proven(
        &self,
        block: &TrustedBlock,
        address: Address,
        slots: &[U256],
    ) -> Result<Vec<U256>, String> {
        let key = (address, slots.to_vec());
        if let Ok(cache) = self.cache.lock()
            && cache.0 == block.hash
            && let Some(values) = cache.1.get(&key)
        {
            return Ok(values.clone());
        }
        let values = self.prove(block, address, slots)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.0 != block.hash {
                *cache = (block.hash, HashMap::new());
            }
            cache.1.insert(key, values.clone());
        }
        Ok(values)
    }

    fn prove(
        &self,
        block: &TrustedBlock,
        address: Address,
        slots: &[U256],
    ) -> Result<Vec<U256>, String> {
        let keys: Vec<B256> = slots.iter().map(|s| B256::from(*s)).collect();
        let response =
            self.rpc.get_proof(address, &keys, block.number).map_err(|e| e.to_string())?;
        if response.address != address {
            return Err(format!("asked for a proof of {address}, got one of {}", response.address));
        }
        let verified = verify_eip1186(block.state_root, &response).map_err(|e| e.to_string())?;
        keys.iter()
            .map(|k| {
                verified
                    .value_of(*k)
                    .ok_or_else(|| format!("the proof of {address} lacks slot {k}"))
            })
            .collect()
    }
}

impl FactSource for ProofFacts {
    fn facts(&self, adapter_id: B256, node: Address) -> Result<ProvenFacts, String> {
        let block = self.blocks.newest((self.now)())?;
        let adapter = self.proven(
            &block,
            self.adapter_registry,
            &[
                slots::adapter_content_hash(adapter_id),
                slots::adapter_base_model_hash(adapter_id),
                slots::adapter_datanet_id(adapter_id),
            ],
        )?;
        let stake = self.proven(
            &block,
            self.node_registry,
            &[slots::node_stake(node), slots::node_flags(node)],
        )?;
        Ok(ProvenFacts {
            block_number: block.number,
            block_hash: block.hash,
            block_timestamp: block.timestamp,
            adapter_content_hash: B256::from(adapter[0]),
            adapter_base_model_hash: B256::from(adapter[1]),
            adapter_datanet_id: B256::from(adapter[2]),
            node_stake: stake[0],
            node_slashed: slots::flags_slashed(stake[1]),
        })
    }
}
