//! `POST /tokenize` and `POST /detokenize`, as vLLM serves them: clients count a prompt's tokens
//! (for limits, billing, a receipt's `tokens_in`) with the server's own tokenizer instead of
//! guessing. Adapters share the base model's tokenizer; `model`, when given, must name one of
//! them.

use axum::Json;
use axum::extract::State;
use lorad_engine::EngineHandle;
use serde::{Deserialize, Serialize};

use super::chat::{convert_messages, render_prompt};
use super::errors::ApiError;
use super::extract::ApiJson;
use super::models::card;
use super::openai::MessageIn;
use super::state::AppState;

/// `POST /tokenize`: a completions `prompt` or chat `messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<MessageIn>>,
    /// With `messages`: tools described to the model, as a chat request with them would.
    tools: Option<lorad_grammar::Json>,
    /// With `messages`: end with the assistant turn's opening, as a chat request would.
    #[serde(default = "yes")]
    add_generation_prompt: bool,
}

fn yes() -> bool {
    true
}

/// `POST /tokenize` answer.
#[derive(Debug, Serialize)]
pub(crate) struct TokenizeResponse {
    count: usize,
    max_model_len: usize,
    tokens: Vec<u32>,
}

/// `POST /detokenize`.
#[derive(Debug, Deserialize)]
pub(crate) struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

/// `POST /detokenize` answer.
#[derive(Debug, Serialize)]
pub(crate) struct DetokenizeResponse {
    prompt: String,
}

/// The engine whose tokenizer answers; 404 unless `model` is absent or names the base or an
/// adapter (they share the tokenizer).
async fn engine_for(state: &AppState, model: Option<String>) -> Result<EngineHandle, ApiError> {
    let serving = state.serving()?;
    if let Some(m) = model {
        card(state, serving, m).await?;
    }
    Ok(serving.engine.clone())
}

/// The handler of `POST /tokenize`.
pub(crate) async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let engine = engine_for(&state, req.model).await?;
    let text = match (req.prompt, req.messages) {
        (Some(p), None) => p,
        (None, Some(messages)) => {
            let messages = convert_messages(&messages)?;
            let tools = req.tools.filter(|t| !matches!(t, lorad_grammar::Json::Null));
            let template = &engine.info().chat_template;
            render_prompt(template, &messages, tools.as_ref(), req.add_generation_prompt)?
        }
        _ => {
            return Err(ApiError::bad_request(
                "prompt",
                "Give exactly one of 'prompt' (text) and 'messages' (a chat)",
            )
            .code("invalid_value"));
        }
    };
    let max_model_len = engine.info().max_seq_len;
    let tokens = tokio::task::spawn_blocking(move || engine.tokenizer().encode(&text))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot tokenize: {e}")))?;
    Ok(Json(TokenizeResponse { count: tokens.len(), max_model_len, tokens }))
}

/// The handler of `POST /detokenize`.
pub(crate) async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let engine = engine_for(&state, req.model).await?;
    let vocab = engine.info().config.vocab_size;
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::bad_request(
            "tokens",
            format!("Invalid value for 'tokens': {bad} is not in the vocabulary ({vocab})"),
        )
        .code("invalid_value"));
    }
    let prompt = engine
        .tokenizer()
        .decode(&req.tokens, false)
        .map_err(|e| ApiError::internal(format!("cannot decode: {e}")))?;
    Ok(Json(DetokenizeResponse { prompt }))
}
