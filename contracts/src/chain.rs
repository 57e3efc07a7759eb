//! Where the contracts run: the [`EvmBackend`] trait, and [`EvmChain`], an in-process EVM
//! (revm over an in-memory database) that executes the real compiled bytecode.
//!
//! `EvmChain` is what the contract tests and `lorad-bench receipts` use: deterministic,
//! offline and fast. The same deployment and call code drives a JSON-RPC node through the
//! trait, so nothing is tested against a simplified model of the chain.

use alloy_primitives::{Address, B256, Bytes, Log, U256};
use alloy_sol_types::{SolCall, SolInterface};
use revm::context::result::{ExecutionResult, Output};
use revm::context::{BlockEnv, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::state::AccountInfo;
use revm::{Context, DatabaseRef, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};

use crate::ContractsError;
use crate::bindings::{AdapterRegistry, DatanetRegistry, NodeRegistry, OpenToken, Settlement};

/// What a committed transaction left behind.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// Return data of the call (empty for a deployment).
    pub output: Bytes,
    /// Gas used, intrinsic 21,000 included.
    pub gas_used: u64,
    /// Logs it emitted.
    pub logs: Vec<Log>,
    /// The created contract, for a deployment.
    pub created: Option<Address>,
}

/// A chain lorad can deploy to, transact on and read from.
pub trait EvmBackend {
    /// The chain id (part of every receipt's EIP-712 domain).
    fn chain_id(&self) -> u64;
    /// Deploys `init_code` (constructor arguments appended) from `from`.
    fn deploy(&mut self, from: Address, init_code: Bytes) -> Result<Address, ContractsError>;
    /// Sends a transaction and waits until it is included; a revert is an error.
    fn send(
        &mut self,
        from: Address,
        to: Address,
        data: Bytes,
    ) -> Result<TxOutcome, ContractsError>;
    /// Calls without changing state (`eth_call` at the newest block).
    fn call(&mut self, from: Address, to: Address, data: Bytes) -> Result<Bytes, ContractsError>;
}

/// Typed helpers over any [`EvmBackend`].
pub trait EvmBackendExt: EvmBackend {
    /// Sends a typed call.
    fn send_call<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        call: &C,
    ) -> Result<TxOutcome, ContractsError> {
        self.send(from, to, call.abi_encode().into())
    }
    /// Runs a typed view call and decodes its return value.
    fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, ContractsError> {
        let out = self.call(Address::ZERO, to, call.abi_encode().into())?;
        C::abi_decode_returns(&out)
            .map_err(|e| ContractsError::Decode { what: C::SIGNATURE, reason: e.to_string() })
    }
}

impl<T: EvmBackend + ?Sized> EvmBackendExt for T {}

/// An in-process chain: revm over an in-memory state, one transaction per block.
#[derive(Debug)]
pub struct EvmChain {
    db: CacheDB<EmptyDB>,
    chain_id: u64,
    number: u64,
    timestamp: u64,
}

/// Block gas limit of [`EvmChain`] blocks (Ethereum mainnet's, 2025).
pub const BLOCK_GAS_LIMIT: u64 = 36_000_000;
/// Most gas one transaction may use since Osaka (EIP-7825); settlement batches must fit.
pub const TX_GAS_CAP: u64 = 1 << 24;

impl EvmChain {
    /// An empty chain with id `chain_id` at block 1, time 1,700,000,000.
    pub fn new(chain_id: u64) -> Self {
        Self { db: CacheDB::new(EmptyDB::default()), chain_id, number: 1, timestamp: 1_700_000_000 }
    }

    /// Gives `who` `wei` of ether (for gas; fees are charged like on a real chain).
    pub fn fund(&mut self, who: Address, wei: U256) {
        let mut info: AccountInfo = self.db.basic_ref(who).ok().flatten().unwrap_or_default();
        info.balance = wei;
        self.db.insert_account_info(who, info);
    }

    /// The current block time.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// Moves the clock forward (unbonding and withdrawal delays).
    pub fn advance_time(&mut self, seconds: u64) {
        self.timestamp += seconds;
    }

    /// Raw storage of `address` at `slot` (zero when never written).
    pub fn storage(&self, address: Address, slot: U256) -> U256 {
        self.db.storage_ref(address, slot).unwrap_or_default()
    }

