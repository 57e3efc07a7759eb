//! OP Stack sequencer gossip: the `blocksV1`..`blocksV4` envelopes of the rollup-node p2p spec.
//!
//! A gossip message is `snappy_block(signature(65) ‖ signed_bytes)` where `signed_bytes` is the
//! SSZ `ExecutionPayload` (V1, V2) or `parentBeaconBlockRoot(32) ‖ ExecutionPayload` (V3, V4).
//! The sequencer signs `keccak256(bytes32(0) ‖ uint256_be(chain_id) ‖ keccak256(signed_bytes))`.
//!
//! Two independent checks make an unsafe block usable: [`GossipEnvelope::verify_signer`] ties it
//! to the unsafe-block signer proven from L1 `SystemConfig` storage
//! ([`UNSAFE_BLOCK_SIGNER_SLOT`]), and [`OpExecutionPayload::verify_block_hash`] ties every payload
//! field to the block hash, so roots taken from the payload are those of the signed block.

use alloy_primitives::{Address, B256, Signature, U256, b256, keccak256};

use super::payload::{OpExecutionPayload, PayloadVersion};
use crate::LightClientError;

/// Largest gossip message, compressed or decompressed (spec: "constrained to 10 MiB").
pub const MAX_GOSSIP_SIZE: usize = 10 * 1024 * 1024;

/// L1 `SystemConfig` storage slot holding the unsafe-block signer:
/// `keccak256("systemconfig.unsafeblocksigner")`.
pub const UNSAFE_BLOCK_SIGNER_SLOT: B256 =
    b256!("0x65a7ed542fb37fe237fdfbdd70b31598523fe5b32879e307bae27a0bd9581c08");

/// Bytes of the secp256k1 signature that prefixes every message.
const SIGNATURE_LEN: usize = 65;

/// A decoded sequencer gossip message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipEnvelope {
    /// The topic version the message was received on (fixes the layout).
    pub version: PayloadVersion,
    /// `r(32) ‖ s(32) ‖ y_parity(1)`, as received.
    pub signature: [u8; 65],
    /// The L1 origin's parent beacon block root (V3/V4 only).
    pub parent_beacon_block_root: Option<B256>,
    /// The execution payload.
    pub payload: OpExecutionPayload,
}

impl GossipEnvelope {
    /// Decodes a message as received on `version`'s topic: snappy block decompression (declared
    /// size capped at [`MAX_GOSSIP_SIZE`] before anything is allocated), then the layout.
    pub fn decode(version: PayloadVersion, network_bytes: &[u8]) -> Result<Self, LightClientError> {
        const WHAT: &str = "gossip message";
        let snappy = |reason: String| LightClientError::Snappy { what: WHAT, reason };
        if network_bytes.len() > MAX_GOSSIP_SIZE {
            return Err(snappy(format!("{} compressed bytes exceed 10 MiB", network_bytes.len())));
        }
        let len = snap::raw::decompress_len(network_bytes).map_err(|e| snappy(e.to_string()))?;
        if len > MAX_GOSSIP_SIZE {
            return Err(snappy(format!("declared size {len} exceeds 10 MiB")));
        }
        let mut raw = vec![0; len];
        let n = snap::raw::Decoder::new()
            .decompress(network_bytes, &mut raw)
            .map_err(|e| snappy(e.to_string()))?;
        raw.truncate(n);
        Self::decode_uncompressed(version, &raw)
    }

    /// Parses the decompressed `signature ‖ [parent_beacon_block_root] ‖ payload` bytes.
    pub fn decode_uncompressed(
        version: PayloadVersion,
        raw: &[u8],
    ) -> Result<Self, LightClientError> {
        let prefix = SIGNATURE_LEN + if version.has_parent_beacon_block_root() { 32 } else { 0 };
        let short = || LightClientError::Ssz {
            what: "gossip message",
            reason: format!("{} bytes, shorter than the {prefix}-byte prefix", raw.len()),
        };
        let (signature, rest) = raw.split_first_chunk::<SIGNATURE_LEN>().ok_or_else(short)?;
        let (parent_beacon_block_root, payload_ssz) = if version.has_parent_beacon_block_root() {
            let (root, ssz) = rest.split_first_chunk::<32>().ok_or_else(short)?;
            (Some(B256::from(*root)), ssz)
        } else {
            (None, rest)
        };
        Ok(Self {
            version,
            signature: *signature,
            parent_beacon_block_root,
            payload: OpExecutionPayload::from_ssz_bytes(version, payload_ssz)?,
        })
    }

