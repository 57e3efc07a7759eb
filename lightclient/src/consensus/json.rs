//! Beacon-API JSON (`/eth/v1/beacon/light_client/*`) into the light-client containers.
//!
//! Responses are `{"version": "<fork>", "data": {...}}`; `updates` is a list of those.
//! Integers are decimal strings, byte fields `0x`-hex, exactly as the Beacon API specifies.
//! The fork named by `version` decides the expected branch lengths, which are checked here
//! so a wrong-fork payload fails at parsing with a clear message rather than at a branch.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::config::Fork;
use super::types::{
    BeaconBlockHeader, BlsPublicKey, BlsSignature, EXECUTION_BRANCH_DEPTH, ExecutionPayloadHeader,
    LightClientBootstrap, LightClientHeader, LightClientUpdate, MAX_EXTRA_DATA_BYTES,
    SyncAggregate, SyncCommittee,
};
use crate::error::LightClientError;

/// Deserializes a Beacon-API integer: a decimal string (numbers are tolerated).
fn quoted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Q {
        S(String),
        N(u64),
    }
    match Q::deserialize(d)? {
        Q::N(n) => Ok(n),
        Q::S(s) => s.parse().map_err(|e| serde::de::Error::custom(format!("integer {s:?}: {e}"))),
    }
}

fn quoted_u256<'de, D: serde::Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    let s = String::deserialize(d)?;
    U256::from_str_radix(&s, 10)
        .map_err(|e| serde::de::Error::custom(format!("uint256 {s:?}: {e}")))
}

#[derive(Deserialize)]
struct Versioned<T> {
    version: String,
    data: T,
}

#[derive(Deserialize)]
struct JBeacon {
    #[serde(deserialize_with = "quoted")]
    slot: u64,
    #[serde(deserialize_with = "quoted")]
    proposer_index: u64,
    parent_root: B256,
    state_root: B256,
    body_root: B256,
}

#[derive(Deserialize)]
struct JExecution {
    parent_hash: B256,
    fee_recipient: Address,
    state_root: B256,
    receipts_root: B256,
    logs_bloom: Bytes,
    prev_randao: B256,
    #[serde(deserialize_with = "quoted")]
    block_number: u64,
    #[serde(deserialize_with = "quoted")]
    gas_limit: u64,
    #[serde(deserialize_with = "quoted")]
    gas_used: u64,
    #[serde(deserialize_with = "quoted")]
    timestamp: u64,
    extra_data: Bytes,
    #[serde(deserialize_with = "quoted_u256")]
    base_fee_per_gas: U256,
    block_hash: B256,
    transactions_root: B256,
    withdrawals_root: B256,
    #[serde(default, deserialize_with = "quoted_opt")]
    blob_gas_used: Option<u64>,
    #[serde(default, deserialize_with = "quoted_opt")]
    excess_blob_gas: Option<u64>,
}

fn quoted_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    quoted(d).map(Some)
}

#[derive(Deserialize)]
struct JHeader {
    beacon: JBeacon,
    execution: JExecution,
    execution_branch: Vec<B256>,
}

#[derive(Deserialize)]
struct JCommittee {
    pubkeys: Vec<BlsPublicKey>,
    aggregate_pubkey: BlsPublicKey,
}

#[derive(Deserialize)]
struct JAggregate {
    sync_committee_bits: Bytes,
    sync_committee_signature: BlsSignature,
}

#[derive(Deserialize)]
struct JBootstrap {
    header: JHeader,
    current_sync_committee: JCommittee,
    current_sync_committee_branch: Vec<B256>,
}

#[derive(Deserialize)]
struct JUpdate {
    attested_header: JHeader,
    #[serde(default)]
    next_sync_committee: Option<JCommittee>,
    #[serde(default)]
    next_sync_committee_branch: Option<Vec<B256>>,
    #[serde(default)]
    finalized_header: Option<JHeader>,
    #[serde(default)]
    finality_branch: Option<Vec<B256>>,
    sync_aggregate: JAggregate,
    #[serde(deserialize_with = "quoted")]
    signature_slot: u64,
}

fn bad(what: &'static str, reason: String) -> LightClientError {
    LightClientError::BeaconJson { what, reason }
}

fn branch(what: &'static str, b: Vec<B256>, depth: usize) -> Result<Vec<B256>, LightClientError> {
    if b.len() != depth {
        return Err(bad(what, format!("branch has {} nodes, the fork needs {depth}", b.len())));
    }
    Ok(b)
}

fn header(
    what: &'static str,
    h: JHeader,
    fork: Fork,
) -> Result<LightClientHeader, LightClientError> {
    let e = h.execution;
    if e.logs_bloom.len() != 256 {
        return Err(bad(what, format!("logs_bloom has {} bytes, not 256", e.logs_bloom.len())));
    }
    if e.extra_data.len() > MAX_EXTRA_DATA_BYTES {
        return Err(bad(what, format!("extra_data has {} bytes", e.extra_data.len())));
    }
    let has_blob_fields = e.blob_gas_used.is_some() && e.excess_blob_gas.is_some();
    if (fork >= Fork::Deneb) != has_blob_fields {
        return Err(bad(what, format!("blob gas fields do not match fork {}", fork.name())));
    }
    Ok(LightClientHeader {
        beacon: BeaconBlockHeader {
            slot: h.beacon.slot,
            proposer_index: h.beacon.proposer_index,
            parent_root: h.beacon.parent_root,
            state_root: h.beacon.state_root,
            body_root: h.beacon.body_root,
        },
        execution: ExecutionPayloadHeader {
            parent_hash: e.parent_hash,
            fee_recipient: e.fee_recipient,
            state_root: e.state_root,
            receipts_root: e.receipts_root,
            logs_bloom: e.logs_bloom,
            prev_randao: e.prev_randao,
            block_number: e.block_number,
            gas_limit: e.gas_limit,
            gas_used: e.gas_used,
            timestamp: e.timestamp,
            extra_data: e.extra_data,
            base_fee_per_gas: e.base_fee_per_gas,
            block_hash: e.block_hash,
            transactions_root: e.transactions_root,
            withdrawals_root: e.withdrawals_root,
            blob_gas_used: e.blob_gas_used.unwrap_or(0),
            excess_blob_gas: e.excess_blob_gas.unwrap_or(0),
        },
        execution_branch: branch(what, h.execution_branch, EXECUTION_BRANCH_DEPTH)?,
    })
}

