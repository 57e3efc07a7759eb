//! Fine-tuning learns: a few AdamW steps on a small generated corpus with a distinctive style
//! lower the held-out loss of that style well below the base model's, and the exported adapter
//! is a valid PEFT adapter whose math the engine serves identically.

use candle_core::{DType, Device};
use lorad_model::LoadOptions;
use lorad_train::{DiffLlama, Example, FinetuneConfig, LoraSet, finetune, mean_loss};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sentences in one invented style: odd names and fixed phrasing the base has never seen.
fn corpus(rng: &mut ChaCha8Rng, n: usize) -> Vec<String> {
    let names = ["Zorblax", "Quimby", "Vantrell", "Oxhollow", "Prindle", "Tesk"];
    let things = ["copper kettles", "moon lanterns", "glass herons", "velvet clocks"];
    (0..n)
        .map(|_| {
            let a = names[rng.random_range(0..names.len())];
            let t = things[rng.random_range(0..things.len())];
            let k = rng.random_range(2..9);
            format!("Ledger of {a}: {k} {t} were counted at dawn, as the ledger of {a} requires.")
        })
        .collect()
}

#[test]
fn finetune_lowers_held_out_loss() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    let model =
        lorad_model::load_model(&path, &LoadOptions { dtype: DType::F32, device: Device::Cpu })
            .unwrap();
    let diff = DiffLlama::new(&model.config, &model.weights).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let to_examples = |texts: Vec<String>| -> Vec<Example> {
        texts
            .iter()
            .map(|t| Example { tokens: model.tokenizer.encode(t).unwrap(), prompt_len: 0 })
            .collect()
    };
    let train = to_examples(corpus(&mut rng, 32));
    let held_out = to_examples(corpus(&mut rng, 8));
    let before = mean_loss(&diff, None, &held_out, 8).unwrap();
    let cfg = FinetuneConfig {
        steps: 12,
        batch_size: 4,
        warmup_steps: 2,
        lr: 2e-3,
        seed: 1,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let report = finetune(&diff, &train, &cfg, |s| {
        eprintln!("step {} loss {:.3} lr {:.1e} |g| {:.2}", s.step, s.loss, s.lr, s.grad_norm)
    })
    .unwrap();
    let train_s = t0.elapsed().as_secs_f64();
    let after = mean_loss(&diff, Some(&report.lora), &held_out, 8).unwrap();
    eprintln!("held-out loss {before:.3} -> {after:.3}; {} steps in {train_s:.1} s", cfg.steps);
    assert!(after < 0.8 * before, "held-out loss {before} -> {after}");

    // Deterministic: the same config trains the same adapter, bit for bit.
    let again =
        finetune(&diff, &train[..8], &FinetuneConfig { steps: 2, ..cfg.clone() }, |_| {}).unwrap();
    let twice =
        finetune(&diff, &train[..8], &FinetuneConfig { steps: 2, ..cfg.clone() }, |_| {}).unwrap();
    assert_eq!(
        again.lora.to_adapter("a").unwrap().content_hash,
        twice.lora.to_adapter("a").unwrap().content_hash
    );

    // The export is a PEFT adapter that round-trips through the PEFT writer and reader.
    let adapter = report.lora.to_adapter("ledger").unwrap();
    let dir = tempfile::tempdir().unwrap();
    lorad_store::write_peft_dir(dir.path(), &adapter, lorad_store::TensorDtype::F32).unwrap();
    let back = lorad_store::read_peft_dir(dir.path(), "ledger", &diff.base_shape()).unwrap();
    assert_eq!(back.content_hash, adapter.content_hash);
    let reloaded = LoraSet::from_adapter(&back, &diff.base_shape(), &Device::Cpu).unwrap();
    let again = mean_loss(&diff, Some(&reloaded), &held_out, 8).unwrap();
    assert!((again - after).abs() < 1e-4, "{again} vs {after}");
}
