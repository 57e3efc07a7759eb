//! Proof of Attribution on answers: after an adapter's answer is complete, the projected
//! gradient of its log-likelihood (the prompt as context) is scored against the adapter's
//! gradient index, and the response carries which contributors' records shaped it. Answers of
//! the base model are traced instead to the exact spans they share with a Datanet (its suffix-array
//! index), and adapter answers list those spans too when their Datanet has one.
//!
//! Runs on a blocking thread after generation (the engine keeps stepping other requests); the
//! result depends only on the adapter, the index and the token ids, so an identical request with
//! an identical seed gets an identical `attribution` object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use lorad_attribution::grad::{GradIndex, Scoring};
use lorad_attribution::span::{SpanIndex, SpanParams};
use lorad_datanet::Datanet;
use lorad_model::Tokenizer;
use lorad_store::disk::Store;
use lorad_train::{Example, LoraSet, Probes, projected_gradients};
use serde::Serialize;

use super::twin::Twin;

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

/// A stretch of the answer that occurs verbatim in the Datanet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SpanOut {
    /// Token offsets in the answer, end exclusive.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: String,
    /// Occurrences in the Datanet.
    pub(crate) count: u64,
    /// Records it occurs in (at most `max_docs_per_span`).
    pub(crate) records: Vec<String>,
    /// Their contributors, deduplicated, in record order.
    pub(crate) contributors: Vec<String>,
}

/// The `attribution` object of a response (and of the final stream chunk).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AttributionOut {
    /// `"gradient"` (adapter answers with a gradient index) or `"span"` (base answers).
    pub(crate) method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) adapter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) adapter_hash: Option<String>,
    pub(crate) datanet: String,
    /// The Datanet's Merkle root: the records these ids and contributors belong to.
    pub(crate) datanet_root: String,
    /// Positive influence only, by contributor, in basis points.
    pub(crate) contributors: Vec<ContributorWeight>,
    /// The top records by influence score.
    pub(crate) records: Vec<RecordScore>,
    /// Exact-match spans of the answer in the Datanet (empty without a span index).
    pub(crate) spans: Vec<SpanOut>,
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

/// An answer's spans and the per-record (document) weights they give.
type Traced = (Vec<SpanOut>, Vec<(u32, f64)>);

/// A Datanet's span index with what maps its documents (records) to ids and contributors.
#[derive(Debug)]
struct SpanSide {
    index: SpanIndex,
    datanet: String,
    root: String,
    ids: Vec<String>,
    doc_contributor: Vec<u32>,
    contributors: Vec<String>,
}

/// Attributes answers; shared by every request.
#[derive(Debug)]
pub struct Attributor {
    mode: AttributionMode,
    model: Twin,
    store: Arc<Store>,
    root: PathBuf,
    datanets: PathBuf,
    tokenizer: Tokenizer,
    /// Per token id: may a span start there (a word start: `Ġ`/`Ċ`/`ĉ`-prefixed or special).
    word_start: Vec<bool>,
    top_k: usize,
    /// By adapter content hash (`None`: no index for it).
    prepared: Mutex<HashMap<String, Option<Arc<Prepared>>>>,
    /// By Datanet name (`None`: no span index).
    spans: Mutex<HashMap<String, Option<Arc<SpanSide>>>>,
    /// The Datanet base answers are traced in, once chosen.
    base_datanet: OnceLock<Option<String>>,
}

