//! `lorad-bench fairness`: what fair sharing between adapters buys the quiet ones on a busy
//! node. Two engines on the same model and adapters, (a) first come, first served and (b) the
//! fair policy (virtual token counters per adapter), run the same workload, interleaved per
//! round: a burst of long requests on one adapter fills every slot and the queue, then a few
//! short requests arrive, each on an adapter of its own. Reported: the short requests' time to
//! first token and latency, and the burst's wall time (what fairness costs the heavy user).

use std::path::Path;

use clap::Args;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest, SchedulingPolicy};
use lorad_store::{RandomAdapterSpec, TargetModule};

use crate::client::{LatencyPass, QUESTIONS, chat_prompts};
use crate::decode::BenchDevice;

/// Options of `lorad-bench fairness`.
#[derive(Debug, Args)]
pub(crate) struct FairnessArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Batch slots (the engine's `max_batch_size`).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Requests of the burst on the heavy adapter, submitted first.
    #[arg(long, default_value_t = 16)]
    burst: usize,
    /// Tokens each burst request generates.
    #[arg(long, default_value_t = 48)]
    burst_tokens: usize,
    /// Light requests, each on its own adapter, submitted once the burst generates.
    #[arg(long, default_value_t = 4)]
    light: usize,
    /// Tokens each light request generates.
    #[arg(long, default_value_t = 8)]
    light_tokens: usize,
    /// Rank of every adapter.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Rounds of the two passes, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
}

/// One pass: the burst on `heavy`, then each light request on an adapter of its own.
fn pass(
    h: &EngineHandle,
    args: &FairnessArgs,
    prompts: &[Vec<u32>],
) -> anyhow::Result<LatencyPass> {
    let req = |i: usize, adapter: String, n: usize| GenerateRequest {
        ignore_eos: true,
        adapter: Some(adapter),
        ..GenerateRequest::greedy(prompts[i % prompts.len()].clone(), n)
    };
    LatencyPass::run(
        || (0..args.burst).map(|i| h.submit(req(i, "heavy".into(), args.burst_tokens))).collect(),
        args.light,
        |i| h.submit(req(i + 1, format!("light{i}"), args.light_tokens)),
    )
}

/// An engine under `scheduling` with the adapters `heavy` and `light0..`.
fn engine(
    home: &Path,
    args: &FairnessArgs,
    device: &candle_core::Device,
    scheduling: SchedulingPolicy,
) -> anyhow::Result<EngineHandle> {
    let model = crate::decode::load_f32(home, args.model.as_ref(), device)?;
    let base = lorad_engine::base_shape(&model.config);
    let names =
        std::iter::once("heavy".to_string()).chain((0..args.light).map(|i| format!("light{i}")));
    let adapters: Vec<_> = names
        .enumerate()
        .map(|(i, name)| {
            let spec = RandomAdapterSpec {
                rank: args.rank,
                alpha: 2.0 * args.rank as f64,
                targets: TargetModule::ALL.to_vec(),
                use_rslora: false,
                layers: None,
                seed: 2000 + i as u64,
            };
            lorad_store::random_adapter(&name, &base, &spec)
        })
        .collect();
    let cfg = EngineConfig { max_batch_size: args.slots, scheduling, ..EngineConfig::default() };
    let h = EngineHandle::start(model, cfg)?;
    for a in &adapters {
        h.add_adapter(a)?;
    }
    Ok(h)
}

pub(crate) fn run(home: &Path, out: &Path, args: &FairnessArgs) -> anyhow::Result<()> {
    if args.slots == 0
        || args.burst <= args.slots
        || args.light == 0
        || args.rounds == 0
        || args.rank == 0
    {
        anyhow::bail!(
            "need --slots ≥ 1, --burst > --slots (a queue must form), --light ≥ 1, --rounds ≥ 1, --rank ≥ 1"
        );
    }
    let device = args.device.open()?;
    let model = crate::decode::load_f32(home, args.model.as_ref(), &device)?;
    let prompts = chat_prompts(&model, &QUESTIONS)?;
    drop(model);
    let fcfs_engine = engine(home, args, &device, SchedulingPolicy::Fcfs)?;
    let fair_engine = engine(home, args, &device, SchedulingPolicy::Fair)?;
    for h in [&fcfs_engine, &fair_engine] {
        h.submit(GenerateRequest::greedy(prompts[0].clone(), 2))?.collect_blocking()?;
    }
    let (mut fcfs, mut fair) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        fcfs.push(pass(&fcfs_engine, args, &prompts)?);
        fair.push(pass(&fair_engine, args, &prompts)?);
    }
    fcfs_engine.shutdown();
    fair_engine.shutdown();
    let (ta, la, wa) = LatencyPass::medians(&fcfs);
    let (tb, lb, wb) = LatencyPass::medians(&fair);
    let device_name = crate::report::device_name(&device);
    let mut md = format!(
        "# lorad-bench fairness\n\n{} slots; a burst of {} requests of {} tokens on one adapter, then {} requests of {} tokens, each on an adapter of its own, once the burst generates; rank {}, greedy, f32 on {device_name}, {} build; median of {} interleaved rounds.\n\n| pass | light TTFT p50 (s) | light latency p50 (s) | burst wall (s) |\n|---|---:|---:|---:|\n| (a) first come, first served | {ta:.3} | {la:.3} | {wa:.2} |\n| (b) fair (virtual token counter per adapter) | {tb:.3} | {lb:.3} | {wb:.2} |\n\n**TTFT a/b = {:.2}**, **latency a/b = {:.2}** (how much sooner the light adapters answer), **burst b/a = {:.3}** (what the heavy adapter pays)\n",
        args.slots,
        args.burst,
        args.burst_tokens,
        args.light,
        args.light_tokens,
        args.rank,
        crate::report::profile(),
        args.rounds,
        ta / tb,
        la / lb,
        wb / wa,
    );
    let name =
        format!("fairness-{}x{}{}", args.slots, args.burst, crate::report::device_suffix(&device));
    let groups = vec![
        ("light TTFT p50".to_string(), vec![("fcfs".to_string(), ta), ("fair".to_string(), tb)]),
        ("light latency p50".to_string(), vec![("fcfs".to_string(), la), ("fair".to_string(), lb)]),
    ];
    let title = format!("fair sharing | TTFT a/b = {:.1}, burst b/a = {:.2}", ta / tb, wb / wa);
    md += &crate::plot::bar_chart_md(out, &name, &title, "seconds", &groups, "latency");
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "fairness",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "device": device_name,
        "slots": args.slots, "burst": args.burst, "burst_tokens": args.burst_tokens,
        "light": args.light, "light_tokens": args.light_tokens, "rank": args.rank, "rounds": args.rounds,
        "median_light_ttft_s": {"fcfs": ta, "fair": tb},
        "median_light_latency_s": {"fcfs": la, "fair": lb},
        "median_burst_wall_s": {"fcfs": wa, "fair": wb},
        "ttft_fcfs_over_fair": ta / tb, "latency_fcfs_over_fair": la / lb,
        "burst_fair_over_fcfs": wb / wa,
    });
    crate::report::write(out, &name, &json, &md)
}
