//! Requests with several answers: `n > 1` on both endpoints, and several completions prompts
//! (`"prompt": ["a", "b"]` or `[[ids], [ids]]`, how evaluation harnesses batch). Each answer is
//! its own engine request, batched with everything else; choice `index` is `prompt · n + j`,
//! OpenAI's order. With a seed, answer `j` of every prompt samples with `seed + j`, so the
//! answers differ from each other and each is reproducible.
//!
//! Every answer carries its own attribution and receipt in its choice (the extensions a
//! one-answer response has at the top). Each receipt is for its own job: the response id with
//! `-<index>` appended.
//!
//! Streaming interleaves the answers' chunks as their tokens arrive; each answer ends with a
//! chunk holding its `finish_reason` (and attribution), and one last chunk with `choices: []`
//! holds the usage of all of them.

use std::time::Instant;

use axum::Json;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use lorad_engine::{
    FinishReason, GenerateRequest, GenerationEvent, GenerationStream, TokenLogprob, Usage,
};

use super::attribution::{AttributionCost, AttributionOut};
use super::errors::ApiError;
use super::generate::{AttributionJob, Finished, Kind, Meta};
use super::logprobs::{LogprobsOut, LogprobsWriter};
use super::openai::{Extras, MessageOut, UsageOut};
use super::params::GenParams;
use super::receipts::{ReceiptJob, ReceiptOut, prompt_hash};
use super::sse::{chat_delta, error_event, first_chat_delta, json_event, with_usage};
use super::state::{Serving, Target};
use super::tools::{self, StreamEnd, ToolStream};

/// Most answers one request may ask for (prompts × n).
pub(crate) const MAX_CHOICES: usize = 64;

/// One prompt of a request: its ids and, with `echo`, its text.
#[derive(Debug, Clone)]
pub(crate) struct PromptIn {
    pub(crate) ids: Vec<u32>,
    pub(crate) echo: Option<String>,
}

/// One answer in flight.
struct Answer {
    stream: GenerationStream,
    state: AnswerState,
}

/// What an answer accumulates besides its engine stream.
struct AnswerState {
    index: u32,
    job: Option<AttributionJob>,
    receipt: Option<ReceiptJob>,
    /// The generated text, for the receipt's output hash (streaming).
    answer: String,
    writer: Option<LogprobsWriter>,
    /// With `echo`: the prompt's text and first token, until sent.
    echo: Option<(String, u32)>,
    /// Counted once per prompt in the usage (the first answer of each prompt).
    prompt_tokens: usize,
    prompt_lps: Vec<TokenLogprob>,
    pending: Vec<TokenLogprob>,
    generated: Vec<u32>,
    first_token_at: Option<Instant>,
    /// What may be a tool call, held back from a stream.
    tools: ToolStream,
    done: bool,
}

/// Answers a request for `n` answers to each of `prompts` (more than one answer in all).
pub(crate) async fn respond(
    serving: &Serving,
    kind: Kind,
    target: Target,
    prompts: Vec<PromptIn>,
    n: usize,
    params: GenParams,
) -> Result<Response, ApiError> {
    let param = if n > 1 { "n" } else { "prompt" };
    if prompts.len() * n > MAX_CHOICES {
        return Err(ApiError::bad_request(
            param,
            format!("At most {MAX_CHOICES} answers per request (prompts × n)"),
        )
        .code("invalid_value"));
    }
    let lease = match target {
        Target::Base => None,
        Target::Adapter(lease) => Some(lease),
    };
    let adapter = lease.as_ref().map(|l| l.name.clone());
    let attributor = serving.attributor.as_ref().filter(|a| a.wants(params.attribution));
    let mut answers = Vec::with_capacity(prompts.len() * n);
    for (p, prompt) in prompts.into_iter().enumerate() {
        let first = prompt.ids.first().copied().unwrap_or_default();
        for j in 0..n {
            let mut sampling = params.sampling.clone();
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(j as u64));
            let req = GenerateRequest {
                prompt: prompt.ids.clone(),
                adapter: adapter.clone(),
                sampling,
                max_tokens: params.max_tokens,
                stop: params.stop.clone(),
                ignore_eos: params.ignore_eos,
                include_stop_str_in_output: params.include_stop_str_in_output,
                stop_token_ids: params.stop_token_ids.clone(),
                min_tokens: params.min_tokens,
                prompt_logprobs: params.prompt_logprobs,
                cache_salt: params.cache_salt.clone(),
                constraint: params.constraint.clone(),
                constraint_after: params.reasoning.map(super::ReasoningParser::constraint_after),
                priority: params.priority,
            };
            // A refusal drops the answers submitted so far, which cancels them.
            let stream = serving
                .engine
                .submit(req)
                .map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
            let index = (p * n + j) as u32;
            let state = AnswerState {
                index,
                job: attributor
                    .map(|a| AttributionJob::new(a.clone(), adapter.clone(), &prompt.ids)),
                receipt: serving.receipts.as_ref().map(|desk| ReceiptJob {
                    desk: desk.clone(),
                    adapter: lease.as_ref().map(|l| (l.name.clone(), l.content_hash.clone())),
                    base_hash: serving.engine.info().base_hash.clone(),
                    prompt_hash: prompt_hash(&prompt.ids),
                    tokens_in: u32::try_from(prompt.ids.len()).unwrap_or(u32::MAX),
                    user: params.user.clone(),
                }),
                answer: String::new(),
                writer: params
                    .sampling
                    .logprobs
                    .map(|_| LogprobsWriter::new(kind, (**serving.engine.tokenizer()).clone())),
                echo: prompt.echo.clone().map(|text| (text, first)),
                prompt_tokens: if j == 0 { prompt.ids.len() } else { 0 },
                prompt_lps: Vec::new(),
                pending: Vec::new(),
                generated: Vec::new(),
                first_token_at: None,
                tools: ToolStream::new(params.tools.clone(), params.reasoning),
                done: false,
            };
            answers.push(Answer { stream, state });
        }
    }
    drop(lease);
    let mut meta = Meta::new(kind, params.model, serving.telemetry.clone());
    meta.tools = params.tools;
    meta.reasoning = params.reasoning;
    if params.stream {
        Ok(stream(meta, answers, params.continuous_usage))
    } else {
        collect(meta, answers).await
    }
}

