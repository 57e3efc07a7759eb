//! The I/O boundary: where untrusted data comes from.
//!
//! Verification never calls these traits itself; drivers ([`crate::sync`], the daemon)
//! fetch through them and hand the text or parsed values to the pure `verify_*` code. Each
//! trait has an HTTP implementation in [`http`]; saved files implement [`BeaconApi`]
//! through [`crate::replay::SavedChain`], which is also the test double.

pub mod http;

use alloy_primitives::{Address, B256, Bytes};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;

use crate::error::LightClientError;

/// `MAX_REQUEST_LIGHT_CLIENT_UPDATES`: the most updates one request may ask for.
pub const MAX_REQUEST_LIGHT_CLIENT_UPDATES: u64 = 128;

/// The Beacon-API light-client endpoints. Each returns the response body as text; parsing
/// and verification happen in [`crate::consensus`].
pub trait BeaconApi {
    /// `GET /eth/v1/beacon/light_client/bootstrap/{block_root}`.
    fn bootstrap(&self, block_root: B256) -> Result<String, LightClientError>;
    /// `GET /eth/v1/beacon/light_client/updates?start_period=..&count=..` (a JSON list).
    fn updates(&self, start_period: u64, count: u64) -> Result<String, LightClientError>;
    /// `GET /eth/v1/beacon/light_client/finality_update`.
    fn finality_update(&self) -> Result<String, LightClientError>;
    /// `GET /eth/v1/beacon/light_client/optimistic_update`.
    fn optimistic_update(&self) -> Result<String, LightClientError>;
}

/// The execution JSON-RPC calls the light client needs, at an explicit block number (never
/// `latest`: a proof must be checked against the state root of the block it was made at).
pub trait ExecutionRpc {
    /// `eth_getProof(address, slots, block)`.
    fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> Result<EIP1186AccountProofResponse, LightClientError>;
    /// `eth_getCode(address, block)`.
    fn get_code(&self, address: Address, block: u64) -> Result<Bytes, LightClientError>;
    /// `eth_getBlockByNumber(block, false)`: the header and the hash the server claims
    /// (verify with [`crate::verify_header_hash`]).
    fn get_header(&self, block: u64) -> Result<(alloy_consensus::Header, B256), LightClientError>;
}
