//! Base-model logits agree with an independent implementation: candle-transformers'
//! `quantized_llama`, which reads the GGUF itself (its own tensor naming, interleaved RoPE on the
//! permuted q/k, its own attention) with every tensor dequantized to f32. The test owns no copy
//! of expected numbers; both sides are computed here.

mod common;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use lorad_engine::Llama;

#[test]
fn base_logits_match_candle_quantized_llama_dequantized() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    // This binary runs only this test, so setting the variable cannot race another thread.
    // SAFETY: single-threaded at this point of the test binary (one test), before candle reads it.
    unsafe { std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1") };
    let model = common::load().unwrap();
    let ours = Llama::new(&model.config, &model.weights).unwrap();
    let prompts = [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "Once upon a time, there was a little",
        "fn main() { println!(\"{}\", 12345 * 678); } // 🦀",
    ];
    for p in prompts {
        let ids = common::encode(&model, p);
        // A fresh model per prompt: quantized_llama keeps its own KV cache inside.
        let mut file = std::fs::File::open(&path).unwrap();
        let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
        let mut theirs = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let want: Vec<f32> =
            theirs.forward(&input, 0).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let got = common::prefill_logits(&ours, &ids, None);
        let diff = common::max_diff(&got, &want);
        eprintln!("{p:?}: max|lorad - quantized_llama| = {diff:.2e}");
        assert!(diff <= 1e-3, "{p:?}: max diff {diff}");
        assert_eq!(lorad_engine::argmax(&got), lorad_engine::argmax(&want));
    }
}

/// Qwen3's per-head q/k norms and its own head width, checked the same way on a small random
/// Qwen3 (no checkpoint needed): lorad's forward against candle-transformers' `qwen3`, which
/// reads the same Hugging Face-named tensors.
#[test]
fn qwen3_logits_match_candle_transformers_qwen3() {
    use std::collections::HashMap;

    use lorad_model::{Arch, ModelConfig};

    let (h, heads, kvh, hd, ff, vocab, layers) = (64, 4, 2, 24, 96, 50, 2);
    let mut seed = 0.0;
    let mut weights: HashMap<String, Tensor> = HashMap::new();
    // Seeded values: `base + spread·sin(0.37·i + seed)`, never zeros.
    let mut add = |name: String, shape: &[usize], base: f64, spread: f64| {
        seed += 1.0;
        let n: usize = shape.iter().product();
        let t = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .and_then(|t| t.affine(0.37, seed))
            .and_then(|t| t.sin())
            .and_then(|t| t.affine(spread, base))
            .and_then(|t| t.reshape(shape))
            .unwrap();
        weights.insert(name, t);
    };
    add("model.embed_tokens.weight".into(), &[vocab, h], 0.0, 1.0);
    add("model.norm.weight".into(), &[h], 1.0, 0.1);
    add("lm_head.weight".into(), &[vocab, h], 0.0, 0.2);
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), &[h], 1.0, 0.1);
        add(format!("{p}.post_attention_layernorm.weight"), &[h], 1.0, 0.1);
        add(format!("{p}.self_attn.q_proj.weight"), &[heads * hd, h], 0.0, 0.2);
        add(format!("{p}.self_attn.k_proj.weight"), &[kvh * hd, h], 0.0, 0.2);
        add(format!("{p}.self_attn.v_proj.weight"), &[kvh * hd, h], 0.0, 0.2);
        add(format!("{p}.self_attn.o_proj.weight"), &[h, heads * hd], 0.0, 0.2);
        add(format!("{p}.self_attn.q_norm.weight"), &[hd], 1.0, 0.3);
        add(format!("{p}.self_attn.k_norm.weight"), &[hd], 1.0, 0.3);
        add(format!("{p}.mlp.gate_proj.weight"), &[ff, h], 0.0, 0.2);
        add(format!("{p}.mlp.up_proj.weight"), &[ff, h], 0.0, 0.2);
        add(format!("{p}.mlp.down_proj.weight"), &[h, ff], 0.0, 0.2);
    }
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
    for ids in [vec![3u32, 17, 42, 8, 8, 1, 49, 20, 11], vec![7u32], (0..40).collect()] {
        let mut theirs =
            candle_transformers::models::qwen3::ModelForCausalLM::new(&theirs_cfg, vb.clone())
                .unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let want: Vec<f32> =
            theirs.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let got = common::prefill_logits(&ours, &ids, None);
        let diff = common::max_diff(&got, &want);
        eprintln!("{} tokens: max|lorad - qwen3| = {diff:.2e}", ids.len());
        assert!(diff <= 1e-3, "{} tokens: max diff {diff}", ids.len());
        assert_eq!(lorad_engine::argmax(&got), lorad_engine::argmax(&want));
    }
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
    let ids = [3u32, 17, 42, 8];
    let d = common::max_diff(
        &common::prefill_logits(&without, &ids, None),
        &common::prefill_logits(&ours, &ids, None),
    );
    assert!(d > 1e-2, "q/k norms changed nothing ({d})");
}
