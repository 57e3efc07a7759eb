//! Resident adapters: PEFT weights turned into per-layer, per-projection [`LoraPair`]s on the
//! engine's device, shared by every request that names them.
//!
//! Requests hold an `Arc` to their adapter for their whole life (a lease): removing an adapter
//! from the pool never pulls weights out from under a running request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, Tensor};
use lorad_kernels::LoraPair;
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
            let a = Tensor::from_slice(&w.a, (w.rank, inp), device)?.to_dtype(dtype)?;
            let b = (Tensor::from_slice(&w.b, (out, w.rank), device)? * f64::from(w.scale))?
                .to_dtype(dtype)?;
            bytes += (w.a.len() + w.b.len()) * dtype.size_in_bytes();
            let slot = &mut layers[w.layer][w.module.index()];
            if slot.is_some() {
                return Err(bad(format!("layer {} {} given twice", w.layer, w.module.peft_name())));
            }
            *slot = Some(LoraPair::new(a, b)?);
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

/// Name → resident adapter, shared between the API threads (lookups at submit) and the engine.
#[derive(Debug, Default, Clone)]
pub struct AdapterPool {
    inner: Arc<RwLock<HashMap<String, Arc<ResidentAdapter>>>>,
}

impl AdapterPool {
    /// Inserts or replaces an adapter. Requests already running keep the version they leased.
    pub fn insert(&self, adapter: ResidentAdapter) {
        let mut map = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(adapter.name.clone(), Arc::new(adapter));
    }

    /// Looks up an adapter, taking a lease on it.
    pub fn get(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned()
    }

    /// Removes an adapter; returns whether it was present.
    pub fn remove(&self, name: &str) -> bool {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name).is_some()
    }

    /// Names of all resident adapters, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}
