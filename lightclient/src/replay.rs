//! Offline replay of saved Beacon-API light-client responses (the air-gapped audit).
//!
//! An operator saves `bootstrap.json`, `updates.json`, `finality.json` and
//! `optimistic.json` (the last three optional) from any beacon node; an auditor replays
//! them against a checkpoint root they trust and gets the verified finalized execution
//! block. [`SavedChain::read_dir`] is the only I/O; [`replay`] is pure. `SavedChain` also
//! implements [`BeaconApi`], so the same saved files drive [`crate::sync`] in tests.

use std::path::{Path, PathBuf};

use alloy_primitives::B256;
use serde_json::Value;

use crate::consensus::NetworkConfig;
use crate::error::LightClientError;
use crate::rpc::BeaconApi;
use crate::sync::{SyncOptions, SyncReport, sync};

/// The saved responses, as text.
#[derive(Debug, Clone, Default)]
pub struct SavedChain {
    /// `light_client/bootstrap/{root}` response (required).
    pub bootstrap: String,
    /// `light_client/updates` response: a list of updates, oldest first.
    pub updates: Option<String>,
    /// `light_client/finality_update` response.
    pub finality: Option<String>,
    /// `light_client/optimistic_update` response.
    pub optimistic: Option<String>,
}

fn read_file(path: PathBuf, required: bool) -> Result<Option<String>, LightClientError> {
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LightClientError::Io { path, source }),
    }
}

impl SavedChain {
    /// Reads the four files from `dir` (helios' fixture layout); only the bootstrap is
    /// required.
    pub fn read_dir(dir: &Path) -> Result<Self, LightClientError> {
        Ok(SavedChain {
            bootstrap: read_file(dir.join("bootstrap.json"), true)?.unwrap_or_default(),
            updates: read_file(dir.join("updates.json"), false)?,
            finality: read_file(dir.join("finality.json"), false)?,
            optimistic: read_file(dir.join("optimistic.json"), false)?,
        })
    }
}

fn missing(what: &str) -> LightClientError {
    LightClientError::Rpc { endpoint: format!("saved {what}"), reason: "not saved".into() }
}

fn slot_of(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|s| s.parse().ok())
}

impl SavedChain {
    /// The latest signature slot in the saved updates: the clock as of saving.
    pub fn latest_signature_slot(&self) -> Option<u64> {
        let mut docs: Vec<Value> = Vec::new();
        if let Some(Ok(Value::Array(list))) = self.updates.as_deref().map(serde_json::from_str) {
            docs.extend(list);
        }
        for text in [&self.finality, &self.optimistic].into_iter().flatten() {
            if let Ok(v) = serde_json::from_str(text) {
                docs.push(v);
            }
        }
        docs.iter().filter_map(|d| slot_of(d, "/data/signature_slot")).max()
    }
}

impl BeaconApi for SavedChain {
    fn bootstrap(&self, _block_root: B256) -> Result<String, LightClientError> {
        // The caller checks the root; a saved bootstrap for another root fails there.
        Ok(self.bootstrap.clone())
    }

    fn updates(&self, _start_period: u64, _count: u64) -> Result<String, LightClientError> {
        // The saved list is the answer to the request the operator made when saving; the
        // driver checks every update's period against the store itself.
        Ok(self.updates.clone().unwrap_or_else(|| "[]".into()))
    }

    fn finality_update(&self) -> Result<String, LightClientError> {
        self.finality.clone().ok_or_else(|| missing("finality update"))
    }

    fn optimistic_update(&self) -> Result<String, LightClientError> {
        self.optimistic.clone().ok_or_else(|| missing("optimistic update"))
    }
}

/// Verifies the saved chain from `checkpoint`; `on_step` sees each step as it verifies.
/// Stops at the first error, which names the step. Without `current_slot`, the clock is
/// the latest signature slot in the data.
pub fn replay(
    cfg: &NetworkConfig,
    checkpoint: B256,
    saved: &SavedChain,
    current_slot: Option<u64>,
    max_checkpoint_age: Option<(u64, u64)>,
    on_step: impl FnMut(&crate::sync::SyncStep),
) -> Result<SyncReport, LightClientError> {
    let current_slot = current_slot.or_else(|| saved.latest_signature_slot()).unwrap_or_default();
    let opts = SyncOptions {
        current_slot,
        max_checkpoint_age,
        finality: saved.finality.is_some(),
        optimistic: saved.optimistic.is_some(),
    };
    sync(cfg, saved, checkpoint, opts, on_step).map(|(_, report)| report)
}
