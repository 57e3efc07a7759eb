//! Verified `eth_call`: revm over state that every byte of comes from a proof.
//!
//! [`ProvenState`] accepts only `eth_getProof` responses that verify against its state root
//! (and code that hashes to the proven code hash). The EVM's database serves exactly that:
//! an account or slot no proof covers fails the call with
//! [`LightClientError::UnprovenState`] instead of reading a silent zero, so a server that
//! withholds state cannot change the answer, only refuse it. Accounts and slots proven
//! *absent* read as empty, which is what they are.

use std::collections::HashMap;

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use revm::context::result::{EVMError, ExecutionResult, Output};
use revm::context::{BlockEnv, TxEnv};
use revm::database_interface::{DBErrorMarker, Database};
use revm::primitives::TxKind;
use revm::primitives::hardfork::SpecId;
use revm::state::{AccountInfo, Bytecode};
use revm::{Context, ExecuteEvm, MainBuilder, MainContext};

use crate::error::LightClientError;
use crate::proof::{verify_code, verify_eip1186};

#[derive(Debug, Clone)]
struct ProvenAccount {
    info: AccountInfo,
    exists: bool,
    storage: HashMap<U256, U256>,
}

/// Accounts, code and storage slots, each proven against one state root.
#[derive(Debug, Clone)]
pub struct ProvenState {
    state_root: B256,
    accounts: HashMap<Address, ProvenAccount>,
    code: HashMap<B256, Bytecode>,
}

impl ProvenState {
    /// An empty set of facts about the state at `state_root` (from a verified header).
    pub fn new(state_root: B256) -> Self {
        ProvenState { state_root, accounts: HashMap::new(), code: HashMap::new() }
    }

    /// Verifies `proof` (the account and every storage slot) against the state root and
    /// records it. `code` must hash to the proven code hash; it is required when the
    /// account has code (without it, calls into the account fail as unproven).
    pub fn add_proof(
        &mut self,
        proof: &EIP1186AccountProofResponse,
        code: Option<&[u8]>,
    ) -> Result<(), LightClientError> {
        let verified = verify_eip1186(self.state_root, proof)?;
        let a = &verified.account;
        if let Some(code) = code {
            verify_code(a.code_hash, code)?;
            self.code.insert(a.code_hash, Bytecode::new_raw(Bytes::copy_from_slice(code)));
        }
        let entry = self.accounts.entry(a.address).or_insert_with(|| ProvenAccount {
            info: AccountInfo::default(),
            exists: a.exists,
            storage: HashMap::new(),
        });
        entry.exists = a.exists;
        entry.info.balance = a.balance;
        entry.info.nonce = a.nonce;
        entry.info.code_hash = a.code_hash;
        for (slot, value) in &verified.storage {
            entry.storage.insert(U256::from_be_bytes(slot.0), *value);
        }
        Ok(())
    }
}

/// Block environment of the block the state root belongs to (from a verified header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBlock {
    /// Block number.
    pub number: u64,
    /// Timestamp.
    pub timestamp: u64,
    /// Base fee per gas.
    pub base_fee: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Fee recipient.
    pub coinbase: Address,
    /// `prevrandao` (the header's mix hash).
    pub prevrandao: B256,
    /// Chain id.
    pub chain_id: u64,
    /// The fork rules to execute under.
    pub spec: SpecId,
}

impl CallBlock {
    /// The environment of `h` (a header whose hash was verified) on chain `chain_id`, under
    /// `spec` (the fork active at that block).
    pub fn from_header(h: &alloy_consensus::Header, chain_id: u64, spec: SpecId) -> Self {
        CallBlock {
            number: h.number,
            timestamp: h.timestamp,
            base_fee: h.base_fee_per_gas.unwrap_or_default(),
            gas_limit: h.gas_limit,
            coinbase: h.beneficiary,
            prevrandao: h.mix_hash,
            chain_id,
            spec,
        }
    }
}

/// An `eth_call` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// Sender (the zero address when the request has none).
    pub from: Address,
    /// Callee.
    pub to: Address,
    /// Calldata.
    pub data: Bytes,
    /// Value sent.
    pub value: U256,
    /// Gas limit [default: the block gas limit].
    pub gas: Option<u64>,
}

/// The database error: what the call touched without a proof.
#[derive(Debug, thiserror::Error)]
enum ProofDbError {
    #[error("unproven account {0}")]
    Account(Address),
    #[error("unproven slot {1} of {0}")]
    Slot(Address, B256),
    #[error("unproven code {0}")]
    Code(B256),
    #[error("BLOCKHASH({0}) needs verified history, which the call does not have")]
    BlockHash(u64),
}

