//! `lorad generate`: one request through the engine, without HTTP.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use lorad_engine::{EngineConfig, EngineHandle, GenerateRequest, GenerationEvent, SamplingParams};
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
