//! `lorad-bench structured`: decode throughput of a batch constrained to a JSON Schema against
//! the same batch unconstrained, side by side in one run.
//!
//! Three passes over the same chat prompts, all requests of a pass submitted together:
//! (a) unconstrained, generating exactly `--max-tokens` (`ignore_eos`); (b) constrained to a
//! schema just compiled, so each new matcher state walks the vocabulary (cold masks); (c) the
//! same grammar again, its masks cached (what a server sending one schema with every request
//! sees). Constrained answers end when complete, so throughput is generated tokens per second.
//! (d) tool calling's `"auto"` (free text in which `<tool_call>` may open a call), cold masks,
//! `ignore_eos` like (a) (a constrained answer still ends at end-of-sequence once complete):
//! what offering tools costs an answer that calls none.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest};
use lorad_grammar::tags::hermes_calls;
use lorad_grammar::{Constraint, Grammar, Json};

use crate::decode::BenchDevice;

/// Options of `lorad-bench structured`.
#[derive(Debug, Args)]
pub(crate) struct StructuredArgs {
    /// Model file or directory (default: the default model under --home).
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Requests per pass, submitted together.
    #[arg(long, default_value_t = 8)]
    requests: usize,
    /// Token limit per request.
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// Rounds of the three passes, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Device to run on: `cpu`, or `cuda` (GPU 0; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: BenchDevice,
}

const CITIES: [&str; 8] = ["Paris", "Rome", "Tokyo", "Lima", "Cairo", "Oslo", "Seoul", "Quito"];

const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "city": {"type": "string", "maxLength": 24},
    "country": {"type": "string", "maxLength": 24},
    "population_millions": {"type": "number"},
    "is_capital": {"type": "boolean"},
    "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 32}, "maxItems": 3}
  },
  "required": ["city", "country", "is_capital", "landmarks"]
}"#;

/// One pass: generated tokens, wall seconds, answers that parse as JSON.
struct Pass {
    tokens: usize,
    secs: f64,
    valid: usize,
}

