//! Base-model logits of the Hugging Face-layout families that need no checkpoint, against
//! candle-transformers' own implementations reading the same tensors: small seeded random
//! models, so the tests own no copy of expected numbers.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use lorad_engine::{KernelPath, Llama};
use lorad_model::{Arch, ModelConfig, SlidingWindow};

/// lorad's prefill logits for three prompts against `theirs` (a fresh reference model per
/// prompt: candle's keep their own KV cache).
fn same_logits(ours: &Llama, label: &str, mut theirs: impl FnMut(&Tensor) -> Vec<f32>) {
    for ids in [vec![3u32, 17, 42, 8, 8, 1, 49, 20, 11], vec![7u32], (0..40).collect()] {
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let want = theirs(&input);
        let got = common::prefill_logits(ours, &ids, None);
        let diff = common::max_diff(&got, &want);
        eprintln!("{} tokens: max|lorad - {label}| = {diff:.2e}", ids.len());
        assert!(diff <= 1e-3, "{label}, {} tokens: max diff {diff}", ids.len());
        assert_eq!(lorad_engine::argmax(&got), lorad_engine::argmax(&want));
    }
}

/// Seeded weights under Hugging Face names: `base + spread·sin(0.37·i + seed)`, never zeros.
#[derive(Default)]
struct Seeded(HashMap<String, Tensor>, f64);

impl Seeded {
    /// The embedding, final norm and untied LM head.
    fn globals(&mut self, vocab: usize, h: usize) {
        self.add("model.embed_tokens.weight", &[vocab, h], 0.0, 1.0);
        self.add("model.norm.weight", &[h], 1.0, 0.1);
        self.add("lm_head.weight", &[vocab, h], 0.0, 0.2);
    }

    /// Layer `l`'s norms and LLaMA-layout attention and MLP projections (`hd`-wide heads, `ff`
    /// MLP); returns its name prefix.
    fn llama_layer(
        &mut self,
        l: usize,
        h: usize,
        heads: usize,
        kvh: usize,
        hd: usize,
        ff: usize,
    ) -> String {
        let p = self.layer_norms(l, h);
        for (name, shape) in [
            ("self_attn.q_proj", [heads * hd, h]),
            ("self_attn.k_proj", [kvh * hd, h]),
            ("self_attn.v_proj", [kvh * hd, h]),
            ("self_attn.o_proj", [h, heads * hd]),
            ("mlp.gate_proj", [ff, h]),
            ("mlp.up_proj", [ff, h]),
            ("mlp.down_proj", [h, ff]),
        ] {
            self.add(&format!("{p}.{name}.weight"), &shape, 0.0, 0.2);
        }
        p
    }

    /// Layer `l`'s two norms; returns its name prefix.
    fn layer_norms(&mut self, l: usize, h: usize) -> String {
        let p = format!("model.layers.{l}");
        self.add(&format!("{p}.input_layernorm.weight"), &[h], 1.0, 0.1);
        self.add(&format!("{p}.post_attention_layernorm.weight"), &[h], 1.0, 0.1);
        p
    }

    fn add(&mut self, name: &str, shape: &[usize], base: f64, spread: f64) {
        self.1 += 1.0;
        let n: usize = shape.iter().product();
        let t = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .and_then(|t| t.affine(0.37, self.1))
            .and_then(|t| t.sin())
            .and_then(|t| t.affine(spread, base))
            .and_then(|t| t.reshape(shape))
            .unwrap();
        self.0.insert(name.to_owned(), t);
    }
}