fn committee(
    what: &'static str,
    c: JCommittee,
    size: usize,
) -> Result<SyncCommittee, LightClientError> {
    if c.pubkeys.len() != size {
        return Err(bad(
            what,
            format!("sync committee has {} keys, the network needs {size}", c.pubkeys.len()),
        ));
    }
    Ok(SyncCommittee { pubkeys: c.pubkeys, aggregate_pubkey: c.aggregate_pubkey })
}

fn aggregate(
    what: &'static str,
    a: JAggregate,
    size: usize,
) -> Result<SyncAggregate, LightClientError> {
    if a.sync_committee_bits.len() * 8 != size {
        return Err(bad(
            what,
            format!(
                "{} participation bits for a committee of {size}",
                a.sync_committee_bits.len() * 8
            ),
        ));
    }
    Ok(SyncAggregate {
        sync_committee_bits: a.sync_committee_bits.to_vec(),
        sync_committee_signature: a.sync_committee_signature,
    })
}

fn parse<T: DeserializeOwned>(what: &'static str, json: &str) -> Result<T, LightClientError> {
    serde_json::from_str(json).map_err(|source| LightClientError::Json { what, source })
}

fn fork_of(what: &'static str, version: &str) -> Result<Fork, LightClientError> {
    let fork = Fork::from_name(version)?;
    if fork < Fork::Capella {
        return Err(bad(
            what,
            format!("fork {version} predates execution headers in light-client data"),
        ));
    }
    Ok(fork)
}

/// Parses a `light_client/bootstrap` response. Returns the container and its fork.
pub fn parse_bootstrap_json(
    json: &str,
    sync_committee_size: usize,
) -> Result<(LightClientBootstrap, Fork), LightClientError> {
    const WHAT: &str = "light-client bootstrap";
    let v: Versioned<JBootstrap> = parse(WHAT, json)?;
    let fork = fork_of(WHAT, &v.version)?;
    let d = v.data;
    Ok((
        LightClientBootstrap {
            header: header(WHAT, d.header, fork)?,
            current_sync_committee: committee(WHAT, d.current_sync_committee, sync_committee_size)?,
            current_sync_committee_branch: branch(
                WHAT,
                d.current_sync_committee_branch,
                fork.sync_committee_depth(),
            )?,
        },
        fork,
    ))
}

fn update_from(
    what: &'static str,
    v: Versioned<JUpdate>,
    size: usize,
) -> Result<(LightClientUpdate, Fork), LightClientError> {
    let fork = fork_of(what, &v.version)?;
    let d = v.data;
    let attested_header = header(what, d.attested_header, fork)?;
    let sync_aggregate = aggregate(what, d.sync_aggregate, size)?;
    let mut update = match (d.finalized_header, d.finality_branch) {
        (Some(f), Some(b)) => LightClientUpdate::from_finality(
            attested_header,
            header(what, f, fork)?,
            branch(what, b, fork.finality_depth())?,
            sync_aggregate,
            d.signature_slot,
            fork,
        ),
        (None, None) => LightClientUpdate::from_optimistic(
            attested_header,
            sync_aggregate,
            d.signature_slot,
            fork,
        ),
        _ => {
            return Err(bad(
                what,
                "finalized_header and finality_branch must come together".into(),
            ));
        }
    };
    match (d.next_sync_committee, d.next_sync_committee_branch) {
        (Some(c), Some(b)) => {
            update.next_sync_committee = committee(what, c, size)?;
            update.next_sync_committee_branch = branch(what, b, fork.sync_committee_depth())?;
        }
        (None, None) => {}
        _ => return Err(bad(what, "next_sync_committee and its branch must come together".into())),
    }
    Ok((update, fork))
}

/// Parses a `light_client/updates` response (a list of versioned updates).
pub fn parse_updates_json(
    json: &str,
    sync_committee_size: usize,
) -> Result<Vec<(LightClientUpdate, Fork)>, LightClientError> {
    const WHAT: &str = "light-client updates";
    let list: Vec<Versioned<JUpdate>> = parse(WHAT, json)?;
    list.into_iter().map(|v| update_from(WHAT, v, sync_committee_size)).collect()
}

/// Parses a `light_client/finality_update` response (in update form).
pub fn parse_finality_update_json(
    json: &str,
    sync_committee_size: usize,
) -> Result<(LightClientUpdate, Fork), LightClientError> {
    const WHAT: &str = "light-client finality update";
    update_from(WHAT, parse(WHAT, json)?, sync_committee_size)
}

/// Parses a `light_client/optimistic_update` response (in update form).
pub fn parse_optimistic_update_json(
    json: &str,
    sync_committee_size: usize,
) -> Result<(LightClientUpdate, Fork), LightClientError> {
    const WHAT: &str = "light-client optimistic update";
    update_from(WHAT, parse(WHAT, json)?, sync_committee_size)
}
