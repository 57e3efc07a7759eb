//! Writing and reading PEFT adapters: value fidelity per dtype, scale resolution, mixed ranks,
//! the PEFT fixture, the written config's key set, and the content hash.

mod common;

use std::collections::BTreeMap;

use common::*;
use lorad_store::{
    Adapter, LoraWeights, PeftConfig, RandomAdapterSpec, TargetModule, TensorDtype, random_adapter,
    read_peft_dir, write_peft_dir,
};
use serde_json::{Value, json};

fn all7_adapter(seed: u64) -> Adapter {
    random_adapter("all7", &small(), &spec(4, 8.0, &TargetModule::ALL, seed))
}

#[test]
fn f32_round_trip_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = all7_adapter(1);
    assert_eq!(adapter.weights.len(), 2 * 7);
    // Random B must be non-zero, otherwise every downstream test is vacuous.
    assert!(adapter.weights.iter().all(|w| w.b.iter().any(|&v| v != 0.0)));
    let dir = write_dir(tmp.path(), "a", &adapter);
    let back = read_peft_dir(&dir, "all7", &small()).unwrap();
    assert_eq!(back.weights, adapter.weights);
    assert_eq!(back.config, adapter.config);
    assert_eq!(back.content_hash, adapter.content_hash);
    assert_eq!(back.content_hash, back.compute_content_hash());
    assert_eq!(back.content_hash.len(), 64);
    assert_eq!(back.num_params(), adapter.num_params());
    assert_eq!(back.max_rank(), 4);
}

fn check_rounded(dtype: TensorDtype, round: fn(f32) -> f32, rel: f32) {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = all7_adapter(2);
    let dir = tmp.path().join("a");
    write_peft_dir(&dir, &adapter, dtype).unwrap();
    let back = read_peft_dir(&dir, "all7", &small()).unwrap();
    assert_eq!(back.weights.len(), adapter.weights.len());
    let mut changed = 0;
    for (w, r) in adapter.weights.iter().zip(&back.weights) {
        assert_eq!((w.layer, w.module, w.rank, w.scale), (r.layer, r.module, r.rank, r.scale));
        for (x, y) in w.a.iter().chain(&w.b).zip(r.a.iter().chain(&r.b)) {
            assert_eq!(*y, round(*x), "{dtype:?} must round to nearest");
            assert!((x - y).abs() <= x.abs() * rel + 1e-7, "{x} vs {y}");
            changed += usize::from(x != y);
        }
    }
    assert!(changed > 0, "{dtype:?} rounding should alter some values");
    // The hash is over the converted values: it differs from the F32 original's hash but equals
    // the hash of the rounded adapter.
    assert_ne!(back.content_hash, adapter.content_hash);
    let mut rounded = adapter.clone();
    for w in &mut rounded.weights {
        w.a.iter_mut().chain(w.b.iter_mut()).for_each(|v| *v = round(*v));
    }
    assert_eq!(back.content_hash, rounded.compute_content_hash());
}

#[test]
fn f16_round_trip_within_rounding() {
    check_rounded(TensorDtype::F16, |x| half::f16::from_f32(x).to_f32(), 1.0 / 2048.0);
}

#[test]
fn bf16_round_trip_within_rounding() {
    check_rounded(TensorDtype::BF16, |x| half::bf16::from_f32(x).to_f32(), 1.0 / 256.0);
}

#[test]
fn smollm2_shape_round_trip_with_layer_subset() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = RandomAdapterSpec {
        rank: 16,
        alpha: 32.0,
        targets: TargetModule::ALL.to_vec(),
        use_rslora: true,
        layers: Some(vec![29, 0, 15, 0, 99]),
        seed: 7,
    };
    let adapter = random_adapter("smol", &smol(), &spec);
    assert_eq!(adapter.config.layers_to_transform, Some(vec![0, 15, 29]));
    assert_eq!(adapter.weights.len(), 3 * 7);
    let dir = write_dir(tmp.path(), "smol", &adapter);
    let back = read_peft_dir(&dir, "smol", &smol()).unwrap();
    assert_eq!(back.weights, adapter.weights);
    assert_eq!(back.config.layers_to_transform, Some(vec![0, 15, 29]));
    let down = back.weights.iter().find(|w| w.module == TargetModule::DownProj).unwrap();
    assert_eq!((down.a.len(), down.b.len()), (16 * 1536, 576 * 16));
    let k = back.weights.iter().find(|w| w.module == TargetModule::KProj).unwrap();
    assert_eq!((k.a.len(), k.b.len()), (16 * 576, 192 * 16));
    assert_eq!(k.scale, 8.0, "rsLoRA: 32 / sqrt(16)");
}

