//! `lorad finetune`: the Model Factory on the command line.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device};
use lorad_attribution::grad::datanet_example;
use lorad_model::LoadOptions;
use lorad_store::TargetModule;
use lorad_train::{DiffLlama, Example, FinetuneConfig, LoraSpec, finetune, mean_loss};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::attribution::build_index;
use super::common::{base_hash_of, existing_model, open_store, progress_bar};
use crate::cli::{FinetuneArgs, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// Parses `q`, `q_proj`, `gate`, ... into target modules.
pub(crate) fn parse_targets(names: &[String]) -> anyhow::Result<Vec<TargetModule>> {
    let mut out = Vec::new();
    for n in names {
        let n = n.trim();
        let full = if n.ends_with("_proj") { n.to_owned() } else { format!("{n}_proj") };
        let m = TargetModule::from_peft_name(&full).ok_or_else(|| {
            coded(
                ExitKind::Usage,
                anyhow::anyhow!("unknown target module {n:?}; use q, k, v, o, gate, up, down"),
            )
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(coded(ExitKind::Usage, anyhow::anyhow!("--targets names no module")));
    }
    Ok(out)
}

/// Loads the base in f32 on the CPU and wraps it for autograd.
pub(crate) fn load_diff(path: &Path) -> anyhow::Result<(lorad_model::LoadedModel, DiffLlama)> {
    let model =
        lorad_model::load_model(path, &LoadOptions { dtype: DType::F32, device: Device::Cpu })
            .exit_kind(ExitKind::Config)
            .with_context(|| format!("cannot load model {}", path.display()))?;
    let diff = DiffLlama::new(&model.config, &model.weights).exit_kind(ExitKind::Config)?;
    Ok((model, diff))
}

/// Runs `lorad finetune`.
pub(crate) fn run(home: &Path, io: StoreIo, args: FinetuneArgs) -> anyhow::Result<()> {
    let targets = parse_targets(&args.targets)?;
    lorad_store::validate_adapter_name(&args.name).map_err(|e| coded(ExitKind::Usage, e))?;
    if !(0.0..1.0).contains(&args.eval_fraction) {
        return Err(coded(ExitKind::Usage, anyhow::anyhow!("--eval-fraction must be in [0, 1)")));
    }
    let store = open_store(home, io)?;
    if store.contains(&args.name) && !args.force {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!("adapter {} already exists; pass --force to replace it", args.name),
        ));
    }
    let datanet = super::datanet::open(home, &args.datanet)?;
    let model_path = existing_model(home, args.model.as_deref())?;
    let base_hash = base_hash_of(&model_path)?;
    if datanet.manifest().tokenizer.base_hash != base_hash {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!(
                "datanet {} was tokenized for base {}, this model is {base_hash}; rebuild it with --model",
                args.datanet,
                datanet.manifest().tokenizer.base_hash
            ),
        ));
    }
    let (model, diff) = load_diff(&model_path)?;

    // Held-out split: a seeded shuffle, so the same seed always holds out the same records.
    let mut all: Vec<Example> = (0..datanet.len())
        .map(|i| datanet_example(&datanet, i, args.max_len))
        .filter(|e| e.num_targets() > 0)
        .collect();
    let skipped = datanet.len() - all.len();
    all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(args.seed));
    let held = ((all.len() as f64) * args.eval_fraction).floor() as usize;
    let held = if all.len() - held == 0 { 0 } else { held };
    let (eval, train) = all.split_at(held);
    if train.is_empty() {
        return Err(coded(
            ExitKind::DataErr,
            anyhow::anyhow!("datanet {} has no trainable record", args.datanet),
        ));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "finetune {} on datanet {}: {} train / {} held-out records ({skipped} without completion tokens), rank {} alpha {} on {:?}",
        args.name,
        args.datanet,
        train.len(),
        eval.len(),
        args.rank,
        args.alpha,
        targets.iter().map(|t| t.peft_name()).collect::<Vec<_>>()
    )?;
    let before =
        if eval.is_empty() { None } else { Some(mean_loss(&diff, None, eval, args.batch)?) };
    let cfg = FinetuneConfig {
        lora: LoraSpec { rank: args.rank, alpha: args.alpha, targets, use_rslora: false },
        steps: args.steps,
        lr: args.lr,
        batch_size: args.batch,
        warmup_steps: args.steps / 10,
        seed: args.seed,
        ..FinetuneConfig::default()
    };
    let bar = progress_bar(args.steps, "finetune");
    let mut report = finetune(&diff, train, &cfg, |s| {
        bar.set_message(format!("loss {:.3}", s.loss));
        bar.inc(1);
    })
    .exit_kind(ExitKind::DataErr)?;
    bar.finish_and_clear();
    report.lora.set_base_model(model.name.clone());
    let last = report.steps.last().map_or(f32::NAN, |s| s.loss);
    writeln!(
        out,
        "trained {} steps in {:.1} s, last batch loss {last:.3}",
        args.steps,
        report.elapsed.as_secs_f64()
    )?;
    if let Some(before) = before {
        let after = mean_loss(&diff, Some(&report.lora), eval, args.batch)?;
        writeln!(out, "held-out loss: base {before:.4} -> adapter {after:.4}")?;
    }

    let adapter = report.lora.to_adapter(&args.name)?;
    if store.contains(&args.name) {
        store.remove(&args.name).context("cannot replace the existing adapter")?;
    }
    let info = store
        .import_adapter(&args.name, &adapter, &base_hash)
        .context("cannot import the adapter")?;
    writeln!(out, "imported adapter {} (content hash {})", info.name, info.content_hash)?;
    let peft_dir = home.join("finetuned").join(&args.name);
    if peft_dir.exists() {
        std::fs::remove_dir_all(&peft_dir)
            .with_context(|| format!("removing {}", peft_dir.display()))?;
    }
    std::fs::create_dir_all(&peft_dir)
        .with_context(|| format!("creating {}", peft_dir.display()))?;
    super::common::write_peft_for(&peft_dir, &adapter, &model.config)
        .with_context(|| format!("writing the PEFT adapter to {}", peft_dir.display()))?;
    writeln!(out, "PEFT adapter written to {}", peft_dir.display())?;
    drop(out);
    if !args.no_index {
        build_index(
            home,
            &diff,
            &adapter,
            &datanet,
            lorad_train::ProbeSpec::default(),
            args.max_len,
            true,
        )?;
    }
    Ok(())
}
