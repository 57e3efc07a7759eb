//! The differentiable forward's gradients are right: autograd against central finite differences
//! on a tiny random llama (no model file needed), and the LoGra probes against the projection of
//! autograd's own LoRA gradients.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use lorad_model::{Arch, ModelConfig};
use lorad_store::TargetModule;
use lorad_train::{
    Batch, DiffLlama, Example, LoraSet, LoraSpec, LossNorm, ProbeSpec, Probes, projected_gradients,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny() -> (ModelConfig, HashMap<String, Tensor>) {
    let cfg = ModelConfig {
        arch: Arch::Llama,
        hidden_size: 16,
        intermediate_size: 24,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 4,
        vocab_size: 23,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 32,
        sliding_window: None,
        partial_rotary_dim: None,
        tie_word_embeddings: true,
        attention_bias: false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut w = HashMap::new();
    let mut put = |name: String, shape: &[usize], sd: f32, rng: &mut ChaCha8Rng| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-sd..sd)).collect();
        w.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    };
    put("model.embed_tokens.weight".into(), &[23, 16], 1.0, &mut rng);
    put("model.norm.weight".into(), &[16], 1.0, &mut rng);
    for l in 0..2 {
        put(format!("model.layers.{l}.input_layernorm.weight"), &[16], 1.0, &mut rng);
        put(format!("model.layers.{l}.post_attention_layernorm.weight"), &[16], 1.0, &mut rng);
        for (n, o, i) in
            [("q_proj", 16, 16), ("k_proj", 8, 16), ("v_proj", 8, 16), ("o_proj", 16, 16)]
        {
            put(format!("model.layers.{l}.self_attn.{n}.weight"), &[o, i], 0.5, &mut rng);
        }
        for (n, o, i) in [("gate_proj", 24, 16), ("up_proj", 24, 16), ("down_proj", 16, 24)] {
            put(format!("model.layers.{l}.mlp.{n}.weight"), &[o, i], 0.5, &mut rng);
        }
    }
    (cfg, w)
}

fn examples() -> Vec<Example> {
    vec![
        Example { tokens: vec![3, 7, 1, 22, 9, 4, 4, 15], prompt_len: 3 },
        Example { tokens: vec![5, 2, 11, 6, 0], prompt_len: 0 },
    ]
}