/// Sums `cost` into the response usage's attribution figures.
fn add_cost(total: &mut Option<AttributionCost>, cost: Option<AttributionCost>) {
    if let Some(c) = cost {
        let t = total.get_or_insert(AttributionCost { ms: 0, tokens: 0 });
        t.ms += c.ms;
        t.tokens += c.tokens;
    }
}

/// One choice of `meta`'s endpoint as a whole response's or a chunk's body.
fn choice_response(
    meta: &Meta,
    chunk: bool,
    index: u32,
    text: Option<String>,
    finish: Option<FinishReason>,
    logprobs: Option<LogprobsOut>,
    closing: Option<(Option<AttributionOut>, Option<ReceiptOut>)>,
) -> Finished {
    let (attribution, receipt) = closing.unwrap_or_default();
    let (receipt, receipt_refused) = receipt.map_or((None, None), |r| (Some(r.receipt), r.refused));
    let extras = Extras { attribution, receipt, receipt_refused };
    match meta.kind {
        Kind::Completion => {
            let mut r = meta.completion(Some((text.unwrap_or_default(), finish)), None, logprobs);
            if let Some(c) = r.choices.first_mut() {
                (c.index, c.extras) = (index, extras);
            }
            Finished::Completion(r)
        }
        Kind::Chat => {
            // A whole answer that calls tools becomes its calls; a stream sends them itself.
            let (msg, tool_finish) = match (chunk, text) {
                (false, text) => {
                    tools::message(meta.tools.as_ref(), meta.reasoning, text.unwrap_or_default())
                }
                (true, Some(text)) => (chat_delta(meta, text), None),
                (true, None) => (MessageOut::default(), None),
            };
            let mut r = meta.chat(chunk, Some((msg, finish)), None, logprobs);
            if let Some(c) = r.choices.first_mut() {
                (c.index, c.extras) = (index, extras);
                if tool_finish.is_some() {
                    c.finish_reason = tool_finish;
                }
            }
            Finished::Chat(r)
        }
    }
}

/// The receipt of answer `state` (its own job: the response id and the answer's index).
async fn sign(
    meta: &Meta,
    state: &mut AnswerState,
    text: &str,
    tokens_out: usize,
    attribution: Option<&AttributionOut>,
) -> Option<ReceiptOut> {
    let job = state.receipt.take()?;
    Some(job.run(&format!("{}-{}", meta.id, state.index), text, tokens_out, attribution).await)
}

/// The body with no choice and the usage of all answers (the last chunk of a stream, and the
/// frame a whole response's choices go into).
fn usage_response(
    meta: &Meta,
    chunk: bool,
    usage: Usage,
    cost: Option<AttributionCost>,
) -> Finished {
    let with_cost = |u: &mut Option<UsageOut>| {
        if let Some(u) = u {
            u.attribution_ms = cost.map(|c| c.ms);
            u.attribution_tokens = cost.map(|c| c.tokens);
        }
    };
    match meta.kind {
        Kind::Completion => {
            let mut r = meta.completion(None, Some(usage), None);
            with_cost(&mut r.usage);
            Finished::Completion(r)
        }
        Kind::Chat => {
            let mut r = meta.chat(chunk, None, Some(usage), None);
            with_cost(&mut r.usage);
            Finished::Chat(r)
        }
    }
}

