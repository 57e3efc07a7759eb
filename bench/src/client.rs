//! A benchmark's clients: chat prompts, and a request timed from submission to its first
//! token and to its end on a thread of its own, as a user would see it.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lorad_engine::{EngineError, GenerationEvent, GenerationStream};
use lorad_model::{ChatMessage, LoadedModel};

use crate::stats::median;

/// Short chat questions the latency benches ask.
pub(crate) const QUESTIONS: [&str; 6] = [
    "Tell me about Rome.",
    "How do bees make honey?",
    "Describe the sea.",
    "What is a star?",
    "Name three fruits.",
    "What is 2 + 2?",
];

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

/// One pass of a latency bench: a batch of long requests fills the slots, then timed requests
/// arrive while it runs.
pub(crate) struct LatencyPass {
    /// The timed requests' seconds to their first token.
    pub(crate) ttft: Vec<f64>,
    /// The timed requests' seconds to their end.
    pub(crate) latency: Vec<f64>,
    /// Seconds from the batch's submission to the end of everything.
    pub(crate) batch_secs: f64,
}

impl LatencyPass {
    /// Submits the batch, waits for its first request's first token, then submits `timed`
    /// requests (`submit(i)`), each followed by a [`timed_client`], and waits for all of it.
    pub(crate) fn run(
        batch: impl FnOnce() -> Result<Vec<GenerationStream>, EngineError>,
        timed: usize,
        submit: impl Fn(usize) -> Result<GenerationStream, EngineError>,
    ) -> anyhow::Result<Self> {
        let start = Instant::now();
        let mut batch = batch()?;
        let first = batch.first_mut().and_then(GenerationStream::blocking_next);
        anyhow::ensure!(
            matches!(first, Some(GenerationEvent::Delta { .. })),
            "no first token: {first:?}"
        );
        let threads: Vec<_> = (0..timed).map(|i| timed_client(Instant::now(), submit(i))).collect();
        let (ttft, latency) = join_timed(threads)?;
        for s in batch {
            s.collect_blocking()?;
        }
        Ok(Self { ttft, latency, batch_secs: start.elapsed().as_secs_f64() })
    }

    /// Over `passes`: the medians of each pass's median time to first token, of each pass's
    /// median latency, and of the batch's wall time.
    pub(crate) fn medians(passes: &[Self]) -> (f64, f64, f64) {
        let over = |f: &dyn Fn(&Self) -> f64| median(passes.iter().map(f).collect());
        (
            over(&|p| median(p.ttft.clone())),
            over(&|p| median(p.latency.clone())),
            over(&|p| p.batch_secs),
        )
    }
}
