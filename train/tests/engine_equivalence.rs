//! The differentiable forward computes what the serving engine computes: per-token
//! log-probabilities of a padded two-example batch with an adapter on every projection equal
//! the engine's prefill logits, position by position, on the real default model; and, on a
//! small random model, within a sliding window in some layers, under LongRoPE and with a
//! partial rotary embedding.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use lorad_engine::{ForwardSeq, KvCache, Llama, ResidentAdapter};
use lorad_model::{Arch, LoadOptions, ModelConfig, RopeScaling, SlidingWindow};
use lorad_store::{RandomAdapterSpec, TargetModule};
use lorad_train::{Batch, DiffLlama, Example, LoraSet, LossNorm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn log_probs_match_the_engine_with_an_adapter_on_every_projection() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    let model =
        lorad_model::load_model(&path, &LoadOptions { dtype: DType::F32, device: Device::Cpu })
            .unwrap();
    let base = lorad_engine::base_shape(&model.config);
    let adapter = lorad_store::random_adapter(
        "eq",
        &base,
        &RandomAdapterSpec {
            rank: 4,
            alpha: 8.0,
            targets: TargetModule::ALL.to_vec(),
            seed: 7,
            ..Default::default()
        },
    );
    let engine = Llama::new(&model.config, &model.weights).unwrap();
    let resident = ResidentAdapter::new(&adapter, &base, DType::F32, &Device::Cpu).unwrap();
    let diff = DiffLlama::new(&model.config, &model.weights).unwrap();
    let lora = LoraSet::from_adapter(&adapter, &diff.base_shape(), &Device::Cpu).unwrap();

    let texts =
        ["The quick brown fox jumps over the lazy dog, again and again.", "Rust 1.95 ships today."];
    let examples: Vec<Example> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Example { tokens: model.tokenizer.encode(t).unwrap(), prompt_len: 2 * i })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let batch = Batch::new(&refs, LossNorm::TokenMean, &Device::Cpu).unwrap();
    let got = diff.target_log_probs(&batch, Some(&lora), None).unwrap().to_vec1::<f32>().unwrap();

    let cfg = engine.config();
    let mut want = Vec::new();
    for e in &examples {
        for t in e.target_positions() {
            let kv = KvCache::new(
                cfg.num_layers,
                64,
                16,
                cfg.num_kv_heads,
                cfg.head_dim,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            let blocks: Vec<u32> = (0..4).collect();
            let seq = ForwardSeq {
                tokens: &e.tokens[..=t],
                start_pos: 0,
                block_table: &blocks,
                adapter: Some(&resident),
                want_logits: true,
                all_logits: false,
                prompt_len: t + 1,
            };
            let logits = engine.forward(&[seq], &kv).unwrap();
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().squeeze(0).unwrap();
            want.push(logp.to_vec1::<f32>().unwrap()[e.tokens[t + 1] as usize]);
        }
    }
    assert_eq!(got.len(), want.len());
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{} scored tokens, max |train - engine| log-prob = {max:.2e}", got.len());
    assert!(max <= 2e-3, "max diff {max}: {got:?} vs {want:?}");
}

/// A small seeded random Mistral-layout model.
fn tiny() -> (ModelConfig, HashMap<String, Tensor>) {
    let (h, ff, vocab, layers) = (16, 24, 23, 2);
    let cfg = ModelConfig {
        arch: Arch::Mistral,
        hidden_size: h,
        intermediate_size: ff,
        num_layers: layers,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 4,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 32,
        sliding_window: None,
        partial_rotary_dim: None,
        tie_word_embeddings: true,
        attention_bias: false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut weights = HashMap::new();
    let mut put = |name: String, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.6f32..0.6)).collect();
        weights.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    };
    put("model.embed_tokens.weight".into(), &[vocab, h]);
    put("model.norm.weight".into(), &[h]);
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        put(format!("{p}.input_layernorm.weight"), &[h]);
        put(format!("{p}.post_attention_layernorm.weight"), &[h]);
        for (n, o, i) in [("q_proj", 16, h), ("k_proj", 8, h), ("v_proj", 8, h), ("o_proj", h, 16)]
        {
            put(format!("{p}.self_attn.{n}.weight"), &[o, i]);
        }
        for (n, o, i) in [("gate_proj", ff, h), ("up_proj", ff, h), ("down_proj", h, ff)] {
            put(format!("{p}.mlp.{n}.weight"), &[o, i]);
        }
    }
    (cfg, weights)
}

/// Two examples: 11 and 6 tokens.
fn examples() -> Vec<Example> {
    vec![
        Example { tokens: vec![3, 7, 1, 22, 9, 4, 4, 15, 2, 11, 8], prompt_len: 0 },
        Example { tokens: vec![5, 2, 11, 6, 0, 19], prompt_len: 1 },
    ]
}

