//! The part both endpoints share once the prompt is tokenized: submit to the engine, then
//! either stream (see `sse.rs`) or collect the whole answer.
//!
//! Cancellation: the [`GenerationStream`] lives in the handler future (non-streaming) or in the
//! response body (streaming). When the client goes away hyper drops whichever it is, the stream
//! drops with it, and the engine frees the request's batch slot. Nothing here spawns a task
//! that could outlive the request.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::response::{IntoResponse, Response};
use lorad_engine::{EngineError, FinishReason, GenerateRequest, GenerationStream, Usage};

use super::attribution::{AttributionCost, AttributionOut, Attributor};
use super::errors::ApiError;
use super::ids::{new_id, unix_now};
use super::logprobs::{LogprobsOut, LogprobsWriter};
use super::openai::{
    ChatChoice, ChatResponse, CompletionChoice, CompletionResponse, Extras, MessageOut, UsageOut,
};
use super::params::GenParams;
use super::receipts::{ReceiptJob, ReceiptOut, prompt_hash};
use super::sse;
use super::state::{Serving, Target};
use super::telemetry::{Ended, Telemetry};
use super::tools::ToolMode;

/// Which endpoint a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/completions`
    Completion,
    /// `/v1/chat/completions`
    Chat,
}

impl Kind {
    /// The request field holding the prompt.
    pub(crate) fn prompt_param(self) -> &'static str {
        match self {
            Self::Completion => "prompt",
            Self::Chat => "messages",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Self::Completion => "cmpl",
            Self::Chat => "chatcmpl",
        }
    }
}

/// The last response (or chunk) of a request, of either endpoint; serialized as the inner
/// type, fields in declaration order.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub(crate) enum Finished {
    /// `/v1/completions`.
    Completion(CompletionResponse),
    /// `/v1/chat/completions`.
    Chat(ChatResponse),
}

/// What the last response (or chunk) of a request carries besides its text and usage.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    /// The answer's attribution and what it cost.
    pub(crate) attribution: Option<(AttributionOut, AttributionCost)>,
    /// The signed (or refused) receipt.
    pub(crate) receipt: Option<ReceiptOut>,
    /// Logprobs of the tokens not sent yet (all of them in a whole response).
    pub(crate) logprobs: Option<LogprobsOut>,
}

/// What every response and chunk of one request repeats.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) started: Instant,
    pub(crate) telemetry: Arc<Telemetry>,
    /// How a chat answer calls tools (`tool_choice`), if it does.
    pub(crate) tools: Option<ToolMode>,
    /// How a chat answer's thinking is split from its content, if it is.
    pub(crate) reasoning: Option<super::ReasoningParser>,
}

impl Meta {
    /// A new request's: a fresh id and the time it started.
    pub(crate) fn new(kind: Kind, model: String, telemetry: Arc<Telemetry>) -> Self {
        Self {
            kind,
            id: new_id(kind.id_prefix()),
            created: unix_now(),
            model,
            started: Instant::now(),
            telemetry,
            tools: None,
            reasoning: None,
        }
    }