/// Waits for every answer, then answers with all of them.
async fn collect(meta: Meta, answers: Vec<Answer>) -> Result<Response, ApiError> {
    let finished = futures::future::join_all(
        answers.into_iter().map(|a| async move { (a.stream.collect().await, a.state) }),
    )
    .await;
    let mut choices = Vec::with_capacity(finished.len());
    let mut usage = Usage::default();
    let mut cost = None;
    for (done, mut state) in finished {
        let done = done.map_err(|e| meta.failed(e))?;
        let mine = own_usage(state.prompt_tokens, done.usage);
        meta.count_done(mine, done.first_token_at);
        usage.prompt_tokens += mine.prompt_tokens;
        usage.cached_tokens += mine.cached_tokens;
        usage.completion_tokens += done.usage.completion_tokens;
        let echo = state.echo.as_ref().map(|&(_, first)| (first, &done.prompt_logprobs[..]));
        let logprobs = state.writer.as_mut().map(|w| w.answer(echo, &done.logprobs));
        let tokens_out = done.tokens.len();
        let attribution = meta.attribute(state.job.take(), done.tokens).await;
        let (attribution, c) = attribution.map_or((None, None), |(a, c)| (Some(a), Some(c)));
        add_cost(&mut cost, c);
        let receipt = sign(&meta, &mut state, &done.text, tokens_out, attribution.as_ref()).await;
        let text = match state.echo.take() {
            Some((prompt, _)) => prompt + &done.text,
            None => done.text,
        };
        choices.push(choice_response(
            &meta,
            false,
            state.index,
            Some(text),
            Some(done.finish_reason),
            logprobs,
            Some((attribution, receipt)),
        ));
    }
    meta.log_done("multiple", usage);
    let mut body = usage_response(&meta, false, usage, cost);
    for choice in choices {
        match (&mut body, choice) {
            (Finished::Completion(b), Finished::Completion(c)) => b.choices.extend(c.choices),
            (Finished::Chat(b), Finished::Chat(c)) => b.choices.extend(c.choices),
            _ => {}
        }
    }
    Ok(Json(body).into_response())
}

