//! Steps 1 and 2: generate and import the adapters; time opening the index.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lorad_store::{Adapter, BaseShape, RandomAdapterSpec, StoredInfo, TargetModule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{StoreArgs, StoreSpot, percentile, progress, sorted_ms};

/// What the import step measured.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ImportSummary {
    /// Adapters imported.
    pub(super) adapters: usize,
    /// Adapted layers per adapter.
    pub(super) layers: usize,
    /// Seconds spent generating (random values, bf16 rounding, content hash): not in the rates.
    pub(super) generation_secs: f64,
    /// Seconds spent inside `Store::import_adapter`.
    pub(super) import_secs: f64,
    /// Imports per second of import time.
    pub(super) adapters_per_s: f64,
    /// Blob megabytes (10^6) per second of import time.
    pub(super) mb_per_s: f64,
    /// Per-import latency, median.
    pub(super) import_p50_ms: f64,
    /// Per-import latency, 99th percentile.
    pub(super) import_p99_ms: f64,
    /// Sum of the blobs' on-disk sizes.
    pub(super) blob_bytes: u64,
    /// Sum of the weights' bytes as stored (2 bytes per bf16 value), without manifests/padding.
    pub(super) payload_bytes: u64,
    /// Bytes of all segment files.
    pub(super) disk_bytes: u64,
    /// `disk_bytes / adapters`.
    pub(super) disk_bytes_per_adapter: f64,
    /// Stored dtypes and how many adapters have each.
    pub(super) dtypes: String,
    /// The read path the store uses.
    pub(super) io_backend: String,
    /// Why `pread` is used, when it is.
    pub(super) io_fallback: Option<String>,
}

/// The imported adapters and the import figures.
#[derive(Debug)]
pub(super) struct Imported {
    /// The store's entry of every adapter, in import order.
    pub(super) infos: Vec<StoredInfo>,
    /// Figures.
    pub(super) summary: ImportSummary,
}

/// Timings of `Store::open` on the full store.
#[derive(Debug, Clone, Serialize)]
pub(super) struct OpenTimes {
    /// Each open, in order.
    pub(super) runs_ms: Vec<f64>,
    /// Fastest.
    pub(super) best_ms: f64,
    /// Median.
    pub(super) median_ms: f64,
}

/// Rounds to the nearest bf16 value (ties to even), as f32: the store then keeps it as bf16.
fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let bits = x.to_bits();
    let lsb = (bits >> 16) & 1;
    f32::from_bits(bits.wrapping_add(0x7fff + lsb) & 0xffff_0000)
}

/// Name of adapter `i`.
pub(super) fn adapter_name(i: usize) -> String {
    format!("bench-{i:06}")
}

/// Adapter `i` of the run: its own PRNG stream of `seed`, rank 4..=16, alpha 2·rank, a random
/// non-empty subset of the projections on `layers` random distinct layers, values bf16-exact.
pub(super) fn generate(i: usize, seed: u64, layers: usize, base: &BaseShape) -> Adapter {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i as u64);
    let rank = rng.random_range(4..=16usize);
    let mask = rng.random_range(1..1u32 << TargetModule::ALL.len());
    let targets =
        TargetModule::ALL.iter().enumerate().filter(|(k, _)| mask >> k & 1 == 1).map(|(_, t)| *t);
    let k = layers.min(base.num_layers);
    let layers = rand::seq::index::sample(&mut rng, base.num_layers, k).into_vec();
    let spec = RandomAdapterSpec {
        rank,
        alpha: 2.0 * rank as f64,
        targets: targets.collect(),
        use_rslora: false,
        layers: Some(layers),
        seed: rng.random(),
    };
    let mut adapter = lorad_store::random_adapter(&adapter_name(i), base, &spec);
    for w in &mut adapter.weights {
        for x in w.a.iter_mut().chain(w.b.iter_mut()) {
            *x = round_bf16(*x);
        }
    }
    adapter.content_hash = adapter.compute_content_hash();
    adapter
}

