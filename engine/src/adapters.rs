//! Resident adapters: PEFT weights turned into per-layer, per-projection [`LoraPair`]s on the
//! engine's device, shared by every request that names them.
//!
//! Requests hold an `Arc` to their adapter for their whole life (a lease): removing an adapter
//! from the pool never pulls weights out from under a running request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor};
use lorad_kernels::LoraPair;
use lorad_store::tiers::{Admission, TierCache, TierFull, TierStats};
use lorad_store::{Adapter, BaseShape, Blob, StoredDtype, TargetModule};

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
    /// Unique among every adapter made resident in this process (names and hashes repeat when
    /// an adapter is evicted and paged in again; caches of device copies key on this).
    uid: u64,
}

/// The precision the engine keeps adapter weights in (vLLM's `--lora-dtype`), chosen by the
/// operator: adapter weights are what a decode step over many distinct adapters reads most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterDtype {
    /// The engine's dtype; the CPU's f32 engine keeps weights that are exactly bf16 (saved in
    /// bf16) in bf16, which changes no bit of an answer.
    #[default]
    Auto,
    /// Every weight rounded to bf16 when it is made resident: half the device bytes of f32
    /// weights, and on the CPU half the bytes a decode step reads per adapter row. Answers
    /// are those of the adapter with its weights rounded to bf16.
    Bf16,
}

impl ResidentAdapter {
    /// Uploads `adapter` (decoded f32 weights) to `device` in `dtype`.
    pub fn new(adapter: &Adapter, base: &BaseShape, dtype: DType, device: &Device) -> Result<Self> {
        Self::new_as(adapter, base, dtype, AdapterDtype::Auto, device)
    }

    /// [`ResidentAdapter::new`] with the weights kept as `weights` says.
    pub fn new_as(
        adapter: &Adapter,
        base: &BaseShape,
        dtype: DType,
        weights: AdapterDtype,
        device: &Device,
    ) -> Result<Self> {
        let pairs = adapter.weights.iter().map(|w| HostPair {
            layer: w.layer,
            module: w.module,
            rank: w.rank,
            scale: w.scale,
            a: HostMatrix::F32(&w.a),
            b: HostMatrix::F32(&w.b),
        });
        let to = Upload { dtype, weights, device };
        build(&adapter.name, &adapter.content_hash, pairs, base, &to)
    }

    /// Uploads a store blob's tensors as they are stored (bf16 stays bf16 until it is on the
    /// device), straight from the blob's buffer: page-locked under CUDA, so the copy is DMA and
    /// half the bytes of an f32 upload. The blob must have passed [`lorad_store::Store::check`]
    /// for `base`. Returns once the copies are complete, so the buffer may be reused.
    pub fn from_blob(blob: &Blob, base: &BaseShape, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_blob_as(blob, base, dtype, AdapterDtype::Auto, device)
    }

    /// [`ResidentAdapter::from_blob`] with the weights kept as `weights` says.
    pub fn from_blob_as(
        blob: &Blob,
        base: &BaseShape,
        dtype: DType,
        weights: AdapterDtype,
        device: &Device,
    ) -> Result<Self> {
        let pairs = blob.manifest().iter().map(|p| HostPair {
            layer: p.layer,
            module: p.module,
            rank: p.rank,
            scale: p.scale,
            a: HostMatrix::Stored(p.a.dtype, blob.tensor_bytes(&p.a)),
            b: HostMatrix::Stored(p.b.dtype, blob.tensor_bytes(&p.b)),
        });
        let info = blob.info();
        let to = Upload { dtype, weights, device };
        let adapter = build(&info.name, &info.content_hash, pairs, base, &to)?;
        // Copies from page-locked memory are asynchronous: finish them before the caller can
        // drop the blob and its buffer goes back to the pool.
        device.synchronize()?;
        Ok(adapter)
    }

    /// This residency's process-unique id.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// The pair for `module` of `layer`.
    pub fn pair(&self, layer: usize, module: TargetModule) -> Option<&LoraPair> {
        self.layers.get(layer)?[module.index()].as_ref()
    }
}

// Stored tensors are little-endian and are uploaded without byte swapping.
const _: () = assert!(cfg!(target_endian = "little"), "lorad assumes a little-endian host");

