//! Verified L2 reads for the daemon: `verified_storage` / `verified_account` under a
//! policy (minimum label, maximum age), each value returned with the block it was proven
//! at, and cached per block so a receipt burst costs one proof per slot per block.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::error::LightClientError;
use crate::op::anchor::{L2Label, VerifiedL2Block};
use crate::proof::{VerifiedAccount, VerifiedProof, verify_eip1186};
use crate::rpc::ExecutionRpc;

/// What a read requires of the block it is answered at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPolicy {
    /// The weakest acceptable label.
    pub min_label: L2Label,
    /// The oldest acceptable block, in seconds before `now`; `None` accepts any age.
    pub max_age_secs: Option<u64>,
}

/// A value with the verified block it was proven at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedRead<T> {
    /// The proven value.
    pub value: T,
    /// L2 block number.
    pub block_number: u64,
    /// L2 block hash.
    pub block_hash: B256,
    /// How far the block is proven.
    pub label: L2Label,
    /// Whether the value came from the per-block cache.
    pub cached: bool,
}

impl<T> VerifiedRead<T> {
    fn at(block: &VerifiedL2Block, value: T, cached: bool) -> Self {
        VerifiedRead {
            value,
            block_number: block.number,
            block_hash: block.hash,
            label: block.label,
            cached,
        }
    }
}

/// Fetches and verifies a proof of `address` (and `slots`) at `block`.
fn proven(
    rpc: &dyn ExecutionRpc,
    block: &VerifiedL2Block,
    address: Address,
    slots: &[B256],
) -> Result<VerifiedProof, LightClientError> {
    let proof = rpc.get_proof(address, slots, block.number)?;
    if proof.address != address {
        return Err(LightClientError::AnchorData {
            reason: format!("asked for a proof of {address}, got {}", proof.address),
        });
    }
    verify_eip1186(block.state_root, &proof)
}

/// Verified L2 blocks and the reads proven against them.
#[derive(Debug, Default)]
pub struct VerifiedState {
    blocks: BTreeMap<u64, VerifiedL2Block>,
    storage: HashMap<(B256, Address, B256), U256>,
    accounts: HashMap<(B256, Address), VerifiedAccount>,
    keep_blocks: usize,
}

impl VerifiedState {
    /// Keeps at most `keep_blocks` verified blocks (and their cached reads).
    pub fn new(keep_blocks: usize) -> Self {
        VerifiedState { keep_blocks: keep_blocks.max(1), ..Default::default() }
    }

    /// Adds a verified block. A block at the same height replaces the known one only with
    /// an equal or stronger label (an L1-anchored block outranks a gossip one).
    pub fn insert(&mut self, block: VerifiedL2Block) {
        let replace = self.blocks.get(&block.number).is_none_or(|old| block.label >= old.label);
        if replace
            && let Some(old) = self.blocks.insert(block.number, block)
            && self.blocks.get(&old.number).is_some_and(|b| b.hash != old.hash)
        {
            self.forget(old.hash);
        }
        while self.blocks.len() > self.keep_blocks {
            let Some((_, oldest)) = self.blocks.pop_first() else { break };
            self.forget(oldest.hash);
        }
    }

    fn forget(&mut self, hash: B256) {
        self.storage.retain(|(h, _, _), _| *h != hash);
        self.accounts.retain(|(h, _), _| *h != hash);
    }

    /// The newest block with at least the policy's label, if it is young enough.
    pub fn select(
        &self,
        policy: ReadPolicy,
        now_unix: u64,
    ) -> Result<&VerifiedL2Block, LightClientError> {
        let block = self
            .blocks
            .values()
            .rev()
            .find(|b| b.label >= policy.min_label)
            .ok_or(LightClientError::NoBlockForPolicy { min_label: policy.min_label })?;
        if let Some(max_age_secs) = policy.max_age_secs {
            let age_secs = now_unix.saturating_sub(block.timestamp);
            if age_secs > max_age_secs {
                return Err(LightClientError::StaleBlock {
                    number: block.number,
                    age_secs,
                    max_age_secs,
                });
            }
        }
        Ok(block)
    }

    /// The storage value at `(address, slot)`, proven at the block the policy selects.
    pub fn verified_storage(
        &mut self,
        rpc: &dyn ExecutionRpc,
        address: Address,
        slot: B256,
        policy: ReadPolicy,
        now_unix: u64,
    ) -> Result<VerifiedRead<U256>, LightClientError> {
        let block = self.select(policy, now_unix)?.clone();
        if let Some(v) = self.storage.get(&(block.hash, address, slot)) {
            return Ok(VerifiedRead::at(&block, *v, true));
        }
        let verified = proven(rpc, &block, address, &[slot])?;
        let value = verified.value_of(slot).ok_or_else(|| LightClientError::AnchorData {
            reason: format!("proof of {address} lacks slot {slot}"),
        })?;
        self.accounts.insert((block.hash, address), verified.account);
        self.storage.insert((block.hash, address, slot), value);
        Ok(VerifiedRead::at(&block, value, false))
    }

    /// The account at `address`, proven at the block the policy selects.
    pub fn verified_account(
        &mut self,
        rpc: &dyn ExecutionRpc,
        address: Address,
        policy: ReadPolicy,
        now_unix: u64,
    ) -> Result<VerifiedRead<VerifiedAccount>, LightClientError> {
        let block = self.select(policy, now_unix)?.clone();
        if let Some(a) = self.accounts.get(&(block.hash, address)) {
            return Ok(VerifiedRead::at(&block, a.clone(), true));
        }
        let account = proven(rpc, &block, address, &[])?.account;
        self.accounts.insert((block.hash, address), account.clone());
        Ok(VerifiedRead::at(&block, account, false))
    }

    /// Every verified block, oldest first.
    pub fn blocks(&self) -> impl Iterator<Item = &VerifiedL2Block> {
        self.blocks.values()
    }
}