    fn tx(&self, from: Address, kind: TxKind, data: Bytes) -> TxEnv {
        let nonce = self.db.basic_ref(from).ok().flatten().map(|a| a.nonce).unwrap_or_default();
        TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .gas_limit(TX_GAS_CAP)
            .gas_price(1)
            .nonce(nonce)
            .chain_id(Some(self.chain_id))
            .build_fill()
    }

    fn block(&self) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            timestamp: U256::from(self.timestamp),
            gas_limit: BLOCK_GAS_LIMIT,
            basefee: 0,
            prevrandao: Some(B256::ZERO),
            ..Default::default()
        }
    }

    fn execute(
        &mut self,
        tx: TxEnv,
        label: &str,
        commit: bool,
    ) -> Result<TxOutcome, ContractsError> {
        let block = self.block();
        let chain_id = self.chain_id;
        let mut evm = Context::mainnet()
            .with_db(&mut self.db)
            .with_block(block)
            .modify_cfg_chained(|cfg| cfg.chain_id = chain_id)
            .build_mainnet();
        let result =
            if commit { evm.transact_commit(tx) } else { evm.transact(tx).map(|r| r.result) }
                .map_err(|e| ContractsError::Evm { reason: e.to_string() })?;
        if commit {
            self.number += 1;
            self.timestamp += 12;
        }
        match result {
            ExecutionResult::Success { output, gas, logs, .. } => {
                let (output, created) = match output {
                    Output::Call(data) => (data, None),
                    Output::Create(data, address) => (data, address),
                };
                Ok(TxOutcome { output, gas_used: gas.tx_gas_used(), logs, created })
            }
            ExecutionResult::Revert { output, .. } => Err(reverted(label, output)),
            ExecutionResult::Halt { reason, .. } => {
                Err(ContractsError::Evm { reason: format!("{label} halted: {reason:?}") })
            }
        }
    }
}

impl EvmBackend for EvmChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn deploy(&mut self, from: Address, init_code: Bytes) -> Result<Address, ContractsError> {
        let tx = self.tx(from, TxKind::Create, init_code);
        let outcome = self.execute(tx, "deployment", true)?;
        outcome
            .created
            .ok_or_else(|| ContractsError::Evm { reason: "deployment created no contract".into() })
    }

    fn send(
        &mut self,
        from: Address,
        to: Address,
        data: Bytes,
    ) -> Result<TxOutcome, ContractsError> {
        let label = call_label(&data);
        let tx = self.tx(from, TxKind::Call(to), data);
        self.execute(tx, &label, true)
    }

    fn call(&mut self, from: Address, to: Address, data: Bytes) -> Result<Bytes, ContractsError> {
        let label = call_label(&data);
        let mut tx = self.tx(from, TxKind::Call(to), data);
        // A view: nobody pays for it, as with eth_call.
        tx.gas_price = 0;
        Ok(self.execute(tx, &label, false)?.output)
    }
}

/// `0x12345678` for a call's selector (revert messages name the call).
fn call_label(data: &[u8]) -> String {
    match data.get(..4) {
        Some(selector) => format!("call 0x{}", alloy_primitives::hex::encode(selector)),
        None => "call".to_string(),
    }
}

/// A revert, with its data decoded against every lorad contract's custom errors and the
/// standard `Error(string)` / `Panic(uint256)`.
pub fn reverted(call: &str, data: Bytes) -> ContractsError {
    let decoded = decode_revert(&data);
    ContractsError::Reverted { call: call.to_string(), data, decoded }
}

/// Human-readable revert data: `Settlement.AlreadySettled(AlreadySettled { .. })`.
pub fn decode_revert(data: &[u8]) -> String {
    if let Ok(e) = Settlement::SettlementErrors::abi_decode(data) {
        return format!("Settlement.{e:?}");
    }
    if let Ok(e) = NodeRegistry::NodeRegistryErrors::abi_decode(data) {
        return format!("NodeRegistry.{e:?}");
    }
    if let Ok(e) = AdapterRegistry::AdapterRegistryErrors::abi_decode(data) {
        return format!("AdapterRegistry.{e:?}");
    }
    if let Ok(e) = DatanetRegistry::DatanetRegistryErrors::abi_decode(data) {
        return format!("DatanetRegistry.{e:?}");
    }
    if let Ok(e) = OpenToken::OpenTokenErrors::abi_decode(data) {
        return format!("OpenToken.{e:?}");
    }
    match alloy_sol_types::GenericContractError::abi_decode(data) {
        Ok(e) => format!("{e:?}"),
        Err(_) => format!("0x{}", alloy_primitives::hex::encode(data)),
    }
}
