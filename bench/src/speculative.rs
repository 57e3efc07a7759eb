//! `lorad-bench speculative`: what prompt-lookup speculative decoding buys, side by side.
//! Two engines on the same model, (a) one token per step and (b) `--speculative-config
//! {"method": "ngram", ...}`, run the same greedy requests, interleaved per round, on two
//! workloads: answers that repeat their prompt (rewriting, extraction: where drafts hit) and
//! open questions (where they mostly miss, so (b) pays for rows it throws away). Each runs
//! as one stream (requests one after another) and as a batch (all at once). Answers are the
//! same in (a) and (b) (checked), so generated tokens per second compare directly.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Args;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest, NgramSpec};

use crate::client::chat_prompts;
use crate::decode::BenchDevice;
use crate::stats::median;

/// Options of `lorad-bench speculative`.
#[derive(Debug, Args)]
pub(crate) struct SpeculativeArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Requests per workload (the batch); the single stream runs the first two.
    #[arg(long, default_value_t = 6)]
    requests: usize,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Draft tokens per step (`num_speculative_tokens`).
    #[arg(long, default_value_t = 4)]
    draft_tokens: usize,
    /// Longest n-gram looked up (`prompt_lookup_max`).
    #[arg(long, default_value_t = 4)]
    lookup_max: usize,
    /// Shortest n-gram looked up (`prompt_lookup_min`).
    #[arg(long, default_value_t = 2)]
    lookup_min: usize,
    /// Rounds, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
}

const ECHO: [&str; 6] = [
    "Rewrite in capitals: the quick brown fox jumps over the lazy dog near the river bank.",
    "Repeat exactly: Rome, Paris, Berlin, Madrid, Lisbon, Vienna, Prague, Warsaw, Athens.",
    "Copy this sentence twice: lorad serves many adapters over one base model.",
    "List these again, one per line: apples, pears, plums, cherries, grapes, lemons.",
    "Repeat after me: to be or not to be, that is the question.",
    "Write this code again: def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
];
const OPEN: [&str; 6] = [
    "Tell me about Rome.",
    "How do bees make honey?",
    "Describe the sea.",
    "What is a star?",
    "Why is the sky blue?",
    "What makes bread rise?",
];

/// Generated tokens per second of `prompts` run together, or one after another; the answers.
fn measure(
    h: &EngineHandle,
    prompts: &[Vec<u32>],
    max_tokens: usize,
    batch: bool,
) -> anyhow::Result<(f64, Vec<Vec<u32>>)> {
    let req = |p: &Vec<u32>| GenerateRequest::greedy(p.clone(), max_tokens);
    let start = Instant::now();
    let mut answers = Vec::new();
    if batch {
        let streams = prompts.iter().map(|p| h.submit(req(p))).collect::<Result<Vec<_>, _>>()?;
        for s in streams {
            answers.push(s.collect_blocking()?.tokens);
        }
    } else {
        for p in prompts {
            answers.push(h.submit(req(p))?.collect_blocking()?.tokens);
        }
    }
    let tokens: usize = answers.iter().map(Vec::len).sum();
    Ok((tokens as f64 / start.elapsed().as_secs_f64(), answers))
}

