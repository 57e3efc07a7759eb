//! OP Stack execution payloads as gossiped: SSZ `ExecutionPayloadV1..V4` and the L2 header
//! (and so the block hash) each one commits to.
//!
//! The SSZ codec is strict (canonical offsets, list limits), so re-encoding a decoded payload
//! gives back exactly the bytes that were signed. [`OpExecutionPayload::verify_block_hash`]
//! binds every payload field to the block hash.

use alloy_consensus::{EMPTY_OMMER_ROOT_HASH, Header};
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, U256, b256};
use alloy_rlp::{BufMut, Encodable};
use alloy_trie::root::{ordered_trie_root, ordered_trie_root_encoded};
use ssz::{Decode, DecodeError, Encode, SszDecoderBuilder, SszEncoder};

use crate::LightClientError;

/// Isthmus L2 headers carry the EIP-7685 hash of an empty request list, `sha256("")`
/// (OP chains produce no execution-layer requests).
pub const ISTHMUS_REQUESTS_HASH: B256 =
    b256!("0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

/// `ExecutionPayload.extra_data` is a `ByteList[32]`.
const MAX_EXTRA_DATA_BYTES: usize = 32;
/// `ExecutionPayload.transactions` is a `List[Transaction, 2**20]`.
const MAX_TRANSACTIONS: usize = 1 << 20;
/// `ExecutionPayload.withdrawals` is a `List[Withdrawal, 16]`.
const MAX_WITHDRAWALS: usize = 16;
/// SSZ size of a `Withdrawal`: three `uint64` and an address.
const WITHDRAWAL_SSZ_LEN: usize = 8 + 8 + 20 + 8;

/// Which gossip topic (and so which payload layout) a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PayloadVersion {
    /// Bedrock/Regolith: `ExecutionPayloadV1`, topic `/optimism/<chain>/0/blocks`.
    V1,
    /// Canyon/Delta: adds withdrawals, topic `.../1/blocks`.
    V2,
    /// Ecotone: adds blob gas fields and a parent beacon block root, topic `.../2/blocks`.
    V3,
    /// Isthmus: adds the `withdrawals_root` (message-passer storage root), topic `.../3/blocks`.
    V4,
}

impl PayloadVersion {
    /// The gossip topic for this version on `chain_id`: `/optimism/{chain_id}/{0..3}/blocks`.
    pub fn topic(self, chain_id: u64) -> String {
        let index = match self {
            Self::V1 => 0,
            Self::V2 => 1,
            Self::V3 => 2,
            Self::V4 => 3,
        };
        format!("/optimism/{chain_id}/{index}/blocks")
    }

    /// Whether the message carries a parent beacon block root between signature and payload.
    pub const fn has_parent_beacon_block_root(self) -> bool {
        matches!(self, Self::V3 | Self::V4)
    }

    /// Length of the SSZ payload's fixed part (fields plus 4-byte offsets).
    const fn ssz_fixed_len(self) -> usize {
        // parent, fee recipient, state, receipts, bloom, randao, 4 x u64, extra_data offset,
        // base fee, block hash, transactions offset.
        const V1: usize = 32 + 20 + 32 + 32 + 256 + 32 + 4 * 8 + 4 + 32 + 32 + 4;
        match self {
            Self::V1 => V1,
            Self::V2 => V1 + 4,
            Self::V3 => V1 + 4 + 16,
            Self::V4 => V1 + 4 + 16 + 32,
        }
    }

    /// Name of the SSZ container, for errors.
    const fn ssz_name(self) -> &'static str {
        match self {
            Self::V1 => "ExecutionPayloadV1",
            Self::V2 => "ExecutionPayloadV2",
            Self::V3 => "ExecutionPayloadV3",
            Self::V4 => "ExecutionPayloadV4",
        }
    }
}

