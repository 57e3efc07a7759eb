//! Light-client containers (Capella onwards), fork-agnostic in memory.
//!
//! Each container is decoded according to the fork that *produced* it (which fixes branch
//! lengths and whether the execution header has blob fields), then held in one shape for
//! every fork. Hashing the execution header depends on the fork of the header's *slot*
//! (`get_lc_execution_root`), which is why it takes the network config.

use alloy_primitives::{Address, B256, Bytes, FixedBytes, U256};
use ssz::{Decode, DecodeError, SszDecoderBuilder, SszEncoder};

use super::config::{Fork, NetworkConfig};
use super::ssz::{
    address_root, bitvector_root, byte_list_root, byte_vector_root, container_root, decode_branch,
    decode_fixed, decode_u64, encode_branch, ssz_err, u64_root, u256_root,
};
use crate::error::LightClientError;

/// A compressed BLS public key.
pub type BlsPublicKey = FixedBytes<48>;
/// A compressed BLS signature.
pub type BlsSignature = FixedBytes<96>;

/// Depth of `execution_branch` (the execution payload's place in the block body).
pub const EXECUTION_BRANCH_DEPTH: usize = 4;
/// `MAX_EXTRA_DATA_BYTES`.
pub const MAX_EXTRA_DATA_BYTES: usize = 32;

/// `BeaconBlockHeader`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BeaconBlockHeader {
    /// Slot of the block.
    pub slot: u64,
    /// Index of the proposer.
    pub proposer_index: u64,
    /// Root of the parent block.
    pub parent_root: B256,
    /// Root of the post-state; light-client branches prove against it.
    pub state_root: B256,
    /// Root of the block body; the execution branch proves against it.
    pub body_root: B256,
}

impl BeaconBlockHeader {
    /// SSZ size.
    pub const SSZ_LEN: usize = 112;

    /// `hash_tree_root(header)`: the block root signatures and checkpoints refer to.
    pub fn hash_tree_root(&self) -> B256 {
        container_root(&[
            u64_root(self.slot),
            u64_root(self.proposer_index),
            self.parent_root,
            self.state_root,
            self.body_root,
        ])
    }

    fn from_ssz(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b: [u8; Self::SSZ_LEN] = decode_fixed(bytes)?;
        Ok(BeaconBlockHeader {
            slot: decode_u64(&b[..8])?,
            proposer_index: decode_u64(&b[8..16])?,
            parent_root: B256::from_slice(&b[16..48]),
            state_root: B256::from_slice(&b[48..80]),
            body_root: B256::from_slice(&b[80..112]),
        })
    }

    fn write_ssz(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.slot.to_le_bytes());
        buf.extend_from_slice(&self.proposer_index.to_le_bytes());
        buf.extend_from_slice(self.parent_root.as_slice());
        buf.extend_from_slice(self.state_root.as_slice());
        buf.extend_from_slice(self.body_root.as_slice());
    }
}

/// `ExecutionPayloadHeader` (Capella layout plus Deneb's blob gas fields, zero before Deneb).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionPayloadHeader {
    /// Parent execution block hash.
    pub parent_hash: B256,
    /// Fee recipient.
    pub fee_recipient: Address,
    /// Execution state root: what account and storage proofs verify against.
    pub state_root: B256,
    /// Receipts root.
    pub receipts_root: B256,
    /// Logs bloom (256 bytes).
    pub logs_bloom: Bytes,
    /// `prev_randao`.
    pub prev_randao: B256,
    /// Execution block number.
    pub block_number: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Timestamp.
    pub timestamp: u64,
    /// Extra data (at most 32 bytes).
    pub extra_data: Bytes,
    /// Base fee per gas.
    pub base_fee_per_gas: U256,
    /// Execution block hash.
    pub block_hash: B256,
    /// Transactions root.
    pub transactions_root: B256,
    /// Withdrawals root.
    pub withdrawals_root: B256,
    /// Blob gas used (Deneb onwards).
    pub blob_gas_used: u64,
    /// Excess blob gas (Deneb onwards).
    pub excess_blob_gas: u64,
}

impl ExecutionPayloadHeader {
    /// `hash_tree_root` in the layout of `fork` (Capella: 15 fields; Deneb+: 17).
    pub fn hash_tree_root(&self, fork: Fork) -> B256 {
        let mut fields = vec![
            self.parent_hash,
            address_root(self.fee_recipient),
            self.state_root,
            self.receipts_root,
            byte_vector_root(&self.logs_bloom),
            self.prev_randao,
            u64_root(self.block_number),
            u64_root(self.gas_limit),
            u64_root(self.gas_used),
            u64_root(self.timestamp),
            byte_list_root(&self.extra_data, MAX_EXTRA_DATA_BYTES),
            u256_root(self.base_fee_per_gas),
            self.block_hash,
            self.transactions_root,
            self.withdrawals_root,
        ];
        if fork >= Fork::Deneb {
            fields.push(u64_root(self.blob_gas_used));
            fields.push(u64_root(self.excess_blob_gas));
        }
        container_root(&fields)
    }

