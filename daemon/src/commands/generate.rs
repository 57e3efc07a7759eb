//! `lorad generate`: one request through the engine, without HTTP.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest, GenerationEvent, SamplingParams};
use lorad_grammar::{Constraint, Grammar, Json};
use lorad_model::ChatMessage;

use super::common::{device, load, model_to_run, open_store};
use crate::cli::{GenerateArgs, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// Loads the model (and adapter), generates, streams the text to stdout.
pub(crate) fn run(home: &Path, io: StoreIo, args: GenerateArgs) -> anyhow::Result<()> {
    let device = device(args.model.device)?;
    let path = model_to_run(home, args.model.model.as_deref())?;
    let model = load(&path, &args.model, device)?;
    // One request: a small cache is plenty (the engine caps the context window to it).
    let cfg = EngineConfig {
        max_batch_size: 1,
        kv_cache_tokens: 4096,
        max_seq_len: None,
        ..EngineConfig::default()
    };
    let engine = EngineHandle::start(model, cfg).context("cannot start the engine")?;
    let result = generate(home, io, &engine, &args);
    engine.shutdown();
    result
}

fn generate(
    home: &Path,
    io: StoreIo,
    engine: &EngineHandle,
    args: &GenerateArgs,
) -> anyhow::Result<()> {
    if let Some(name) = &args.adapter {
        let store = open_store(home, io)?;
        let adapter = store
            .load(name, &engine.info().base_shape)
            .map_err(|e| {
                let kind = if matches!(e, lorad_store::StoreError::NotFound { .. }) {
                    ExitKind::Usage
                } else {
                    ExitKind::DataErr
                };
                coded(kind, e)
            })
            .with_context(|| format!("cannot load adapter '{name}'"))?;
        engine
            .add_adapter(&adapter)
            .exit_kind(ExitKind::DataErr)
            .with_context(|| format!("cannot load adapter '{name}'"))?;
    }
    let text = if args.chat {
        engine
            .info()
            .chat_template
            .render(&[ChatMessage::new("user", args.prompt.clone())], true)
            .exit_kind(ExitKind::DataErr)
            .context("cannot render the chat template")?
    } else {
        args.prompt.clone()
    };
    let prompt = engine.tokenizer().encode(&text).context("cannot tokenize the prompt")?;
    let sampling = SamplingParams {
        temperature: args.temperature,
        seed: args.seed,
        ..SamplingParams::default()
    };
    let req = GenerateRequest {
        adapter: args.adapter.clone(),
        sampling,
        constraint: constraint(args)?,
        ..GenerateRequest::greedy(prompt, args.max_tokens)
    };
    let start = Instant::now();
    let mut stream =
        engine.submit(req).exit_kind(ExitKind::Usage).context("the request was refused")?;
    let mut out = std::io::stdout().lock();
    while let Some(event) = stream.blocking_next() {
        match event {
            GenerationEvent::Delta { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            GenerationEvent::Done { finish_reason, usage } => {
                writeln!(out)?;
                let secs = start.elapsed().as_secs_f64();
                tracing::info!(
                    finish_reason = finish_reason.as_str(),
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    tokens_per_sec =
                        format_args!("{:.1}", usage.completion_tokens as f64 / secs.max(1e-9)),
                    "done"
                );
                return Ok(());
            }
            GenerationEvent::Error(e) => anyhow::bail!("generation failed: {e}"),
            GenerationEvent::Prompt { .. } => {} // never asked for here
        }
    }
    anyhow::bail!("the engine stopped before the request finished")
}

/// The structured-output constraint the flags ask for, compiled; errors name the file or the
/// flag at fault.
fn constraint(args: &GenerateArgs) -> anyhow::Result<Option<Arc<Grammar>>> {
    let c = if let Some(path) = &args.json_schema {
        let text = std::fs::read_to_string(path)
            .exit_kind(ExitKind::Usage)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let schema = Json::parse(&text)
            .exit_kind(ExitKind::DataErr)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Constraint::JsonSchema(schema)
    } else if args.json {
        Constraint::JsonObject
    } else if let Some(p) = &args.regex {
        Constraint::Regex(p.clone())
    } else if !args.choice.is_empty() {
        Constraint::Choice(args.choice.clone())
    } else {
        return Ok(None);
    };
    // A schema file is input data; a pattern or choices are flag values.
    let kind = if args.json_schema.is_some() { ExitKind::DataErr } else { ExitKind::Usage };
    let grammar = c.compile().exit_kind(kind).context("cannot use the constraint")?;
    Ok(Some(Arc::new(grammar)))
}