/// A trainable LoRA on every projection with non-zero B (PEFT's zero B would make A's gradient
/// vanish and the check vacuous).
fn lora(model: &DiffLlama) -> LoraSet {
    let spec =
        LoraSpec { rank: 2, alpha: 4.0, targets: TargetModule::ALL.to_vec(), use_rslora: false };
    let set = LoraSet::init(&model.base_shape(), &spec, 3, model.device()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for v in set.vars().iter().skip(1).step_by(2) {
        let n = v.elem_count();
        let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    set
}

fn loss_of(model: &DiffLlama, set: &LoraSet, ex: &[Example]) -> f64 {
    let refs: Vec<&Example> = ex.iter().collect();
    let batch = Batch::new(&refs, LossNorm::PerExample, model.device()).unwrap();
    model.loss(&batch, Some(set), None).unwrap().to_scalar::<f32>().unwrap() as f64
}

/// `tiny()` as a Qwen3: the same weights plus per-head q/k norms.
fn tiny_qwen3() -> (ModelConfig, HashMap<String, Tensor>) {
    let (mut cfg, mut w) = tiny();
    cfg.arch = Arch::Qwen3;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for l in 0..2 {
        for n in ["q_norm", "k_norm"] {
            let v: Vec<f32> = (0..4).map(|_| rng.random_range(0.5..1.5)).collect();
            let t = Tensor::from_vec(v, 4, &Device::Cpu).unwrap();
            w.insert(format!("model.layers.{l}.self_attn.{n}.weight"), t);
        }
    }
    (cfg, w)
}

#[test]
fn lora_gradients_match_finite_differences() {
    let (cfg, w) = tiny();
    gradients_match_finite_differences(&cfg, &w);
}

#[test]
fn qwen3_lora_gradients_match_finite_differences() {
    let (cfg, w) = tiny_qwen3();
    gradients_match_finite_differences(&cfg, &w);
    // The norms are read: the loss differs from the same weights without them.
    let (plain_cfg, plain_w) = tiny();
    let ex = examples();
    let qwen3 = DiffLlama::new(&cfg, &w).unwrap();
    let plain = DiffLlama::new(&plain_cfg, &plain_w).unwrap();
    let (a, b) = (loss_of(&qwen3, &lora(&qwen3), &ex), loss_of(&plain, &lora(&plain), &ex));
    assert!((a - b).abs() > 1e-4, "q/k norms changed nothing: {a} vs {b}");
}

fn gradients_match_finite_differences(cfg: &ModelConfig, w: &HashMap<String, Tensor>) {
    let model = DiffLlama::new(cfg, w).unwrap();
    let set = lora(&model);
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let batch = Batch::new(&refs, LossNorm::PerExample, model.device()).unwrap();
    let grads = model.loss(&batch, Some(&set), None).unwrap().backward().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut checked = 0;
    for v in set.vars() {
        let g = grads
            .get(v.as_tensor())
            .expect("grad")
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let base = v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for _ in 0..3 {
            let i = rng.random_range(0..base.len());
            let h = 1e-2f32;
            let probe = |delta: f32| {
                let mut vals = base.clone();
                vals[i] += delta;
                v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
                loss_of(&model, &set, &ex)
            };
            let fd = (probe(h) - probe(-h)) / (2.0 * h as f64);
            v.set(&Tensor::from_vec(base.clone(), v.shape(), &Device::Cpu).unwrap()).unwrap();
            let err = (fd - g[i] as f64).abs();
            assert!(
                err <= 2e-3 + 2e-2 * fd.abs(),
                "param {i}: autograd {} vs finite difference {fd}",
                g[i]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * 2 * 7 * 2);
}

#[test]
fn probes_equal_projected_lora_gradients_per_example() {
    let (cfg, w) = tiny();
    let model = DiffLlama::new(&cfg, &w).unwrap();
    let train = lora(&model);
    let frozen =
        LoraSet::from_adapter(&train.to_adapter("x").unwrap(), &model.base_shape(), model.device())
            .unwrap();
    let probes =
        Probes::new(&frozen, ProbeSpec { k_in: 3, k_out: 5, seed: 11 }, model.device()).unwrap();
    let ex = examples();
    let batched = projected_gradients(&model, &frozen, &probes, &ex, 2, |_| {}).unwrap();
    assert_eq!(batched.len(), 2);
    assert_eq!(batched[0].len(), probes.dim());
    for (e, got) in batched.iter().enumerate() {
        // Autograd's full LoRA gradient of this example alone, projected by hand.
        let batch = Batch::new(&[&ex[e]], LossNorm::PerExample, model.device()).unwrap();
        let grads = model.loss(&batch, Some(&train), None).unwrap().backward().unwrap();
        let mut want = Vec::new();
        for (i, _) in train.pairs().iter().enumerate() {
            let (p_in, p_out) = probes.matrices(i).unwrap();
            let ga = grads.get(train.vars()[2 * i].as_tensor()).unwrap();
            let gb = grads.get(train.vars()[2 * i + 1].as_tensor()).unwrap();
            want.extend(
                ga.matmul(&p_in.t().unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            want.extend(p_out.matmul(gb).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 1e-3, "gradient is vacuous");
        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * scale.max(1.0),
                "example {e} element {j}: probe {a} vs projected {b}"
            );
        }
        // The same example alone gives the same projected gradient as inside the batch.
        let alone = projected_gradients(&model, &frozen, &probes, &ex[e..=e], 1, |_| {}).unwrap();
        for (a, b) in alone[0].iter().zip(got) {
            assert!((a - b).abs() <= 1e-5 * scale.max(1.0));
        }
    }
}

#[test]
fn bad_examples_are_named() {
    let (cfg, w) = tiny();
    let model = DiffLlama::new(&cfg, &w).unwrap();
    let set = LoraSet::init(&model.base_shape(), &LoraSpec::default(), 0, model.device()).unwrap();
    let probes = Probes::new(&set, ProbeSpec::default(), model.device()).unwrap();
    let bad = [
        Example { tokens: vec![1, 2, 3], prompt_len: 0 },
        Example { tokens: vec![1, 99], prompt_len: 0 },
    ];
    let err = projected_gradients(&model, &set, &probes, &bad, 2, |_| {}).unwrap_err().to_string();
    assert!(err.contains("example 1") && err.contains("99"), "{err}");
    let empty = [Example { tokens: vec![4, 5], prompt_len: 2 }];
    let err =
        projected_gradients(&model, &set, &probes, &empty, 1, |_| {}).unwrap_err().to_string();
    assert!(err.contains("example 0") && err.contains("no completion"), "{err}");
    let _ = DType::F32;
}