    fn from_ssz(bytes: &[u8], fork: Fork) -> Result<Self, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        for len in [32, 20, 32, 32, 256, 32, 8, 8, 8, 8] {
            b.register_type_parameterized(true, len)?;
        }
        b.register_anonymous_variable_length_item()?;
        for len in [32, 32, 32, 32] {
            b.register_type_parameterized(true, len)?;
        }
        if fork >= Fork::Deneb {
            b.register_type_parameterized(true, 8)?;
            b.register_type_parameterized(true, 8)?;
        }
        let mut d = b.build()?;
        let root = |b: &[u8]| decode_fixed::<32>(b).map(B256::from);
        let mut h = ExecutionPayloadHeader {
            parent_hash: d.decode_next_with(root)?,
            fee_recipient: d.decode_next_with(|b| decode_fixed::<20>(b).map(Address::from))?,
            state_root: d.decode_next_with(root)?,
            receipts_root: d.decode_next_with(root)?,
            logs_bloom: d.decode_next_with(|b| Ok(Bytes::copy_from_slice(b)))?,
            prev_randao: d.decode_next_with(root)?,
            block_number: d.decode_next_with(decode_u64)?,
            gas_limit: d.decode_next_with(decode_u64)?,
            gas_used: d.decode_next_with(decode_u64)?,
            timestamp: d.decode_next_with(decode_u64)?,
            extra_data: d.decode_next_with(|b| {
                if b.len() > MAX_EXTRA_DATA_BYTES {
                    return Err(DecodeError::BytesInvalid(format!(
                        "extra_data of {} bytes exceeds {MAX_EXTRA_DATA_BYTES}",
                        b.len()
                    )));
                }
                Ok(Bytes::copy_from_slice(b))
            })?,
            base_fee_per_gas: d.decode_next_with(U256::from_ssz_bytes)?,
            block_hash: d.decode_next_with(root)?,
            transactions_root: d.decode_next_with(root)?,
            withdrawals_root: d.decode_next_with(root)?,
            ..Default::default()
        };
        if fork >= Fork::Deneb {
            h.blob_gas_used = d.decode_next_with(decode_u64)?;
            h.excess_blob_gas = d.decode_next_with(decode_u64)?;
        }
        Ok(h)
    }

    fn write_ssz(&self, buf: &mut Vec<u8>, fork: Fork) {
        let fixed = 32 + 20 + 32 + 32 + 256 + 32 + 4 * 8 + 4 + 32 * 4;
        let fixed = if fork >= Fork::Deneb { fixed + 16 } else { fixed };
        let mut e = SszEncoder::container(buf, fixed);
        e.append(&self.parent_hash);
        e.append(&self.fee_recipient);
        e.append(&self.state_root);
        e.append(&self.receipts_root);
        e.append_parameterized(true, |b| b.extend_from_slice(&self.logs_bloom));
        e.append(&self.prev_randao);
        e.append(&self.block_number);
        e.append(&self.gas_limit);
        e.append(&self.gas_used);
        e.append(&self.timestamp);
        e.append_parameterized(false, |b| b.extend_from_slice(&self.extra_data));
        e.append(&self.base_fee_per_gas);
        e.append(&self.block_hash);
        e.append(&self.transactions_root);
        e.append(&self.withdrawals_root);
        if fork >= Fork::Deneb {
            e.append(&self.blob_gas_used);
            e.append(&self.excess_blob_gas);
        }
        e.finalize();
    }
}

/// `LightClientHeader` (Capella onwards): a beacon header plus the execution payload header
/// proven against its body root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LightClientHeader {
    /// The beacon block header.
    pub beacon: BeaconBlockHeader,
    /// The execution payload header of that block.
    pub execution: ExecutionPayloadHeader,
    /// Branch from `execution` to `beacon.body_root`.
    pub execution_branch: Vec<B256>,
}

impl LightClientHeader {
    /// An all-zero header of `fork`'s shape (the spec's `LightClientHeader()`).
    pub fn empty() -> Self {
        LightClientHeader {
            execution: ExecutionPayloadHeader {
                logs_bloom: Bytes::from(vec![0u8; 256]),
                ..Default::default()
            },
            execution_branch: vec![B256::ZERO; EXECUTION_BRANCH_DEPTH],
            ..Default::default()
        }
    }