/// Qwen3's per-head q/k norms and its own head width, checked the same way on a small random
/// Qwen3 (no checkpoint needed): lorad's forward against candle-transformers' `qwen3`, which
/// reads the same Hugging Face-named tensors.
#[test]
fn qwen3_logits_match_candle_transformers_qwen3() {
    let (h, heads, kvh, hd, ff, vocab, layers) = (64, 4, 2, 24, 96, 50, 2);
    let mut w = Seeded::default();
    w.globals(vocab, h);
    for l in 0..layers {
        let p = w.llama_layer(l, h, heads, kvh, hd, ff);
        w.add(&format!("{p}.self_attn.q_norm.weight"), &[hd], 1.0, 0.3);
        w.add(&format!("{p}.self_attn.k_norm.weight"), &[hd], 1.0, 0.3);
    }
    let weights = w.0;
    let cfg = ModelConfig {
        arch: Arch::Qwen3,
        hidden_size: h,
        intermediate_size: ff,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kvh,
        head_dim: hd,
        vocab_size: vocab,
        rms_norm_eps: 1e-6,
        rope_theta: 1_000_000.0,
        rope_scaling: None,
        max_position_embeddings: 256,
        sliding_window: None,
        partial_rotary_dim: None,
        tie_word_embeddings: false,
        attention_bias: false,
    };
    let ours = Llama::new(&cfg, &weights).unwrap();
    let theirs_cfg: candle_transformers::models::qwen3::Config =
        serde_json::from_value(serde_json::json!({
            "vocab_size": vocab, "hidden_size": h, "intermediate_size": ff,
            "num_hidden_layers": layers, "num_attention_heads": heads, "head_dim": hd,
            "attention_bias": false, "num_key_value_heads": kvh, "max_position_embeddings": 256,
            "sliding_window": null, "max_window_layers": layers, "tie_word_embeddings": false,
            "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "use_sliding_window": false,
            "hidden_act": "silu"
        }))
        .unwrap();
    let vb =
        candle_nn::VarBuilder::from_tensors(weights.clone(), candle_core::DType::F32, &Device::Cpu);
    same_logits(&ours, "qwen3", |input| {
        let mut theirs =
            candle_transformers::models::qwen3::ModelForCausalLM::new(&theirs_cfg, vb.clone())
                .unwrap();
        theirs.forward(input, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    });
    // Without the head norms the answer would differ: the test can fail.
    let mut plain = cfg.clone();
    plain.arch = Arch::Qwen2;
    plain.attention_bias = true;
    let mut biased = weights.clone();
    for l in 0..layers {
        for (n, d) in [("q_proj", heads * hd), ("k_proj", kvh * hd), ("v_proj", kvh * hd)] {
            let zeros = Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu).unwrap();
            biased.insert(format!("model.layers.{l}.self_attn.{n}.bias"), zeros);
        }
    }
    let without = Llama::new(&plain, &biased).unwrap();
    let d = apart(&without, &ours, &[3, 17, 42, 8]);
    assert!(d > 1e-2, "q/k norms changed nothing ({d})");
}

