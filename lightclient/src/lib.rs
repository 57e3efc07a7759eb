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
//! - [`header`]: execution header hashing (`keccak(rlp(header))`) and RPC header parsing.
//! - [`op`]: OP Stack output roots and sequencer gossip envelopes.
//! - [`proof`]: EIP-1186 (`eth_getProof`) account/storage proofs against a verified state
//!   root, and contract code against a proven code hash.
//! - [`replay`]: offline replay of saved Beacon-API light-client responses.

pub mod consensus;
pub mod error;
pub mod header;
pub mod op;
pub mod proof;
pub mod replay;

pub use error::LightClientError;
pub use header::{parse_rpc_block_header, verify_header_hash};
pub use proof::{
    VerifiedAccount, VerifiedProof, parse_eip1186_response, verify_account_proof, verify_code,
    verify_eip1186, verify_storage_proofs,
};
