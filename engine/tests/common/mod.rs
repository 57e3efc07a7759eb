//! Shared set-up for the engine's integration tests: the real default model, loaded in f32 on
//! the test device (`LORAD_TEST_DEVICE`: the CPU unless `cuda`), and seeded random PEFT adapters
//! of chosen ranks.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use lorad_engine::{ForwardSeq, KvCache, Llama, ResidentAdapter};
use lorad_model::{LoadOptions, LoadedModel};
use lorad_store::{Adapter, RandomAdapterSpec, TargetModule};

/// The default model, or `None` (test skipped loudly; fails under CI=true).
pub fn load() -> Option<LoadedModel> {
    let path = lorad_model::testing::test_model_path()?;
    Some(
        lorad_model::load_model(
            &path,
            &LoadOptions { dtype: DType::F32, device: lorad_model::testing::test_device() },
        )
        .expect("load model"),
    )
}

/// A seeded random adapter on `targets` with rank `rank`.
pub fn adapter(
    model: &LoadedModel,
    name: &str,
    rank: usize,
    targets: &[TargetModule],
    rslora: bool,
    seed: u64,
) -> Adapter {
    let base = lorad_engine::base_shape(&model.config);
    lorad_store::random_adapter(
        name,
        &base,
        &RandomAdapterSpec {
            rank,
            alpha: 2.0 * rank as f64,
            targets: targets.to_vec(),
            use_rslora: rslora,
            layers: None,
            seed,
        },
    )
}

/// Runs a whole prompt through `model` in one prefill and returns the last position's logits.
pub fn prefill_logits(
    model: &Llama,
    prompt: &[u32],
    adapter: Option<&ResidentAdapter>,
) -> Vec<f32> {
    let mut all = stepped_logits(model, prompt, &[prompt.len()], adapter);
    all.pop().unwrap()
}

/// Every position's logits for `tokens`, run through a fresh paged KV cache the way the
/// scheduler feeds it: chunks of the given sizes (the first is the prompt), then one token per
/// step.
pub fn stepped_logits(
    model: &Llama,
    tokens: &[u32],
    chunks: &[usize],
    adapter: Option<&ResidentAdapter>,
) -> Vec<Vec<f32>> {
    let cfg = model.config();
    let bs = 16;
    let blocks = tokens.len().div_ceil(bs);
    let kv = KvCache::new(
        cfg.num_layers,
        blocks * bs,
        bs,
        cfg.num_kv_heads,
        cfg.head_dim,
        model.dtype(),
        model.device(),
    )
    .unwrap();
    // Blocks out of order, as an allocator hands them out.
    let table: Vec<u32> = (0..blocks as u32).rev().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut at = 0;
    let mut sizes = chunks.iter().copied();
    while at < tokens.len() {
        let n = sizes.next().unwrap_or(1).clamp(1, tokens.len() - at);
        let seq = ForwardSeq {
            tokens: &tokens[at..at + n],
            start_pos: at,
            block_table: &table,
            adapter,
            want_logits: true,
            all_logits: true,
            prompt_len: chunks.first().map_or(tokens.len(), |&n| n.min(tokens.len())),
        };
        out.extend(model.forward(&[seq], &kv).unwrap().to_vec2::<f32>().unwrap());
        at += n;
    }
    out
}

/// Largest absolute difference.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `W + s·B·A` for every pair of `adapter`, as new weights.
pub fn merged_weights(
    model: &LoadedModel,
    adapter: &Adapter,
) -> std::collections::HashMap<String, Tensor> {
    let mut w = model.weights.clone();
    for p in &adapter.weights {
        let name = lorad_engine::projection_weight_name(p.layer, p.module);
        let base = &w[&name];
        let (out, inp) = base.dims2().unwrap();
        // Merge in f64 so the merged reference is not itself the source of error.
        let a = Tensor::from_slice(&p.a, (p.rank, inp), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let b = Tensor::from_slice(&p.b, (out, p.rank), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let delta = (b.matmul(&a).unwrap() * f64::from(p.scale)).unwrap();
        let base64 = base.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
        let merged = (base64 + delta)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(base.device())
            .unwrap();
        w.insert(name, merged);
    }
    w
}

/// Tokenizes with the model's tokenizer.
pub fn encode(model: &LoadedModel, s: &str) -> Vec<u32> {
    model.tokenizer.encode(s).unwrap()
}

/// Shared handle type used by several tests.
pub type Shared<T> = Arc<T>;
