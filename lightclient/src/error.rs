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

    /// Snappy (block format) data could not be decompressed.
    #[error("{what}: invalid snappy data: {reason}")]
    Snappy {
        /// What was being decompressed.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },

    /// SSZ bytes could not be decoded into the expected container (wrong length,
    /// bad offset, out-of-range list, ...).
    #[error("{what}: invalid SSZ: {reason}")]
    Ssz {
        /// The container being decoded.
        what: &'static str,
        /// What was wrong, from the decoder.
        reason: String,
    },

    /// A required field is absent for the fork or version at hand (e.g. an Isthmus header
    /// without `withdrawalsRoot`).
    #[error("{what}: missing {field}")]
    MissingField {
        /// The object being checked.
        what: &'static str,
        /// The absent field.
        field: &'static str,
    },

    /// A sequencer gossip signature is malformed or does not recover to a public key.
    #[error("gossip signature invalid: {reason}")]
    GossipSignature {
        /// Why recovery failed.
        reason: String,
    },

    /// A gossip payload was signed by a key other than the proven unsafe-block signer.
    #[error("unsafe block signed by {recovered}, but the proven unsafe signer is {expected}")]
    UnsafeSigner {
        /// The signer proven from L1 `SystemConfig` storage.
        expected: Address,
        /// The address the signature recovers to.
        recovered: Address,
    },

    /// An OP Stack output root recomputed from L2 data differs from the one anchored on L1.
    #[error("output root mismatch: L1 has {expected}, L2 data gives {computed}")]
    OutputRoot {
        /// The root read (and proven) from L1.
        expected: B256,
        /// The root recomputed from the L2 header and message-passer storage root.
        computed: B256,
    },

    /// Light-client data of a fork this client cannot use (before Capella, or unknown).
    #[error("unsupported fork {fork:?} for light-client data (Capella or later is required)")]
    UnsupportedFork {
        /// The fork name as given.
        fork: String,
    },

    /// A network name that has no built-in configuration.
    #[error("unknown network {name:?} (built in: mainnet, sepolia; others need a config)")]
    UnknownNetwork {
        /// The name asked for.
        name: String,
    },

    /// A custom network configuration is unusable.
    #[error("network config {name:?} is invalid: {reason}")]
    BadNetworkConfig {
        /// The network's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The bootstrap header is not the trusted checkpoint.
    #[error("bootstrap header root {computed} is not the trusted checkpoint {expected}")]
    CheckpointMismatch {
        /// The trusted block root.
        expected: B256,
        /// `hash_tree_root` of the bootstrap's beacon header.
        computed: B256,
    },

    /// The trusted checkpoint is older than the policy allows (weak subjectivity).
    #[error("checkpoint at slot {slot} is {age_secs} s old; the policy allows {max_age_secs} s")]
    CheckpointTooOld {
        /// Slot of the checkpoint header.
        slot: u64,
        /// Its age.
        age_secs: u64,
        /// The allowed maximum.
        max_age_secs: u64,
    },

    /// A Merkle branch does not connect its leaf to the root it must prove against.
    #[error("invalid {what} branch for the header at slot {slot}")]
    InvalidBranch {
        /// Which branch: `execution payload`, `current sync committee`, `next sync
        /// committee` or `finality`.
        what: &'static str,
        /// Slot of the header whose root the branch was checked against.
        slot: u64,
    },

    /// A field that must be empty (zero) in this kind of update or fork is not.
    #[error("{what} must be empty here")]
    UnexpectedField {
        /// The offending field and why it must be empty.
        what: &'static str,
    },

    /// Too few sync-committee members signed.
    #[error("{participants} sync-committee participants; at least {required} required")]
    NotEnoughParticipants {
        /// How many signed.
        participants: u64,
        /// How many are required.
        required: u64,
    },

    /// The update's slots are not ordered `current >= signature > attested >= finalized`.
    #[error(
        "update slots out of order: current {current_slot}, signature {signature_slot}, \
         attested {attested_slot}, finalized {finalized_slot}"
    )]
    InvalidTiming {
        /// The clock's current slot.
        current_slot: u64,
        /// The update's signature slot.
        signature_slot: u64,
        /// The attested header's slot.
        attested_slot: u64,
        /// The finalized header's slot.
        finalized_slot: u64,
    },

    /// The update was signed in a period the store has no committee for.
    #[error(
        "update signed in sync-committee period {signature_period}, but the store is at period \
         {store_period} (next committee known: {next_known})"
    )]
    WrongPeriod {
        /// Period of the update's signature slot.
        signature_period: u64,
        /// Period of the store's finalized header.
        store_period: u64,
        /// Whether the store knows the next period's committee.
        next_known: bool,
    },

    /// The update tells the store nothing new (attested header not newer than the
    /// finalized one, and no needed next committee).
    #[error(
        "irrelevant update: attested slot {attested_slot} is not after finalized slot {finalized_slot}"
    )]
    IrrelevantUpdate {
        /// The update's attested slot.
        attested_slot: u64,
        /// The store's finalized slot.
        finalized_slot: u64,
    },

    /// A finality update whose finalized header is older than the store's.
    #[error("finalized header at slot {update_slot} is older than the store's at {store_slot}")]
    StaleFinality {
        /// The update's finalized slot.
        update_slot: u64,
        /// The store's finalized slot.
        store_slot: u64,
    },

    /// An update's next committee contradicts the one the store already holds.
    #[error("update's next sync committee differs from the one already verified")]
    NextCommitteeMismatch,

    /// The participation bitvector does not match the committee size.
    #[error("sync committee has {expected} members but the update's bits cover {got}")]
    CommitteeSize {
        /// Members in the committee.
        expected: usize,
        /// Bits in the update.
        got: usize,
    },

    /// A committee member's public key is not a valid BLS12-381 G1 point.
    #[error("sync committee member {index}: invalid BLS public key ({reason})")]
    BlsPublicKey {
        /// Index in the committee.
        index: usize,
        /// What `blst` reported.
        reason: String,
    },

    /// The aggregate signature bytes are not a valid BLS12-381 G2 point.
    #[error("signature at slot {slot} is malformed ({reason})")]
    BlsSignature {
        /// The update's signature slot.
        slot: u64,
        /// What `blst` reported.
        reason: String,
    },

    /// The aggregate signature does not verify against the participants' keys.
    #[error("sync-committee signature at slot {slot} does not verify")]
    SignatureInvalid {
        /// The update's signature slot.
        slot: u64,
    },

    /// A Beacon-API JSON document parsed, but its content does not fit the fork or network
    /// (wrong branch length, committee size, missing paired field).
    #[error("{what}: {reason}")]
    BeaconJson {
        /// The document being parsed.
        what: &'static str,
        /// What does not fit.
        reason: String,
    },

    /// A step of a multi-step verification (replay, sync) failed; names the step.
    #[error("{step}: {source}")]
    Step {
        /// Which step (`update 3`, `finality`, ...).
        step: String,
        /// Why it failed.
        #[source]
        source: Box<LightClientError>,
    },

    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Proven L1 rollup-contract state does not support the claimed L2 output (index past
    /// the list, wrong creator, challenged game, missing slot, wrong block number, ...).
    #[error("L1 anchor: {reason}")]
    AnchorData {
        /// What does not hold.
        reason: String,
    },

    /// No verified L2 block satisfies a read policy's label.
    #[error("no verified L2 block is at least {min_label:?}")]
    NoBlockForPolicy {
        /// The label the policy requires.
        min_label: crate::op::anchor::L2Label,
    },

    /// The newest block satisfying a read policy is older than it allows.
    #[error(
        "newest eligible L2 block {number} is {age_secs} s old; the policy allows {max_age_secs} s"
    )]
    StaleBlock {
        /// The block's number.
        number: u64,
        /// Its age.
        age_secs: u64,
        /// The allowed maximum.
        max_age_secs: u64,
    },

    /// An RPC transport failed (connection, HTTP status, malformed body).
    #[error("{endpoint}: {reason}")]
    Rpc {
        /// The endpoint or method.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },

    /// EVM execution over proven state failed (revert, halt, unsupported opcode input).
    #[error("EVM execution over proven state failed: {reason}")]
    Evm {
        /// What happened.
        reason: String,
    },

    /// A call touched state that no proof covers (it would otherwise read a silent zero).
    #[error("the call touched unproven state: account {address}{}", slot.map(|s| format!(" slot {s}")).unwrap_or_default())]
    UnprovenState {
        /// The account.
        address: Address,
        /// The storage slot, if a slot was read.
        slot: Option<B256>,
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
