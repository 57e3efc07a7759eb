//! Blocking HTTP clients for the Beacon API and execution JSON-RPC (`ureq`, rustls).
//!
//! Blocking on purpose: light-client calls are few and sequential (one bootstrap, a handful
//! of updates, one proof per read), and the daemon runs them on a blocking thread.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes};
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use serde_json::{Value, json};

use super::{BeaconApi, ExecutionRpc};
use crate::error::LightClientError;
use crate::header::parse_rpc_block_header;
use crate::proof::parse_eip1186_response;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).build().into()
}

fn rpc_err(endpoint: &str, e: impl std::fmt::Display) -> LightClientError {
    LightClientError::Rpc { endpoint: endpoint.to_owned(), reason: e.to_string() }
}

/// A Beacon node's REST API.
#[derive(Debug, Clone)]
pub struct HttpBeacon {
    base: String,
    agent: ureq::Agent,
}

impl HttpBeacon {
    /// A client for the beacon node at `base_url` (e.g. `http://127.0.0.1:5052`).
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        HttpBeacon { base: base_url.trim_end_matches('/').to_owned(), agent: agent(timeout) }
    }

    fn get(&self, path: &str) -> Result<String, LightClientError> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("accept", "application/json")
            .call()
            .map_err(|e| rpc_err(&url, e))?;
        resp.body_mut().read_to_string().map_err(|e| rpc_err(&url, e))
    }
}

impl BeaconApi for HttpBeacon {
    fn bootstrap(&self, block_root: B256) -> Result<String, LightClientError> {
        self.get(&format!("/eth/v1/beacon/light_client/bootstrap/{block_root}"))
    }

    fn updates(&self, start_period: u64, count: u64) -> Result<String, LightClientError> {
        self.get(&format!(
            "/eth/v1/beacon/light_client/updates?start_period={start_period}&count={count}"
        ))
    }

    fn finality_update(&self) -> Result<String, LightClientError> {
        self.get("/eth/v1/beacon/light_client/finality_update")
    }

    fn optimistic_update(&self) -> Result<String, LightClientError> {
        self.get("/eth/v1/beacon/light_client/optimistic_update")
    }
}

/// An execution node's JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct HttpExecution {
    url: String,
    agent: ureq::Agent,
}

impl HttpExecution {
    /// A client for the JSON-RPC endpoint at `url`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        HttpExecution { url: url.to_owned(), agent: agent(timeout) }
    }

    /// `eth_blockNumber`: the newest block the node has (unverified: a hint of where to read).
    pub fn block_number(&self) -> Result<u64, LightClientError> {
        let text = self.call("eth_blockNumber", json!([]))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|source| LightClientError::Json { what: "eth_blockNumber", source })?;
        let hex = v.get("result").and_then(Value::as_str).unwrap_or_default();
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).map_err(|_| {
            LightClientError::MissingField { what: "eth_blockNumber response", field: "result" }
        })
    }

    /// One JSON-RPC call; returns the whole response text (the parsers accept envelopes).
    fn call(&self, method: &str, params: Value) -> Result<String, LightClientError> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut resp = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| rpc_err(method, e))?;
        let text = resp.body_mut().read_to_string().map_err(|e| rpc_err(method, e))?;
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(err) = v.get("error")
        {
            return Err(rpc_err(method, err));
        }
        Ok(text)
    }
}

impl ExecutionRpc for HttpExecution {
    fn get_proof(
        &self,
        address: Address,
        slots: &[B256],
        block: u64,
    ) -> Result<EIP1186AccountProofResponse, LightClientError> {
        let text = self.call("eth_getProof", json!([address, slots, format!("{block:#x}")]))?;
        parse_eip1186_response(&text)
    }

    fn get_code(&self, address: Address, block: u64) -> Result<Bytes, LightClientError> {
        let text = self.call("eth_getCode", json!([address, format!("{block:#x}")]))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|source| LightClientError::Json { what: "eth_getCode", source })?;
        serde_json::from_value(v.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|source| LightClientError::Json { what: "eth_getCode", source })
    }

    fn get_header(&self, block: u64) -> Result<(alloy_consensus::Header, B256), LightClientError> {
        let text = self.call("eth_getBlockByNumber", json!([format!("{block:#x}"), false]))?;
        parse_rpc_block_header(&text)
    }
}
