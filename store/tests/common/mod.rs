//! Shared helpers for the store's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use lorad_store::{
    Adapter, BaseShape, RandomAdapterSpec, StoreError, TargetModule, TensorDtype, random_adapter,
    write_peft_dir,
};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::Value;

/// A tiny llama: 2 layers, hidden 64, q 64, kv 32, intermediate 128.
pub fn small() -> BaseShape {
    BaseShape { num_layers: 2, hidden_size: 64, q_dim: 64, kv_dim: 32, intermediate_size: 128 }
}

/// SmolLM2-135M's real shape.
pub fn smol() -> BaseShape {
    BaseShape { num_layers: 30, hidden_size: 576, q_dim: 576, kv_dim: 192, intermediate_size: 1536 }
}

pub const QV: [TargetModule; 2] = [TargetModule::QProj, TargetModule::VProj];

pub fn spec(rank: usize, alpha: f64, targets: &[TargetModule], seed: u64) -> RandomAdapterSpec {
    RandomAdapterSpec {
        rank,
        alpha,
        targets: targets.to_vec(),
        use_rslora: false,
        layers: None,
        seed,
    }
}

/// A rank-8, alpha-16 q/v adapter on `base`.
pub fn qv_adapter(base: &BaseShape, seed: u64) -> Adapter {
    random_adapter("test", base, &spec(8, 16.0, &QV, seed))
}

/// Writes `adapter` as F32 into `<parent>/<name>` and returns the directory.
pub fn write_dir(parent: &Path, name: &str, adapter: &Adapter) -> PathBuf {
    let dir = parent.join(name);
    write_peft_dir(&dir, adapter, TensorDtype::F32).expect("write_peft_dir");
    dir
}

/// One tensor for [`write_raw`]: name, shape, values (written as F32).
pub type RawTensor = (String, Vec<usize>, Vec<f32>);

/// The canonical A/B tensors of `adapter` (F32).
pub fn tensors_of(adapter: &Adapter) -> Vec<RawTensor> {
    let mut out = Vec::new();
    for w in &adapter.weights {
        let path = format!(
            "base_model.model.model.layers.{}.{}.{}",
            w.layer,
            if w.module.index() < 4 { "self_attn" } else { "mlp" },
            w.module.peft_name()
        );
        out.push((format!("{path}.lora_A.weight"), vec![w.rank, w.a.len() / w.rank], w.a.clone()));
        out.push((format!("{path}.lora_B.weight"), vec![w.b.len() / w.rank, w.rank], w.b.clone()));
    }
    out
}

/// Writes an adapter directory from a raw config value and raw F32 tensors.
pub fn write_raw(dir: &Path, config: &Value, tensors: &[RawTensor]) {
    let typed: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (n.clone(), Dtype::F32, s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    write_raw_typed(dir, config, &typed);
}

/// Like [`write_raw`] with explicit dtypes and raw little-endian bytes.
pub fn write_raw_typed(
    dir: &Path,
    config: &Value,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), serde_json::to_vec_pretty(config).unwrap())
        .unwrap();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), bytes).unwrap();
}

/// The PEFT 0.17 fixture config.
pub fn fixture_config() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_0_17_adapter_config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The fixture config with `r`, `lora_alpha` and `target_modules` replaced.
pub fn config_with(r: usize, alpha: f64, targets: &[&str]) -> Value {
    let mut c = fixture_config();
    c["r"] = r.into();
    c["lora_alpha"] = alpha.into();
    c["target_modules"] = targets.iter().map(|t| Value::from(*t)).collect();
    c
}

/// Reads the config of an adapter dir as JSON.
pub fn read_config(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap()
}

/// Rewrites the config of an adapter dir.
pub fn rewrite_config(dir: &Path, config: &Value) {
    std::fs::write(dir.join("adapter_config.json"), serde_json::to_vec_pretty(config).unwrap())
        .unwrap();
}

/// The error's Display text; panics (failing the test) if `r` is Ok.
pub fn err_text<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts `text` contains every needle.
#[track_caller]
pub fn assert_mentions(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "error {text:?} should mention {n:?}");
    }
}
