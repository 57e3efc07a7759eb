//! lorad's settlement contracts, seen from Rust.
//!
//! The Solidity sources are in `contracts/sol/`, compiled by the pinned solc-js
//! (`scripts/contracts.sh build`) into `contracts/out/`; this crate is generated from those
//! artifacts and never from hand-written ABI.
//!
//! - [`bindings`]: calls, events, errors and bytecode of the five contracts.
//! - [`chain`]: the [`chain::EvmBackend`] trait and [`chain::EvmChain`], an in-process EVM.
//! - [`deploy`]: deploying the contract set; the economic parameters.
//! - [`error`]: [`ContractsError`], the crate's single error type.
//! - [`fees`]: the fee split in Rust, the reference the contract tests check balances against.
//! - [`key`]: the node's secp256k1 key file.
//! - [`rpc`]: [`rpc::RpcChain`], the contracts on a real node over JSON-RPC.
//! - [`receipt`]: the EIP-712 receipt, signed receipts and their canonical bytes.
//! - [`slots`]: storage slots the light client proves before signing.

pub mod bindings;
pub mod chain;
pub mod deploy;
pub mod error;
pub mod fees;
pub mod key;
pub mod receipt;
pub mod rpc;
pub mod slots;

pub use chain::{EvmBackend, EvmBackendExt, EvmChain};
pub use deploy::{DeployParams, Deployment, OPEN};
pub use error::ContractsError;
pub use key::NodeKey;
pub use receipt::{Receipt, Share, SignedReceipt};