    /// Whether this is the all-zero header.
    pub fn is_empty(&self) -> bool {
        *self == Self::empty()
    }

    /// `get_lc_execution_root`: the execution header's root in the layout of the fork at
    /// this header's own slot.
    pub fn execution_root(&self, cfg: &NetworkConfig) -> B256 {
        let fork = cfg.fork_at_slot(self.beacon.slot);
        if fork < Fork::Capella {
            return B256::ZERO;
        }
        self.execution.hash_tree_root(fork)
    }

    fn from_ssz(bytes: &[u8], fork: Fork) -> Result<Self, DecodeError> {
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type_parameterized(true, BeaconBlockHeader::SSZ_LEN)?;
        b.register_anonymous_variable_length_item()?;
        b.register_type_parameterized(true, EXECUTION_BRANCH_DEPTH * 32)?;
        let mut d = b.build()?;
        Ok(LightClientHeader {
            beacon: d.decode_next_with(BeaconBlockHeader::from_ssz)?,
            execution: d.decode_next_with(|b| ExecutionPayloadHeader::from_ssz(b, fork))?,
            execution_branch: d.decode_next_with(|b| decode_branch(b, EXECUTION_BRANCH_DEPTH))?,
        })
    }

    fn write_ssz(&self, buf: &mut Vec<u8>, fork: Fork) {
        let mut e = SszEncoder::container(buf, BeaconBlockHeader::SSZ_LEN + 4 + 4 * 32);
        e.append_parameterized(true, |b| self.beacon.write_ssz(b));
        e.append_parameterized(false, |b| self.execution.write_ssz(b, fork));
        e.append_parameterized(true, |b| encode_branch(b, &self.execution_branch));
        e.finalize();
    }
}

/// `SyncCommittee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCommittee {
    /// Member public keys, in committee order (participation bits index into this).
    pub pubkeys: Vec<BlsPublicKey>,
    /// Aggregate of all members (part of the committee's root, not used to verify).
    pub aggregate_pubkey: BlsPublicKey,
}

impl SyncCommittee {
    /// The all-zero committee of `size` members (the spec's `SyncCommittee()`).
    pub fn empty(size: usize) -> Self {
        SyncCommittee {
            pubkeys: vec![BlsPublicKey::ZERO; size],
            aggregate_pubkey: BlsPublicKey::ZERO,
        }
    }

    /// Whether this is the all-zero committee.
    pub fn is_empty(&self) -> bool {
        self.aggregate_pubkey.is_zero() && self.pubkeys.iter().all(|k| k.is_zero())
    }

    /// `hash_tree_root(sync_committee)`: what the sync-committee branches prove.
    pub fn hash_tree_root(&self) -> B256 {
        let keys: Vec<B256> = self.pubkeys.iter().map(|k| byte_vector_root(k.as_slice())).collect();
        container_root(&[container_root(&keys), byte_vector_root(self.aggregate_pubkey.as_slice())])
    }

    fn ssz_len(size: usize) -> usize {
        (size + 1) * 48
    }

    fn from_ssz(bytes: &[u8], size: usize) -> Result<Self, DecodeError> {
        if bytes.len() != Self::ssz_len(size) {
            return Err(DecodeError::InvalidByteLength {
                len: bytes.len(),
                expected: Self::ssz_len(size),
            });
        }
        let mut keys: Vec<BlsPublicKey> =
            bytes.chunks_exact(48).map(BlsPublicKey::from_slice).collect();
        let aggregate_pubkey = keys.pop().unwrap_or_default();
        Ok(SyncCommittee { pubkeys: keys, aggregate_pubkey })
    }

    fn write_ssz(&self, buf: &mut Vec<u8>) {
        for k in self.pubkeys.iter().chain(std::iter::once(&self.aggregate_pubkey)) {
            buf.extend_from_slice(k.as_slice());
        }
    }
}

/// `SyncAggregate`: which committee members signed, and their aggregate signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAggregate {
    /// `Bitvector[SYNC_COMMITTEE_SIZE]`, packed little-endian within each byte.
    pub sync_committee_bits: Vec<u8>,
    /// Aggregate BLS signature of the participants.
    pub sync_committee_signature: BlsSignature,
}

impl SyncAggregate {
    /// Whether member `i` participated.
    pub fn bit(&self, i: usize) -> bool {
        self.sync_committee_bits.get(i / 8).is_some_and(|b| (b >> (i % 8)) & 1 == 1)
    }

