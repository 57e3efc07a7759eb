//! The signing gate: a node signs a receipt only for an answer whose adapter, at an L2 block
//! the light client verified and no older than the policy allows, is registered with the
//! content hash the node actually loaded, while the node itself is staked and not slashed.
//! Otherwise the answer goes out with no receipt and a [`Refusal`] saying why.
//!
//! [`verify_gate`] is the pure decision; [`Notary`] adds the I/O around it (proven facts from
//! a [`FactSource`], the key, the journal) and never signs twice for one job.

use std::fmt::Debug;
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::Eip712Domain;
use lorad_contracts::receipt::shares_from_weights;
use lorad_contracts::{NodeKey, Receipt, SignedReceipt};

use crate::{Appended, Journal};

/// Contract state proven at one verified L2 block (all values at the same block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenFacts {
    /// The block's number.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// The block's timestamp (Unix seconds).
    pub block_timestamp: u64,
    /// `AdapterRegistry.adapters[id].contentHash` (zero: not registered).
    pub adapter_content_hash: B256,
    /// `AdapterRegistry.adapters[id].baseModelHash`.
    pub adapter_base_model_hash: B256,
    /// `AdapterRegistry.adapters[id].datanetId`.
    pub adapter_datanet_id: B256,
    /// `NodeRegistry.nodes[node].stake`.
    pub node_stake: U256,
    /// `NodeRegistry.nodes[node].slashed`.
    pub node_slashed: bool,
}

/// Where proven facts come from: the daemon's light client (storage proofs against verified
/// L2 state roots). Implementations do the I/O; the gate only judges.
pub trait FactSource: Send + Sync + Debug {
    /// The facts about `adapter_id` and `node` at the newest verified block.
    fn facts(&self, adapter_id: B256, node: Address) -> Result<ProvenFacts, String>;
}

/// What the gate requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePolicy {
    /// Oldest acceptable L2 block, in seconds before now.
    pub max_block_age_secs: u64,
    /// NodeRegistry's `minStake` (what Settlement will require).
    pub min_stake: U256,
}

/// One served answer, as the node saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Unique per answer (the replay key on chain).
    pub job_id: B256,
    /// Who is charged (their escrow for this node).
    pub requester: Address,
    /// The adapter's on-chain id.
    pub adapter_id: B256,
    /// Content hash of the adapter the node loaded and ran.
    pub adapter_hash: B256,
    /// Hash of the base model the node ran.
    pub base_model_hash: B256,
    /// keccak256 of the prompt's token ids (u32 little-endian).
    pub prompt_hash: B256,
    /// keccak256 of the answer's text (UTF-8).
    pub output_hash: B256,
    /// Prompt tokens.
    pub tokens_in: u32,
    /// Answer tokens.
    pub tokens_out: u32,
    /// The Datanet the adapter was trained on.
    pub datanet_id: B256,
    /// Commitment to the whole attribution (records, scores, spans).
    pub attribution_root: B256,
    /// Contributor id → attribution weight (any positive scale).
    pub weights: Vec<(B256, f64)>,
}

/// Why an answer got no receipt: a stable `code` for clients and metrics, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// Stable, snake_case (`adapter_hash_mismatch`, `node_not_staked`, ...).
    pub code: &'static str,
    /// What was found, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Every refusal code [`verify_gate`] and [`Notary`] can give (metrics pre-register them).
pub const REFUSAL_CODES: [&str; 12] = [
    "no_verified_chain",
    "chain_unavailable",
    "stale_l2_block",
    "adapter_not_registered",
    "adapter_hash_mismatch",
    "base_model_mismatch",
    "datanet_mismatch",
    "node_not_staked",
    "node_slashed",
    "no_attribution",
    "signing_failed",
    "journal_unavailable",
];