    /// A completions response / chunk with one choice (or none, for the usage chunk), with the
    /// logprobs of its tokens when the request asked for them.
    pub(crate) fn completion(
        &self,
        choice: Option<(String, Option<FinishReason>)>,
        usage: Option<Usage>,
        logprobs: Option<LogprobsOut>,
    ) -> CompletionResponse {
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: choice
                .map(|(text, finish)| CompletionChoice {
                    index: 0,
                    text,
                    logprobs: logprobs.and_then(LogprobsOut::completion),
                    finish_reason: finish.map(FinishReason::as_str),
                    extras: Extras::default(),
                })
                .into_iter()
                .collect(),
            usage: usage.map(UsageOut::from),
            extras: Extras::default(),
        }
    }

    /// A chat response (`message`) or chunk (`delta`, when `chunk`), with the logprobs of its
    /// tokens when the request asked for them.
    pub(crate) fn chat(
        &self,
        chunk: bool,
        choice: Option<(MessageOut, Option<FinishReason>)>,
        usage: Option<Usage>,
        logprobs: Option<LogprobsOut>,
    ) -> ChatResponse {
        ChatResponse {
            id: self.id.clone(),
            object: if chunk { "chat.completion.chunk" } else { "chat.completion" },
            created: self.created,
            model: self.model.clone(),
            choices: choice
                .map(|(msg, finish)| {
                    let (message, delta) =
                        if chunk { (None, Some(msg)) } else { (Some(msg), None) };
                    ChatChoice {
                        index: 0,
                        message,
                        delta,
                        logprobs: logprobs.and_then(LogprobsOut::chat),
                        finish_reason: finish.map(FinishReason::as_str),
                        extras: Extras::default(),
                    }
                })
                .into_iter()
                .collect(),
            usage: usage.map(UsageOut::from),
            extras: Extras::default(),
        }
    }

    /// The final response or chunk (`chunk`) of a finished request, with what `closing` adds.
    pub(crate) fn finished(
        &self,
        chunk: bool,
        text: String,
        finish: FinishReason,
        usage: Usage,
        closing: Closing,
    ) -> Finished {
        let Closing { attribution, receipt, logprobs } = closing;
        let (receipt, receipt_refused) =
            receipt.map_or((None, None), |r| (Some(r.receipt), r.refused));
        let (attribution, cost) = attribution.map_or((None, None), |(a, c)| (Some(a), Some(c)));
        let with_cost = |u: &mut Option<UsageOut>| {
            if let (Some(u), Some(c)) = (u.as_mut(), cost) {
                u.attribution_ms = Some(c.ms);
                u.attribution_tokens = Some(c.tokens);
            }
        };
        match self.kind {
            Kind::Completion => {
                let mut r = self.completion(Some((text, Some(finish))), Some(usage), logprobs);
                with_cost(&mut r.usage);
                r.extras = Extras { attribution, receipt, receipt_refused };
                Finished::Completion(r)
            }
            Kind::Chat => {
                // A whole answer that calls tools becomes its calls; a stream sent them
                // already. An answer cut short stays text.
                let (msg, finish_reason) = match chunk {
                    false => super::tools::message(self.tools.as_ref(), self.reasoning, text),
                    true if text.is_empty() => (MessageOut::default(), None),
                    true => (MessageOut { content: Some(text), ..MessageOut::default() }, None),
                };
                let mut r = self.chat(chunk, Some((msg, Some(finish))), Some(usage), logprobs);
                if let (Some(f), Some(c)) = (finish_reason, r.choices.first_mut()) {
                    c.finish_reason = Some(f);
                }
                with_cost(&mut r.usage);
                r.extras = Extras { attribution, receipt, receipt_refused };
                Finished::Chat(r)
            }
        }
    }

    /// Counts a request the engine failed and says so as the API does.
    pub(crate) fn failed(&self, e: EngineError) -> ApiError {
        self.telemetry.failed();
        match e {
            EngineError::Shutdown => {
                ApiError::unavailable("the engine shut down before the request finished")
            }
            other => ApiError::internal(other.to_string()),
        }
    }

    /// Counts the finished request (`first_token_at`: when its first token arrived).
    pub(crate) fn count_done(&self, usage: Usage, first_token_at: Option<Instant>) {
        self.telemetry.finished(
            &self.model,
            Ended {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                ttft: first_token_at.map(|t| t.saturating_duration_since(self.started)),
                decode: first_token_at.map(|t| t.elapsed()),
                queued: usage.queued,
                total: self.started.elapsed(),
            },
        );
    }

    /// Attributes the answer (`job`), timing it for `/metrics`.
    pub(crate) async fn attribute(
        &self,
        job: Option<AttributionJob>,
        completion: Vec<u32>,
    ) -> Option<(AttributionOut, AttributionCost)> {
        let job = job?;
        let started = Instant::now();
        let out = job.run(&self.id, completion).await;
        if out.is_some() {
            self.telemetry.attributed(started.elapsed());
        }
        out
    }

    /// Logs the end of the request.
    pub(crate) fn log_done(&self, finish: &str, usage: Usage) {
        let secs = self.started.elapsed().as_secs_f64();
        tracing::debug!(
            id = %self.id,
            model = %self.model,
            finish_reason = finish,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            ms = (secs * 1000.0) as u64,
            "request done"
        );
    }
}