    /// Number of participants.
    pub fn participants(&self) -> u64 {
        self.sync_committee_bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Committee size implied by the bitvector.
    pub fn size(&self) -> usize {
        self.sync_committee_bits.len() * 8
    }

    /// `hash_tree_root(sync_aggregate)`.
    pub fn hash_tree_root(&self) -> B256 {
        container_root(&[
            bitvector_root(&self.sync_committee_bits, self.size()),
            byte_vector_root(self.sync_committee_signature.as_slice()),
        ])
    }

    fn from_ssz(bytes: &[u8], size: usize) -> Result<Self, DecodeError> {
        let nbytes = size / 8;
        if bytes.len() != nbytes + 96 {
            return Err(DecodeError::InvalidByteLength { len: bytes.len(), expected: nbytes + 96 });
        }
        Ok(SyncAggregate {
            sync_committee_bits: bytes[..nbytes].to_vec(),
            sync_committee_signature: BlsSignature::from_slice(&bytes[nbytes..]),
        })
    }
}

/// `LightClientBootstrap`: the header at a trusted checkpoint and its current committee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LightClientBootstrap {
    /// The checkpoint header.
    pub header: LightClientHeader,
    /// The sync committee of the checkpoint's period.
    pub current_sync_committee: SyncCommittee,
    /// Branch from the committee to `header.beacon.state_root`.
    pub current_sync_committee_branch: Vec<B256>,
}

/// `LightClientUpdate`: a signed attested header, optionally with the next committee and
/// a finalized header. Finality and optimistic updates are converted into this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LightClientUpdate {
    /// The header the sync committee signed.
    pub attested_header: LightClientHeader,
    /// The next period's committee, or the empty committee.
    pub next_sync_committee: SyncCommittee,
    /// Branch from `next_sync_committee` to the attested state root, or zeros.
    pub next_sync_committee_branch: Vec<B256>,
    /// The finalized header in the attested state, or the empty header.
    pub finalized_header: LightClientHeader,
    /// Branch from the finalized root to the attested state root, or zeros.
    pub finality_branch: Vec<B256>,
    /// The committee's signature over the attested header.
    pub sync_aggregate: SyncAggregate,
    /// Slot at which the signature was made (selects committee and fork version).
    pub signature_slot: u64,
}

/// A bootstrap or update together with the fork its container was produced in.
pub trait ForkedSsz: Sized {
    /// Container name for errors.
    const NAME: &'static str;
    /// Decodes SSZ bytes of the container as produced in `fork`.
    fn from_ssz(
        bytes: &[u8],
        fork: Fork,
        sync_committee_size: usize,
    ) -> Result<Self, LightClientError>;
    /// Encodes the container in `fork`'s layout.
    fn to_ssz(&self, fork: Fork) -> Vec<u8>;
}

fn check_fork(fork: Fork) -> Result<(), LightClientError> {
    if fork < Fork::Capella {
        return Err(LightClientError::UnsupportedFork { fork: fork.name().to_owned() });
    }
    Ok(())
}

impl ForkedSsz for LightClientBootstrap {
    const NAME: &'static str = "LightClientBootstrap";

    fn from_ssz(bytes: &[u8], fork: Fork, size: usize) -> Result<Self, LightClientError> {
        check_fork(fork)?;
        let depth = fork.sync_committee_depth();
        let decode = || -> Result<Self, DecodeError> {
            let mut b = SszDecoderBuilder::new(bytes);
            b.register_anonymous_variable_length_item()?;
            b.register_type_parameterized(true, SyncCommittee::ssz_len(size))?;
            b.register_type_parameterized(true, depth * 32)?;
            let mut d = b.build()?;
            Ok(LightClientBootstrap {
                header: d.decode_next_with(|b| LightClientHeader::from_ssz(b, fork))?,
                current_sync_committee: d.decode_next_with(|b| SyncCommittee::from_ssz(b, size))?,
                current_sync_committee_branch: d.decode_next_with(|b| decode_branch(b, depth))?,
            })
        };
        decode().map_err(ssz_err(Self::NAME))
    }

    fn to_ssz(&self, fork: Fork) -> Vec<u8> {
        let mut buf = Vec::new();
        let fixed = 4
            + SyncCommittee::ssz_len(self.current_sync_committee.pubkeys.len())
            + 32 * self.current_sync_committee_branch.len();
        let mut e = SszEncoder::container(&mut buf, fixed);
        e.append_parameterized(false, |b| self.header.write_ssz(b, fork));
        e.append_parameterized(true, |b| self.current_sync_committee.write_ssz(b));
        e.append_parameterized(true, |b| encode_branch(b, &self.current_sync_committee_branch));
        e.finalize();
        buf
    }
}

