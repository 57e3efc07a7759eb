//! The differentiable forward computes what the serving engine computes: per-token
//! log-probabilities of a padded two-example batch with an adapter on every projection equal
//! the engine's prefill logits, position by position, on the real default model.

use candle_core::{D, DType, Device};
use lorad_engine::{ForwardSeq, KvCache, Llama, ResidentAdapter};
use lorad_model::LoadOptions;
use lorad_store::{RandomAdapterSpec, TargetModule};
use lorad_train::{Batch, DiffLlama, Example, LoraSet, LossNorm};

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