fn scales(adapter: &Adapter) -> BTreeMap<(usize, &'static str), f32> {
    adapter.weights.iter().map(|w| ((w.layer, w.module.peft_name()), w.scale)).collect()
}

#[test]
fn scale_standard_rslora_and_alpha_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_dir(tmp.path(), "a", &qv_adapter(&small(), 3));
    let std_scales = scales(&read_peft_dir(&dir, "a", &small()).unwrap());
    assert!(std_scales.values().all(|&s| s == 2.0), "16 / 8: {std_scales:?}");

    let mut c = read_config(&dir);
    c["use_rslora"] = true.into();
    rewrite_config(&dir, &c);
    let rs = scales(&read_peft_dir(&dir, "a", &small()).unwrap());
    let expected = (16.0 / 8f64.sqrt()) as f32;
    assert!(rs.values().all(|&s| s == expected), "16 / sqrt(8): {rs:?}");

    c["use_rslora"] = false.into();
    c["alpha_pattern"] = json!({"v_proj": 32, "model.layers.1.self_attn.q_proj": 4.0});
    rewrite_config(&dir, &c);
    let ap = scales(&read_peft_dir(&dir, "a", &small()).unwrap());
    assert_eq!(ap[&(0, "q_proj")], 2.0);
    assert_eq!(ap[&(1, "q_proj")], 0.5);
    assert_eq!(ap[&(0, "v_proj")], 4.0);
    assert_eq!(ap[&(1, "v_proj")], 4.0);
}

/// q_proj at rank 8 (layer 1: rank 2 via a full-path key), v_proj at rank 4 via `rank_pattern`.
fn mixed_rank_adapter() -> Adapter {
    let base = small();
    let r8 = random_adapter("m", &base, &spec(8, 16.0, &QV, 4));
    let r4 = random_adapter("m", &base, &spec(4, 16.0, &QV, 5));
    let r2 = random_adapter("m", &base, &spec(2, 16.0, &QV, 6));
    let pick = |src: &Adapter, layer: usize, m: TargetModule| -> LoraWeights {
        src.weights.iter().find(|w| w.layer == layer && w.module == m).unwrap().clone()
    };
    let weights = vec![
        pick(&r8, 0, TargetModule::QProj),
        pick(&r4, 0, TargetModule::VProj),
        pick(&r2, 1, TargetModule::QProj),
        pick(&r4, 1, TargetModule::VProj),
    ];
    let config = PeftConfig {
        r: 8,
        lora_alpha: 16.0,
        target_modules: QV.to_vec(),
        rank_pattern: BTreeMap::from([
            ("model.layers.1.self_attn.q_proj".to_owned(), 2),
            ("v_proj".to_owned(), 4),
        ]),
        ..PeftConfig::default()
    };
    let mut adapter = Adapter { name: "m".into(), config, weights, content_hash: String::new() };
    adapter.content_hash = adapter.compute_content_hash();
    adapter
}

#[test]
fn rank_pattern_mixed_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = mixed_rank_adapter();
    let dir = write_dir(tmp.path(), "m", &adapter);
    let back = read_peft_dir(&dir, "m", &small()).unwrap();
    let got: Vec<(usize, &str, usize, f32)> =
        back.weights.iter().map(|w| (w.layer, w.module.peft_name(), w.rank, w.scale)).collect();
    assert_eq!(
        got,
        [
            (0, "q_proj", 8, 2.0),
            (0, "v_proj", 4, 4.0),
            (1, "q_proj", 2, 8.0),
            (1, "v_proj", 4, 4.0)
        ]
    );
    assert_eq!(back.max_rank(), 8);
    assert_eq!(back.weights, adapter.weights);
    assert_eq!(back.config.rank_pattern, adapter.config.rank_pattern);

    // Without the pattern the rank-4 tensors contradict r=8, and the error says where from.
    let mut c = read_config(&dir);
    c["rank_pattern"] = json!({"model.layers.1.self_attn.q_proj": 2});
    rewrite_config(&dir, &c);
    let text = common::err_text(read_peft_dir(&dir, "m", &small()));
    assert_mentions(
        &text,
        &["layers.0.self_attn.v_proj.lora_A.weight", "rank 4", "says 8", "from r"],
    );
}