impl Attributor {
    /// An attributor over `model` (the served base's differentiable twin) reading adapters from
    /// `store` and indexes from `root` (`<home>/attribution`). Base answers are traced in the
    /// Datanets under `datanets` that have a span index.
    pub fn new(
        mode: AttributionMode,
        model: Twin,
        store: Arc<Store>,
        root: PathBuf,
        datanets: PathBuf,
        tokenizer: Tokenizer,
    ) -> Self {
        let word_start = (0..tokenizer.vocab_size() as u32)
            .map(|id| {
                tokenizer.id_to_token(id).is_some_and(|t| {
                    t.starts_with(['\u{120}', '\u{10a}', '\u{109}']) || t.starts_with("<|")
                })
            })
            .collect();
        Self {
            mode,
            model,
            store,
            root,
            datanets,
            tokenizer,
            word_start,
            top_k: 10,
            prepared: Mutex::new(HashMap::new()),
            spans: Mutex::new(HashMap::new()),
            base_datanet: OnceLock::new(),
        }
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
        let prepared = match first_subdir(&self.root.join(&hash), |p| p.is_dir()) {
            None => None,
            Some(d) => {
                let index = GradIndex::open(&d).map_err(|e| e.to_string())?;
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

    /// Datanet `name`'s span side, or `None` when it has no span index.
    fn span_side(&self, name: &str) -> Result<Option<Arc<SpanSide>>, String> {
        let lock = || self.spans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = lock().get(name) {
            return Ok(s.clone());
        }
        let dir = self.datanets.join(name);
        let side = if dir.join("span").is_dir() {
            let dn = Datanet::open(&dir).map_err(|e| e.to_string())?;
            let index = SpanIndex::open(&dir.join("span")).map_err(|e| e.to_string())?;
            if index.num_docs() != dn.len() {
                return Err(format!(
                    "span index of {name} has {} documents for {} records",
                    index.num_docs(),
                    dn.len()
                ));
            }
            Some(Arc::new(SpanSide {
                index,
                datanet: name.to_owned(),
                root: lorad_datanet::to_0x_hex(&dn.merkle_root()),
                ids: dn.records().iter().map(|r| r.id.clone()).collect(),
                doc_contributor: dn.records().iter().map(|r| r.contributor).collect(),
                contributors: dn.contributors().iter().map(|c| c.name.clone()).collect(),
            }))
        } else {
            None
        };
        lock().insert(name.to_owned(), side.clone());
        Ok(side)
    }

    /// The Datanet base answers are traced in: the first by name that has a span index, chosen
    /// at the first base answer (like the gradient indexes, found once per process).
    fn base_span_side(&self) -> Result<Option<Arc<SpanSide>>, String> {
        let name = self
            .base_datanet
            .get_or_init(|| {
                first_subdir(&self.datanets, |p| p.join("span").is_dir())
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .clone();
        match name {
            Some(n) => self.span_side(&n),
            None => Ok(None),
        }
    }

    /// Exact-match spans of `answer` in `side`, and the doc weights they give.
    fn trace(&self, side: &SpanSide, answer: &[u32]) -> Result<Traced, String> {
        let mut word_start: Vec<bool> = answer
            .iter()
            .map(|&t| self.word_start.get(t as usize).copied().unwrap_or(false))
            .collect();
        if let Some(first) = word_start.first_mut() {
            *first = true;
        }
        let params = SpanParams { word_start: Some(word_start), ..SpanParams::default() };
        let found = side.index.attribute(answer, &params).map_err(|e| e.to_string())?;
        let mut spans = Vec::with_capacity(found.spans.len());
        for sp in &found.spans {
            let mut contributors: Vec<String> = Vec::new();
            let mut records = Vec::new();
            for hit in &sp.docs {
                let d = hit.doc as usize;
                records.push(side.ids.get(d).cloned().unwrap_or_default());
                let c =
                    side.doc_contributor.get(d).and_then(|&c| side.contributors.get(c as usize));
                if let Some(c) = c
                    && !contributors.contains(c)
                {
                    contributors.push(c.clone());
                }
            }
            spans.push(SpanOut {
                start: sp.start,
                end: sp.end,
                text: self.tokenizer.decode(&answer[sp.start..sp.end], false).unwrap_or_default(),
                count: sp.count,
                records,
                contributors,
            });
        }
        Ok((spans, found.doc_weights))
    }

    /// Span attribution of a base-model answer. Blocking.
    fn attribute_base(
        &self,
        completion: &[u32],
    ) -> Result<Option<(AttributionOut, AttributionCost)>, String> {
        let start = Instant::now();
        let Some(side) = self.base_span_side()? else { return Ok(None) };
        if completion.is_empty() {
            return Ok(None);
        }
        let (spans, doc_weights) = self.trace(&side, completion)?;
        let per_contributor =
            lorad_attribution::span::contributor_weights(&doc_weights, &side.doc_contributor)
                .map_err(|e| e.to_string())?;
        let name = |c: u32| side.contributors.get(c as usize).cloned().unwrap_or_default();
        let out = AttributionOut {
            method: "span",
            adapter: None,
            adapter_hash: None,
            datanet: side.datanet.clone(),
            datanet_root: side.root.clone(),
            contributors: lorad_attribution::to_basis_points(&per_contributor)
                .into_iter()
                .map(|(c, weight_bps)| ContributorWeight { contributor: name(c), weight_bps })
                .collect(),
            records: doc_weights
                .iter()
                .take(self.top_k)
                .map(|&(d, w)| RecordScore {
                    id: side.ids.get(d as usize).cloned().unwrap_or_default(),
                    contributor: name(
                        side.doc_contributor.get(d as usize).copied().unwrap_or(u32::MAX),
                    ),
                    score: w as f32,
                })
                .collect(),
            spans,
        };
        let cost =
            AttributionCost { ms: start.elapsed().as_millis() as u64, tokens: completion.len() };
        Ok(Some((out, cost)))
    }

    /// Attributes `completion` (generated after `prompt`) on `adapter` (`None`: the base model).
    /// Blocking. `Ok(None)` when there is no index to score against or nothing to score.
    pub(crate) fn attribute(
        &self,
        adapter: Option<&str>,
        prompt: &[u32],
        completion: &[u32],
    ) -> Result<Option<(AttributionOut, AttributionCost)>, String> {
        let Some(adapter) = adapter else { return self.attribute_base(completion) };
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
        let twin = self.model.get()?;
        let grads = projected_gradients(&twin, &p.lora, &p.probes, &[example], 1, |_| {})
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
        let spans = match self.span_side(&h.datanet)? {
            Some(side) => self.trace(&side, completion)?.0,
            None => Vec::new(),
        };
        let out = AttributionOut {
            method: "gradient",
            adapter: Some(adapter.to_owned()),
            adapter_hash: Some(h.adapter_hash.clone()),
            datanet: h.datanet.clone(),
            datanet_root: h.datanet_root.clone(),
            contributors,
            records,
            spans,
        };
        let cost = AttributionCost { ms: start.elapsed().as_millis() as u64, tokens: scored };
        Ok(Some((out, cost)))
    }
}

/// Whether `root` (`<home>/attribution`) holds a gradient index for any adapter
/// (`<root>/<content hash>/<datanet>/`).
pub(crate) fn has_grad_index(root: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(root) else { return false };
    entries.filter_map(|e| e.ok().map(|e| e.path())).any(|hash| {
        !hash.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            && first_subdir(&hash, |p| p.is_dir()).is_some()
    })
}

/// The first entry of `dir` by name that is not hidden (temporary builds start with `.`) and
/// satisfies `keep`; `None` when there is none or `dir` cannot be read.
fn first_subdir(dir: &std::path::Path, keep: impl Fn(&std::path::Path) -> bool) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) && keep(p))
        .collect();
    found.sort();
    found.into_iter().next()
}