/// An EIP-4895 withdrawal as carried in `ExecutionPayloadV2+` (always empty on OP chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpWithdrawal {
    /// Monotonic withdrawal index.
    pub index: u64,
    /// Validator index.
    pub validator_index: u64,
    /// Recipient.
    pub address: Address,
    /// Amount in gwei.
    pub amount: u64,
}

impl OpWithdrawal {
    fn rlp_payload_length(&self) -> usize {
        self.index.length()
            + self.validator_index.length()
            + self.address.length()
            + self.amount.length()
    }
}

impl Encodable for OpWithdrawal {
    // The withdrawals trie stores `rlp([index, validator_index, address, amount])`.
    fn encode(&self, out: &mut dyn BufMut) {
        alloy_rlp::Header { list: true, payload_length: self.rlp_payload_length() }.encode(out);
        self.index.encode(out);
        self.validator_index.encode(out);
        self.address.encode(out);
        self.amount.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.rlp_payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

impl Encode for OpWithdrawal {
    fn is_ssz_fixed_len() -> bool {
        true
    }

    fn ssz_fixed_len() -> usize {
        WITHDRAWAL_SSZ_LEN
    }

    fn ssz_bytes_len(&self) -> usize {
        WITHDRAWAL_SSZ_LEN
    }

    fn ssz_append(&self, buf: &mut Vec<u8>) {
        self.index.ssz_append(buf);
        self.validator_index.ssz_append(buf);
        self.address.ssz_append(buf);
        self.amount.ssz_append(buf);
    }
}

impl Decode for OpWithdrawal {
    fn is_ssz_fixed_len() -> bool {
        true
    }

    fn ssz_fixed_len() -> usize {
        WITHDRAWAL_SSZ_LEN
    }

    fn from_ssz_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut builder = SszDecoderBuilder::new(bytes);
        builder.register_type::<u64>()?;
        builder.register_type::<u64>()?;
        builder.register_type::<Address>()?;
        builder.register_type::<u64>()?;
        let mut d = builder.build()?;
        Ok(Self {
            index: d.decode_next()?,
            validator_index: d.decode_next()?,
            address: d.decode_next()?,
            amount: d.decode_next()?,
        })
    }
}

/// An L2 execution payload of any gossip version.
///
/// The fork-specific fields are `Some` exactly for the versions that have them:
/// `withdrawals` from V2, `blob_gas_used`/`excess_blob_gas` from V3, `withdrawals_root` in V4.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpExecutionPayload {
    /// Parent block hash.
    pub parent_hash: B256,
    /// Fee recipient (header `beneficiary`).
    pub fee_recipient: Address,
    /// State root after the block.
    pub state_root: B256,
    /// Receipts trie root.
    pub receipts_root: B256,
    /// Logs bloom.
    pub logs_bloom: Bloom,
    /// `prev_randao` (header `mix_hash`).
    pub prev_randao: B256,
    /// Block number.
    pub block_number: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Timestamp (seconds).
    pub timestamp: u64,
    /// Extra data, at most 32 bytes.
    pub extra_data: Bytes,
    /// Base fee per gas (SSZ `uint256`, little-endian on the wire).
    pub base_fee_per_gas: U256,
    /// The block hash the payload claims; see [`Self::verify_block_hash`].
    pub block_hash: B256,
    /// EIP-2718 encoded transactions.
    pub transactions: Vec<Bytes>,
    /// Withdrawals (V2+).
    pub withdrawals: Option<Vec<OpWithdrawal>>,
    /// Blob gas used (V3+).
    pub blob_gas_used: Option<u64>,
    /// Excess blob gas (V3+).
    pub excess_blob_gas: Option<u64>,
    /// Isthmus: the `L2ToL1MessagePasser` storage root, put in the header's `withdrawals_root` (V4).
    pub withdrawals_root: Option<B256>,
}