#[test]
fn write_refuses_config_that_does_not_reproduce_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let mut adapter = mixed_rank_adapter();
    adapter.config.rank_pattern.clear();
    let text = common::err_text(write_peft_dir(&tmp.path().join("x"), &adapter, TensorDtype::F32));
    assert_mentions(&text, &["`m`", "rank"]);

    let mut adapter = qv_adapter(&small(), 1);
    adapter.config.lora_alpha = 32.0;
    let text = common::err_text(write_peft_dir(&tmp.path().join("y"), &adapter, TensorDtype::F32));
    assert_mentions(&text, &["scale"]);

    let mut adapter = qv_adapter(&small(), 1);
    adapter.weights[0].a[3] = 1.0e6;
    let text = common::err_text(write_peft_dir(&tmp.path().join("z"), &adapter, TensorDtype::F16));
    assert_mentions(&text, &["lora_A.weight", "F16"]);
    assert!(!tmp.path().join("z").exists(), "nothing is written for a refused adapter");
}

/// An adapter saved by PEFT 0.17 for LoraConfig(r=8, lora_alpha=16,
/// target_modules=["q_proj","v_proj"], task_type="CAUSAL_LM") imports unchanged.
#[test]
fn peft_0_17_fixture_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = fixture_config();
    assert_eq!(fixture.as_object().unwrap().len(), 32, "LoraConfig.to_dict() has 32 keys in 0.17");
    let tensors = tensors_of(&qv_adapter(&smol(), 9));
    let dir = tmp.path().join("peft017");
    write_raw(&dir, &fixture, &tensors);
    let a = read_peft_dir(&dir, "peft017", &smol()).unwrap();
    assert_eq!(a.config.r, 8);
    assert_eq!(a.config.lora_alpha, 16.0);
    assert_eq!(a.config.target_modules, QV);
    assert_eq!(a.config.task_type.as_deref(), Some("CAUSAL_LM"));
    assert_eq!(a.config.base_model_name_or_path.as_deref(), Some("HuggingFaceTB/SmolLM2-135M"));
    assert_eq!(a.weights.len(), 60);
    assert!(a.weights.iter().all(|w| w.rank == 8 && w.scale == 2.0));
    assert_eq!(a.content_hash, qv_adapter(&smol(), 9).content_hash);
}

#[test]
fn written_config_matches_current_peft_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut adapter = qv_adapter(&smol(), 9);
    adapter.config.base_model_name_or_path = Some("HuggingFaceTB/SmolLM2-135M".into());
    let dir = write_dir(tmp.path(), "w", &adapter);
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    assert!(text.starts_with("{\n  \"alora_invocation_tokens\": null,\n"), "{text}");
    assert!(text.ends_with("\n}"), "PEFT writes no trailing newline");
    let written: Value = serde_json::from_str(&text).unwrap();
    let written = written.as_object().unwrap();
    let fixture = fixture_config();
    let fixture = fixture.as_object().unwrap();
    // Same values as PEFT 0.17 for every key 0.17 knows ...
    for (k, v) in fixture {
        assert_eq!(written.get(k), Some(v), "key {k}");
    }
    // ... plus exactly the keys PEFT 0.18 - 0.20 added, at their defaults.
    let mut added: Vec<&str> =
        written.keys().filter(|k| !fixture.contains_key(*k)).map(String::as_str).collect();
    added.sort_unstable();
    assert_eq!(
        added,
        [
            "alora_invocation_tokens",
            "arrow_config",
            "ensure_weight_tying",
            "lora_ga_config",
            "monteclora_config",
            "peft_version",
            "use_bdlora",
            "velora_config"
        ]
    );
    assert_eq!(written["peft_version"], "0.20.0");
    // Keys are sorted like json.dumps(sort_keys=True).
    let order: Vec<usize> =
        written.keys().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "keys must appear sorted");

    let st = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let names = safetensors::SafeTensors::deserialize(&st).unwrap().names().len();
    assert_eq!(names, 120);
}

