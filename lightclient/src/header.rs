//! Execution-layer header hashing.
//!
//! A block hash is `keccak256(rlp(header))`. Recomputing it is what ties every root in the
//! header (state, receipts, transactions, withdrawals) to a block hash that the consensus
//! side of the light client vouches for; a header whose hash does not recompute must not
//! be trusted for any of its roots.

use alloy_primitives::B256;

use crate::error::{LightClientError, parse_rpc_result};

/// Checks that `keccak256(rlp(header)) == expected`.
///
/// The RLP encoding (including the optional post-London/Shanghai/Cancun/Prague fields) is
/// alloy's, so fork-specific fields are covered as long as alloy parsed them.
pub fn verify_header_hash(
    header: &alloy_consensus::Header,
    expected: B256,
) -> Result<(), LightClientError> {
    let computed = header.hash_slow();
    if computed == expected {
        Ok(())
    } else {
        Err(LightClientError::HeaderHash { expected, computed })
    }
}

/// Parses an `eth_getBlockByNumber`/`eth_getBlockByHash` response into the consensus header
/// and the hash the RPC *claims* for it.
///
/// Accepts the bare result object or a `{"result": ...}` envelope. Transactions, uncles and
/// withdrawals bodies are ignored: only the header is needed, and its roots commit to them.
/// The returned hash is unverified; pass both to [`verify_header_hash`].
pub fn parse_rpc_block_header(
    json: &str,
) -> Result<(alloy_consensus::Header, B256), LightClientError> {
    let header: alloy_rpc_types_eth::Header =
        parse_rpc_result(json, "eth_getBlockByNumber header")?;
    Ok((header.inner, header.hash))
}
