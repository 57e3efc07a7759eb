//! lorad's embedded light client.
//!
//! lorad signs receipts only over chain state it has verified itself, so this crate turns
//! untrusted RPC answers into facts proven against roots the client already trusts.
//! All `verify_*` functions are pure: they take parsed values and do no I/O, so the
//! daemon decides where data comes from and the verifiers stay easy to test.
//!
//! Contents (see `docs/lightclient.md` for the trust model):
//! - [`consensus`]: the L1 sync-committee light client (bootstrap, updates, finality).
//! - [`error`]: [`LightClientError`], the crate's single error type.
//! - [`evm`]: verified `eth_call`: revm over state that comes only from proofs.
//! - [`header`]: execution header hashing (`keccak(rlp(header))`) and RPC header parsing.
//! - [`l2`]: the L2 driver: newest L1-anchored output → verified L2 block.
//! - [`op`]: OP Stack output roots and sequencer gossip envelopes.
//! - [`proof`]: EIP-1186 (`eth_getProof`) account/storage proofs against a verified state
//!   root, and contract code against a proven code hash.
//! - [`replay`]: offline replay of saved Beacon-API light-client responses.
//! - [`rpc`]: the I/O boundary: Beacon-API and execution JSON-RPC traits, HTTP clients.
//! - [`sync`]: the sync driver (checkpoint → periods → finality → optimistic).
//! - [`testing`]: where tests find the real-chain fixtures.
//! - [`verified`]: policy-checked, per-block-cached verified L2 reads for the daemon.

pub mod consensus;
pub mod error;
pub mod evm;
pub mod header;
pub mod l2;
pub mod op;
pub mod proof;
pub mod replay;
pub mod rpc;
pub mod sync;
pub mod testing;
pub mod verified;

pub use error::LightClientError;
pub use header::{parse_rpc_block_header, verify_header_hash};
pub use proof::{
    VerifiedAccount, VerifiedProof, parse_eip1186_response, verify_account_proof, verify_code,
    verify_eip1186, verify_storage_proofs,
};