impl OpExecutionPayload {
    /// The version whose layout this payload has, inferred from the newest fork field present.
    ///
    /// Errors with `MissingField` when a field that version requires is `None` (e.g. a
    /// `withdrawals_root` without blob gas fields), so a half-filled payload is never hashed.
    pub fn version(&self) -> Result<PayloadVersion, LightClientError> {
        let version = if self.withdrawals_root.is_some() {
            PayloadVersion::V4
        } else if self.blob_gas_used.is_some() || self.excess_blob_gas.is_some() {
            PayloadVersion::V3
        } else if self.withdrawals.is_some() {
            PayloadVersion::V2
        } else {
            PayloadVersion::V1
        };
        self.check_shape(version)?;
        Ok(version)
    }

    /// Checks that exactly `version`'s fields are present and within the SSZ list limits, so
    /// that encoding is the exact inverse of decoding.
    fn check_shape(&self, version: PayloadVersion) -> Result<(), LightClientError> {
        let what = version.ssz_name();
        let expect = |present: bool, wanted: bool, field: &'static str, extra: &'static str| match (
            present, wanted,
        ) {
            (false, true) => Err(LightClientError::MissingField { what, field }),
            (true, false) => Err(LightClientError::UnexpectedField { what: extra }),
            _ => Ok(()),
        };
        let (v2, v3) = (version >= PayloadVersion::V2, version >= PayloadVersion::V3);
        expect(self.withdrawals.is_some(), v2, "withdrawals", "withdrawals before Canyon (V2)")?;
        expect(self.blob_gas_used.is_some(), v3, "blob_gas_used", "blob_gas_used before V3")?;
        expect(self.excess_blob_gas.is_some(), v3, "excess_blob_gas", "excess_blob_gas before V3")?;
        let v4 = version == PayloadVersion::V4;
        expect(
            self.withdrawals_root.is_some(),
            v4,
            "withdrawals_root",
            "withdrawals_root before V4",
        )?;
        let too_long = |field: &str, len: usize, max: usize| {
            Err(LightClientError::Ssz {
                what,
                reason: format!("{field}: {len} exceeds limit {max}"),
            })
        };
        if self.extra_data.len() > MAX_EXTRA_DATA_BYTES {
            return too_long("extra_data bytes", self.extra_data.len(), MAX_EXTRA_DATA_BYTES);
        }
        if self.transactions.len() > MAX_TRANSACTIONS {
            return too_long("transactions", self.transactions.len(), MAX_TRANSACTIONS);
        }
        match &self.withdrawals {
            Some(w) if w.len() > MAX_WITHDRAWALS => {
                too_long("withdrawals", w.len(), MAX_WITHDRAWALS)
            }
            _ => Ok(()),
        }
    }

    /// Decodes the SSZ `ExecutionPayloadV{1..4}` (no signature, no parent beacon root).
    pub fn from_ssz_bytes(version: PayloadVersion, bytes: &[u8]) -> Result<Self, LightClientError> {
        Self::decode_ssz(version, bytes).map_err(|e| LightClientError::Ssz {
            what: version.ssz_name(),
            reason: format!("{e:?}"),
        })
    }

