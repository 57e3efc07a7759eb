//! Phi-3 adapters: LoRA pairs on the fused `qkv_proj` and `gate_up_proj` import as one pair per
//! projection, `A` shared and `B` cut into each projection's rows (what PEFT's fused layer
//! computes, since `x·Aᵀ·Bᵀ` split by output rows is each part's own product), with the config's
//! rank and scale; a fused pair beside a pair of one of its parts, or a `B` of the wrong height,
//! is refused.

mod common;

use common::*;
use lorad_store::{TargetModule, read_peft_dir};
use serde_json::json;

const RANK: usize = 4;

/// Seeded values, distinct per tensor.
fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.37 + seed).sin() * 0.1).collect()
}

fn key(layer: usize, path: &str, ab: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{path}.lora_{ab}.weight")
}

/// The fused pairs of a Phi-3 adapter on every layer of [`small`] (plus `o_proj`).
fn phi3_tensors() -> Vec<RawTensor> {
    let b = small();
    let (h, q, kv, ff) = (b.hidden_size, b.q_dim, b.kv_dim, b.intermediate_size);
    let mut out = Vec::new();
    for l in 0..b.num_layers {
        let s = 10.0 * l as f32;
        for (path, in_f, out_f, seed) in [
            ("self_attn.qkv_proj", h, q + 2 * kv, s + 1.0),
            ("self_attn.o_proj", q, h, s + 2.0),
            ("mlp.gate_up_proj", h, 2 * ff, s + 3.0),
        ] {
            out.push((key(l, path, "A"), vec![RANK, in_f], values(RANK * in_f, seed)));
            out.push((key(l, path, "B"), vec![out_f, RANK], values(out_f * RANK, seed + 0.5)));
        }
    }
    out
}

fn config() -> serde_json::Value {
    config_with(RANK, 8.0, &["qkv_proj", "o_proj", "gate_up_proj"])
}

#[test]
fn fused_pairs_import_as_one_pair_per_projection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("phi3");
    let tensors = phi3_tensors();
    write_raw(&dir, &config(), &tensors);
    let a = read_peft_dir(&dir, "phi3", &small()).unwrap();
    use TargetModule::*;
    assert_eq!(a.config.target_modules, [QProj, KProj, VProj, OProj, GateProj, UpProj]);
    let b = small();
    let find = |name: &str| tensors.iter().find(|t| t.0 == name).unwrap().2.clone();
    for l in 0..b.num_layers {
        let (qkv_a, qkv_b) =
            (find(&key(l, "self_attn.qkv_proj", "A")), find(&key(l, "self_attn.qkv_proj", "B")));
        let (gu_a, gu_b) =
            (find(&key(l, "mlp.gate_up_proj", "A")), find(&key(l, "mlp.gate_up_proj", "B")));
        let rows = |from: usize, n: usize| from * RANK..(from + n) * RANK;
        let (q, kv, ff) = (b.q_dim, b.kv_dim, b.intermediate_size);
        for (m, a_want, b_want) in [
            (QProj, &qkv_a, &qkv_b[rows(0, q)]),
            (KProj, &qkv_a, &qkv_b[rows(q, kv)]),
            (VProj, &qkv_a, &qkv_b[rows(q + kv, kv)]),
            (GateProj, &gu_a, &gu_b[rows(0, ff)]),
            (UpProj, &gu_a, &gu_b[rows(ff, ff)]),
        ] {
            let w = a.weights.iter().find(|w| (w.layer, w.module) == (l, m)).unwrap();
            assert_eq!((w.rank, w.scale), (RANK, 2.0), "layer {l} {m}");
            assert_eq!(&w.a, a_want, "layer {l} {m}: A is the fused A");
            assert_eq!(w.b, b_want, "layer {l} {m}: B is its rows of the fused B");
        }
    }
    assert_eq!(a.weights.len(), b.num_layers * 6);
    assert_eq!(a.content_hash, a.compute_content_hash());
}

#[test]
fn fused_pairs_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    // A fused pair and a pair of one of its parts in the same layer.
    let mut tensors = phi3_tensors();
    let h = small().hidden_size;
    tensors.push((key(0, "self_attn.k_proj", "A"), vec![RANK, h], values(RANK * h, 9.0)));
    tensors.push((
        key(0, "self_attn.k_proj", "B"),
        vec![small().kv_dim, RANK],
        values(32 * RANK, 9.5),
    ));
    let dir = tmp.path().join("dup");
    write_raw(
        &dir,
        &config_with(RANK, 8.0, &["qkv_proj", "k_proj", "o_proj", "gate_up_proj"]),
        &tensors,
    );
    let e = err_text(read_peft_dir(&dir, "dup", &small()));
    assert_mentions(&e, &["layers.0.self_attn.k_proj", "qkv_proj"]);
    // A qkv B as tall as q alone.
    let mut tensors = phi3_tensors();
    let short = key(1, "self_attn.qkv_proj", "B");
    let t = tensors.iter_mut().find(|t| t.0 == short).unwrap();
    t.1 = vec![small().q_dim, RANK];
    t.2.truncate(small().q_dim * RANK);
    let dir = tmp.path().join("short");
    write_raw(&dir, &config(), &tensors);
    let e = err_text(read_peft_dir(&dir, "short", &small()));
    assert_mentions(&e, &["qkv_proj", "out_features=128"]);
    // `target_modules` may name the fused modules, but nothing else unknown.
    let dir = tmp.path().join("unknown");
    write_raw(
        &dir,
        &json!({"r": RANK, "lora_alpha": 8, "target_modules": ["qkvo_proj"], "peft_type": "LORA"}),
        &phi3_tensors(),
    );
    let e = err_text(read_peft_dir(&dir, "unknown", &small()));
    assert_mentions(&e, &["qkvo_proj", "qkv_proj / gate_up_proj"]);
}

