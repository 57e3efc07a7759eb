//! The crate's single error type.
//!
//! Every failure names what was being verified (address, slot, hash) so the daemon can log
//! *which* claim of an untrusted RPC was rejected without re-running the check.

use alloy_primitives::{Address, B256, U256};
use alloy_trie::{TrieAccount, proof::ProofVerificationError};

/// Everything that can make light-client verification or parsing fail.
#[derive(Debug, thiserror::Error)]
pub enum LightClientError {
    /// `keccak(rlp(header))` differs from the hash the header was claimed to have.
    #[error("header hash mismatch: expected {expected}, computed {computed}")]
    HeaderHash {
        /// The hash the header was claimed (or required) to have.
        expected: B256,
        /// The hash recomputed from the header fields.
        computed: B256,
    },

    /// The account proof does not connect the claimed account to the state root
    /// (bad node, broken hash link, truncated proof, wrong root, wrong key, ...).
    #[error("account proof for {address} is invalid: {reason}")]
    AccountProof {
        /// The account whose proof failed.
        address: Address,
        /// What the trie walk found wrong (boxed: it carries node bytes and would
        /// otherwise bloat every `Result` in the crate).
        #[source]
        reason: Box<ProofVerificationError>,
    },

    /// The account proof is valid, but it proves different account fields (or absence)
    /// than the response claimed.
    #[error("account {address}: claimed {claimed:?}, proof shows {proven:?}")]
    AccountMismatch {
        /// The account concerned.
        address: Address,
        /// The fields the response claimed.
        claimed: Box<TrieAccount>,
        /// The fields the proof actually proves; `None` means the account is proven absent.
        proven: Option<Box<TrieAccount>>,
    },

    /// The storage proof does not connect the claimed slot value to the storage root.
    #[error("storage proof for slot {slot} is invalid: {reason}")]
    StorageProof {
        /// The storage slot (not its hashed trie key).
        slot: B256,
        /// What the trie walk found wrong (boxed: it carries node bytes and would
        /// otherwise bloat every `Result` in the crate).
        #[source]
        reason: Box<ProofVerificationError>,
    },

    /// The storage proof is valid, but it proves a different value than the one claimed.
    #[error("storage slot {slot}: claimed {claimed}, proof shows {proven}")]
    StorageValueMismatch {
        /// The storage slot.
        slot: B256,
        /// The value the response claimed.
        claimed: U256,
        /// The value the proof proves (zero when the proof shows the slot absent).
        proven: U256,
    },

    /// `keccak(code)` differs from the proven code hash.
    #[error("code hash mismatch: expected {expected}, computed {computed}")]
    CodeHash {
        /// The proven code hash of the account.
        expected: B256,
        /// `keccak256` of the code that was supplied.
        computed: B256,
    },

    /// A JSON document could not be parsed into the expected RPC type.
    #[error("failed to parse {what} JSON: {source}")]
    Json {
        /// What was being parsed.
        what: &'static str,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A JSON-RPC envelope carried `"result": null` (e.g. unknown block) or an `error`.
    #[error("JSON-RPC response for {what} has no result")]
    MissingResult {
        /// What was being parsed.
        what: &'static str,
    },
}

/// Parses `json` as either a bare JSON-RPC result object or a `{"result": ...}` envelope.
///
/// RPC captures come in both shapes; accepting both here keeps every `parse_*` tolerant
/// in the same way.
pub(crate) fn parse_rpc_result<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &'static str,
) -> Result<T, LightClientError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|source| LightClientError::Json { what, source })?;
    let value = match value {
        serde_json::Value::Object(mut map)
            if map.contains_key("jsonrpc")
                || map.contains_key("result")
                || map.contains_key("error") =>
        {
            match map.remove("result") {
                Some(serde_json::Value::Null) | None => {
                    return Err(LightClientError::MissingResult { what });
                }
                Some(result) => result,
            }
        }
        serde_json::Value::Null => return Err(LightClientError::MissingResult { what }),
        other => other,
    };
    serde_json::from_value(value).map_err(|source| LightClientError::Json { what, source })
}