    fn decode_ssz(version: PayloadVersion, bytes: &[u8]) -> Result<Self, DecodeError> {
        let (v2, v3) = (version >= PayloadVersion::V2, version >= PayloadVersion::V3);
        let v4 = version == PayloadVersion::V4;
        let mut b = SszDecoderBuilder::new(bytes);
        b.register_type::<B256>()?;
        b.register_type::<Address>()?;
        b.register_type::<B256>()?;
        b.register_type::<B256>()?;
        b.register_type::<Bloom>()?;
        b.register_type::<B256>()?;
        for _ in 0..4 {
            b.register_type::<u64>()?;
        }
        b.register_type::<Bytes>()?;
        b.register_type::<U256>()?;
        b.register_type::<B256>()?;
        b.register_type::<Vec<Bytes>>()?;
        if v2 {
            b.register_type::<Vec<OpWithdrawal>>()?;
        }
        if v3 {
            b.register_type::<u64>()?;
            b.register_type::<u64>()?;
        }
        if v4 {
            b.register_type::<B256>()?;
        }
        // Every `decode_next` below matches one `register_type` above (it panics otherwise).
        let mut d = b.build()?;
        let mut payload = Self {
            parent_hash: d.decode_next()?,
            fee_recipient: d.decode_next()?,
            state_root: d.decode_next()?,
            receipts_root: d.decode_next()?,
            logs_bloom: d.decode_next()?,
            prev_randao: d.decode_next()?,
            block_number: d.decode_next()?,
            gas_limit: d.decode_next()?,
            gas_used: d.decode_next()?,
            timestamp: d.decode_next()?,
            extra_data: d.decode_next()?,
            base_fee_per_gas: d.decode_next()?,
            block_hash: d.decode_next()?,
            transactions: d.decode_next_with(|b| {
                ssz::decode_list_of_variable_length_items(b, Some(MAX_TRANSACTIONS))
            })?,
            ..Self::default()
        };
        if payload.extra_data.len() > MAX_EXTRA_DATA_BYTES {
            return Err(DecodeError::BytesInvalid(format!(
                "extra_data is {} bytes, limit {MAX_EXTRA_DATA_BYTES}",
                payload.extra_data.len()
            )));
        }
        if v2 {
            payload.withdrawals = Some(d.decode_next_with(decode_withdrawals)?);
        }
        if v3 {
            payload.blob_gas_used = Some(d.decode_next()?);
            payload.excess_blob_gas = Some(d.decode_next()?);
        }
        if v4 {
            payload.withdrawals_root = Some(d.decode_next()?);
        }
        Ok(payload)
    }

    /// Encodes the SSZ `ExecutionPayloadV{1..4}`; the exact inverse of [`Self::from_ssz_bytes`].
    ///
    /// Errors when the payload's fields do not match `version` or exceed the SSZ list limits.
    pub fn to_ssz_bytes(&self, version: PayloadVersion) -> Result<Vec<u8>, LightClientError> {
        self.check_shape(version)?;
        let variable = self.extra_data.len()
            + self.transactions.iter().map(|tx| 4 + tx.len()).sum::<usize>()
            + self.withdrawals.as_ref().map_or(0, |w| w.len() * WITHDRAWAL_SSZ_LEN);
        let total = version.ssz_fixed_len() + variable;
        // SSZ offsets are u32; larger containers cannot be encoded (and never fit a message).
        if u32::try_from(total).is_err() {
            return Err(LightClientError::Ssz {
                what: version.ssz_name(),
                reason: format!("{total} bytes do not fit 32-bit SSZ offsets"),
            });
        }
        let mut buf = Vec::with_capacity(total);
        let mut e = SszEncoder::container(&mut buf, version.ssz_fixed_len());
        e.append(&self.parent_hash);
        e.append(&self.fee_recipient);
        e.append(&self.state_root);
        e.append(&self.receipts_root);
        e.append(&self.logs_bloom);
        e.append(&self.prev_randao);
        e.append(&self.block_number);
        e.append(&self.gas_limit);
        e.append(&self.gas_used);
        e.append(&self.timestamp);
        e.append(&self.extra_data);
        e.append(&self.base_fee_per_gas);
        e.append(&self.block_hash);
        e.append(&self.transactions);
        // `check_shape` guaranteed these are `Some` exactly when `version` has them.
        if let Some(withdrawals) = &self.withdrawals {
            e.append(withdrawals);
        }
        if let (Some(used), Some(excess)) = (self.blob_gas_used, self.excess_blob_gas) {
            e.append(&used);
            e.append(&excess);
        }
        if let Some(root) = &self.withdrawals_root {
            e.append(root);
        }
        e.finalize();
        Ok(buf)
    }