    /// The network form: `snappy_block(signature ‖ payload_bytes)`.
    ///
    /// The inverse of [`Self::decode`] for messages compressed by the `snap` crate (as op-alloy's
    /// are); another compressor (op-node's Go snappy) may choose other bytes for the same content,
    /// which does not matter for the signature: it covers the decompressed bytes.
    pub fn encode(&self) -> Result<Vec<u8>, LightClientError> {
        let raw = self.encode_uncompressed()?;
        if raw.len() > MAX_GOSSIP_SIZE {
            return Err(LightClientError::Snappy {
                what: "gossip message",
                reason: format!("{} bytes exceed 10 MiB", raw.len()),
            });
        }
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .map_err(|e| LightClientError::Snappy { what: "gossip message", reason: e.to_string() })
    }

    /// The decompressed message: `signature ‖ payload_bytes`.
    pub fn encode_uncompressed(&self) -> Result<Vec<u8>, LightClientError> {
        let signed = self.payload_bytes()?;
        let mut raw = Vec::with_capacity(SIGNATURE_LEN + signed.len());
        raw.extend_from_slice(&self.signature);
        raw.extend_from_slice(&signed);
        Ok(raw)
    }

    /// The bytes the sequencer signs: the SSZ payload, prefixed by the parent beacon block root
    /// for V3/V4.
    ///
    /// Re-encoded rather than stored: SSZ decoding here accepts only canonical encodings, so
    /// these are byte-for-byte the bytes received. Errors when the fields do not fit `version`.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, LightClientError> {
        let ssz = self.payload.to_ssz_bytes(self.version)?;
        match (self.version.has_parent_beacon_block_root(), self.parent_beacon_block_root) {
            (true, Some(root)) => Ok([root.as_slice(), &ssz].concat()),
            (false, None) => Ok(ssz),
            (true, None) => Err(LightClientError::MissingField {
                what: "gossip envelope",
                field: "parent_beacon_block_root",
            }),
            (false, Some(_)) => Err(LightClientError::UnexpectedField {
                what: "parent_beacon_block_root before V3",
            }),
        }
    }

    /// The 32-byte message the sequencer signed for `chain_id` (see [`signing_message`]).
    pub fn signing_message(&self, chain_id: u64) -> Result<B256, LightClientError> {
        Ok(signing_message(chain_id, &self.payload_bytes()?))
    }

    /// The address whose key produced [`Self::signature`] over the message for `chain_id`.
    ///
    /// `y_parity` must be 0 or 1 (27/28 are accepted as their legacy spelling); high-`s`
    /// signatures are accepted like op-node's recovery does.
    pub fn recover_signer(&self, chain_id: u64) -> Result<Address, LightClientError> {
        recover_signer(&self.signature, self.signing_message(chain_id)?)
    }

    /// Recovers the signer and requires it to be `expected` (the proven unsafe-block signer).
    pub fn verify_signer(
        &self,
        chain_id: u64,
        expected: Address,
    ) -> Result<Address, LightClientError> {
        let recovered = self.recover_signer(chain_id)?;
        if recovered == expected {
            Ok(recovered)
        } else {
            Err(LightClientError::UnsafeSigner { expected, recovered })
        }
    }

    /// [`OpExecutionPayload::verify_block_hash`] with this envelope's parent beacon block root.
    pub fn verify_block_hash(&self) -> Result<B256, LightClientError> {
        self.payload.verify_block_hash(self.parent_beacon_block_root)
    }
}

/// `keccak256(bytes32(0) ‖ uint256_be(chain_id) ‖ keccak256(payload_bytes))`: the zero domain
/// reserves room for other message types; the chain id stops cross-chain replay.
pub fn signing_message(chain_id: u64, payload_bytes: &[u8]) -> B256 {
    let mut preimage = [0u8; 96];
    preimage[56..64].copy_from_slice(&chain_id.to_be_bytes());
    preimage[64..].copy_from_slice(keccak256(payload_bytes).as_slice());
    keccak256(preimage)
}

/// Recovers the signer of a 65-byte `r ‖ s ‖ y_parity` gossip signature over `message`.
pub fn recover_signer(signature: &[u8; 65], message: B256) -> Result<Address, LightClientError> {
    let [rs @ .., v] = signature;
    let parity = match v {
        0 | 27 => false,
        1 | 28 => true,
        // alloy would also read EIP-155 `v` values; the spec allows only a parity bit.
        other => {
            return Err(LightClientError::GossipSignature {
                reason: format!("y_parity byte {other} is not 0/1 (or 27/28)"),
            });
        }
    };
    Signature::from_bytes_and_parity(rs, parity)
        .recover_address_from_prehash(&message)
        .map_err(|e| LightClientError::GossipSignature { reason: e.to_string() })
}

/// The unsafe-block signer stored in [`UNSAFE_BLOCK_SIGNER_SLOT`]: the low 20 bytes of the word
/// (Solidity stores an `address` right-aligned).
pub fn unsafe_signer_from_slot(value: U256) -> Address {
    Address::from_word(B256::from(value))
}
