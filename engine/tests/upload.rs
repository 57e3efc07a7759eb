//! Adapters uploaded straight from a store blob (how residency pages them in: stored dtype,
//! straight from the read buffer) equal the same adapters uploaded from their decoded f32
//! weights, tensor for tensor and bit for bit, for every stored dtype and engine dtype, on the
//! test device (`LORAD_TEST_DEVICE`). On a GPU the read buffers are page-locked.

use candle_core::{DType, Device, Tensor};
use lorad_engine::{AdapterDtype, ResidentAdapter};
use lorad_store::disk::{Store, StoreConfig};
use lorad_store::{Adapter, BaseShape, RandomAdapterSpec, StoredDtype, TargetModule};

/// A small llama shape (GQA: kv narrower than q); no model needed.
const BASE: BaseShape =
    BaseShape { num_layers: 3, hidden_size: 64, q_dim: 64, kv_dim: 32, intermediate_size: 96 };

/// A seeded adapter on every projection whose values are exactly representable in `stored`.
fn adapter(stored: StoredDtype, seed: u64) -> Adapter {
    let spec = RandomAdapterSpec {
        rank: 4 + seed as usize % 5,
        alpha: 16.0,
        targets: TargetModule::ALL.to_vec(),
        use_rslora: seed.is_multiple_of(2),
        layers: None,
        seed,
    };
    let mut a = lorad_store::random_adapter("x", &BASE, &spec);
    let round: fn(f32) -> f32 = match stored {
        StoredDtype::BF16 => |v| half::bf16::from_f32(v).to_f32(),
        StoredDtype::F16 => |v| half::f16::from_f32(v).to_f32(),
        StoredDtype::F32 => |v| v,
    };
    for w in &mut a.weights {
        for v in w.a.iter_mut().chain(w.b.iter_mut()) {
            *v = round(*v);
        }
    }
    a.content_hash = a.compute_content_hash();
    a
}

fn values(t: &Tensor) -> Vec<u32> {
    let t = t.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

fn assert_same(got: &ResidentAdapter, want: &ResidentAdapter, what: &str) {
    assert_eq!(
        (&got.name, &got.content_hash, got.max_rank, got.bytes),
        (&want.name, &want.content_hash, want.max_rank, want.bytes),
        "{what}"
    );
    for (l, (g, w)) in got.layers.iter().zip(&want.layers).enumerate() {
        for (m, (g, w)) in g.iter().zip(w).enumerate() {
            let (Some(g), Some(w)) = (g, w) else {
                assert!(g.is_none() && w.is_none(), "{what}: layer {l} module {m} presence");
                continue;
            };
            assert_eq!(g.scale().to_bits(), w.scale().to_bits(), "{what}: scale {l}/{m}");
            assert_eq!((g.a().dtype(), g.b_t().dtype()), (w.a().dtype(), w.b_t().dtype()));
            assert_eq!((g.a().dims(), g.b_t().dims()), (w.a().dims(), w.b_t().dims()));
            assert!(values(g.a()) == values(w.a()), "{what}: A of {l}/{m}");
            assert!(values(g.b_t()) == values(w.b_t()), "{what}: B of {l}/{m}");
        }
    }
}

#[test]
fn blob_uploads_equal_decoded_uploads() {
    let device = lorad_model::testing::test_device();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    for (seed, stored) in
        [StoredDtype::BF16, StoredDtype::F16, StoredDtype::F32].into_iter().enumerate()
    {
        let name = format!("x-{}", stored.as_str());
        store.import_adapter(&name, &adapter(stored, seed as u64), "").unwrap();
        let blob = store.read_blob(&name).unwrap();
        assert!(blob.manifest().iter().all(|p| p.a.dtype == stored && p.b.dtype == stored));
        store.check(&blob, &BASE).unwrap();
        let decoded = store.decode(&blob, &BASE).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let what = format!("stored {} engine {dtype:?}", stored.as_str());
            let got = ResidentAdapter::from_blob(&blob, &BASE, dtype, &device).unwrap();
            let want = ResidentAdapter::new(&decoded, &BASE, dtype, &device).unwrap();
            assert_same(&got, &want, &what);
            if device.is_cpu() && dtype == DType::F32 {
                // The f32 CPU engine keeps exactly-bf16 matrices in bf16, and only those.
                let keep = if stored == StoredDtype::BF16 { DType::BF16 } else { DType::F32 };
                assert_eq!(got.layers[0][0].as_ref().unwrap().a().dtype(), keep, "{what}");
            }
        }
    }
}

