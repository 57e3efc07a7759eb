//! Resident adapters: PEFT weights turned into per-layer, per-projection [`LoraPair`]s on the
//! engine's device, shared by every request that names them.
//!
//! Requests hold an `Arc` to their adapter for their whole life (a lease): removing an adapter
//! from the pool never pulls weights out from under a running request.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use lorad_kernels::LoraPair;
use lorad_store::tiers::{TierCache, TierStats};
use lorad_store::{Adapter, BaseShape, TargetModule};

use crate::{EngineError, Result};

/// An adapter ready for the forward pass.
#[derive(Debug)]
pub struct ResidentAdapter {
    /// Its served name.
    pub name: String,
    /// Content hash from the store.
    pub content_hash: String,
    /// `layers[l][m]`: the pair for layer `l`, projection `TargetModule::ALL[m]`, if targeted.
    pub layers: Vec<[Option<LoraPair>; 7]>,
    /// Largest rank of any pair.
    pub max_rank: usize,
    /// Bytes held on the device.
    pub bytes: usize,
}

impl ResidentAdapter {
    /// Uploads `adapter` to `device` in `dtype`, folding each pair's scale into `B`.
    pub fn new(adapter: &Adapter, base: &BaseShape, dtype: DType, device: &Device) -> Result<Self> {
        let bad = |reason: String| EngineError::BadAdapter { name: adapter.name.clone(), reason };
        let mut layers: Vec<[Option<LoraPair>; 7]> =
            (0..base.num_layers).map(|_| Default::default()).collect();
        let mut bytes = 0;
        for w in &adapter.weights {
            let (out, inp) = base.shape(w.module);
            if w.layer >= base.num_layers {
                return Err(bad(format!(
                    "layer {} out of range (base has {})",
                    w.layer, base.num_layers
                )));
            }
            if w.a.len() != w.rank * inp || w.b.len() != out * w.rank || w.rank == 0 {
                return Err(bad(format!(
                    "layer {} {}: A/B sizes {}/{} do not match rank {} for [{out}, {inp}]",
                    w.layer,
                    w.module.peft_name(),
                    w.a.len(),
                    w.b.len(),
                    w.rank
                )));
            }
            let a = upload(&w.a, (w.rank, inp), dtype, device)?;
            let b = upload(&w.b, (out, w.rank), dtype, device)?;
            let slot = &mut layers[w.layer][w.module.index()];
            if slot.is_some() {
                return Err(bad(format!("layer {} {} given twice", w.layer, w.module.peft_name())));
            }
            let pair = LoraPair::new(a, b, w.scale)?;
            bytes += pair.bytes();
            *slot = Some(pair);
        }
        Ok(Self {
            name: adapter.name.clone(),
            content_hash: adapter.content_hash.clone(),
            layers,
            max_rank: adapter.max_rank(),
            bytes,
        })
    }

    /// The pair for `module` of `layer`.
    pub fn pair(&self, layer: usize, module: TargetModule) -> Option<&LoraPair> {
        self.layers.get(layer)?[module.index()].as_ref()
    }
}

/// One LoRA matrix on `device`. The CPU engine (f32) keeps a matrix in bf16 when every value is
/// exactly a bf16 (an adapter trained or saved in bf16): the fused kernel widens it on the fly, the
/// result is bit-for-bit the f32 one, and a decode step reads half the adapter bytes, which is what
/// bounds a batch of many distinct adapters on a CPU. Every other case converts to `dtype`.
fn upload(values: &[f32], shape: (usize, usize), dtype: DType, device: &Device) -> Result<Tensor> {
    let host = Tensor::from_slice(values, shape, &Device::Cpu)?;
    if device.is_cpu() && dtype == DType::F32 && is_exact_bf16(values) {
        return Ok(host.to_dtype(DType::BF16)?);
    }
    Ok(host.to_device(device)?.to_dtype(dtype)?)
}

/// Whether every value survives a round trip through bf16 unchanged (NaN never does).
fn is_exact_bf16(values: &[f32]) -> bool {
    values.iter().all(|&v| v.to_bits() & 0xFFFF == 0 && !v.is_nan())
}

/// The device working set: name → resident adapter under a byte budget, shared between the API
/// threads (lookups at submit) and the engine.
///
/// A request's `Arc<ResidentAdapter>` is its lease: the pool never evicts an adapter while any
/// clone of its `Arc` is alive (see [`TierCache`]), so admission can only evict adapters that no
/// running or queued request holds.
#[derive(Debug, Clone)]
pub struct AdapterPool {
    inner: Arc<TierCache<ResidentAdapter>>,
}

impl AdapterPool {
    /// An empty pool holding at most `budget_bytes` of adapter weights.
    pub fn new(budget_bytes: u64) -> Self {
        Self { inner: Arc::new(TierCache::new("device", budget_bytes)) }
    }

    /// Inserts or replaces an adapter, evicting least-recently-used unleased, unpinned ones to
    /// make room. Requests already running keep the version they leased. Returns the lease.
    pub fn insert(&self, adapter: ResidentAdapter) -> Result<Arc<ResidentAdapter>> {
        let name = adapter.name.clone();
        let bytes = adapter.bytes as u64;
        let arc = Arc::new(adapter);
        let evicted = self
            .inner
            .insert(&name, arc.clone(), bytes)
            .map_err(|full| EngineError::AdapterPoolFull { name: name.clone(), full })?;
        for (old, _) in evicted {
            tracing::debug!(adapter = %old, "evicted from the device working set");
        }
        Ok(arc)
    }

    /// Looks up an adapter, taking a lease on it (counts a hit or a miss).
    pub fn get(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        self.inner.get(name)
    }

    /// The resident adapter without counting a lookup or refreshing its recency.
    pub fn peek(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        self.inner.peek(name)
    }

    /// Whether `name` is resident (no statistics, no recency update).
    pub fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }

    /// Removes an adapter; returns whether it was present. Running requests keep their lease.
    pub fn remove(&self, name: &str) -> bool {
        self.inner.remove(name).is_some()
    }

    /// Pins or unpins `name` (pinned adapters are never evicted; remembered before insertion).
    pub fn set_pinned(&self, name: &str, pinned: bool) {
        self.inner.set_pinned(name, pinned);
    }

    /// Whether a request currently holds `name`.
    pub fn is_leased(&self, name: &str) -> bool {
        self.inner.is_leased(name)
    }

    /// Names of all resident adapters, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.keys()
    }

    /// Hit, miss, eviction and byte counters.
    pub fn stats(&self) -> TierStats {
        self.inner.stats()
    }
}
