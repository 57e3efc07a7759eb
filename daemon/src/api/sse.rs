//! Streaming responses as server-sent events in OpenAI's chunk format: `data: {json}\n\n` per
//! chunk, always ending with `data: [DONE]\n\n`.
//!
//! Order: (chat only) a first chunk with `delta: {role: "assistant", content: ""}`; one chunk per
//! non-empty text delta; a final chunk with `finish_reason` and `usage`; with
//! `stream_options.include_usage`, a chunk with `choices: []` and `usage`; `[DONE]`. An engine
//! failure mid-stream sends `data: {"error": {...}}` before `[DONE]`.
//!
//! The event stream owns the [`GenerationStream`]: when the client disconnects, hyper drops the
//! body, the generation stream drops with it and the engine frees the batch slot.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use lorad_engine::{GenerationEvent, GenerationStream};
use serde::Serialize;

use super::generate::{AttributionJob, Closing, Kind, Meta};
use super::logprobs::{LogprobsOut, LogprobsWriter};
use super::openai::MessageOut;
use super::receipts::ReceiptJob;

pub(crate) fn json_event(value: &impl Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"cannot encode chunk: {e}","type":"server_error"}}}}"#)
    });
    Event::default().data(data)
}

pub(crate) fn error_event(message: &str) -> Event {
    json_event(&serde_json::json!({
        "error": {"message": message, "type": "server_error", "param": null, "code": "internal_error"}
    }))
}

/// A chunk with one choice carrying the content delta `text` and the logprobs of its tokens.
fn chunk(meta: &Meta, text: String, logprobs: Option<LogprobsOut>) -> Event {
    match meta.kind {
        Kind::Completion => json_event(&meta.completion(Some((text, None)), None, logprobs)),
        Kind::Chat => json_event(&meta.chat(
            true,
            Some((MessageOut { role: None, content: Some(text) }, None)),
            None,
            logprobs,
        )),
    }
}

/// The SSE response for an accepted request.
pub(crate) fn respond(
    meta: Meta,
    mut stream: GenerationStream,
    include_usage: bool,
    job: Option<AttributionJob>,
    receipt: Option<ReceiptJob>,
    logprobs: Option<LogprobsWriter>,
    echo: Option<(String, u32)>,
) -> Response {
    let events = async_stream::stream! {
        if meta.kind == Kind::Chat {
            let first = MessageOut { role: Some("assistant"), content: Some(String::new()) };
            yield json_event(&meta.chat(true, Some((first, None)), None, None));
        }
        let mut ended = false;
        let mut job = job;
        let mut receipt = receipt;
        let mut generated: Vec<u32> = Vec::new();
        // The answer's text, for the receipt's output hash.
        let mut answer = String::new();
        let mut first_token_at = None;
        let mut writer = logprobs;
        // Logprobs of tokens whose text is still held back (part of a character, or of a
        // possible stop string): they go out with the chunk that carries that text.
        let mut pending: Vec<lorad_engine::TokenLogprob> = Vec::new();
        // `echo`: the prompt goes out as the first content chunk, once its logprobs are in
        // (they all arrive before the first answer token).
        let mut echo = echo;
        let mut prompt_lps: Vec<lorad_engine::TokenLogprob> = Vec::new();
        while let Some(event) = stream.next().await {
            if let GenerationEvent::Prompt { logprobs } = event {
                prompt_lps.extend(logprobs);
                continue;
            }
            if let Some((text, first)) = echo.take() {
                let lps = writer.as_mut().map(|w| w.prompt(first, &std::mem::take(&mut prompt_lps)));
                yield chunk(&meta, text, lps);
            }
            match event {
                GenerationEvent::Prompt { .. } => {}
                GenerationEvent::Delta { text, tokens, logprobs } => {
                    if first_token_at.is_none() && !tokens.is_empty() {
                        first_token_at = Some(std::time::Instant::now());
                    }
                    if job.is_some() {
                        generated.extend(tokens);
                    }
                    if receipt.is_some() {
                        answer.push_str(&text);
                    }
                    pending.extend(logprobs);
                    if !text.is_empty() {
                        let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                        yield chunk(&meta, text, lps);
                    }
                }
                GenerationEvent::Done { finish_reason, usage } => {
                    meta.log_done(finish_reason.as_str(), usage);
                    meta.count_done(usage, first_token_at);
                    // The final chunk carries the attribution and the receipt, so it waits for them.
                    let attribution = meta.attribute(job.take(), std::mem::take(&mut generated)).await;
                    let signed = match receipt.take() {
                        Some(r) => Some(r.run(&meta.id, &answer, usage.completion_tokens, attribution.as_ref().map(|(a, _)| a)).await),
                        None => None,
                    };
                    let logprobs = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                    let closing = Closing { attribution, receipt: signed, logprobs };
                    yield json_event(&meta.finished(true, String::new(), finish_reason, usage, closing));
                    if include_usage {
                        yield match meta.kind {
                            Kind::Completion => json_event(&meta.completion(None, Some(usage), None)),
                            Kind::Chat => json_event(&meta.chat(true, None, Some(usage), None)),
                        };
                    }
                    ended = true;
                    break;
                }
                GenerationEvent::Error(e) => {
                    meta.telemetry.failed();
                    tracing::warn!(id = %meta.id, error = %e, "generation failed mid-stream");
                    yield error_event(&format!("generation failed: {e}"));
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            yield error_event("the engine shut down before the request finished");
        }
        yield Event::default().data("[DONE]");
    };
    Sse::new(events.map(Ok::<_, Infallible>)).into_response()
}