/// Phi-3: its fused `qkv_proj` and `gate_up_proj`, written as a Hugging Face directory and read
/// by lorad's loader (which splits them into the seven projections), against
/// candle-transformers' `phi3`, which computes on the fused tensors itself. A sliding window
/// does not cap the served context.
#[test]
fn phi3_logits_match_candle_transformers_phi3() {
    let (h, heads, kvh, ff, vocab, layers) = (64, 4, 2, 96, 50, 2);
    let hd = h / heads;
    let mut w = Seeded::default();
    w.globals(vocab, h);
    for l in 0..layers {
        let p = w.layer_norms(l, h);
        w.add(&format!("{p}.self_attn.qkv_proj.weight"), &[(heads + 2 * kvh) * hd, h], 0.0, 0.2);
        w.add(&format!("{p}.self_attn.o_proj.weight"), &[h, heads * hd], 0.0, 0.2);
        w.add(&format!("{p}.mlp.gate_up_proj.weight"), &[2 * ff, h], 0.0, 0.2);
        w.add(&format!("{p}.mlp.down_proj.weight"), &[h, ff], 0.0, 0.2);
    }
    let config = serde_json::json!({
        "model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "vocab_size": vocab,
        "hidden_act": "silu", "hidden_size": h, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvh,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2,
        "rope_scaling": null, "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "sliding_window": 2047,
        "tie_word_embeddings": false
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    candle_core::safetensors::save(&w.0, dir.path().join("model.safetensors")).unwrap();
    // A tokenizer is part of a model directory; the default model's will do.
    let Some(base) = common::load() else { return };
    base.tokenizer.save(&dir.path().join("tokenizer.json")).unwrap();
    let model = lorad_model::load_model(dir.path(), &lorad_model::LoadOptions::default()).unwrap();
    assert_eq!(model.config.arch, Arch::Phi3);
    assert_eq!(model.config.max_position_embeddings, 4096, "the whole context is served");
    assert_eq!(model.config.attention_window(1), Some(2047));
    assert!(model.weights.contains_key("model.layers.1.self_attn.v_proj.weight"));
    assert!(!model.weights.contains_key("model.layers.1.mlp.gate_up_proj.weight"));
    let ours = Llama::new(&model.config, &model.weights).unwrap();
    let theirs_cfg: candle_transformers::models::phi3::Config =
        serde_json::from_value(config.clone()).unwrap();
    same_logits(&ours, "phi3", candle_phi3(&config, &w.0));

    // A PEFT adapter on the fused modules, imported (split per projection) and served through
    // the batched LoRA path, against candle's phi3 on the fused weights merged `W + s·B·A`.
    let (rank, alpha) = (4usize, 8.0f64);
    let scale = alpha / rank as f64;
    let mut pairs = Seeded::default();
    let mut merged = w.0.clone();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for l in 0..layers {
        for (module, out_f) in
            [("self_attn.qkv_proj", (heads + 2 * kvh) * hd), ("mlp.gate_up_proj", 2 * ff)]
        {
            let base = format!("base_model.model.model.layers.{l}.{module}");
            pairs.add(&format!("{base}.lora_A.weight"), &[rank, h], 0.0, 0.3);
            pairs.add(&format!("{base}.lora_B.weight"), &[out_f, rank], 0.0, 0.3);
            let a = pairs.0[&format!("{base}.lora_A.weight")].clone();
            let b = pairs.0[&format!("{base}.lora_B.weight")].clone();
            let name = format!("model.layers.{l}.{module}.weight");
            let delta = b.matmul(&a).unwrap().affine(scale, 0.0).unwrap();
            merged.insert(name.clone(), (&merged[&name] + delta).unwrap());
            tensors.push((format!("{base}.lora_A.weight"), a));
            tensors.push((format!("{base}.lora_B.weight"), b));
        }
    }
    let adapter_dir = dir.path().join("adapter");
    std::fs::create_dir_all(&adapter_dir).unwrap();
    let adapter_config = serde_json::json!({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha,
        "target_modules": ["qkv_proj", "gate_up_proj"], "bias": "none"
    });
    std::fs::write(adapter_dir.join("adapter_config.json"), adapter_config.to_string()).unwrap();
    let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&tensors, adapter_dir.join("adapter_model.safetensors"))
        .unwrap();
    let shape = lorad_engine::base_shape(&model.config);
    let adapter = lorad_store::read_peft_dir(&adapter_dir, "phi3-lora", &shape).unwrap();
    assert_eq!(adapter.weights.len(), layers * 5, "q, k, v, gate, up per layer");
    let resident =
        lorad_engine::ResidentAdapter::new(&adapter, &shape, candle_core::DType::F32, &Device::Cpu)
            .unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(merged, candle_core::DType::F32, &Device::Cpu);
    let ids: Vec<u32> = vec![3, 17, 42, 8, 8, 1, 49, 20, 11];
    let mut theirs = candle_transformers::models::phi3::Model::new(&theirs_cfg, vb).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want: Vec<f32> =
        theirs.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let got = common::prefill_logits(&ours, &ids, Some(&resident));
    let diff = common::max_diff(&got, &want);
    eprintln!("with the fused adapter: max|lorad - merged phi3| = {diff:.2e}");
    assert!(diff <= 1e-3, "adapter: max diff {diff}");
    // The adapter changes the answer: the test can fail.
    let plain = common::prefill_logits(&ours, &ids, None);
    assert!(common::max_diff(&plain, &want) > 1e-2);

    // Phi-4 mini's partial rotary embedding (here half of each head): the leading dimensions
    // rotate, the rest pass through, against candle's phi3 reading the same factor.
    let mut partial = config;
    partial["partial_rotary_factor"] = serde_json::json!(0.5);
    std::fs::write(dir.path().join("config.json"), partial.to_string()).unwrap();
    let model = lorad_model::load_model(dir.path(), &lorad_model::LoadOptions::default()).unwrap();
    assert_eq!(model.config.rotary_dim(), hd / 2);
    let half_turned = Llama::new(&model.config, &model.weights).unwrap();
    same_logits(&half_turned, "phi3, partial rotary", candle_phi3(&partial, &w.0));
    let d = apart(&half_turned, &ours, &ids);
    assert!(d > 1e-3, "rotating half the head changed nothing ({d})");
}

/// candle-transformers' `phi3` on `weights` (fused, Hugging Face names) under `config`: a
/// fresh model per prompt, as [`same_logits`] wants it.
fn candle_phi3(
    config: &serde_json::Value,
    weights: &HashMap<String, Tensor>,
) -> impl FnMut(&Tensor) -> Vec<f32> {
    let cfg: candle_transformers::models::phi3::Config =
        serde_json::from_value(config.clone()).unwrap();
    let vb =
        candle_nn::VarBuilder::from_tensors(weights.clone(), candle_core::DType::F32, &Device::Cpu);
    move |input| {
        let mut theirs = candle_transformers::models::phi3::Model::new(&cfg, vb.clone()).unwrap();
        theirs.forward(input, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }
}

/// How far apart two models' last-position logits for `ids` are.
fn apart(a: &Llama, b: &Llama, ids: &[u32]) -> f32 {
    common::max_diff(&common::prefill_logits(a, ids, None), &common::prefill_logits(b, ids, None))
}

/// Mistral v0.1's sliding window (here 5 positions over a 40-token sequence), through the
/// paged KV cache as serving runs it: a prefill, a chunk, then one token per step, every
/// position's logits against candle-transformers' `mistral` on that prefix. candle keeps
/// `i - j <= window` where Hugging Face, vLLM and llama.cpp keep `i - j < window`, so candle is
/// given one position less.
#[test]
fn mistral_sliding_window_matches_candle_transformers_mistral() {
    let (h, heads, kvh, ff, vocab, layers, window) = (64, 4, 2, 96, 50, 2, 5usize);
    let hd = h / heads;
    let mut w = Seeded::default();
    w.globals(vocab, h);
    for l in 0..layers {
        w.llama_layer(l, h, heads, kvh, hd, ff);
    }
    let cfg = ModelConfig {
        arch: Arch::Mistral,
        hidden_size: h,
        intermediate_size: ff,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kvh,
        head_dim: hd,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 256,
        sliding_window: Some(SlidingWindow { size: window, layers: vec![true; layers] }),
        partial_rotary_dim: None,
        tie_word_embeddings: false,
        attention_bias: false,
    };
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 7 + 3) % vocab as u32).collect();
    let vb =
        candle_nn::VarBuilder::from_tensors(w.0.clone(), candle_core::DType::F32, &Device::Cpu);
    let candle = |sliding: Option<usize>| -> Vec<Vec<f32>> {
        let theirs_cfg: candle_transformers::models::mistral::Config =
            serde_json::from_value(serde_json::json!({
                "vocab_size": vocab, "hidden_size": h, "intermediate_size": ff,
                "num_hidden_layers": layers, "num_attention_heads": heads,
                "num_key_value_heads": kvh, "hidden_act": "silu",
                "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                "sliding_window": sliding, "head_dim": null
            }))
            .unwrap();
        (1..=ids.len())
            .map(|n| {
                let mut m =
                    candle_transformers::models::mistral::Model::new(&theirs_cfg, vb.clone())
                        .unwrap();
                let input = Tensor::new(&ids[..n], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                m.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            })
            .collect()
    };
    let want = candle(Some(window - 1));
    let mut ours = Llama::new(&cfg, &w.0).unwrap();
    for path in [KernelPath::Auto, KernelPath::Generic] {
        ours.set_kernel_path(path);
        let got = common::stepped_logits(&ours, &ids, &[13, 9], None);
        for (p, (g, t)) in got.iter().zip(&want).enumerate() {
            let diff = common::max_diff(g, t);
            assert!(diff <= 1e-4, "{path:?}, position {p}: max diff {diff}");
        }
    }
    // Without the window the later positions differ (the test can fail), and the first window
    // of positions does not (the boundary is where it should be).
    let full = candle(None);
    let got = common::stepped_logits(&ours, &ids, &[13, 9], None);
    assert!(got.iter().zip(&full).take(window).all(|(g, f)| common::max_diff(g, f) <= 1e-4));
    assert!(common::max_diff(&got[window], &full[window]) > 1e-3, "position {window}");
}