#[test]
fn content_hash_ignores_key_spelling_and_config_noise_but_not_values() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = qv_adapter(&small(), 11);
    let canonical = write_dir(tmp.path(), "canonical", &adapter);
    let h0 = read_peft_dir(&canonical, "x", &small()).unwrap().content_hash;

    // Adapter-name infix, fixture (0.17) config with extra informational keys.
    let infixed: Vec<RawTensor> = tensors_of(&adapter)
        .into_iter()
        .map(|(n, s, v)| (n.replace(".weight", ".default.weight"), s, v))
        .collect();
    let mut c = config_with(8, 16.0, &["v_proj", "q_proj"]);
    c["lora_dropout"] = 0.05.into();
    c["revision"] = "main".into();
    let other = tmp.path().join("infix");
    write_raw(&other, &c, &infixed);
    assert_eq!(read_peft_dir(&other, "y", &small()).unwrap().content_hash, h0);

    // The same scale reached another way (rsLoRA, alpha = 2 * sqrt(8)) is the same math.
    c["use_rslora"] = true.into();
    c["lora_alpha"] = (2.0 * 8f64.sqrt()).into();
    rewrite_config(&other, &c);
    assert_eq!(read_peft_dir(&other, "y", &small()).unwrap().content_hash, h0);

    // A different scale is different math.
    c["use_rslora"] = false.into();
    c["lora_alpha"] = 32.into();
    rewrite_config(&other, &c);
    assert_ne!(read_peft_dir(&other, "y", &small()).unwrap().content_hash, h0);

    // One changed element changes the hash.
    let mut changed = tensors_of(&adapter);
    changed[3].2[17] += 1e-3;
    let third = tmp.path().join("changed");
    write_raw(&third, &config_with(8, 16.0, &["q_proj", "v_proj"]), &changed);
    assert_ne!(read_peft_dir(&third, "z", &small()).unwrap().content_hash, h0);
}

#[test]
fn target_module_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = tensors_of(&qv_adapter(&small(), 12));
    let forms: [Value; 5] = [
        json!("all-linear"),
        json!(r".*\.(q_proj|v_proj)"),
        json!(r"model\.layers\.\d+\.self_attn\.[qv]_proj"),
        Value::Null,
        json!(["self_attn.q_proj", "v_proj", "k_proj"]),
    ];
    for (i, form) in forms.into_iter().enumerate() {
        let mut c = fixture_config();
        c["target_modules"] = form.clone();
        let dir = tmp.path().join(format!("f{i}"));
        write_raw(&dir, &c, &tensors);
        let a = read_peft_dir(&dir, "f", &small()).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(a.config.target_modules, QV, "{form}: the tensors decide");
    }
}

#[test]
fn fan_in_fan_out_is_reset_like_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = qv_adapter(&small(), 13);
    let mut c = config_with(8, 16.0, &["q_proj", "v_proj"]);
    c["fan_in_fan_out"] = true.into();
    let dir = tmp.path().join("fifo");
    write_raw(&dir, &c, &tensors_of(&adapter));
    let a = read_peft_dir(&dir, "fifo", &small()).unwrap();
    assert!(!a.config.fan_in_fan_out);
    assert_eq!(a.weights, adapter.weights, "weights are read untransposed");
}

#[test]
fn random_adapter_is_deterministic_and_layer_independent() {
    let base = small();
    let a = random_adapter("a", &base, &spec(8, 16.0, &QV, 42));
    let b = random_adapter("b", &base, &spec(8, 16.0, &QV, 42));
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.content_hash, b.content_hash);
    let c = random_adapter("c", &base, &spec(8, 16.0, &QV, 43));
    assert_ne!(a.content_hash, c.content_hash);
    let only1 = random_adapter(
        "d",
        &base,
        &RandomAdapterSpec { layers: Some(vec![1]), ..spec(8, 16.0, &[TargetModule::VProj], 42) },
    );
    assert_eq!(only1.weights.len(), 1);
    assert_eq!(only1.weights[0], a.weights[3], "a tensor does not depend on the others requested");
    // Value ranges documented in the random module.
    for w in &a.weights {
        let bound = 1.0 / (base.shape(w.module).1 as f32).sqrt();
        assert!(w.a.iter().all(|v| v.abs() <= bound));
        assert!(w.b.iter().all(|v| v.abs() <= 0.05));
        assert!(w.a.iter().map(|v| v.abs()).fold(0.0, f32::max) > bound * 0.9);
    }
}