/// The gate's decision over proven facts. Pure: no I/O, no clock (`now` is given).
pub fn verify_gate(
    answer: &Answer,
    facts: &ProvenFacts,
    policy: &GatePolicy,
    now: u64,
) -> Result<(), Refusal> {
    let age = now.saturating_sub(facts.block_timestamp);
    if age > policy.max_block_age_secs {
        return Err(Refusal::new(
            "stale_l2_block",
            format!(
                "the newest verified L2 block ({}) is {age} s old; the policy allows {} s",
                facts.block_number, policy.max_block_age_secs
            ),
        ));
    }
    if facts.adapter_content_hash.is_zero() {
        return Err(Refusal::new(
            "adapter_not_registered",
            format!(
                "adapter {} is not registered at L2 block {}",
                answer.adapter_id, facts.block_number
            ),
        ));
    }
    if facts.adapter_content_hash != answer.adapter_hash {
        return Err(Refusal::new(
            "adapter_hash_mismatch",
            format!(
                "the loaded adapter hashes to {}, AdapterRegistry holds {} at L2 block {}",
                answer.adapter_hash, facts.adapter_content_hash, facts.block_number
            ),
        ));
    }
    if facts.adapter_base_model_hash != answer.base_model_hash {
        return Err(Refusal::new(
            "base_model_mismatch",
            format!(
                "the adapter is registered for base model {}, this node runs {}",
                facts.adapter_base_model_hash, answer.base_model_hash
            ),
        ));
    }
    // Settlement reverts a whole batch over one receipt whose Datanet differs from the
    // registration, so such a receipt must never be signed. (A zero id: the answer has no
    // attribution, which the notary refuses as `no_attribution`.)
    if !answer.datanet_id.is_zero() && facts.adapter_datanet_id != answer.datanet_id {
        return Err(Refusal::new(
            "datanet_mismatch",
            format!(
                "the answer was attributed over Datanet {}, the adapter is registered with {}",
                answer.datanet_id, facts.adapter_datanet_id
            ),
        ));
    }
    if facts.node_slashed {
        return Err(Refusal::new(
            "node_slashed",
            "this node's key was slashed; it can never settle again",
        ));
    }
    if facts.node_stake < policy.min_stake {
        return Err(Refusal::new(
            "node_not_staked",
            format!(
                "this node stakes {} at L2 block {}; the minimum is {}",
                facts.node_stake, facts.block_number, policy.min_stake
            ),
        ));
    }
    Ok(())
}

/// Signs receipts behind the gate and makes them durable before anyone sees them.
#[derive(Debug)]
pub struct Notary {
    key: NodeKey,
    journal: Arc<Journal>,
    domain: Eip712Domain,
    facts: Option<Arc<dyn FactSource>>,
    policy: GatePolicy,
}

impl Notary {
    /// A notary signing with `key` for the Settlement in `domain`, journaling to `journal`.
    /// Without a fact source every answer is refused (`no_verified_chain`).
    pub fn new(
        key: NodeKey,
        journal: Arc<Journal>,
        domain: Eip712Domain,
        facts: Option<Arc<dyn FactSource>>,
        policy: GatePolicy,
    ) -> Self {
        Self { key, journal, domain, facts, policy }
    }

    /// The node's address.
    pub fn node(&self) -> Address {
        self.key.address()
    }

    /// The signing domain.
    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The journaled receipt for `job_id`, if any.
    pub fn receipt(&self, job_id: &B256) -> Result<Option<SignedReceipt>, crate::ReceiptsError> {
        match self.journal.get(&job_id.0)? {
            Some(bytes) => SignedReceipt::decode(&bytes).map(Some).map_err(|source| {
                crate::ReceiptsError::BadReceipt { id: job_id.to_string(), source }
            }),
            None => Ok(None),
        }
    }

    /// Checks the gate for `answer` and, if it passes, signs its receipt and returns it once
    /// it is durable. Blocking (proofs, fsync): call it off the async runtime. Asking again
    /// for a job that already has a receipt returns that receipt; nothing is signed twice.
    pub fn notarize(&self, answer: &Answer, now: u64) -> Result<SignedReceipt, Refusal> {
        let journal_error =
            |e: crate::ReceiptsError| Refusal::new("journal_unavailable", e.to_string());
        if let Some(existing) = self.receipt(&answer.job_id).map_err(journal_error)? {
            return Ok(existing);
        }
        let source = self.facts.as_ref().ok_or_else(|| {
            Refusal::new("no_verified_chain", "this node has no verified L2 chain configured, so it cannot prove registration and stake")
        })?;
        let facts = source
            .facts(answer.adapter_id, self.node())
            .map_err(|e| Refusal::new("chain_unavailable", format!("no proven L2 state: {e}")))?;
        verify_gate(answer, &facts, &self.policy, now)?;
        let shares = shares_from_weights(&answer.weights)
            .map_err(|e| Refusal::new("no_attribution", e.to_string()))?;
        let receipt = Receipt {
            jobId: answer.job_id,
            requester: answer.requester,
            node: self.node(),
            adapterId: answer.adapter_id,
            adapterHash: answer.adapter_hash,
            baseModelHash: answer.base_model_hash,
            promptHash: answer.prompt_hash,
            outputHash: answer.output_hash,
            tokensIn: answer.tokens_in,
            tokensOut: answer.tokens_out,
            datanetId: answer.datanet_id,
            attributionRoot: answer.attribution_root,
            shares,
            l2BlockNumber: facts.block_number,
            l2BlockHash: facts.block_hash,
            timestamp: now,
        };
        let signed = self
            .key
            .sign_receipt(receipt, &self.domain)
            .map_err(|e| Refusal::new("signing_failed", e.to_string()))?;
        match self.journal.append(signed.job_id().0, signed.encode()).map_err(journal_error)? {
            Appended::Stored => Ok(signed),
            // Another request for the same job won the race: return what it stored.
            Appended::Duplicate => {
                self.receipt(&answer.job_id).map_err(journal_error)?.ok_or_else(|| {
                    Refusal::new(
                        "journal_unavailable",
                        "a duplicate receipt vanished from the journal",
                    )
                })
            }
        }
    }
}
