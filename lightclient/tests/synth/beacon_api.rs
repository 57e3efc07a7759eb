//! The synthetic beacon chain served the way a beacon node serves it: Beacon-API JSON
//! (`{"version", "data"}`, decimal-string integers, `0x`-hex bytes) behind a `BeaconApi`
//! double, so the `sync` driver can be run against it.

use std::cell::RefCell;

use alloy_primitives::{B256, hex};
use lorad_lightclient::LightClientError;
use lorad_lightclient::consensus::{
    LightClientBootstrap, LightClientHeader, LightClientUpdate, NetworkConfig, SyncCommittee,
};
use lorad_lightclient::rpc::BeaconApi;
use serde_json::{Value, json};

fn header_json(h: &LightClientHeader) -> Value {
    let (b, e) = (&h.beacon, &h.execution);
    json!({
        "beacon": {
            "slot": b.slot.to_string(),
            "proposer_index": b.proposer_index.to_string(),
            "parent_root": b.parent_root,
            "state_root": b.state_root,
            "body_root": b.body_root,
        },
        "execution": {
            "parent_hash": e.parent_hash,
            "fee_recipient": e.fee_recipient,
            "state_root": e.state_root,
            "receipts_root": e.receipts_root,
            "logs_bloom": e.logs_bloom,
            "prev_randao": e.prev_randao,
            "block_number": e.block_number.to_string(),
            "gas_limit": e.gas_limit.to_string(),
            "gas_used": e.gas_used.to_string(),
            "timestamp": e.timestamp.to_string(),
            "extra_data": e.extra_data,
            "base_fee_per_gas": e.base_fee_per_gas.to_string(),
            "block_hash": e.block_hash,
            "transactions_root": e.transactions_root,
            "withdrawals_root": e.withdrawals_root,
            "blob_gas_used": e.blob_gas_used.to_string(),
            "excess_blob_gas": e.excess_blob_gas.to_string(),
        },
        "execution_branch": h.execution_branch,
    })
}

fn committee_json(c: &SyncCommittee) -> Value {
    json!({ "pubkeys": c.pubkeys, "aggregate_pubkey": c.aggregate_pubkey })
}

fn versioned(cfg: &NetworkConfig, slot: u64, data: Value) -> Value {
    json!({ "version": cfg.fork_at_slot(slot).name(), "data": data })
}

/// `light_client/bootstrap` response.
pub(crate) fn bootstrap_json(cfg: &NetworkConfig, b: &LightClientBootstrap) -> String {
    versioned(
        cfg,
        b.header.beacon.slot,
        json!({
            "header": header_json(&b.header),
            "current_sync_committee": committee_json(&b.current_sync_committee),
            "current_sync_committee_branch": b.current_sync_committee_branch,
        }),
    )
    .to_string()
}

/// One update as the API shapes it: next committee and finality fields only when present.
pub(crate) fn update_value(cfg: &NetworkConfig, u: &LightClientUpdate) -> Value {
    let mut data = json!({
        "attested_header": header_json(&u.attested_header),
        "sync_aggregate": {
            "sync_committee_bits": format!("0x{}", hex::encode(&u.sync_aggregate.sync_committee_bits)),
            "sync_committee_signature": u.sync_aggregate.sync_committee_signature,
        },
        "signature_slot": u.signature_slot.to_string(),
    });
    if u.is_sync_committee_update() {
        data["next_sync_committee"] = committee_json(&u.next_sync_committee);
        data["next_sync_committee_branch"] = json!(u.next_sync_committee_branch);
    }
    if u.is_finality_update() {
        data["finalized_header"] = header_json(&u.finalized_header);
        data["finality_branch"] = json!(u.finality_branch);
    }
    versioned(cfg, u.attested_header.beacon.slot, data)
}

/// A beacon node double: the bootstrap of one checkpoint, one best update per period, the
/// latest finality and optimistic updates. Records the requests it served.
#[derive(Debug)]
pub(crate) struct BeaconNode {
    pub(crate) checkpoint: B256,
    pub(crate) bootstrap: String,
    /// `(period, update JSON value)`.
    pub(crate) updates: Vec<(u64, Value)>,
    pub(crate) finality: String,
    pub(crate) optimistic: String,
    pub(crate) requests: RefCell<Vec<String>>,
}

impl BeaconApi for BeaconNode {
    fn bootstrap(&self, block_root: B256) -> Result<String, LightClientError> {
        self.requests.borrow_mut().push(format!("bootstrap/{block_root}"));
        if block_root != self.checkpoint {
            return Err(LightClientError::Rpc {
                endpoint: "bootstrap".into(),
                reason: "404".into(),
            });
        }
        Ok(self.bootstrap.clone())
    }

    fn updates(&self, start_period: u64, count: u64) -> Result<String, LightClientError> {
        self.requests
            .borrow_mut()
            .push(format!("updates?start_period={start_period}&count={count}"));
        let list: Vec<&Value> = self
            .updates
            .iter()
            .filter(|(p, _)| (start_period..start_period + count).contains(p))
            .map(|(_, v)| v)
            .collect();
        Ok(serde_json::to_string(&list).expect("serializable"))
    }

    fn finality_update(&self) -> Result<String, LightClientError> {
        self.requests.borrow_mut().push("finality_update".into());
        Ok(self.finality.clone())
    }

    fn optimistic_update(&self) -> Result<String, LightClientError> {
        self.requests.borrow_mut().push("optimistic_update".into());
        Ok(self.optimistic.clone())
    }
}