/// One LoRA matrix in host memory, before upload.
enum HostMatrix<'a> {
    /// Decoded values.
    F32(&'a [f32]),
    /// A store blob's bytes in their stored dtype.
    Stored(StoredDtype, &'a [u8]),
}

impl HostMatrix<'_> {
    fn elements(&self) -> usize {
        match *self {
            HostMatrix::F32(v) => v.len(),
            HostMatrix::Stored(dtype, bytes) => bytes.len() / dtype.size(),
        }
    }
}

/// One LoRA pair in host memory.
struct HostPair<'a> {
    layer: usize,
    module: TargetModule,
    rank: usize,
    scale: f32,
    a: HostMatrix<'a>,
    b: HostMatrix<'a>,
}

/// Where and how weights are made resident.
struct Upload<'a> {
    /// The engine's dtype.
    dtype: DType,
    weights: AdapterDtype,
    device: &'a Device,
}

/// Checks every pair against `base` and uploads it.
fn build<'a>(
    name: &str,
    content_hash: &str,
    pairs: impl Iterator<Item = HostPair<'a>>,
    base: &BaseShape,
    to: &Upload<'_>,
) -> Result<ResidentAdapter> {
    let bad = |reason: String| EngineError::BadAdapter { name: name.to_owned(), reason };
    let mut layers: Vec<[Option<LoraPair>; 7]> =
        (0..base.num_layers).map(|_| Default::default()).collect();
    let (mut bytes, mut max_rank) = (0, 0);
    for w in pairs {
        let (out, inp) = base.shape(w.module);
        if w.layer >= base.num_layers {
            return Err(bad(format!(
                "layer {} out of range (base has {})",
                w.layer, base.num_layers
            )));
        }
        let (na, nb) = (w.a.elements(), w.b.elements());
        if na != w.rank * inp || nb != out * w.rank || w.rank == 0 {
            return Err(bad(format!(
                "layer {} {}: A/B sizes {na}/{nb} do not match rank {} for [{out}, {inp}]",
                w.layer,
                w.module.peft_name(),
                w.rank
            )));
        }
        let a = upload(name, w.a, (w.rank, inp), to)?;
        let b = upload(name, w.b, (out, w.rank), to)?;
        let slot = &mut layers[w.layer][w.module.index()];
        if slot.is_some() {
            return Err(bad(format!("layer {} {} given twice", w.layer, w.module.peft_name())));
        }
        let pair = LoraPair::new(a, b, w.scale)?;
        bytes += pair.bytes();
        max_rank = max_rank.max(w.rank);
        *slot = Some(pair);
    }
    Ok(ResidentAdapter {
        name: name.to_owned(),
        content_hash: content_hash.to_owned(),
        layers,
        max_rank,
        bytes,
        uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
    })
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// One LoRA matrix on the device. The CPU engine (f32) keeps a matrix in bf16 when every value
/// is exactly a bf16 (an adapter trained or saved in bf16; the store keeps exactly those in
/// bf16): the fused kernel widens it on the fly, the result is bit-for-bit the f32 one, and a
/// decode step reads half the adapter bytes, which is what bounds a batch of many distinct
/// adapters on a CPU. [`AdapterDtype::Bf16`] rounds every matrix to bf16 (on the host for
/// decoded weights, so the copy is half the bytes). Every other case converts to the engine's
/// dtype, on the device, after a copy in the host dtype.
fn upload(name: &str, m: HostMatrix<'_>, shape: (usize, usize), to: &Upload<'_>) -> Result<Tensor> {
    let (dtype, device) = (to.dtype, to.device);
    let keep_bf16 = keeps_bf16(device, dtype);
    let rounded = to.weights == AdapterDtype::Bf16;
    let t = match m {
        HostMatrix::F32(values) => {
            let host = Tensor::from_slice(values, shape, &Device::Cpu)?;
            if rounded || (keep_bf16 && is_exact_bf16(values)) {
                return Ok(host.to_dtype(DType::BF16)?.to_device(device)?);
            }
            host.to_device(device)?
        }
        HostMatrix::Stored(stored, bytes) => {
            let t = match stored {
                StoredDtype::BF16 => {
                    Tensor::from_slice(cast::<half::bf16>(name, bytes)?, shape, device)?
                }
                StoredDtype::F16 => {
                    Tensor::from_slice(cast::<half::f16>(name, bytes)?, shape, device)?
                }
                StoredDtype::F32 => Tensor::from_slice(cast::<f32>(name, bytes)?, shape, device)?,
            };
            if rounded {
                return Ok(t.to_dtype(DType::BF16)?);
            }
            if keep_bf16 && stored == StoredDtype::BF16 {
                return Ok(t);
            }
            t
        }
    };
    Ok(t.to_dtype(dtype)?)
}

/// Whether an engine of this dtype on this device keeps exact-bf16 matrices in bf16 (the CPU
/// f32 engine's fused kernel widens them on the fly); the store's residency bound follows it.
pub(crate) fn keeps_bf16(device: &Device, dtype: DType) -> bool {
    device.is_cpu() && dtype == DType::F32
}

/// Stored bytes as elements (blob tensors start 4 KiB-aligned, so this never copies or fails on
/// a blob the store read).
fn cast<'a, T: bytemuck::AnyBitPattern>(name: &str, bytes: &'a [u8]) -> Result<&'a [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| EngineError::BadAdapter {
        name: name.to_owned(),
        reason: format!("a stored tensor of {} bytes cannot be read in place: {e}", bytes.len()),
    })
}

