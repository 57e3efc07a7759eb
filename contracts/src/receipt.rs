//! The receipt a node signs for every answer: its EIP-712 type comes from `Settlement`'s ABI
//! (so Rust and Solidity cannot disagree about it; `tests/contracts.rs` checks the hashes),
//! plus the rules Settlement enforces, checked here before a node signs.

use alloy_primitives::{Address, B256, Bytes, Signature, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain};
use serde_json::json;

use crate::ContractsError;
pub use crate::bindings::Settlement::{Receipt, Share};

/// The EIP-712 domain name Settlement uses.
pub const DOMAIN_NAME: &str = "lorad Settlement";
/// The EIP-712 domain version Settlement uses.
pub const DOMAIN_VERSION: &str = "1";
/// Most contributors one receipt may name (Settlement's `MAX_SHARES`).
pub const MAX_SHARES: usize = 32;
/// Shares' basis points sum to exactly this.
pub const BPS_TOTAL: u32 = 10_000;

/// The signing domain of the Settlement contract at `settlement` on chain `chain_id`.
pub fn domain(chain_id: u64, settlement: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: settlement,
    }
}

/// A contributor's id in receipts and in `DatanetRegistry`: keccak256 of the name as the
/// Datanet's records spell it.
pub fn contributor_id(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// Checks the rules Settlement enforces on shares: 1 to [`MAX_SHARES`] of them, basis points
/// summing to exactly [`BPS_TOTAL`].
pub fn check_shares(shares: &[Share]) -> Result<(), ContractsError> {
    let sum: u32 = shares.iter().map(|s| u32::from(s.bps)).sum();
    if shares.is_empty() || shares.len() > MAX_SHARES || sum != BPS_TOTAL {
        return Err(ContractsError::InvalidReceipt {
            reason: format!(
                "{} shares summing to {sum} bps; Settlement needs 1 to {MAX_SHARES} summing to {BPS_TOTAL}",
                shares.len()
            ),
        });
    }
    Ok(())
}

/// Turns attribution weights into receipt shares: the top [`MAX_SHARES`] contributors by
/// weight (ties broken by id), scaled to basis points summing to exactly 10,000 by largest
/// remainder. Contributors whose share rounds to zero are left out.
pub fn shares_from_weights(weights: &[(B256, f64)]) -> Result<Vec<Share>, ContractsError> {
    let mut top: Vec<(B256, f64)> =
        weights.iter().copied().filter(|(_, w)| w.is_finite() && *w > 0.0).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(MAX_SHARES);
    let total: f64 = top.iter().map(|(_, w)| w).sum();
    if top.is_empty() || !total.is_finite() {
        return Err(ContractsError::InvalidReceipt {
            reason: "no contributor has a positive weight".into(),
        });
    }
    let exact: Vec<f64> = top.iter().map(|(_, w)| w / total * f64::from(BPS_TOTAL)).collect();
    let mut bps: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
    let mut order: Vec<usize> = (0..top.len()).collect();
    // Largest fractional part first; the earlier (heavier) contributor wins a tie.
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b))
    });
    let missing = BPS_TOTAL - bps.iter().sum::<u32>();
    for &i in order.iter().cycle().take(missing as usize) {
        bps[i] += 1;
    }
    let shares: Vec<Share> = top
        .iter()
        .zip(bps)
        .filter(|(_, b)| *b > 0)
        .map(|((id, _), b)| Share { contributor: *id, bps: b as u16 })
        .collect();
    check_shares(&shares)?;
    Ok(shares)
}

/// A receipt with the node's signature over its EIP-712 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// What was signed.
    pub receipt: Receipt,
    /// 65 bytes r ‖ s ‖ v, v 27 or 28, low s: the form Settlement accepts.
    pub signature: Bytes,
}

impl SignedReceipt {
    /// The job id (unique per answer; Settlement's replay key).
    pub fn job_id(&self) -> B256 {
        self.receipt.jobId
    }

    /// The digest the node signed, in `domain`.
    pub fn digest(&self, domain: &Eip712Domain) -> B256 {
        self.receipt.eip712_signing_hash(domain)
    }

    /// The address that signed it (not yet compared with the receipt's node).
    pub fn recover_signer(&self, domain: &Eip712Domain) -> Result<Address, ContractsError> {
        let signature = Signature::try_from(self.signature.as_ref())
            .map_err(|e| ContractsError::Signature { reason: e.to_string() })?;
        if signature.normalize_s().is_some() {
            return Err(ContractsError::Signature {
                reason: "high s (not EIP-2 canonical)".into(),
            });
        }
        signature
            .recover_address_from_prehash(&self.digest(domain))
            .map_err(|e| ContractsError::Signature { reason: e.to_string() })
    }

    /// Checks what Settlement checks without chain state: the node signed it and the shares
    /// are well formed.
    pub fn verify(&self, domain: &Eip712Domain) -> Result<(), ContractsError> {
        let signer = self.recover_signer(domain)?;
        if signer != self.receipt.node {
            return Err(ContractsError::Signature {
                reason: format!(
                    "signed by {signer}, but the receipt names node {}",
                    self.receipt.node
                ),
            });
        }
        check_shares(&self.receipt.shares)
    }

    /// Canonical bytes: `abi.encode(receipt, signature)`. The journal stores these.
    pub fn encode(&self) -> Vec<u8> {
        (self.receipt.clone(), self.signature.clone()).abi_encode_params()
    }

    /// Parses [`SignedReceipt::encode`]'s output, strictly: only bytes that `encode` would
    /// produce are accepted (no trailing data, no dirty padding, no short tail).
    pub fn decode(bytes: &[u8]) -> Result<Self, ContractsError> {
        let (receipt, signature) =
            <(Receipt, Bytes)>::abi_decode_params_validate(bytes).map_err(|e| {
                ContractsError::Decode { what: "signed receipt", reason: e.to_string() }
            })?;
        if signature.len() != 65 {
            return Err(ContractsError::Decode {
                what: "signed receipt",
                reason: format!("signature is {} bytes, not 65", signature.len()),
            });
        }
        let decoded = Self { receipt, signature };
        if decoded.encode() != bytes {
            return Err(ContractsError::Decode {
                what: "signed receipt",
                reason: "not in canonical encoding".into(),
            });
        }
        Ok(decoded)
    }

    /// The receipt as the HTTP API and `lorad receipts export` show it: hex strings for
    /// hashes and addresses, numbers as JSON numbers, plus the digest it was signed over
    /// when the Settlement's `domain` is known.
    pub fn to_json(&self, domain: Option<&Eip712Domain>) -> serde_json::Value {
        let r = &self.receipt;
        let mut v = json!({
            "jobId": r.jobId,
            "requester": r.requester,
            "node": r.node,
            "adapterId": r.adapterId,
            "adapterHash": r.adapterHash,
            "baseModelHash": r.baseModelHash,
            "promptHash": r.promptHash,
            "outputHash": r.outputHash,
            "tokensIn": r.tokensIn,
            "tokensOut": r.tokensOut,
            "datanetId": r.datanetId,
            "attributionRoot": r.attributionRoot,
            "shares": r.shares.iter().map(|s| json!({"contributor": s.contributor, "bps": s.bps})).collect::<Vec<_>>(),
            "l2BlockNumber": r.l2BlockNumber,
            "l2BlockHash": r.l2BlockHash,
            "timestamp": r.timestamp,
            "signature": self.signature,
        });
        if let (Some(d), Some(o)) = (domain, v.as_object_mut()) {
            o.insert("digest".into(), json!(self.digest(d)));
        }
        v
    }
}
