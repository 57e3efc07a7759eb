//! BLS12-381 (`blst`, min-pk: 48-byte public keys, 96-byte signatures) for sync-committee
//! signatures.
//!
//! Public keys are decompressed and subgroup-checked once per committee (the expensive
//! part, ~512 point decompressions) and reused for every update the committee signs.

use alloy_primitives::B256;
use blst::BLST_ERROR;
use blst::min_pk::{PublicKey, Signature};

use super::types::{SyncAggregate, SyncCommittee};
use crate::error::LightClientError;

/// The ciphersuite Ethereum consensus signs with (proof-of-possession scheme).
const ETH_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// A sync committee's public keys, decompressed and validated.
pub struct CommitteeKeys {
    keys: Vec<PublicKey>,
}

impl std::fmt::Debug for CommitteeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitteeKeys").field("members", &self.keys.len()).finish()
    }
}

impl CommitteeKeys {
    /// Decompresses every member key, rejecting points off the curve, outside the
    /// subgroup, or at infinity (the spec's `KeyValidate`).
    pub fn new(committee: &SyncCommittee) -> Result<Self, LightClientError> {
        let keys = committee
            .pubkeys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                PublicKey::key_validate(k.as_slice())
                    .map_err(|e| LightClientError::BlsPublicKey { index, reason: blst_reason(e) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CommitteeKeys { keys })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the committee has no members.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// `FastAggregateVerify(participant_pubkeys, signing_root, signature)`.
///
/// `slot` only labels the error.
pub fn verify_sync_aggregate(
    keys: &CommitteeKeys,
    aggregate: &SyncAggregate,
    signing_root: B256,
    slot: u64,
) -> Result<(), LightClientError> {
    if aggregate.size() != keys.len() {
        return Err(LightClientError::CommitteeSize {
            expected: keys.len(),
            got: aggregate.size(),
        });
    }
    let participants: Vec<&PublicKey> =
        keys.keys.iter().enumerate().filter(|(i, _)| aggregate.bit(*i)).map(|(_, k)| k).collect();
    if participants.is_empty() {
        return Err(LightClientError::NotEnoughParticipants { participants: 0, required: 1 });
    }
    let signature = Signature::from_bytes(aggregate.sync_committee_signature.as_slice())
        .map_err(|e| LightClientError::BlsSignature { slot, reason: blst_reason(e) })?;
    // Group-check the signature here: it comes from the untrusted update.
    match signature.fast_aggregate_verify(true, signing_root.as_slice(), ETH_DST, &participants) {
        BLST_ERROR::BLST_SUCCESS => Ok(()),
        BLST_ERROR::BLST_VERIFY_FAIL => Err(LightClientError::SignatureInvalid { slot }),
        e => Err(LightClientError::BlsSignature { slot, reason: blst_reason(e) }),
    }
}

fn blst_reason(e: BLST_ERROR) -> String {
    match e {
        BLST_ERROR::BLST_BAD_ENCODING => "bad encoding",
        BLST_ERROR::BLST_POINT_NOT_ON_CURVE => "point not on curve",
        BLST_ERROR::BLST_POINT_NOT_IN_GROUP => "point not in subgroup",
        BLST_ERROR::BLST_PK_IS_INFINITY => "point at infinity",
        BLST_ERROR::BLST_VERIFY_FAIL => "verification failed",
        BLST_ERROR::BLST_AGGR_TYPE_MISMATCH => "aggregate type mismatch",
        BLST_ERROR::BLST_BAD_SCALAR => "bad scalar",
        BLST_ERROR::BLST_SUCCESS => "success",
    }
    .to_owned()
}