fn pass(
    engine: &EngineHandle,
    prompts: &[Vec<u32>],
    max_tokens: usize,
    grammar: Option<&Arc<Grammar>>,
    ignore_eos: bool,
) -> anyhow::Result<Pass> {
    let start = Instant::now();
    let streams = prompts
        .iter()
        .map(|p| {
            let mut req = GenerateRequest::greedy(p.clone(), max_tokens);
            req.ignore_eos = ignore_eos;
            req.constraint = grammar.cloned();
            Ok(engine.submit(req)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Pass { tokens: 0, secs: 0.0, valid: 0 };
    for s in streams {
        let c = s.collect_blocking()?;
        out.tokens += c.usage.completion_tokens;
        out.valid += usize::from(serde_json::from_str::<serde_json::Value>(&c.text).is_ok());
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

pub(crate) fn run(home: &Path, out: &Path, args: &StructuredArgs) -> anyhow::Result<()> {
    if args.requests == 0 || args.max_tokens == 0 || args.rounds == 0 {
        anyhow::bail!("--requests, --max-tokens and --rounds must be at least 1");
    }
    let device = args.device.open()?;
    let model = crate::decode::load_f32(home, args.model.as_ref(), &device)?;
    let questions: Vec<String> = (0..args.requests)
        .map(|i| format!("Describe {} as a JSON object.", CITIES[i % CITIES.len()]))
        .collect();
    let prompts = crate::client::chat_prompts(&model, &questions)?;
    let engine = EngineHandle::start(model, EngineConfig::default())?;
    // Warm-up: the first steps of an engine allocate; the vocabulary's trie is built.
    pass(&engine, &prompts[..1], 4, None, true)?;
    engine.grammar_vocab();
    let constraint = Constraint::JsonSchema(Json::parse(SCHEMA)?);
    let tools =
        Constraint::Tags(hermes_calls(&[("describe".into(), Json::parse(SCHEMA)?)], false, true));
    // Rounds interleave the passes so a noisy neighbour slows all three alike; each round's
    // cold pass gets a freshly compiled grammar (empty mask cache).
    let (mut free, mut cold, mut warm, mut auto) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut misses, mut misses_warm, mut auto_masks) = (0, 0, 0);
    for _ in 0..args.rounds {
        free.push(pass(&engine, &prompts, args.max_tokens, None, true)?);
        let grammar = Arc::new(constraint.compile()?);
        cold.push(pass(&engine, &prompts, args.max_tokens, Some(&grammar), false)?);
        let (_, m) = grammar.mask_cache_stats();
        warm.push(pass(&engine, &prompts, args.max_tokens, Some(&grammar), false)?);
        misses = m;
        misses_warm = grammar.mask_cache_stats().1 - m;
        let auto_grammar = Arc::new(tools.compile()?);
        auto.push(pass(&engine, &prompts, args.max_tokens, Some(&auto_grammar), true)?);
        auto_masks = auto_grammar.mask_cache_stats().1;
    }
    engine.shutdown();
    let median = |passes: &[Pass]| {
        crate::stats::median(passes.iter().map(|p| p.tokens as f64 / p.secs).collect())
    };
    let (a, b, c, d) = (median(&free), median(&cold), median(&warm), median(&auto));
    let (free, cold, warm, auto) = (&free[0], &cold[0], &warm[0], &auto[0]);
    let device_name = crate::report::device_name(&device);
    let mut md = format!(
        "# lorad-bench structured\n\n{} chat requests per pass submitted together, greedy, at most {} tokens each, f32 on {device_name}, {} build; median of {} interleaved rounds.\n\n| pass | generated tokens | tokens/s | answers that parse as JSON |\n|---|---:|---:|---:|\n| (a) unconstrained | {} | {a:.1} | {} |\n| (b) JSON Schema, cold masks ({misses} computed) | {} | {b:.1} | {} |\n| (c) JSON Schema, cached masks ({misses_warm} new) | {} | {c:.1} | {} |\n| (d) tools \"auto\", no call made, cold masks ({auto_masks} computed) | {} | {d:.1} | |\n\n**b/a = {:.3}**, **c/a = {:.3}**, **d/a = {:.3}** (constrained over unconstrained decode throughput)\n",
        args.requests,
        args.max_tokens,
        crate::report::profile(),
        args.rounds,
        free.tokens,
        free.valid,
        cold.tokens,
        cold.valid,
        warm.tokens,
        warm.valid,
        auto.tokens,
        b / a,
        c / a,
        d / a,
    );
    let name = format!(
        "structured-{}x{}{}",
        args.requests,
        args.max_tokens,
        crate::report::device_suffix(&device)
    );
    let groups: Vec<(String, Vec<(String, f64)>)> = vec![(
        "tokens/s".to_string(),
        vec![
            ("unconstrained".to_string(), a),
            ("schema, cold".to_string(), b),
            ("schema, cached".to_string(), c),
            ("tools auto".to_string(), d),
        ],
    )];
    let title =
        format!("structured output | b/a = {:.2}, c/a = {:.2}, d/a = {:.2}", b / a, c / a, d / a);
    md += &crate::plot::bar_chart_md(out, &name, &title, "tokens/s", &groups, "decode throughput");
    println!("{md}");
    let json = serde_json::json!({
        "benchmark": "structured",
        "machine": crate::report::machine(),
        "profile": crate::report::profile(),
        "requests": args.requests, "max_tokens": args.max_tokens, "device": device_name,
        "schema": SCHEMA,
        "rounds": args.rounds,
        "tokens": [free.tokens, cold.tokens, warm.tokens, auto.tokens],
        "valid_json": [free.valid, cold.valid, warm.valid],
        "median_tokens_per_s": {"unconstrained": a, "cold": b, "cached": c, "tools_auto": d},
        "masks_computed_cold": misses, "masks_computed_warm": misses_warm,
        "masks_computed_tools_auto": auto_masks,
        "cold_over_free": b / a, "cached_over_free": c / a, "tools_auto_over_free": d / a,
    });
    crate::report::write(out, &name, &json, &md)
}