/// Step 1: generates and imports `args.adapters` adapters into a new store at `spot`.
pub(super) fn import_all(
    spot: &StoreSpot,
    base: &BaseShape,
    base_hash: &str,
    args: &StoreArgs,
) -> anyhow::Result<Imported> {
    let store = spot.open()?;
    ensure!(store.list().is_empty(), "the scratch store at {} is not empty", spot.root.display());
    let n = args.adapters;
    let (mut gen_time, mut import_times) = (Duration::ZERO, Vec::with_capacity(n));
    let mut infos = Vec::with_capacity(n);
    let mut payload = 0u64;
    let bar = progress(n, "import");
    for i in 0..n {
        let t = Instant::now();
        let adapter = generate(i, args.seed, args.layers, base);
        gen_time += t.elapsed();
        payload += 2 * adapter.num_params() as u64;
        let t = Instant::now();
        let info = store
            .import_adapter(&adapter.name, &adapter, base_hash)
            .with_context(|| format!("importing {}", adapter.name))?;
        import_times.push(t.elapsed());
        infos.push(info);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let import_secs: f64 = import_times.iter().map(Duration::as_secs_f64).sum();
    let blob_bytes: u64 = infos.iter().map(|i| i.bytes).sum();
    let disk_bytes = store.disk_bytes();
    let mut dtypes = BTreeMap::<&str, usize>::new();
    for info in &infos {
        *dtypes.entry(info.dtype.as_str()).or_default() += 1;
    }
    let ms = sorted_ms(&import_times);
    let summary = ImportSummary {
        adapters: n,
        layers: args.layers.min(base.num_layers),
        generation_secs: gen_time.as_secs_f64(),
        import_secs,
        adapters_per_s: n as f64 / import_secs,
        mb_per_s: blob_bytes as f64 / 1e6 / import_secs,
        import_p50_ms: percentile(&ms, 0.5),
        import_p99_ms: percentile(&ms, 0.99),
        blob_bytes,
        payload_bytes: payload,
        disk_bytes,
        disk_bytes_per_adapter: disk_bytes as f64 / n as f64,
        dtypes: dtypes.iter().map(|(d, c)| format!("{d} ×{c}")).collect::<Vec<_>>().join(", "),
        io_backend: store.io_backend().as_str().to_string(),
        io_fallback: store.io_fallback_reason(),
    };
    Ok(Imported { infos, summary })
}

/// Step 2: opens the full store 3 times (the previous one closed first) and checks it lists
/// every adapter.
pub(super) fn time_open(spot: &StoreSpot, expected: usize) -> anyhow::Result<OpenTimes> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let store = spot.open()?;
        runs.push(t.elapsed());
        let listed = store.list().len();
        ensure!(listed == expected, "the reopened store lists {listed} adapters, not {expected}");
    }
    let runs_ms: Vec<f64> = runs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let sorted = sorted_ms(&runs);
    Ok(OpenTimes { best_ms: sorted[0], median_ms: percentile(&sorted, 0.5), runs_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_nearest_even_and_exact() {
        assert_eq!(round_bf16(1.0), 1.0);
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6).
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        let x = round_bf16(0.123_456_79);
        assert_eq!(x.to_bits() & 0xffff, 0);
        assert!((x - 0.123_456_79).abs() < 1e-3);
    }

    #[test]
    fn generated_adapters_are_seeded_and_stored_as_bf16() {
        let base = BaseShape {
            num_layers: 6,
            hidden_size: 64,
            q_dim: 64,
            kv_dim: 32,
            intermediate_size: 96,
        };
        let a = generate(3, 7, 2, &base);
        assert_eq!(a, generate(3, 7, 2, &base), "same seed and index, same adapter");
        assert_ne!(a.content_hash, generate(4, 7, 2, &base).content_hash);
        assert!((4..=16).contains(&a.max_rank()));
        let layers: std::collections::BTreeSet<usize> = a.weights.iter().map(|w| w.layer).collect();
        assert_eq!(layers.len(), 2);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let root = std::env::temp_dir()
            .join(format!("lorad-bench-store-test-{}-{nanos}", std::process::id()));
        let store = lorad_store::Store::open(&root, lorad_store::StoreConfig::default()).unwrap();
        let info = store.import_adapter(&a.name, &a, "base").unwrap();
        assert_eq!(info.dtype, "bf16");
        let back = store.load(&a.name, &base).unwrap();
        assert_eq!(back.weights, a.weights, "bf16 storage is lossless for rounded values");
        drop(store);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
