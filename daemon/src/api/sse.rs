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

use super::generate::{AttributionJob, Closing, Finished, Kind, Meta};
use super::logprobs::{LogprobsOut, LogprobsWriter};
use super::openai::{FunctionCallOut, MessageOut, ToolCallOut, UsageOut};
use super::receipts::ReceiptJob;
use super::tools::{self, ToolMode};

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

/// Which usage a stream sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamUsage {
    /// A last chunk with `choices: []` and the usage (`include_usage`).
    pub(crate) last: bool,
    /// The usage so far in every chunk (`continuous_usage_stats`).
    pub(crate) continuous: bool,
}

/// `r` as an event, with the running usage when there is one.
pub(crate) fn with_usage(mut r: Finished, usage: Option<UsageOut>) -> Event {
    if let Some(u) = usage {
        match &mut r {
            Finished::Completion(c) => c.usage = Some(u),
            Finished::Chat(c) => c.usage = Some(u),
        }
    }
    json_event(&r)
}

/// A chunk with one choice carrying the content delta `text` and the logprobs of its tokens
/// (under a named `tool_choice`, the text is a delta of the call's arguments).
fn chunk(meta: &Meta, text: String, logprobs: Option<LogprobsOut>) -> Finished {
    if meta.kind == Kind::Completion {
        return Finished::Completion(meta.completion(Some((text, None)), None, logprobs));
    }
    Finished::Chat(meta.chat(true, Some((chat_delta(meta, text), None)), None, logprobs))
}

/// A chat delta of `text`: content, or under a named `tool_choice` a piece of the call's
/// arguments.
pub(crate) fn chat_delta(meta: &Meta, text: String) -> MessageOut {
    match &meta.tools {
        Some(ToolMode::Named(_)) => MessageOut {
            tool_calls: Some(vec![ToolCallOut {
                index: Some(0),
                id: None,
                kind: None,
                function: FunctionCallOut { name: None, arguments: text },
            }]),
            ..MessageOut::default()
        },
        _ => MessageOut { content: Some(text), ..MessageOut::default() },
    }
}

/// The first chunk of a chat stream: the role, with an empty content, or under a named
/// `tool_choice` the call's id and name (its arguments follow as deltas).
pub(crate) fn first_chat_delta(meta: &Meta) -> MessageOut {
    let role = Some("assistant");
    match &meta.tools {
        Some(ToolMode::Named(name)) => MessageOut {
            role,
            content: None,
            tool_calls: Some(vec![ToolCallOut {
                index: Some(0),
                id: Some(tools::call_id()),
                kind: Some("function"),
                function: FunctionCallOut { name: Some(name.clone()), arguments: String::new() },
            }]),
            ..MessageOut::default()
        },
        Some(ToolMode::Required(_)) => MessageOut { role, ..MessageOut::default() },
        Some(ToolMode::Auto(_)) | None => {
            MessageOut { role, content: Some(String::new()), ..MessageOut::default() }
        }
    }
}

/// The SSE response for an accepted request.
pub(crate) fn respond(
    meta: Meta,
    mut stream: GenerationStream,
    usage_mode: StreamUsage,
    job: Option<AttributionJob>,
    receipt: Option<ReceiptJob>,
    logprobs: Option<LogprobsWriter>,
    echo: Option<(String, u32)>,
) -> Response {
    let prompt_tokens = stream.prompt_tokens;
    let running = move |completion: usize| {
        usage_mode.continuous.then(|| UsageOut::running(prompt_tokens, completion))
    };
    let events = async_stream::stream! {
        if meta.kind == Kind::Chat {
            let first = Finished::Chat(meta.chat(true, Some((first_chat_delta(&meta), None)), None, None));
            yield with_usage(first, running(0));
        }
        let mut completion_tokens = 0usize;
        // What may open a tool call is held back until the next text shows whether it does;
        // calls go out as they are written.
        let mut tool_stream = tools::ToolStream::new(meta.tools.clone(), meta.reasoning);
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
                yield with_usage(chunk(&meta, text, lps), running(completion_tokens));
            }
            match event {
                GenerationEvent::Prompt { .. } => {}
                GenerationEvent::Delta { text, tokens, logprobs } => {
                    if first_token_at.is_none() && !tokens.is_empty() {
                        first_token_at = Some(std::time::Instant::now());
                    }
                    completion_tokens += tokens.len();
                    if job.is_some() {
                        generated.extend(tokens);
                    }
                    if receipt.is_some() {
                        answer.push_str(&text);
                    }
                    pending.extend(logprobs);
                    let pushed = tool_stream.push(&text);
                    if !pushed.reasoning.is_empty() {
                        let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                        let delta = Finished::Chat(meta.chat(true, Some((tools::thinking(pushed.reasoning), None)), None, lps));
                        yield with_usage(delta, running(completion_tokens));
                    }
                    if !pushed.text.is_empty() {
                        let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                        yield with_usage(chunk(&meta, pushed.text, lps), running(completion_tokens));
                    }
                    if !pushed.calls.is_empty() {
                        let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                        let delta = MessageOut { tool_calls: Some(pushed.calls), ..MessageOut::default() };
                        let calls = Finished::Chat(meta.chat(true, Some((delta, None)), None, lps));
                        yield with_usage(calls, running(completion_tokens));
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
                    let mut called = false;
                    let thought = tool_stream.finish_reasoning();
                    if !thought.is_empty() {
                        let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                        let delta = Finished::Chat(meta.chat(true, Some((tools::thinking(thought), None)), None, lps));
                        yield with_usage(delta, running(completion_tokens));
                    }
                    match tool_stream.finish() {
                        tools::StreamEnd::Calls(calls) => {
                            called = true;
                            if !calls.is_empty() {
                                let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                                let delta = MessageOut { tool_calls: Some(calls), ..MessageOut::default() };
                                let calls = Finished::Chat(meta.chat(true, Some((delta, None)), None, lps));
                                yield with_usage(calls, running(completion_tokens));
                            }
                        }
                        // No call, or one cut short: what there is, as text.
                        tools::StreamEnd::Text(held) if !held.is_empty() => {
                            let lps = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                            yield with_usage(chunk(&meta, held, lps), running(completion_tokens));
                        }
                        tools::StreamEnd::Text(_) | tools::StreamEnd::Cut => {}
                    }
                    let logprobs = writer.as_mut().map(|w| w.write(&std::mem::take(&mut pending)));
                    let closing = Closing { attribution, receipt: signed, logprobs };
                    let mut last = meta.finished(true, String::new(), finish_reason, usage, closing);
                    if let (true, Finished::Chat(r)) = (called, &mut last)
                        && let Some(c) = r.choices.first_mut()
                    {
                        c.finish_reason = Some("tool_calls");
                    }
                    yield json_event(&last);
                    if usage_mode.last {
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
