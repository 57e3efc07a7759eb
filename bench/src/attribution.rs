//! `lorad-bench attribution`: the planted-contributor evaluation at a larger setting (top-1 and
//! AUC, preconditioned vs plain gradient dot products), index build throughput, and the cost of
//! attributing an answer relative to generating it (goal: attribution / generation <= 1.0).

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use clap::Args;
use lorad_attribution::grad::Scoring;
use lorad_attribution::planted::{PlantedConfig, prompt_text, run_planted};
use lorad_engine::{Llama, ResidentAdapter};
use lorad_model::LoadOptions;
use lorad_train::{
    DiffLlama, Example, FinetuneConfig, LoraSet, ProbeSpec, Probes, projected_gradients,
};

/// Settings of `lorad-bench attribution`.
#[derive(Debug, Args)]
pub(crate) struct AttributionArgs {
    /// Contributors (distinct topics and styles; at most 8).
    #[arg(long, default_value_t = 8)]
    contributors: usize,
    /// Training records per contributor.
    #[arg(long, default_value_t = 30)]
    per_contributor: usize,
    /// Held-out queries per contributor.
    #[arg(long, default_value_t = 5)]
    queries: usize,
    /// Fine-tuning steps (30: one epoch of the default 8 x 30 records at batch 8; two epochs
    /// memorise the records and the AUC falls, see docs/attribution.md).
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens generated per request for the cost ratio.
    #[arg(long, default_value_t = 48)]
    answer_tokens: usize,
    /// Requests timed for the cost ratio.
    #[arg(long, default_value_t = 8)]
    cost_requests: usize,
    /// Seed of the generated data and of training.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub(crate) fn run(home: &Path, out: &Path, args: &AttributionArgs) -> anyhow::Result<()> {
    let path = lorad_model::fetch_default_model(home, true)?;
    let model =
        lorad_model::load_model(&path, &LoadOptions { dtype: DType::F32, device: Device::Cpu })?;
    let diff = DiffLlama::new(&model.config, &model.weights)?;
    let cfg = PlantedConfig {
        contributors: args.contributors,
        per_contributor: args.per_contributor,
        queries_per_contributor: args.queries,
        seed: args.seed,
        finetune: FinetuneConfig {
            steps: args.steps,
            batch_size: args.batch,
            warmup_steps: args.steps / 10,
            lr: 2e-3,
            seed: args.seed,
            ..Default::default()
        },
        probe: ProbeSpec::default(),
        grad_batch: 8,
    };
    let tmp = tempfile::tempdir()?;
    let bar = indicatif::ProgressBar::new_spinner();
    let run = run_planted(&diff, &model.tokenizer, &cfg, &tmp.path().join("index"), |m| {
        bar.set_message(m.to_owned());
        bar.tick();
    })?;
    bar.finish_and_clear();
    let r = &run.report;

    // Cost: generate an answer with the serving engine, then attribute it (projected gradient of
    // the answer given the prompt, scored against the index), request by request.
    let engine = Llama::new(&model.config, &model.weights)?;
    let base = lorad_engine::base_shape(&model.config);
    let resident = ResidentAdapter::new(&run.adapter, &base, DType::F32, &Device::Cpu)?;
    let lora = LoraSet::from_adapter(&run.adapter, &diff.base_shape(), &Device::Cpu)?;
    let probes = Probes::new(&lora, run.index.header().probe, &Device::Cpu)?;
    let (mut gen_s, mut attr_s) = (0f64, 0f64);
    let mut ratios = Vec::new();
    for q in run.queries.iter().take(args.cost_requests) {
        let prompt = model.tokenizer.encode(&prompt_text(q))?;
        let t = Instant::now();
        let answer =
            crate::decode::greedy_alone(&engine, &prompt, args.answer_tokens, Some(&resident))?;
        let g = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut tokens = prompt.clone();
        tokens.extend(&answer);
        let ex = Example { tokens, prompt_len: prompt.len() };
        let grad = projected_gradients(&diff, &lora, &probes, &[ex], 1, |_| {})?;
        let scores = run.index.score(&grad[0], Scoring::default())?;
        let a = t.elapsed().as_secs_f64();
        std::hint::black_box(scores);
        gen_s += g;
        attr_s += a;
        ratios.push(a / g);
    }
    let n = ratios.len().max(1) as f64;
    let ratio = attr_s / gen_s.max(1e-9);