/// `AdapterDtype::Bf16` keeps every weight in bf16, whatever it was stored in and whatever the
/// engine computes in: bit for bit the adapter rounded to bf16 beforehand, in half the bytes
/// of f32, from a blob as from decoded weights.
#[test]
fn bf16_adapters_are_the_rounded_adapter_in_half_the_bytes() {
    let device = lorad_model::testing::test_device();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    for (seed, stored) in
        [StoredDtype::F32, StoredDtype::F16, StoredDtype::BF16].into_iter().enumerate()
    {
        let name = format!("r-{}", stored.as_str());
        let mut original = adapter(stored, 10 + seed as u64);
        original.name = name.clone();
        store.import_adapter(&name, &original, "").unwrap();
        let blob = store.read_blob(&name).unwrap();
        store.check(&blob, &BASE).unwrap();
        let mut rounded = original.clone();
        for w in &mut rounded.weights {
            for v in w.a.iter_mut().chain(w.b.iter_mut()) {
                *v = half::bf16::from_f32(*v).to_f32();
            }
        }
        if stored == StoredDtype::F32 {
            assert_ne!(rounded.weights[0].a, original.weights[0].a, "the rounding must bite");
        }
        for dtype in [DType::F32, DType::BF16] {
            let what = format!("stored {} engine {dtype:?}", stored.as_str());
            let bf16 = AdapterDtype::Bf16;
            let got = ResidentAdapter::new_as(&original, &BASE, dtype, bf16, &device).unwrap();
            let from_blob =
                ResidentAdapter::from_blob_as(&blob, &BASE, dtype, bf16, &device).unwrap();
            assert_same(&from_blob, &got, &what);
            let want = ResidentAdapter::new_as(&rounded, &BASE, dtype, bf16, &device).unwrap();
            assert_same(&got, &want, &what);
            let pair = got.layers[0][0].as_ref().unwrap();
            assert_eq!((pair.a().dtype(), pair.b_t().dtype()), (DType::BF16, DType::BF16));
            for (g, w) in got.layers.iter().flatten().zip(rounded_pairs(&rounded)) {
                assert_eq!(
                    values(g.as_ref().unwrap().a()),
                    w,
                    "{what}: A holds the rounded values"
                );
            }
            let full = ResidentAdapter::new(&original, &BASE, DType::F32, &device).unwrap();
            if stored == StoredDtype::F32 {
                assert_eq!(got.bytes * 2, full.bytes, "{what}: half the bytes of f32");
            }
        }
    }
}

/// The rounded `A` of every pair, in the resident layers' order (layer, then projection), as
/// f32 bits.
fn rounded_pairs(a: &Adapter) -> Vec<Vec<u32>> {
    let mut pairs: Vec<_> = a.weights.iter().collect();
    pairs.sort_by_key(|w| (w.layer, w.module.index()));
    pairs.iter().map(|w| w.a.iter().map(|v| v.to_bits()).collect()).collect()
}

/// A blob whose pairs do not fit the base is refused by the check, naming the adapter.
#[test]
fn check_refuses_a_blob_for_another_base() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    store.import_adapter("wide", &adapter(StoredDtype::BF16, 3), "").unwrap();
    let blob = store.read_blob("wide").unwrap();
    let other = BaseShape { hidden_size: 128, ..BASE };
    let err = store.check(&blob, &other).unwrap_err().to_string();
    assert!(err.contains("wide") && err.contains("in the base model"), "{err}");
}

/// On a GPU the store's buffers are page-locked once the engine's pinner is installed, and the
/// upload from them equals the decoded one. On the CPU there is nothing to pin.
#[test]
fn gpu_uploads_read_page_locked_buffers() {
    let device = lorad_model::testing::test_device();
    let Some(pinner) = lorad_engine::host_pinner(&device) else {
        assert!(device.is_cpu(), "every GPU gets a pinner");
        eprintln!("CPU test device: no host pinner (LORAD_TEST_DEVICE=cuda runs this on a GPU)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreConfig::default()).unwrap();
    store.set_host_pinner(pinner).unwrap();
    store.import_adapter("x", &adapter(StoredDtype::BF16, 5), "").unwrap();
    for round in 0..3 {
        let blob = store.read_blob("x").unwrap();
        assert!(blob.is_pinned(), "round {round}: the read buffer is page-locked");
        store.check(&blob, &BASE).unwrap();
        let got = ResidentAdapter::from_blob(&blob, &BASE, DType::F32, &device).unwrap();
        let decoded = store.decode(&blob, &BASE).unwrap();
        let want = ResidentAdapter::new(&decoded, &BASE, DType::F32, &device).unwrap();
        assert_same(&got, &want, "pinned upload");
    }
    let (pool, pinner) = store.buffer_stats();
    assert_eq!(pinner.as_deref(), Some("cuda"));
    assert!(pool.pinned_bytes > 0 && pool.reused >= 2 && pool.pin_failures == 0, "{pool:?}");
}
