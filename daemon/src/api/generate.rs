//! The part both endpoints share once the prompt is tokenized: submit to the engine, then
//! either stream (see `sse.rs`) or collect the whole answer.
//!
//! Cancellation: the [`GenerationStream`] lives in the handler future (non-streaming) or in the
//! response body (streaming). When the client goes away hyper drops whichever it is, the stream
//! drops with it, and the engine frees the request's batch slot. Nothing here spawns a task
//! that could outlive the request.

use std::time::Instant;

use axum::Json;
use axum::response::{IntoResponse, Response};
use lorad_engine::{EngineError, FinishReason, GenerateRequest, GenerationStream, Usage};

use super::errors::ApiError;
use super::ids::{new_id, unix_now};
use super::openai::{
    ChatChoice, ChatResponse, CompletionChoice, CompletionResponse, MessageOut, UsageOut,
};
use super::params::GenParams;
use super::sse;
use super::state::{Serving, Target};

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

/// What every response and chunk of one request repeats.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) started: Instant,
}

impl Meta {
    /// A completions response / chunk with one choice (or none, for the usage chunk).
    pub(crate) fn completion(
        &self,
        choice: Option<(String, Option<FinishReason>)>,
        usage: Option<Usage>,
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
                    logprobs: None,
                    finish_reason: finish.map(FinishReason::as_str),
                })
                .into_iter()
                .collect(),
            usage: usage.map(UsageOut::from),
        }
    }

    /// A chat response (`message`) or chunk (`delta`, when `chunk`).
    pub(crate) fn chat(
        &self,
        chunk: bool,
        choice: Option<(MessageOut, Option<FinishReason>)>,
        usage: Option<Usage>,
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
                        logprobs: None,
                        finish_reason: finish.map(FinishReason::as_str),
                    }
                })
                .into_iter()
                .collect(),
            usage: usage.map(UsageOut::from),
        }
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
    let req = GenerateRequest {
        prompt,
        adapter: lease.as_ref().map(|l| l.name.clone()),
        sampling: params.sampling,
        max_tokens: params.max_tokens,
        stop: params.stop,
        ignore_eos: false,
    };
    let stream =
        serving.engine.submit(req).map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
    drop(lease);
    let meta = Meta {
        kind,
        id: new_id(kind.id_prefix()),
        created: unix_now(),
        model: params.model,
        started: Instant::now(),
    };
    if params.stream {
        Ok(sse::respond(meta, stream, params.include_usage))
    } else {
        collect(meta, stream).await
    }
}

/// Waits for the whole answer. Dropping this future (client gone) cancels the request.
async fn collect(meta: Meta, stream: GenerationStream) -> Result<Response, ApiError> {
    let done = stream.collect().await.map_err(|e| match e {
        EngineError::Shutdown => {
            ApiError::unavailable("the engine shut down before the request finished")
        }
        other => ApiError::internal(other.to_string()),
    })?;
    meta.log_done(done.finish_reason.as_str(), done.usage);
    let finish = Some(done.finish_reason);
    Ok(match meta.kind {
        Kind::Completion => {
            Json(meta.completion(Some((done.text, finish)), Some(done.usage))).into_response()
        }
        Kind::Chat => {
            let msg = MessageOut { role: Some("assistant"), content: Some(done.text) };
            Json(meta.chat(false, Some((msg, finish)), Some(done.usage))).into_response()
        }
    })
}