/// Streams every answer's chunks as they come, then the usage of all; with `continuous`,
/// every chunk carries the usage of all answers so far.
fn stream(meta: Meta, answers: Vec<Answer>, continuous: bool) -> Response {
    let (streams, mut states): (Vec<_>, Vec<_>) =
        answers
            .into_iter()
            .enumerate()
            .map(|(k, a)| {
                let events = futures::stream::unfold(a.stream, |mut s| async move {
                    s.next().await.map(|e| (e, s))
                })
                .map(move |e| (k, e));
                (events.boxed(), a.state)
            })
            .unzip();
    let prompt_tokens: usize = states.iter().map(|s| s.prompt_tokens).sum();
    let running =
        move |completion: usize| continuous.then(|| UsageOut::running(prompt_tokens, completion));
    let events = async_stream::stream! {
        let mut completion_tokens = 0usize;
        if meta.kind == Kind::Chat {
            for s in &states {
                let mut r = meta.chat(true, Some((first_chat_delta(&meta), None)), None, None);
                r.choices[0].index = s.index;
                yield with_usage(Finished::Chat(r), running(0));
            }
        }
        let mut merged = futures::stream::select_all(streams);
        let mut usage = Usage::default();
        let mut cost = None;
        let mut failed_with = None;
        while let Some((k, event)) = merged.next().await {
            let state = &mut states[k];
            if let GenerationEvent::Prompt { logprobs } = event {
                state.prompt_lps.extend(logprobs);
                continue;
            }
            if let Some((text, first)) = state.echo.take() {
                let prompt = std::mem::take(&mut state.prompt_lps);
                let lps = state.writer.as_mut().map(|w| w.prompt(first, &prompt));
                let r = choice_response(&meta, true, state.index, Some(text), None, lps, None);
                yield with_usage(r, running(completion_tokens));
            }
            match event {
                GenerationEvent::Prompt { .. } => {}
                GenerationEvent::Delta { text, tokens, logprobs } => {
                    if state.first_token_at.is_none() && !tokens.is_empty() {
                        state.first_token_at = Some(Instant::now());
                    }
                    completion_tokens += tokens.len();
                    state.generated.extend(tokens);
                    state.pending.extend(logprobs);
                    if state.receipt.is_some() {
                        state.answer.push_str(&text);
                    }
                    let pushed = state.tools.push(&text);
                    if !pushed.reasoning.is_empty() {
                        let pending = std::mem::take(&mut state.pending);
                        let lps = state.writer.as_mut().map(|w| w.write(&pending));
                        let mut r = meta.chat(true, Some((tools::thinking(pushed.reasoning), None)), None, lps);
                        r.choices[0].index = state.index;
                        yield with_usage(Finished::Chat(r), running(completion_tokens));
                    }
                    if !pushed.text.is_empty() {
                        let pending = std::mem::take(&mut state.pending);
                        let lps = state.writer.as_mut().map(|w| w.write(&pending));
                        let r = choice_response(&meta, true, state.index, Some(pushed.text), None, lps, None);
                        yield with_usage(r, running(completion_tokens));
                    }
                    if !pushed.calls.is_empty() {
                        let pending = std::mem::take(&mut state.pending);
                        let lps = state.writer.as_mut().map(|w| w.write(&pending));
                        let delta = MessageOut { tool_calls: Some(pushed.calls), ..MessageOut::default() };
                        let mut r = meta.chat(true, Some((delta, None)), None, lps);
                        r.choices[0].index = state.index;
                        yield with_usage(Finished::Chat(r), running(completion_tokens));
                    }
                }
                GenerationEvent::Done { finish_reason, usage: done } => {
                    let mine = own_usage(state.prompt_tokens, done);
                    meta.count_done(mine, state.first_token_at);
                    usage.prompt_tokens += mine.prompt_tokens;
                    usage.cached_tokens += mine.cached_tokens;
                    usage.completion_tokens += done.completion_tokens;
                    let pending = std::mem::take(&mut state.pending);
                    let mut lps = state.writer.as_mut().map(|w| w.write(&pending));
                    let mut called = false;
                    let thought = state.tools.finish_reasoning();
                    if !thought.is_empty() {
                        let mut r = meta.chat(true, Some((tools::thinking(thought), None)), None, lps.take());
                        r.choices[0].index = state.index;
                        yield with_usage(Finished::Chat(r), running(completion_tokens));
                    }
                    match state.tools.finish() {
                        StreamEnd::Calls(calls) => {
                            called = true;
                            if !calls.is_empty() {
                                let delta = MessageOut { tool_calls: Some(calls), ..MessageOut::default() };
                                let mut r = meta.chat(true, Some((delta, None)), None, lps.take());
                                r.choices[0].index = state.index;
                                yield with_usage(Finished::Chat(r), running(completion_tokens));
                            }
                        }
                        StreamEnd::Text(held) if !held.is_empty() => {
                            let r = choice_response(&meta, true, state.index, Some(held), None, lps.take(), None);
                            yield with_usage(r, running(completion_tokens));
                        }
                        StreamEnd::Text(_) | StreamEnd::Cut => {}
                    }
                    let attribution = meta.attribute(state.job.take(), std::mem::take(&mut state.generated)).await;
                    let (attribution, c) = attribution.map_or((None, None), |(a, c)| (Some(a), Some(c)));
                    add_cost(&mut cost, c);
                    let answer = std::mem::take(&mut state.answer);
                    let receipt = sign(&meta, state, &answer, done.completion_tokens, attribution.as_ref()).await;
                    state.done = true;
                    let mut last = choice_response(&meta, true, state.index, None, Some(finish_reason), lps, Some((attribution, receipt)));
                    if let (true, Finished::Chat(r)) = (called, &mut last)
                        && let Some(c) = r.choices.first_mut()
                    {
                        c.finish_reason = Some("tool_calls");
                    }
                    yield json_event(&last);
                }
                GenerationEvent::Error(e) => {
                    failed_with = Some(format!("generation failed: {e}"));
                    break;
                }
            }
        }
        if failed_with.is_none() && states.iter().any(|s| !s.done) {
            failed_with = Some("the engine shut down before the request finished".to_owned());
        }
        match failed_with {
            Some(message) => {
                meta.telemetry.failed();
                tracing::warn!(id = %meta.id, error = %message, "generation failed mid-stream");
                yield error_event(&message);
            }
            None => {
                meta.log_done("multiple", usage);
                yield json_event(&usage_response(&meta, true, usage, cost));
            }
        }
        yield Event::default().data("[DONE]");
    };
    Sse::new(events.map(Ok::<_, std::convert::Infallible>)).into_response()
}

/// An answer's share of the usage: its prompt counted only by the first answer of that prompt
/// (`prompt_tokens` is 0 for the others), cached tokens likewise.
fn own_usage(prompt_tokens: usize, done: Usage) -> Usage {
    Usage { prompt_tokens, cached_tokens: done.cached_tokens.min(prompt_tokens), ..done }
}