impl DBErrorMarker for ProofDbError {}

struct ProofDb<'a>(&'a ProvenState);

impl Database for ProofDb<'_> {
    type Error = ProofDbError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let a = self.0.accounts.get(&address).ok_or(ProofDbError::Account(address))?;
        if !a.exists {
            return Ok(None);
        }
        let mut info = a.info.clone();
        if info.code_hash != KECCAK256_EMPTY {
            info.code = Some(
                self.0
                    .code
                    .get(&info.code_hash)
                    .cloned()
                    .ok_or(ProofDbError::Code(info.code_hash))?,
            );
        }
        Ok(Some(info))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if code_hash == KECCAK256_EMPTY {
            return Ok(Bytecode::default());
        }
        self.0.code.get(&code_hash).cloned().ok_or(ProofDbError::Code(code_hash))
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Self::Error> {
        let a = self.0.accounts.get(&address).ok_or(ProofDbError::Account(address))?;
        if !a.exists {
            return Ok(U256::ZERO);
        }
        a.storage
            .get(&index)
            .copied()
            .ok_or_else(|| ProofDbError::Slot(address, B256::from(index.to_be_bytes::<32>())))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        Err(ProofDbError::BlockHash(number))
    }
}

fn db_error(e: ProofDbError) -> LightClientError {
    match e {
        ProofDbError::Account(address) => LightClientError::UnprovenState { address, slot: None },
        ProofDbError::Slot(address, slot) => {
            LightClientError::UnprovenState { address, slot: Some(slot) }
        }
        other => LightClientError::Evm { reason: other.to_string() },
    }
}

/// What a verified call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// Return data.
    pub output: Bytes,
    /// Gas the call used (including the intrinsic 21,000).
    pub gas_used: u64,
}

/// Runs `call` at `block` over `state`, as `eth_call` does (no nonce check, no fee charged
/// from the sender), and returns its output. A revert or halt is an `Evm` error carrying
/// the revert data or the halt reason; state no proof covers is `UnprovenState`.
pub fn verified_call(
    state: &ProvenState,
    block: &CallBlock,
    call: &CallRequest,
) -> Result<CallOutcome, LightClientError> {
    let env = BlockEnv {
        number: U256::from(block.number),
        beneficiary: block.coinbase,
        timestamp: U256::from(block.timestamp),
        gas_limit: block.gas_limit,
        basefee: block.base_fee,
        prevrandao: Some(block.prevrandao),
        ..Default::default()
    };
    let nonce = state.accounts.get(&call.from).map(|a| a.info.nonce).unwrap_or_default();
    let tx = TxEnv::builder()
        .caller(call.from)
        .kind(TxKind::Call(call.to))
        .data(call.data.clone())
        .value(call.value)
        .gas_limit(call.gas.unwrap_or(block.gas_limit))
        .gas_price(0)
        .nonce(nonce)
        .chain_id(Some(block.chain_id))
        .build_fill();
    let mut evm = Context::mainnet()
        .with_db(ProofDb(state))
        .with_block(env)
        .modify_cfg_chained(|cfg| {
            cfg.chain_id = block.chain_id;
            cfg.spec = block.spec;
            cfg.disable_nonce_check = true;
            cfg.disable_base_fee = true;
            cfg.disable_balance_check = true;
            // No fee moves, so the coinbase is never loaded unless the call itself touches
            // it (EIP-3651 only marks it warm): an unproven coinbase stays out of the answer.
            cfg.disable_fee_charge = true;
        })
        .build_mainnet();
    let result = evm.transact(tx).map_err(|e| match e {
        EVMError::Database(db) => db_error(db),
        other => LightClientError::Evm { reason: other.to_string() },
    })?;
    match result.result {
        ExecutionResult::Success { output: Output::Call(output), gas, .. } => {
            Ok(CallOutcome { output, gas_used: gas.tx_gas_used() })
        }
        ExecutionResult::Success { .. } => {
            Err(LightClientError::Evm { reason: "a call created a contract".into() })
        }
        ExecutionResult::Revert { output, .. } => Err(LightClientError::Evm {
            reason: format!("reverted with 0x{}", alloy_primitives::hex::encode(output)),
        }),
        ExecutionResult::Halt { reason, .. } => {
            Err(LightClientError::Evm { reason: format!("halted: {reason:?}") })
        }
    }
}