/// The engine's log-probability of every target token, each example prefilled alone.
fn engine_log_probs(
    cfg: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    examples: &[Example],
) -> Vec<f32> {
    let engine = Llama::new(cfg, weights).unwrap();
    let kv = KvCache::new(cfg.num_layers, 32, 16, 2, 4, DType::F32, &Device::Cpu).unwrap();
    let mut out = Vec::new();
    for e in examples {
        let seq = ForwardSeq {
            tokens: &e.tokens,
            start_pos: 0,
            block_table: &[0, 1],
            adapter: None,
            want_logits: true,
            all_logits: true,
            prompt_len: e.prompt_len,
        };
        let logp = candle_nn::ops::log_softmax(&engine.forward(&[seq], &kv).unwrap(), D::Minus1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        out.extend(e.target_positions().map(|t| logp[t][e.tokens[t + 1] as usize]));
    }
    out
}

/// The trainer's log-probabilities of the same targets, `examples` as one padded batch.
fn train_log_probs(
    cfg: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    examples: &[Example],
) -> Vec<f32> {
    let refs: Vec<&Example> = examples.iter().collect();
    let batch = Batch::new(&refs, LossNorm::TokenMean, &Device::Cpu).unwrap();
    let diff = DiffLlama::new(cfg, weights).unwrap();
    diff.target_log_probs(&batch, None, None).unwrap().to_vec1::<f32>().unwrap()
}

/// The engine's log-probabilities of `examples`, after checking the trainer's equal them.
fn same_log_probs(
    cfg: &ModelConfig,
    weights: &HashMap<String, Tensor>,
    examples: &[Example],
) -> Vec<f32> {
    let want = engine_log_probs(cfg, weights, examples);
    let got = train_log_probs(cfg, weights, examples);
    let max = max_diff(&got, &want);
    assert!(max <= 1e-4, "max diff {max}: {got:?} vs {want:?}");
    want
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// Sliding-window layers (the first of two, window 3, as Qwen's `layer_types` can mix them):
/// the trainer's padded causal mask against the engine's paged attention, whose window is
/// checked against candle-transformers' Mistral in the engine's own tests.
#[test]
fn log_probs_match_the_engine_within_a_sliding_window() {
    let (mut cfg, weights) = tiny();
    cfg.sliding_window = Some(SlidingWindow { size: 3, layers: vec![true, false] });
    let examples = examples();
    let want = same_log_probs(&cfg, &weights, &examples);
    // The window matters here: without it the engine answers otherwise.
    cfg.sliding_window = None;
    assert!(max_diff(&engine_log_probs(&cfg, &weights, &examples), &want) > 1e-3);
}

/// LongRoPE past a pre-trained context of 8, per example as serving rotates it (by its
/// prompt's length): the 11-token example with an empty prompt turns to the long factors at
/// position 8, the 6-token one keeps the short ones, though they share a padded batch of 11.
#[test]
fn log_probs_match_the_engine_under_longrope() {
    let (mut cfg, weights) = tiny();
    let longrope = |long: Vec<f32>| RopeScaling::LongRope {
        short_factor: vec![1.0, 1.5],
        long_factor: long,
        original_max_position_embeddings: 8,
        attention_factor: 1.1,
    };
    cfg.rope_scaling = Some(longrope(vec![2.0, 9.0]));
    let examples = examples();
    let want = same_log_probs(&cfg, &weights, &examples);
    // The long factors matter for the long example only, and only from position 8.
    let mut short_only = cfg.clone();
    short_only.rope_scaling = Some(longrope(vec![1.0, 1.5]));
    let plain = engine_log_probs(&short_only, &weights, &examples);
    // Targets of the 11-token example: positions 0..=9 predict tokens 1..=10.
    assert!(max_diff(&want[..8], &plain[..8]) <= 1e-6, "before the switch");
    assert!(max_diff(&want[8..10], &plain[8..10]) > 1e-3, "after the switch");
    assert!(max_diff(&want[10..], &plain[10..]) <= 1e-6, "the short example");
}

/// A partial rotary embedding (half of each 4-wide head): the trainer's rotation against the
/// engine's, which candle-transformers' Phi-3 checks in the engine's own tests.
#[test]
fn log_probs_match_the_engine_with_partial_rotary() {
    let (mut cfg, weights) = tiny();
    cfg.partial_rotary_dim = Some(2);
    let examples = examples();
    let want = same_log_probs(&cfg, &weights, &examples);
    cfg.partial_rotary_dim = None;
    assert!(max_diff(&engine_log_probs(&cfg, &weights, &examples), &want) > 1e-3);
}