impl ForkedSsz for LightClientUpdate {
    const NAME: &'static str = "LightClientUpdate";

    fn from_ssz(bytes: &[u8], fork: Fork, size: usize) -> Result<Self, LightClientError> {
        check_fork(fork)?;
        let (sc_depth, fin_depth) = (fork.sync_committee_depth(), fork.finality_depth());
        let decode = || -> Result<Self, DecodeError> {
            let mut b = SszDecoderBuilder::new(bytes);
            b.register_anonymous_variable_length_item()?;
            b.register_type_parameterized(true, SyncCommittee::ssz_len(size))?;
            b.register_type_parameterized(true, sc_depth * 32)?;
            b.register_anonymous_variable_length_item()?;
            b.register_type_parameterized(true, fin_depth * 32)?;
            b.register_type_parameterized(true, size / 8 + 96)?;
            b.register_type::<u64>()?;
            let mut d = b.build()?;
            Ok(LightClientUpdate {
                attested_header: d.decode_next_with(|b| LightClientHeader::from_ssz(b, fork))?,
                next_sync_committee: d.decode_next_with(|b| SyncCommittee::from_ssz(b, size))?,
                next_sync_committee_branch: d.decode_next_with(|b| decode_branch(b, sc_depth))?,
                finalized_header: d.decode_next_with(|b| LightClientHeader::from_ssz(b, fork))?,
                finality_branch: d.decode_next_with(|b| decode_branch(b, fin_depth))?,
                sync_aggregate: d.decode_next_with(|b| SyncAggregate::from_ssz(b, size))?,
                signature_slot: d.decode_next()?,
            })
        };
        decode().map_err(ssz_err(Self::NAME))
    }

    fn to_ssz(&self, fork: Fork) -> Vec<u8> {
        let mut buf = Vec::new();
        let size = self.next_sync_committee.pubkeys.len();
        let fixed = 4
            + SyncCommittee::ssz_len(size)
            + 32 * self.next_sync_committee_branch.len()
            + 4
            + 32 * self.finality_branch.len()
            + self.sync_aggregate.sync_committee_bits.len()
            + 96
            + 8;
        let mut e = SszEncoder::container(&mut buf, fixed);
        e.append_parameterized(false, |b| self.attested_header.write_ssz(b, fork));
        e.append_parameterized(true, |b| self.next_sync_committee.write_ssz(b));
        e.append_parameterized(true, |b| encode_branch(b, &self.next_sync_committee_branch));
        e.append_parameterized(false, |b| self.finalized_header.write_ssz(b, fork));
        e.append_parameterized(true, |b| encode_branch(b, &self.finality_branch));
        e.append_parameterized(true, |b| {
            b.extend_from_slice(&self.sync_aggregate.sync_committee_bits);
            b.extend_from_slice(self.sync_aggregate.sync_committee_signature.as_slice());
        });
        e.append(&self.signature_slot);
        e.finalize();
        buf
    }
}

impl LightClientUpdate {
    /// `is_sync_committee_update`: the next-committee branch is not all zeros.
    pub fn is_sync_committee_update(&self) -> bool {
        self.next_sync_committee_branch.iter().any(|b| !b.is_zero())
    }

    /// `is_finality_update`: the finality branch is not all zeros.
    pub fn is_finality_update(&self) -> bool {
        self.finality_branch.iter().any(|b| !b.is_zero())
    }

    /// A finality update (`LightClientFinalityUpdate`) in update form.
    pub fn from_finality(
        attested_header: LightClientHeader,
        finalized_header: LightClientHeader,
        finality_branch: Vec<B256>,
        sync_aggregate: SyncAggregate,
        signature_slot: u64,
        fork: Fork,
    ) -> Self {
        let size = sync_aggregate.size();
        LightClientUpdate {
            attested_header,
            next_sync_committee: SyncCommittee::empty(size),
            next_sync_committee_branch: vec![B256::ZERO; fork.sync_committee_depth()],
            finalized_header,
            finality_branch,
            sync_aggregate,
            signature_slot,
        }
    }

    /// An optimistic update (`LightClientOptimisticUpdate`) in update form.
    pub fn from_optimistic(
        attested_header: LightClientHeader,
        sync_aggregate: SyncAggregate,
        signature_slot: u64,
        fork: Fork,
    ) -> Self {
        Self::from_finality(
            attested_header,
            LightClientHeader::empty(),
            vec![B256::ZERO; fork.finality_depth()],
            sync_aggregate,
            signature_slot,
            fork,
        )
    }
}
