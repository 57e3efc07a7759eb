//! Proof of Attribution on answers: after an adapter's answer is complete, the projected
//! gradient of its log-likelihood (the prompt as context) is scored against the adapter's
//! gradient index, and the response carries which contributors' records shaped it.
//!
//! Runs on a blocking thread after generation (the engine keeps stepping other requests); the
//! result depends only on the adapter, the index and the token ids, so an identical request with
//! an identical seed gets an identical `attribution` object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lorad_attribution::grad::{GradIndex, Scoring};
use lorad_store::disk::Store;
use lorad_train::{DiffLlama, Example, LoraSet, Probes, projected_gradients};
use serde::Serialize;

/// When answers are attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttributionMode {
    /// Never.
    Off,
    /// Only requests that send `"attribution": true`.
    OptIn,
    /// Every adapter answer, unless the request sends `"attribution": false`.
    On,
}

/// A contributor's share of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContributorWeight {
    pub(crate) contributor: String,
    /// Basis points; the list sums to 10,000.
    pub(crate) weight_bps: u32,
}

/// One of the most influential records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RecordScore {
    pub(crate) id: String,
    pub(crate) contributor: String,
    pub(crate) score: f32,
}

/// The `attribution` object of a response (and of the final stream chunk).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AttributionOut {
    /// `"gradient"`.
    pub(crate) method: &'static str,
    pub(crate) adapter: String,
    pub(crate) adapter_hash: String,
    pub(crate) datanet: String,
    /// The Datanet's Merkle root: the records these ids and contributors belong to.
    pub(crate) datanet_root: String,
    /// Positive influence only, by contributor, in basis points.
    pub(crate) contributors: Vec<ContributorWeight>,
    /// The top records by influence score.
    pub(crate) records: Vec<RecordScore>,
    /// Exact-match spans (the suffix-array method); empty for the gradient method.
    pub(crate) spans: Vec<serde_json::Value>,
}

/// What attributing one answer cost, for `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttributionCost {
    pub(crate) ms: u64,
    pub(crate) tokens: usize,
}

/// Everything scoring one adapter needs, prepared once.
#[derive(Debug)]
struct Prepared {
    lora: LoraSet,
    probes: Probes,
    index: GradIndex,
}

/// Attributes answers; shared by every request.
#[derive(Debug)]
pub struct Attributor {
    mode: AttributionMode,
    model: Arc<DiffLlama>,
    store: Arc<Store>,
    root: PathBuf,
    top_k: usize,
    /// By adapter content hash (`None`: no index for it).
    prepared: Mutex<HashMap<String, Option<Arc<Prepared>>>>,
}

impl Attributor {
    /// An attributor over `model` (the served base, differentiable) reading adapters from
    /// `store` and indexes from `root` (`<home>/attribution`).
    pub fn new(
        mode: AttributionMode,
        model: Arc<DiffLlama>,
        store: Arc<Store>,
        root: PathBuf,
    ) -> Self {
        Self { mode, model, store, root, top_k: 10, prepared: Mutex::new(HashMap::new()) }
    }

    /// Whether a request with `"attribution": requested` is attributed.
    pub(crate) fn wants(&self, requested: Option<bool>) -> bool {
        match self.mode {
            AttributionMode::Off => false,
            AttributionMode::OptIn => requested == Some(true),
            AttributionMode::On => requested != Some(false),
        }
    }

    /// The adapter's prepared scorer, or `None` when no index exists for its weights. Indexes
    /// live under `<root>/<content hash>/<datanet>/`; with several Datanets the first by name
    /// is used.
    fn prepare(&self, adapter: &str) -> Result<Option<Arc<Prepared>>, String> {
        let hash = self.store.get(adapter).map_err(|e| e.to_string())?.content_hash;
        if let Some(p) = self.lock().get(&hash) {
            return Ok(p.clone());
        }
        let dir = self.root.join(&hash);
        let mut datanets: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        datanets.sort();
        let prepared = match datanets.first() {
            None => None,
            Some(d) => {
                let index = GradIndex::open(d).map_err(|e| e.to_string())?;
                if index.header().adapter_hash != hash {
                    return Err(format!("index {} is for other adapter weights", d.display()));
                }
                let adapter = self
                    .store
                    .load(adapter, &self.model.base_shape())
                    .map_err(|e| e.to_string())?;
                let lora =
                    LoraSet::from_adapter(&adapter, &self.model.base_shape(), self.model.device())
                        .map_err(|e| e.to_string())?;
                let probes = Probes::new(&lora, index.header().probe, self.model.device())
                    .map_err(|e| e.to_string())?;
                Some(Arc::new(Prepared { lora, probes, index }))
            }
        };
        self.lock().insert(hash, prepared.clone());
        Ok(prepared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<Prepared>>>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts).
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Attributes `completion` (generated after `prompt`) on `adapter`. Blocking. `Ok(None)` when
    /// the adapter has no index or the answer has no token to score.
    pub(crate) fn attribute(
        &self,
        adapter: &str,
        prompt: &[u32],
        completion: &[u32],
    ) -> Result<Option<(AttributionOut, AttributionCost)>, String> {
        let start = Instant::now();
        let Some(p) = self.prepare(adapter)? else { return Ok(None) };
        let max = self.model.config().max_position_embeddings;
        let mut tokens = prompt.to_vec();
        tokens.extend_from_slice(completion);
        tokens.truncate(max);
        let example = Example { tokens, prompt_len: prompt.len().min(max) };
        if example.num_targets() == 0 {
            return Ok(None);
        }
        let scored = example.tokens.len();
        let grads = projected_gradients(&self.model, &p.lora, &p.probes, &[example], 1, |_| {})
            .map_err(|e| e.to_string())?;
        let h = p.index.header();
        let scores = p
            .index
            .score(&grads[0], Scoring { top_k: self.top_k, ..Scoring::default() })
            .map_err(|e| e.to_string())?;
        let name = |c: u32| h.contributors.get(c as usize).cloned().unwrap_or_default();
        let contributors = lorad_attribution::to_basis_points(&scores.contributors)
            .into_iter()
            .map(|(c, weight_bps)| ContributorWeight { contributor: name(c), weight_bps })
            .collect();
        let records = scores
            .top
            .iter()
            .map(|&(i, score)| RecordScore {
                id: h.records[i].id.clone(),
                contributor: name(h.records[i].contributor),
                score,
            })
            .collect();
        let out = AttributionOut {
            method: "gradient",
            adapter: adapter.to_owned(),
            adapter_hash: h.adapter_hash.clone(),
            datanet: h.datanet.clone(),
            datanet_root: h.datanet_root.clone(),
            contributors,
            records,
            spans: Vec::new(),
        };
        let cost = AttributionCost { ms: start.elapsed().as_millis() as u64, tokens: scored };
        Ok(Some((out, cost)))
    }
}
