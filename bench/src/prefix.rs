//! `lorad-bench prefix`: time to first token of chat requests that share a long system prompt,
//! with the prefix cache off and on, side by side in one run.
//!
//! Requests run one after another (each alone in the batch), so time to first token is the
//! prefill of the prompt: with the cache, every request after the first computes only the part
//! after the shared prefix's last full block. The first request of each engine is a warm-up and
//! fills the cache; it is not counted.

use std::path::Path;
use std::time::Instant;

use clap::Args;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest};
use lorad_model::ChatMessage;

use crate::decode::BenchDevice;

/// Options of `lorad-bench prefix`.
#[derive(Debug, Args)]
pub(crate) struct PrefixArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Requests measured per configuration (after one warm-up request).
    #[arg(long, default_value_t = 12)]
    requests: usize,
    /// Tokens of the shared system prompt (at least; whole sentences are repeated).
    #[arg(long, default_value_t = 480)]
    system_tokens: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 4)]
    max_tokens: usize,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
}

const SENTENCES: [&str; 4] = [
    "You are the support assistant of a regional rail company.",
    "Answer in one short sentence and name the station when you know it.",
    "Trains to the coast leave every hour from platform four, except on public holidays.",
    "Never promise refunds; point travellers to the ticket office instead.",
];

const QUESTIONS: [&str; 6] = [
    "When does the next train to the coast leave?",
    "Can I bring a bicycle?",
    "Where do I buy a ticket?",
    "Is the station open at night?",
    "How long is the ride to the airport?",
    "Do children travel free?",
];

/// One configuration's measurements.
struct Run {
    ttft_ms: Vec<f64>,
    cached_tokens: usize,
    prompt_tokens: usize,
}

pub(crate) fn run(home: &Path, out: &Path, args: &PrefixArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.max_tokens == 0 {
        anyhow::bail!("--requests and --max-tokens must be at least 1");
    }
    let device = args.device.open()?;
    let load = || crate::decode::load_f32(home, args.model.as_ref(), &device);
    let probe = load()?;
    let mut system = String::new();
    let mut i = 0;
    while probe.tokenizer.encode(&system)?.len() < args.system_tokens {
        system += SENTENCES[i % SENTENCES.len()];
        system.push(' ');
        i += 1;
    }
    let prompts: Vec<Vec<u32>> = (0..=args.requests)
        .map(|i| {
            let q = QUESTIONS[i % QUESTIONS.len()];
            let msgs = [ChatMessage::new("system", system.trim()), ChatMessage::new("user", q)];
            let text = probe.chat_template.render(&msgs, true)?;
            Ok(probe.tokenizer.encode(&text)?)
        })
        .collect::<anyhow::Result<_>>()?;
    drop(probe);
    let mut runs = Vec::new();
    for caching in [false, true] {
        let cfg = EngineConfig { prefix_caching: caching, ..EngineConfig::default() };
        let engine = EngineHandle::start(load()?, cfg)?;
        let mut r = Run { ttft_ms: Vec::new(), cached_tokens: 0, prompt_tokens: 0 };
        for (k, p) in prompts.iter().enumerate() {
            let start = Instant::now();
            let c = engine
                .submit(GenerateRequest::greedy(p.clone(), args.max_tokens))?
                .collect_blocking()?;
            let ttft = c.first_token_at.map_or(start.elapsed(), |t| t.duration_since(start));
            if k > 0 {
                r.ttft_ms.push(ttft.as_secs_f64() * 1e3);
                r.cached_tokens += c.usage.cached_tokens;
                r.prompt_tokens += c.usage.prompt_tokens;
            }
        }
        engine.shutdown();
        runs.push(r);
    }
    let median = |v: &[f64]| crate::stats::median(v.to_vec());
    let (off, on) = (&runs[0], &runs[1]);
    let (off_ms, on_ms) = (median(&off.ttft_ms), median(&on.ttft_ms));
    let speedup = off_ms / on_ms;
    let hit = on.cached_tokens as f64 / on.prompt_tokens.max(1) as f64;
    let device_name = crate::report::device_name(&device);
    let mut md = format!(
        "# lorad-bench prefix\n\n{} chat requests one after another, each {} prompt tokens on average sharing a system prompt of at least {} tokens, {} tokens generated, f32 on {device_name}, {} build.\n\n| prefix cache | median time to first token (ms) | prompt tokens from the cache |\n|---|---:|---:|\n| off | {off_ms:.1} | {} |\n| on | {on_ms:.1} | {} ({:.0} %) |\n\n**off/on = {speedup:.2}** (time to first token with a shared system prompt)\n",
        args.requests,
        on.prompt_tokens / args.requests,
        args.system_tokens,
        args.max_tokens,
        crate::report::profile(),
        off.cached_tokens,
        on.cached_tokens,
        hit * 100.0,
    );
    let name = format!(
        "prefix-{}x{}{}",
        args.requests,
        args.system_tokens,
        crate::report::device_suffix(&device)
    );
    let groups: Vec<(String, Vec<(String, f64)>)> = vec![(
        "median".to_string(),
        vec![("cache off".to_string(), off_ms), ("cache on".to_string(), on_ms)],
    )];
    let title = format!("time to first token, shared system prompt | off/on = {speedup:.2}");
    md += &crate::plot::bar_chart_md(out, &name, &title, "ms", &groups, "time to first token");
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "prefix",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "requests": args.requests, "system_tokens": args.system_tokens, "max_tokens": args.max_tokens,
        "device": device_name,
        "ttft_ms_off": off.ttft_ms, "ttft_ms_on": on.ttft_ms,
        "median_ttft_ms_off": off_ms, "median_ttft_ms_on": on_ms,
        "off_over_on": speedup,
        "prompt_tokens": on.prompt_tokens, "cached_tokens": on.cached_tokens,
    });
    crate::report::write(out, &name, &json, &md)
}
