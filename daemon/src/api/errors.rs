//! OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the matching
//! HTTP status. Clients (the `openai` SDKs) pick their exception class from the status alone;
//! `param` names the request field at fault and `code` is a stable machine-readable tag.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lorad_engine::EngineError;
use serde::Serialize;

/// An API error response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// Human-readable message.
    pub(crate) message: String,
    /// OpenAI error `type`.
    pub(crate) kind: &'static str,
    /// The request field at fault.
    pub(crate) param: Option<String>,
    /// Machine-readable code.
    pub(crate) code: Option<&'static str>,
}

const INVALID: &str = "invalid_request_error";

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None }
    }

    /// Sets `param`.
    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// 400 `invalid_request_error` about `param`.
    pub(crate) fn bad_request(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID, message).param(param)
    }

    /// 400 for a parameter lorad does not implement, set to a non-default value.
    pub(crate) fn unsupported(param: &str, what: &str) -> Self {
        Self::bad_request(param, format!("'{param}' is not supported by this server{what}"))
            .code("unsupported_parameter")
    }

    /// 404 `model_not_found`, worded as OpenAI does.
    pub(crate) fn model_not_found(model: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, INVALID, format!("The model '{model}' does not exist"))
            .param("model")
            .code("model_not_found")
    }

    /// 503: the engine is not serving (starting, shutting down).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .code("service_unavailable")
    }

    /// 500.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message).code("internal_error")
    }

    /// Other statuses produced by the HTTP layer (404 path, 405, 413).
    pub(crate) fn http(status: StatusCode, message: impl Into<String>, code: &'static str) -> Self {
        Self::new(status, INVALID, message).code(code)
    }

    /// Maps an engine refusal. `prompt_param` is the request field holding the prompt
    /// (`prompt` or `messages`).
    pub(crate) fn from_engine(err: EngineError, prompt_param: &'static str) -> Self {
        match err {
            EngineError::UnknownAdapter(name) => Self::model_not_found(&name),
            EngineError::InvalidParam { field, reason } => {
                Self::bad_request(field, format!("Invalid value for '{field}': {reason}"))
                    .code("invalid_value")
            }
            EngineError::EmptyPrompt => Self::bad_request(
                prompt_param,
                format!("'{prompt_param}' must contain at least one token"),
            )
            .code("invalid_value"),
            EngineError::ContextLength { max, requested, prompt, completion } => {
                let message = if prompt_param == "prompt" {
                    // OpenAI's wording for the completions endpoint.
                    format!(
                        "This model's maximum context length is {max} tokens, however you requested {requested} tokens ({prompt} in your prompt; {completion} for the completion). Please reduce your prompt; or completion length."
                    )
                } else {
                    EngineError::ContextLength { max, requested, prompt, completion }.to_string()
                };
                Self::bad_request(prompt_param, message).code("context_length_exceeded")
            }
            e @ EngineError::ExceedsKvCache { .. } => {
                Self::bad_request(prompt_param, e.to_string()).code("context_length_exceeded")
            }
            e @ EngineError::QueueFull(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", e.to_string())
                    .code("queue_full")
            }
            EngineError::Shutdown => Self::unavailable("the engine has shut down"),
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), message = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), message = %self.message, "request refused");
        }
        resp
    }
}
