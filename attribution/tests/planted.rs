//! Planted-contributor evaluation, small setting: 8 contributors with distinct topics and
//! styles, an adapter fine-tuned on all of them, and for held-out questions from one
//! contributor, that contributor must get the highest weight (goal top-1 >= 0.9, AUC >= 0.95).

use candle_core::{DType, Device};
use lorad_attribution::planted::{PlantedConfig, run_planted};
use lorad_model::LoadOptions;
use lorad_train::{DiffLlama, FinetuneConfig, ProbeSpec};

#[test]
fn planted_contributors_are_recovered() {
    let Some(path) = lorad_model::testing::test_model_path() else { return };
    let model =
        lorad_model::load_model(&path, &LoadOptions { dtype: DType::F32, device: Device::Cpu })
            .unwrap();
    let diff = DiffLlama::new(&model.config, &model.weights).unwrap();
    let cfg = PlantedConfig {
        contributors: 8,
        per_contributor: 6,
        queries_per_contributor: 2,
        seed: 7,
        finetune: FinetuneConfig {
            steps: 16,
            batch_size: 8,
            warmup_steps: 2,
            lr: 2e-3,
            seed: 3,
            ..Default::default()
        },
        probe: ProbeSpec::default(),
        grad_batch: 8,
    };
    let dir = tempfile::tempdir().unwrap();
    let r =
        run_planted(&diff, &model.tokenizer, &cfg, &dir.path().join("idx"), |m| eprintln!("{m}"))
            .unwrap()
            .report;
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert!(
        r.loss_finetuned < 0.8 * r.loss_base,
        "fine-tuning did not learn: {} -> {}",
        r.loss_base,
        r.loss_finetuned
    );
    assert!(r.preconditioned.top1 >= 0.9, "top-1 {}", r.preconditioned.top1);
    assert!(r.preconditioned.auc >= 0.95, "AUC {}", r.preconditioned.auc);
}
