//! `lorad-bench priority`: what scheduling by priority buys interactive requests on a busy
//! node. One engine (priority policy), two passes over the same workload, interleaved per round:
//! a batch of long background requests fills every slot, then short interactive requests arrive
//! while it runs. (a) every request at priority 0: first come, first served, the interactive
//! ones wait for slots; (b) the interactive ones at priority -1: they preempt background ones.
//! Reported: the interactive requests' time to first token and latency, and the background
//! batch's wall time (what the preempted work pays).

use std::path::Path;

use clap::Args;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest, SchedulingPolicy};

use crate::client::{LatencyPass, QUESTIONS, chat_prompts};
use crate::decode::BenchDevice;

/// Options of `lorad-bench priority`.
#[derive(Debug, Args)]
pub(crate) struct PriorityArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Batch slots (the engine's `max_batch_size`).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Background requests, submitted first.
    #[arg(long, default_value_t = 8)]
    background: usize,
    /// Tokens each background request generates.
    #[arg(long, default_value_t = 64)]
    background_tokens: usize,
    /// Interactive requests, submitted once the background batch runs.
    #[arg(long, default_value_t = 4)]
    interactive: usize,
    /// Tokens each interactive request generates.
    #[arg(long, default_value_t = 8)]
    interactive_tokens: usize,
    /// Rounds of the two passes, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
}

/// One pass: the background batch at priority 0, then the interactive requests at `priority`.
fn pass(
    h: &EngineHandle,
    args: &PriorityArgs,
    prompts: &[Vec<u32>],
    priority: i64,
) -> anyhow::Result<LatencyPass> {
    let req = |p: &Vec<u32>, n: usize, prio: i64| GenerateRequest {
        ignore_eos: true,
        priority: prio,
        ..GenerateRequest::greedy(p.clone(), n)
    };
    LatencyPass::run(
        || {
            (0..args.background)
                .map(|i| h.submit(req(&prompts[i % prompts.len()], args.background_tokens, 0)))
                .collect()
        },
        args.interactive,
        |i| h.submit(req(&prompts[(i + 3) % prompts.len()], args.interactive_tokens, priority)),
    )
}

pub(crate) fn run(home: &Path, out: &Path, args: &PriorityArgs) -> anyhow::Result<()> {
    if args.slots == 0 || args.background < args.slots || args.interactive == 0 || args.rounds == 0
    {
        anyhow::bail!(
            "need --slots ≥ 1, --background ≥ --slots (the slots must be full), --interactive ≥ 1, --rounds ≥ 1"
        );
    }
    let device = args.device.open()?;
    let model = crate::decode::load_f32(home, args.model.as_ref(), &device)?;
    let prompts = chat_prompts(&model, &QUESTIONS)?;
    let cfg = EngineConfig {
        max_batch_size: args.slots,
        scheduling: SchedulingPolicy::Priority,
        ..EngineConfig::default()
    };
    let h = EngineHandle::start(model, cfg)?;
    h.submit(GenerateRequest::greedy(prompts[0].clone(), 2))?.collect_blocking()?;
    let (mut fcfs, mut prio) = (Vec::new(), Vec::new());
    let preempted = || h.stats().preemptions.load(std::sync::atomic::Ordering::Relaxed);
    // Preemptions per pass kind, over all rounds.
    let (mut fcfs_preemptions, mut preemptions) = (0, 0);
    for _ in 0..args.rounds {
        let before = preempted();
        fcfs.push(pass(&h, args, &prompts, 0)?);
        let mid = preempted();
        prio.push(pass(&h, args, &prompts, -1)?);
        (fcfs_preemptions, preemptions) =
            (fcfs_preemptions + mid - before, preemptions + preempted() - mid);
    }
    h.shutdown();
    let (ta, la, ba) = LatencyPass::medians(&fcfs);
    let (tb, lb, bb) = LatencyPass::medians(&prio);
    let device_name = crate::report::device_name(&device);
    let mut md = format!(
        "# lorad-bench priority\n\n{} slots; {} background requests of {} tokens, then {} interactive requests of {} tokens once the background batch generates; greedy, f32 on {device_name}, {} build; median of {} interleaved rounds.\n\n| pass | interactive TTFT p50 (s) | interactive latency p50 (s) | background batch wall (s) |\n|---|---:|---:|---:|\n| (a) all priority 0 (first come, first served) | {ta:.3} | {la:.3} | {ba:.2} |\n| (b) interactive at priority -1 ({preemptions} preemptions in all rounds; (a): {fcfs_preemptions}) | {tb:.3} | {lb:.3} | {bb:.2} |\n\n**TTFT a/b = {:.2}**, **latency a/b = {:.2}** (how much sooner interactive requests answer), **background b/a = {:.3}** (what the preempted batch pays)\n",
        args.slots,
        args.background,
        args.background_tokens,
        args.interactive,
        args.interactive_tokens,
        crate::report::profile(),
        args.rounds,
        ta / tb,
        la / lb,
        bb / ba,
    );
    let name = format!(
        "priority-{}x{}{}",
        args.slots,
        args.background,
        crate::report::device_suffix(&device)
    );
    let groups = vec![
        (
            "interactive TTFT p50".to_string(),
            vec![("fcfs".to_string(), ta), ("priority".to_string(), tb)],
        ),
        (
            "interactive latency p50".to_string(),
            vec![("fcfs".to_string(), la), ("priority".to_string(), lb)],
        ),
    ];
    let title =
        format!("priority scheduling | TTFT a/b = {:.1}, background b/a = {:.2}", ta / tb, bb / ba);
    md += &crate::plot::bar_chart_md(out, &name, &title, "seconds", &groups, "latency");
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "priority",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "device": device_name,
        "slots": args.slots, "background": args.background, "background_tokens": args.background_tokens,
        "interactive": args.interactive, "interactive_tokens": args.interactive_tokens, "rounds": args.rounds,
        "median_interactive_ttft_s": {"fcfs": ta, "priority": tb},
        "median_interactive_latency_s": {"fcfs": la, "priority": lb},
        "median_background_wall_s": {"fcfs": ba, "priority": bb},
        "preemptions": {"fcfs": fcfs_preemptions, "priority": preemptions},
        "ttft_fcfs_over_priority": ta / tb, "latency_fcfs_over_priority": la / lb,
        "background_priority_over_fcfs": bb / ba,
    });
    crate::report::write(out, &name, &json, &md)
}
