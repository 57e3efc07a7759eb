//! A benchmark's clients: chat prompts, and a request timed from submission to its first
//! token and to its end on a thread of its own, as a user would see it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lorad_engine::{EngineError, GenerationEvent, GenerationStream};
use lorad_model::{ChatMessage, LoadedModel};

/// `questions` as user turns in the model's chat template, tokenized.
pub(crate) fn chat_prompts(
    model: &LoadedModel,
    questions: &[impl AsRef<str>],
) -> anyhow::Result<Vec<Vec<u32>>> {
    questions
        .iter()
        .map(|q| {
            let text = model.chat_template.render(&[ChatMessage::new("user", q.as_ref())], true)?;
            Ok(model.tokenizer.encode(&text)?)
        })
        .collect()
}

/// Follows `stream` (submitted at `submitted`) to its end on a thread; the thread returns the
/// seconds to its first token and to its end.
pub(crate) fn timed_client(
    submitted: Instant,
    stream: Result<GenerationStream, EngineError>,
) -> JoinHandle<anyhow::Result<(f64, f64)>> {
    std::thread::spawn(move || {
        let mut stream = stream?;
        let mut ttft = None;
        while let Some(e) = stream.blocking_next() {
            match e {
                GenerationEvent::Delta { tokens, .. } if !tokens.is_empty() && ttft.is_none() => {
                    ttft = Some(submitted.elapsed());
                }
                GenerationEvent::Done { .. } => break,
                GenerationEvent::Error(e) => anyhow::bail!("a timed request failed: {e}"),
                _ => {}
            }
        }
        let ttft = ttft.unwrap_or(Duration::ZERO).as_secs_f64();
        Ok((ttft, submitted.elapsed().as_secs_f64()))
    })
}

/// Joins the threads of [`timed_client`]: first-token times and latencies, in seconds.
pub(crate) fn join_timed(
    threads: Vec<JoinHandle<anyhow::Result<(f64, f64)>>>,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut out = (Vec::new(), Vec::new());
    for t in threads {
        let (ttft, latency) =
            t.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        out.0.push(ttft);
        out.1.push(latency);
    }
    Ok(out)
}