    println!("planted contributors: {} records, {} queries, dim {}", r.records, r.queries, r.dim);
    println!("  held-out loss base {:.3} -> fine-tuned {:.3}", r.loss_base, r.loss_finetuned);
    println!(
        "  preconditioned: top-1 {:.3}  AUC {:.4}   (goal top-1 >= 0.9, AUC >= 0.95)",
        r.preconditioned.top1, r.preconditioned.auc
    );
    println!("  plain grad-dot: top-1 {:.3}  AUC {:.4}", r.plain.top1, r.plain.auc);
    println!(
        "  (preconditioned, not norm-divided: top-1 {:.3} AUC {:.4}; plain cosine: top-1 {:.3} AUC {:.4})",
        r.preconditioned_unnormalized.top1,
        r.preconditioned_unnormalized.auc,
        r.plain_normalized.top1,
        r.plain_normalized.auc
    );
    println!(
        "  fine-tune {:.1} s; index {:.1} s ({:.2} records/s)",
        r.finetune_s, r.index_s, r.index_records_per_s
    );
    println!(
        "cost per request ({} answer tokens): generation {:.0} ms, attribution {:.0} ms, ratio {ratio:.2} (goal <= 1.0)",
        args.answer_tokens,
        gen_s * 1e3 / n,
        attr_s * 1e3 / n
    );

    let name = "attribution";
    let groups = vec![
        (
            "top-1".to_string(),
            vec![
                ("preconditioned".to_string(), r.preconditioned.top1),
                ("plain dot".to_string(), r.plain.top1),
            ],
        ),
        (
            "AUC".to_string(),
            vec![
                ("preconditioned".to_string(), r.preconditioned.auc),
                ("plain dot".to_string(), r.plain.auc),
            ],
        ),
        ("attribution / generation".to_string(), vec![("preconditioned".to_string(), ratio)]),
    ];
    let png = out.join(format!("{name}.png"));
    let chart = std::fs::create_dir_all(out).map_err(anyhow::Error::from).and_then(|()| {
        crate::plot::bar_chart(&png, "planted-contributor attribution", "value", &groups)
    });
    if let Err(e) = &chart {
        eprintln!("lorad-bench: warning: no chart: {e:#}");
    }
    let md = format!(
        "# lorad-bench attribution\n\n\
         {} contributors x {} records, {} held-out queries, projected dim {}.\n\n\
         | method | top-1 | AUC |\n|---|---|---|\n\
         | preconditioned, norm-divided (served) | {:.3} | {:.4} |\n| plain gradient dot | {:.3} | {:.4} |\n\
         | preconditioned, raw | {:.3} | {:.4} |\n| plain cosine | {:.3} | {:.4} |\n\n\
         Goals: top-1 >= 0.9, AUC >= 0.95 (anchor: DataInf AUC ~1.0).\n\n\
         Held-out loss {:.3} (base) -> {:.3} (fine-tuned). Fine-tune {:.1} s, index {:.1} s ({:.2} records/s).\n\n\
         Cost per request, {} answer tokens: generation {:.0} ms, attribution {:.0} ms, \
         **ratio {ratio:.2}** (goal <= 1.0).\n",
        args.contributors.min(8),
        args.per_contributor,
        r.queries,
        r.dim,
        r.preconditioned.top1,
        r.preconditioned.auc,
        r.plain.top1,
        r.plain.auc,
        r.preconditioned_unnormalized.top1,
        r.preconditioned_unnormalized.auc,
        r.plain_normalized.top1,
        r.plain_normalized.auc,
        r.loss_base,
        r.loss_finetuned,
        r.finetune_s,
        r.index_s,
        r.index_records_per_s,
        args.answer_tokens,
        gen_s * 1e3 / n,
        attr_s * 1e3 / n,
    );
    let json = serde_json::json!({
        "machine": crate::report::machine(),
        "settings": {
            "contributors": args.contributors, "per_contributor": args.per_contributor,
            "queries": args.queries, "steps": args.steps, "batch": args.batch,
            "answer_tokens": args.answer_tokens, "seed": args.seed,
        },
        "planted": r,
        "cost": {
            "generation_ms": gen_s * 1e3 / n, "attribution_ms": attr_s * 1e3 / n,
            "attribution_over_generation": ratio, "per_request": ratios,
        },
        "plot": chart.is_ok().then(|| format!("{name}.png")),
    });
    crate::report::write(out, name, &json, &md)
}