/// `s·B·A` of a pair, dense, in f64.
fn delta(w: &lorad_store::LoraWeights) -> Vec<f64> {
    let (r, inp, out) = (w.rank, w.a.len() / w.rank, w.b.len() / w.rank);
    let mut d = vec![0f64; out * inp];
    for o in 0..out {
        for j in 0..r {
            let bv = f64::from(w.b[o * r + j]) * f64::from(w.scale);
            for i in 0..inp {
                d[o * inp + i] += bv * f64::from(w.a[j * inp + i]);
            }
        }
    }
    d
}

/// lorad's pairs per projection, exported for a fused-projection base: the parts of a fused
/// module stack into one pair (A stacked, B block-diagonal, scales folded in) that PEFT and
/// lorad read back as the same update on every projection. Mixed ranks and scales (k_proj has
/// its own by pattern), rsLoRA, and an adapter on q and v only (k's rows of B stay zero).
#[test]
fn export_for_fused_bases_reads_back_as_the_same_updates() {
    use TargetModule::*;
    let base = small();
    let mut full = lorad_store::random_adapter(
        "full",
        &base,
        &lorad_store::RandomAdapterSpec {
            rank: 4,
            alpha: 8.0,
            targets: TargetModule::ALL.to_vec(),
            use_rslora: true,
            seed: 3,
            ..Default::default()
        },
    );
    // k_proj at rank 2 with alpha 3: its own rank and scale by pattern.
    full.config.rank_pattern.insert("k_proj".into(), 2);
    full.config.alpha_pattern.insert("k_proj".into(), 3.0);
    for w in full.weights.iter_mut().filter(|w| w.module == KProj) {
        let inp = w.a.len() / w.rank;
        w.a.truncate(2 * inp);
        w.b = w.b.chunks_exact(w.rank).flat_map(|row| row[..2].to_vec()).collect();
        w.rank = 2;
        w.scale = (3.0 / 2f64.sqrt()) as f32;
    }
    let qv = lorad_store::random_adapter(
        "qv",
        &base,
        &lorad_store::RandomAdapterSpec { rank: 4, alpha: 16.0, seed: 4, ..Default::default() },
    );
    let tmp = tempfile::tempdir().unwrap();
    for adapter in [&full, &qv] {
        let dir = tmp.path().join(&adapter.name);
        lorad_store::write_peft_dir_fused(&dir, adapter, lorad_store::TensorDtype::F32, &base)
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap())
                .unwrap();
        let targets = config["target_modules"].as_array().unwrap();
        assert!(targets.iter().any(|t| t == "qkv_proj"), "{config}");
        assert!(!targets.iter().any(|t| t == "q_proj" || t == "v_proj"), "{config}");
        assert_eq!(
            (config["use_rslora"].as_bool(), &config["r"]),
            (Some(false), &config["lora_alpha"])
        );
        let back = read_peft_dir(&dir, &adapter.name, &base).unwrap();
        for w in &adapter.weights {
            let got = back.weights.iter().find(|b| (b.layer, b.module) == (w.layer, w.module));
            let got = got
                .unwrap_or_else(|| panic!("{}: {} {:?} missing", adapter.name, w.layer, w.module));
            let (want, got) = (delta(w), delta(got));
            let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(
                diff < 1e-6,
                "{}: layer {} {:?}: max diff {diff}",
                adapter.name,
                w.layer,
                w.module
            );
        }
        // Projections the adapter leaves alone read back with no update (k_proj of `qv`).
        for b in &back.weights {
            if !adapter.weights.iter().any(|w| (w.layer, w.module) == (b.layer, b.module)) {
                assert!(
                    delta(b).iter().all(|&v| v == 0.0),
                    "{}: {:?} changed",
                    adapter.name,
                    b.module
                );
            }
        }
    }
    // The fused k_proj pair has the ranks of q, k and v side by side.
    let dir = tmp.path().join("full");
    let back = read_peft_dir(&dir, "full", &base).unwrap();
    let k = back.weights.iter().find(|w| w.module == KProj).unwrap();
    assert_eq!((k.rank, k.scale), (10, 1.0));
}
