//! Execution chains (L1 or L2) as a map of block number → (state, header), an
//! `ExecutionRpc` double serving them, and the L2 block/payload/gossip builders.

use std::cell::Cell;
use std::collections::BTreeMap;

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, Bloom, Bytes, U256, address};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use k256::ecdsa::SigningKey;
use lorad_lightclient::LightClientError;
use lorad_lightclient::op::{
    GossipEnvelope, L2_TO_L1_MESSAGE_PASSER, OpExecutionPayload, PayloadVersion, output_root_v0,
};
use lorad_lightclient::rpc::ExecutionRpc;

use super::mpt::State;

/// One block: its post-state and header.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) state: State,
    pub(crate) header: Header,
}

impl Block {
    /// The v0 output root of an L2 block (message-passer storage root from the state).
    pub(crate) fn output_root(&self) -> B256 {
        output_root_v0(
            self.header.state_root,
            self.state.storage_root(L2_TO_L1_MESSAGE_PASSER),
            self.header.hash_slow(),
        )
    }
}

/// A chain of blocks by number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    pub(crate) blocks: BTreeMap<u64, Block>,
}

impl Chain {
    /// Block `n` (panics if unknown: a test bug).
    pub(crate) fn block(&self, n: u64) -> &Block {
        &self.blocks[&n]
    }
}

/// How a dishonest RPC bends its `eth_getProof` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Lie {
    /// Honest.
    #[default]
    None,
    /// Claims a different value for every requested slot (the proof is the honest one).
    StorageValue,
    /// Answers with the proof of another block's state.
    OtherBlock(u64),
}

/// `ExecutionRpc` over a [`Chain`], counting calls.
#[derive(Debug)]
pub(crate) struct Rpc<'a> {
    chain: &'a Chain,
    calls: Cell<usize>,
    pub(crate) lie: Cell<Lie>,
}

impl<'a> Rpc<'a> {
    pub(crate) fn new(chain: &'a Chain) -> Self {
        Rpc { chain, calls: Cell::new(0), lie: Cell::new(Lie::None) }
    }

    /// Calls served so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.get()
    }

    fn block(&self, n: u64) -> Result<&'a Block, LightClientError> {
        self.calls.set(self.calls.get() + 1);
        self.chain.blocks.get(&n).ok_or(LightClientError::MissingResult { what: "synthetic block" })
    }
}

impl ExecutionRpc for Rpc<'_> {
    fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> Result<EIP1186AccountProofResponse, LightClientError> {
        let b = self.block(block)?;
        Ok(match self.lie.get() {
            Lie::None => b.state.proof(address, slots),
            Lie::StorageValue => {
                let mut p = b.state.proof(address, slots);
                for s in &mut p.storage_proof {
                    s.value = s.value.wrapping_add(U256::from(1));
                }
                p
            }
            Lie::OtherBlock(n) => self.chain.block(n).state.proof(address, slots),
        })
    }

    fn get_code(&self, address: Address, block: u64) -> Result<Bytes, LightClientError> {
        let b = self.block(block)?;
        Ok(b.state.accounts.get(&address).map(|a| a.code.clone()).unwrap_or_default())
    }

    fn get_header(&self, block: u64) -> Result<(Header, B256), LightClientError> {
        let b = self.block(block)?;
        Ok((b.header.clone(), b.header.hash_slow()))
    }
}

/// The fields of an L2 block that are not derived from its state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L2BlockSpec {
    pub(crate) number: u64,
    pub(crate) timestamp: u64,
    pub(crate) parent_hash: B256,
    /// Isthmus (`V4`, `withdrawals_root` = message-passer storage root) or Ecotone (`V3`).
    pub(crate) isthmus: bool,
}

/// The `SequencerFeeVault` predeploy, every OP block's fee recipient.
pub(crate) const SEQUENCER_FEE_VAULT: Address =
    address!("0x4200000000000000000000000000000000000011");

/// The parent beacon block root every synthetic L2 block carries.
pub(crate) const PARENT_BEACON_ROOT: B256 = B256::repeat_byte(0xbe);

/// The execution payload of an L2 block over `state`, with its `block_hash` set so that
/// `verify_block_hash` passes.
pub(crate) fn l2_payload(spec: L2BlockSpec, state: &State) -> OpExecutionPayload {
    let mut payload = OpExecutionPayload {
        parent_hash: spec.parent_hash,
        fee_recipient: SEQUENCER_FEE_VAULT,
        state_root: state.root(),
        receipts_root: B256::repeat_byte(0x3c),
        logs_bloom: Bloom::default(),
        prev_randao: B256::repeat_byte(0x4d),
        block_number: spec.number,
        gas_limit: 30_000_000,
        gas_used: 46_000,
        timestamp: spec.timestamp,
        extra_data: Bytes::from(vec![0u8; 9]),
        base_fee_per_gas: U256::from(252u64),
        block_hash: B256::ZERO,
        // An L1-info deposit stand-in: the header commits to the bytes, not their meaning.
        transactions: vec![Bytes::from(vec![0x7e, 0xf8, 0x01, spec.number as u8])],
        withdrawals: Some(Vec::new()),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        withdrawals_root: spec.isthmus.then(|| state.storage_root(L2_TO_L1_MESSAGE_PASSER)),
    };
    payload.block_hash =
        payload.to_header(Some(PARENT_BEACON_ROOT)).expect("well-formed payload").hash_slow();
    payload
}

/// An L2 block: state plus the header its payload commits to.
pub(crate) fn l2_block(spec: L2BlockSpec, state: State) -> (Block, OpExecutionPayload) {
    let payload = l2_payload(spec, &state);
    let header = payload.to_header(Some(PARENT_BEACON_ROOT)).expect("well-formed payload");
    assert_eq!(header.hash_slow(), payload.block_hash);
    (Block { state, header }, payload)
}

/// 65-byte `r ‖ s ‖ y_parity` secp256k1 signature of a 32-byte prehash.
pub(crate) fn sign_prehash(key: &SigningKey, message: B256) -> [u8; 65] {
    let (sig, recid) = key.sign_prehash_recoverable(message.as_slice()).expect("signs");
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = recid.to_byte();
    out
}

/// A `blocksV4`/`V3` gossip envelope for `payload`, signed by `key` for `chain_id`.
pub(crate) fn signed_envelope(
    payload: OpExecutionPayload,
    key: &SigningKey,
    chain_id: u64,
) -> GossipEnvelope {
    let version =
        if payload.withdrawals_root.is_some() { PayloadVersion::V4 } else { PayloadVersion::V3 };
    let mut env = GossipEnvelope {
        version,
        signature: [0; 65],
        parent_beacon_block_root: Some(PARENT_BEACON_ROOT),
        payload,
    };
    env.signature = sign_prehash(key, env.signing_message(chain_id).expect("encodable"));
    env
}