/// Submits `prompt` with `params` on `target` and answers: an SSE stream or a whole response.
pub(crate) async fn respond(
    serving: &Serving,
    kind: Kind,
    target: Target,
    prompt: Vec<u32>,
    params: GenParams,
) -> Result<Response, ApiError> {
    // Held until the engine has queued the request with its own lease.
    let lease = match target {
        Target::Base => None,
        Target::Adapter(lease) => Some(lease),
    };
    let job = match &serving.attributor {
        Some(a) if a.wants(params.attribution) => Some(AttributionJob {
            attributor: a.clone(),
            adapter: lease.as_ref().map(|l| l.name.clone()),
            prompt: prompt.clone(),
        }),
        _ => None,
    };
    let receipt = serving.receipts.as_ref().map(|desk| ReceiptJob {
        desk: desk.clone(),
        adapter: lease.as_ref().map(|l| (l.name.clone(), l.content_hash.clone())),
        base_hash: serving.engine.info().base_hash.clone(),
        prompt_hash: prompt_hash(&prompt),
        tokens_in: u32::try_from(prompt.len()).unwrap_or(u32::MAX),
        user: params.user.clone(),
    });
    let req_logprobs = params.sampling.logprobs;
    // What `echo` puts first: the prompt's text, and its first token (the one logprobs entry
    // with nothing before it).
    let echo = params.echo.map(|e| (e.text, prompt.first().copied().unwrap_or_default()));
    let req = GenerateRequest {
        prompt,
        adapter: lease.as_ref().map(|l| l.name.clone()),
        sampling: params.sampling,
        max_tokens: params.max_tokens,
        stop: params.stop,
        ignore_eos: params.ignore_eos,
        include_stop_str_in_output: params.include_stop_str_in_output,
        stop_token_ids: params.stop_token_ids,
        min_tokens: params.min_tokens,
        prompt_logprobs: params.prompt_logprobs,
        cache_salt: params.cache_salt,
        constraint: params.constraint,
        constraint_after: params.reasoning.map(super::ReasoningParser::constraint_after),
        priority: params.priority,
    };
    let stream =
        serving.engine.submit(req).map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
    drop(lease);
    let logprobs =
        req_logprobs.map(|_| LogprobsWriter::new(kind, (**serving.engine.tokenizer()).clone()));
    let mut meta = Meta::new(kind, params.model, serving.telemetry.clone());
    meta.tools = params.tools;
    meta.reasoning = params.reasoning;
    if params.stream {
        let usage =
            sse::StreamUsage { last: params.include_usage, continuous: params.continuous_usage };
        Ok(sse::respond(meta, stream, usage, job, receipt, logprobs, echo))
    } else {
        collect(meta, stream, job, receipt, logprobs, echo).await
    }
}

/// An answer to attribute once it is complete.
#[derive(Debug)]
pub(crate) struct AttributionJob {
    attributor: Arc<Attributor>,
    /// `None`: the base model.
    adapter: Option<String>,
    prompt: Vec<u32>,
}

impl AttributionJob {
    /// A job attributing an answer to `prompt` on `adapter` (`None`: the base model).
    pub(crate) fn new(
        attributor: Arc<Attributor>,
        adapter: Option<String>,
        prompt: &[u32],
    ) -> Self {
        Self { attributor, adapter, prompt: prompt.to_vec() }
    }

    /// Attributes `completion` on a blocking thread. A failure is logged and leaves the answer
    /// unattributed rather than failing a request whose text is already complete.
    pub(crate) async fn run(
        self,
        id: &str,
        completion: Vec<u32>,
    ) -> Option<(AttributionOut, AttributionCost)> {
        let AttributionJob { attributor, adapter, prompt } = self;
        let name = adapter.clone().unwrap_or_default();
        let joined = tokio::task::spawn_blocking(move || {
            attributor.attribute(adapter.as_deref(), &prompt, &completion)
        })
        .await;
        match joined {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::warn!(%id, adapter = %name, error = %e, "attribution failed");
                None
            }
            Err(e) => {
                tracing::warn!(%id, adapter = %name, error = %e, "attribution task failed");
                None
            }
        }
    }
}

/// Waits for the whole answer (and its attribution). Dropping this future (client gone) cancels
/// the request.
async fn collect(
    meta: Meta,
    stream: GenerationStream,
    job: Option<AttributionJob>,
    receipt: Option<ReceiptJob>,
    logprobs: Option<LogprobsWriter>,
    echo: Option<(String, u32)>,
) -> Result<Response, ApiError> {
    let done = stream.collect().await.map_err(|e| meta.failed(e))?;
    meta.log_done(done.finish_reason.as_str(), done.usage);
    meta.count_done(done.usage, done.first_token_at);
    let tokens_out = done.tokens.len();
    let prompt = echo.as_ref().map(|&(_, first)| (first, &done.prompt_logprobs[..]));
    let logprobs = logprobs.map(|mut w| w.answer(prompt, &done.logprobs));
    let attribution = meta.attribute(job, done.tokens).await;
    let receipt = match receipt {
        Some(r) => Some(
            r.run(&meta.id, &done.text, tokens_out, attribution.as_ref().map(|(a, _)| a)).await,
        ),
        None => None,
    };
    let closing = Closing { attribution, receipt, logprobs };
    // The receipt above covers the generated text; an echoed prompt is only shown before it.
    let text = match echo {
        Some((prompt, _)) => prompt + &done.text,
        None => done.text,
    };
    Ok(Json(meta.finished(false, text, done.finish_reason, done.usage, closing)).into_response())
}