    /// The L2 block header this payload commits to.
    ///
    /// `parent_beacon_block_root` must be `Some` exactly for V3/V4 payloads (it travels beside
    /// the payload, not in it). Errors when the payload is half-filled, when a V4 payload has a
    /// non-empty withdrawals list (Isthmus headers do not commit to it, so it could be forged
    /// without changing the block hash), or when the base fee does not fit a header's `u64`.
    pub fn to_header(
        &self,
        parent_beacon_block_root: Option<B256>,
    ) -> Result<Header, LightClientError> {
        let version = self.version()?;
        let what = version.ssz_name();
        match (version.has_parent_beacon_block_root(), parent_beacon_block_root) {
            (true, None) => {
                return Err(LightClientError::MissingField {
                    what,
                    field: "parent_beacon_block_root",
                });
            }
            (false, Some(_)) => {
                return Err(LightClientError::UnexpectedField {
                    what: "parent_beacon_block_root before V3",
                });
            }
            _ => {}
        }
        let base_fee_per_gas =
            u64::try_from(self.base_fee_per_gas).map_err(|_| LightClientError::Ssz {
                what,
                reason: format!("base_fee_per_gas {} does not fit u64", self.base_fee_per_gas),
            })?;
        let withdrawals_root = match (version, &self.withdrawals) {
            (PayloadVersion::V4, Some(w)) if !w.is_empty() => {
                return Err(LightClientError::UnexpectedField {
                    what: "withdrawals in an Isthmus (V4) payload",
                });
            }
            // Isthmus repurposes the header field for the message-passer storage root.
            (PayloadVersion::V4, _) => self.withdrawals_root,
            (_, Some(w)) => Some(ordered_trie_root(w)),
            (_, None) => None,
        };
        Ok(Header {
            parent_hash: self.parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: self.fee_recipient,
            state_root: self.state_root,
            // The trie values are the EIP-2718 bytes exactly as carried in the payload.
            transactions_root: ordered_trie_root_encoded(&self.transactions),
            receipts_root: self.receipts_root,
            logs_bloom: self.logs_bloom,
            difficulty: U256::ZERO,
            number: self.block_number,
            gas_limit: self.gas_limit,
            gas_used: self.gas_used,
            timestamp: self.timestamp,
            extra_data: self.extra_data.clone(),
            mix_hash: self.prev_randao,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(base_fee_per_gas),
            withdrawals_root,
            blob_gas_used: self.blob_gas_used,
            excess_blob_gas: self.excess_blob_gas,
            parent_beacon_block_root,
            requests_hash: (version == PayloadVersion::V4).then_some(ISTHMUS_REQUESTS_HASH),
            ..Header::default()
        })
    }

    /// Checks `keccak256(rlp(self.to_header(..))) == self.block_hash`; returns the hash.
    ///
    /// Passing means every payload field is the one the block hash commits to.
    pub fn verify_block_hash(
        &self,
        parent_beacon_block_root: Option<B256>,
    ) -> Result<B256, LightClientError> {
        let computed = self.to_header(parent_beacon_block_root)?.hash_slow();
        if computed == self.block_hash {
            Ok(computed)
        } else {
            Err(LightClientError::HeaderHash { expected: self.block_hash, computed })
        }
    }
}

/// `List[Withdrawal, 16]` of fixed-size items: the byte length alone fixes the count.
fn decode_withdrawals(bytes: &[u8]) -> Result<Vec<OpWithdrawal>, DecodeError> {
    if !bytes.len().is_multiple_of(WITHDRAWAL_SSZ_LEN) {
        return Err(DecodeError::InvalidByteLength {
            len: bytes.len(),
            expected: bytes.len() / WITHDRAWAL_SSZ_LEN * WITHDRAWAL_SSZ_LEN,
        });
    }
    if bytes.len() / WITHDRAWAL_SSZ_LEN > MAX_WITHDRAWALS {
        return Err(DecodeError::BytesInvalid(format!(
            "{} withdrawals exceed the limit {MAX_WITHDRAWALS}",
            bytes.len() / WITHDRAWAL_SSZ_LEN
        )));
    }
    bytes.chunks_exact(WITHDRAWAL_SSZ_LEN).map(OpWithdrawal::from_ssz_bytes).collect()
}