/// Whether every value survives a round trip through bf16 unchanged (NaN never does).
fn is_exact_bf16(values: &[f32]) -> bool {
    values.iter().all(|&v| v.to_bits() & 0xFFFF == 0 && !v.is_nan())
}

/// What [`AdapterPool::admit`] did.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// The adapter is resident (the caller's `Arc` is its lease).
    Inserted,
    /// Waiting for the leased adapters that would make room; the budget figures.
    Draining(TierFull),
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
    /// make room. Requests already running keep the version they leased. Returns the lease; on
    /// [`EngineError::AdapterPoolFull`] the caller's `Arc` is untouched and can be offered again.
    pub fn insert(&self, adapter: Arc<ResidentAdapter>) -> Result<Arc<ResidentAdapter>> {
        let name = adapter.name.clone();
        let bytes = adapter.bytes as u64;
        let evicted = self
            .inner
            .insert(&name, adapter.clone(), bytes)
            .map_err(|full| EngineError::AdapterPoolFull { name: name.clone(), full })?;
        for (old, _) in evicted {
            tracing::debug!(adapter = %old, "evicted from the device working set");
        }
        Ok(adapter)
    }

    /// Admits `adapter` for the residency manager's caller whose turn it is (see
    /// [`TierCache::admit`]): in, or the leased adapters that would make room start draining
    /// (no new leases) and [`Admitted::Draining`] says to try again once they are released.
    /// [`EngineError::AdapterPoolFull`] when pinned adapters leave too little room.
    pub(crate) fn admit(&self, adapter: &Arc<ResidentAdapter>) -> Result<Admitted> {
        let name = &adapter.name;
        match self.inner.admit(name, adapter.clone(), adapter.bytes as u64) {
            Ok(Admission::Inserted(evicted)) => {
                for (old, _) in evicted {
                    tracing::debug!(adapter = %old, "evicted from the device working set");
                }
                Ok(Admitted::Inserted)
            }
            Ok(Admission::Draining(full)) => Ok(Admitted::Draining(full)),
            Err(full) => Err(EngineError::AdapterPoolFull { name: name.clone(), full }),
        }
    }

    /// A lease on `name` for the caller whose turn it is, lifting its drain mark.
    pub(crate) fn claim(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        self.inner.claim(name)
    }

    /// Lifts every drain mark.
    pub(crate) fn clear_draining(&self) {
        self.inner.clear_draining();
    }

    /// Whether `name` is resident but takes no new leases until a waiting adapter is admitted.
    pub fn is_draining(&self, name: &str) -> bool {
        self.inner.is_draining(name)
    }

    /// Looks up an adapter, taking a lease on it (counts a hit or a miss). A draining adapter is
    /// a miss: [`crate::AdapterManager::acquire`] then waits its turn for it.
    pub fn get(&self, name: &str) -> Option<Arc<ResidentAdapter>> {
        self.inner.get(name)
    }

    /// The resident adapter, draining or not, without counting a lookup or refreshing its
    /// recency (for holders of a lease).
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

    /// Whether `name` is pinned (resident or not).
    pub fn is_pinned(&self, name: &str) -> bool {
        self.inner.is_pinned(name)
    }

    /// Every pinned name (resident or not), sorted.
    pub fn pinned_names(&self) -> Vec<String> {
        self.inner.pinned_keys()
    }

    /// Bytes of the resident pinned adapters.
    pub fn pinned_bytes(&self) -> u64 {
        self.inner.pinned_bytes()
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.inner.budget()
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