pub(crate) fn run(home: &Path, out: &Path, args: &SpeculativeArgs) -> anyhow::Result<()> {
    if args.requests < 2 || args.requests > ECHO.len() || args.max_tokens == 0 || args.rounds == 0 {
        anyhow::bail!("need 2 ≤ --requests ≤ {}, --max-tokens ≥ 1, --rounds ≥ 1", ECHO.len());
    }
    let spec = NgramSpec {
        tokens: args.draft_tokens,
        max_n: args.lookup_max,
        min_n: args.lookup_min,
        disable_by_batch_size: None,
    };
    spec.validate()?;
    let device = args.device.open()?;
    let mut engines = Vec::new();
    let mut prompts = Vec::new();
    for speculative in [None, Some(spec)] {
        let model = crate::decode::load_f32(home, args.model.as_ref(), &device)?;
        if prompts.is_empty() {
            prompts.push(chat_prompts(&model, &ECHO[..args.requests])?);
            prompts.push(chat_prompts(&model, &OPEN[..args.requests])?);
        }
        let h =
            EngineHandle::start(model, EngineConfig { speculative, ..EngineConfig::default() })?;
        h.submit(GenerateRequest::greedy(prompts[1][0].clone(), 2))?.collect_blocking()?;
        engines.push(h);
    }
    // [workload][mode][engine] → tokens/s per round.
    let mut rates = vec![vec![vec![Vec::new(); 2]; 2]; 2];
    let mut accepted = [(0usize, 0usize); 2];
    for _ in 0..args.rounds {
        for (w, ps) in prompts.iter().enumerate() {
            for (m, batch) in [false, true].into_iter().enumerate() {
                let ps = if batch { &ps[..] } else { &ps[..2] };
                let mut answers = Vec::new();
                for (e, h) in engines.iter().enumerate() {
                    let stats = h.stats();
                    let before = (
                        stats.spec_draft_tokens.load(Ordering::Relaxed),
                        stats.spec_accepted_tokens.load(Ordering::Relaxed),
                    );
                    let (rate, a) = measure(h, ps, args.max_tokens, batch)?;
                    if e == 1 {
                        accepted[w].0 += stats.spec_draft_tokens.load(Ordering::Relaxed) - before.0;
                        accepted[w].1 +=
                            stats.spec_accepted_tokens.load(Ordering::Relaxed) - before.1;
                    }
                    rates[w][m][e].push(rate);
                    answers.push(a);
                }
                anyhow::ensure!(answers[0] == answers[1], "speculation changed an answer");
            }
        }
    }
    for h in engines {
        h.shutdown();
    }
    let med = |w: usize, m: usize, e: usize| median(rates[w][m][e].clone());
    let device_name = crate::report::device_name(&device);
    let mut md = format!(
        "# lorad-bench speculative\n\nGreedy chat answers of at most {} tokens, f32 on {device_name}, {} build; (b) drafts {} tokens by prompt lookup (n-grams of {} to {}); answers identical in (a) and (b); median of {} interleaved rounds. Single stream: 2 requests one after another; batch: {} at once.\n\n| workload | mode | (a) tokens/s | (b) tokens/s | **b/a** | drafts accepted |\n|---|---|---:|---:|---:|---:|\n",
        args.max_tokens,
        crate::report::profile(),
        args.draft_tokens,
        args.lookup_min,
        args.lookup_max,
        args.rounds,
        args.requests,
    );
    let mut json_rows = Vec::new();
    let mut groups = Vec::new();
    for (w, workload) in ["repeats its prompt", "open questions"].into_iter().enumerate() {
        let rate = accepted[w].1 as f64 / accepted[w].0.max(1) as f64;
        for (m, mode) in ["single stream", "batch"].into_iter().enumerate() {
            let (a, b) = (med(w, m, 0), med(w, m, 1));
            md += &format!(
                "| {workload} | {mode} | {a:.1} | {b:.1} | **{:.2}** | {:.0} % |\n",
                b / a,
                100.0 * rate
            );
            json_rows.push(serde_json::json!({"workload": workload, "mode": mode, "tokens_per_s": {"off": a, "ngram": b}, "ngram_over_off": b / a, "acceptance": rate}));
            groups.push((
                format!("{workload}, {mode}"),
                vec![("off".to_string(), a), ("ngram".to_string(), b)],
            ));
        }
    }
    let name =
        format!("speculative-{}{}", args.draft_tokens, crate::report::device_suffix(&device));
    let title = format!(
        "prompt-lookup speculative decoding | repeats, single b/a = {:.2}",
        med(0, 0, 1) / med(0, 0, 0)
    );
    md += &crate::plot::bar_chart_md(out, &name, &title, "tokens/s", &groups, "throughput");
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "speculative",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "device": device_name,
        "requests": args.requests, "max_tokens": args.max_tokens, "draft_tokens": args.draft_tokens,
        "lookup_min": args.lookup_min, "lookup_max": args.lookup_max, "rounds": args.rounds,
        "results": json_rows,
    });
    crate::report::write(out, &name, &json, &md)
}
