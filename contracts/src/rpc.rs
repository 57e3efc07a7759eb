//! [`RpcChain`]: the contracts on a real node over JSON-RPC (an L2 sequencer's RPC, a local
//! hardhat node). Transactions are EIP-1559, signed locally with the sender's key and sent
//! raw: the node never holds keys. Each send waits for its receipt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Log, Signature, TxKind, U256};
use serde_json::{Value, json};

use crate::chain::{EvmBackend, TxOutcome, reverted};
use crate::{ContractsError, NodeKey};

/// A chain behind a JSON-RPC endpoint, sending from the keys it was given.
#[derive(Debug)]
pub struct RpcChain {
    url: String,
    agent: ureq::Agent,
    chain_id: u64,
    keys: HashMap<Address, NodeKey>,
    /// How long a send waits for its transaction to be included.
    pub confirm_timeout: Duration,
}

fn rpc_error(method: &str, reason: impl std::fmt::Display) -> ContractsError {
    ContractsError::Evm { reason: format!("{method}: {reason}") }
}

impl RpcChain {
    /// Connects to `url` (asks for its chain id) and sends from `keys`.
    pub fn connect(
        url: &str,
        keys: Vec<NodeKey>,
        timeout: Duration,
    ) -> Result<Self, ContractsError> {
        let agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).build().new_agent();
        let mut chain = Self {
            url: url.to_string(),
            agent,
            chain_id: 0,
            keys: keys.into_iter().map(|k| (k.address(), k)).collect(),
            confirm_timeout: Duration::from_secs(120),
        };
        chain.chain_id = quantity(&chain.request("eth_chainId", json!([]))?, "eth_chainId")?;
        Ok(chain)
    }

    /// One JSON-RPC call; its `result`, or the node's error (revert data decoded).
    pub fn request(&self, method: &str, params: Value) -> Result<Value, ContractsError> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut resp = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| rpc_error(method, e))?;
        let text = resp.body_mut().read_to_string().map_err(|e| rpc_error(method, e))?;
        let mut v: Value = serde_json::from_str(&text)
            .map_err(|e| rpc_error(method, format!("not JSON ({e})")))?;
        if let Some(err) = v.get("error") {
            // Reverts carry their data as a hex string, at `data` or `data.data`.
            let data = err
                .get("data")
                .and_then(|d| d.as_str().or_else(|| d.get("data").and_then(Value::as_str)));
            if let Some(bytes) = data.and_then(|d| d.parse::<Bytes>().ok()) {
                return Err(reverted(method, bytes));
            }
            return Err(rpc_error(method, err));
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// The newest block number.
    pub fn block_number(&self) -> Result<u64, ContractsError> {
        quantity(&self.request("eth_blockNumber", json!([]))?, "eth_blockNumber")
    }

    fn fees(&self) -> Result<(u128, u128), ContractsError> {
        let block = self.request("eth_getBlockByNumber", json!(["latest", false]))?;
        let base: u128 = quantity(&block["baseFeePerGas"], "baseFeePerGas").unwrap_or(0);
        let tip: u128 = self
            .request("eth_maxPriorityFeePerGas", json!([]))
            .ok()
            .and_then(|v| quantity(&v, "eth_maxPriorityFeePerGas").ok())
            .unwrap_or(1_000_000_000);
        // Room for the base fee to double before inclusion, as wallets do.
        Ok((2 * base + tip, tip))
    }

    fn transact(
        &mut self,
        from: Address,
        to: TxKind,
        data: Bytes,
    ) -> Result<TxOutcome, ContractsError> {
        let key = self.keys.get(&from).ok_or_else(|| ContractsError::Evm {
            reason: format!("no key for {from}: RpcChain only sends from the keys it was given"),
        })?;
        let label = match data.get(..4) {
            Some(s) if to.is_call() => format!("call 0x{}", alloy_primitives::hex::encode(s)),
            _ => "deployment".to_string(),
        };
        let mut call = json!({"from": from, "data": data});
        if let TxKind::Call(to) = to {
            call["to"] = json!(to);
        }
        // Estimation runs the call first: a revert is reported before anything is signed.
        let gas: u64 =
            quantity(&self.request("eth_estimateGas", json!([call]))?, "eth_estimateGas")?;
        let nonce =
            quantity(&self.request("eth_getTransactionCount", json!([from, "pending"]))?, "nonce")?;
        let (max_fee_per_gas, max_priority_fee_per_gas) = self.fees()?;
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: gas + gas / 5,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            to,
            value: U256::ZERO,
            access_list: Default::default(),
            input: data,
        };
        let raw: [u8; 65] = key.sign_digest(tx.signature_hash())?;
        let signature = Signature::try_from(&raw[..])
            .map_err(|e| ContractsError::Signature { reason: e.to_string() })?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        let hash: B256 = serde_json::from_value(
            self.request("eth_sendRawTransaction", json!([Bytes::from(envelope.encoded_2718())]))?,
        )
        .map_err(|e| rpc_error("eth_sendRawTransaction", e))?;
        let started = Instant::now();
        let receipt = loop {
            let r = self.request("eth_getTransactionReceipt", json!([hash]))?;
            if !r.is_null() {
                break r;
            }
            if started.elapsed() > self.confirm_timeout {
                return Err(rpc_error(
                    &label,
                    format!("transaction {hash} not included after {:?}", self.confirm_timeout),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if quantity::<u64>(&receipt["status"], "status")? != 1 {
            return Err(ContractsError::Reverted {
                call: label,
                data: Bytes::new(),
                decoded: format!("transaction {hash} reverted on chain"),
            });
        }
        let logs: Vec<Log> =
            serde_json::from_value(receipt["logs"].clone()).map_err(|e| rpc_error("logs", e))?;
        let created = receipt["contractAddress"].as_str().and_then(|a| a.parse().ok());
        Ok(TxOutcome {
            output: Bytes::new(),
            gas_used: quantity(&receipt["gasUsed"], "gasUsed")?,
            logs,
            created,
        })
    }
}

/// A JSON-RPC quantity (`"0x1a"`).
fn quantity<T: TryFrom<u128>>(v: &Value, what: &str) -> Result<T, ContractsError> {
    let s =
        v.as_str().ok_or_else(|| rpc_error(what, format!("expected a hex quantity, got {v}")))?;
    let n = u128::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| rpc_error(what, e))?;
    T::try_from(n).map_err(|_| rpc_error(what, format!("{n} is out of range")))
}

impl EvmBackend for RpcChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn deploy(&mut self, from: Address, init_code: Bytes) -> Result<Address, ContractsError> {
        let outcome = self.transact(from, TxKind::Create, init_code)?;
        outcome.created.ok_or_else(|| ContractsError::Evm {
            reason: "the deployment receipt names no contract".into(),
        })
    }

    fn send(
        &mut self,
        from: Address,
        to: Address,
        data: Bytes,
    ) -> Result<TxOutcome, ContractsError> {
        self.transact(from, TxKind::Call(to), data)
    }

    fn call(&mut self, from: Address, to: Address, data: Bytes) -> Result<Bytes, ContractsError> {
        let v =
            self.request("eth_call", json!([{"from": from, "to": to, "data": data}, "latest"]))?;
        serde_json::from_value(v).map_err(|e| rpc_error("eth_call", e))
    }
}
