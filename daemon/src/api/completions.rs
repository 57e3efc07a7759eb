//! `POST /v1/completions`.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::errors::ApiError;
use super::extract::ApiJson;
use super::generate::{Kind, respond};
use super::openai::CompletionRequest;
use super::params::{Echo, flag, gen_params, refuse_unless_default};
use super::state::AppState;

/// OpenAI's default `max_tokens` for completions.
const DEFAULT_MAX_TOKENS: usize = 16;

/// A prompt as given: text to tokenize, or token ids.
#[derive(Debug, Clone, PartialEq)]
enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<AppState>,
    ApiJson(mut req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let serving = state.serving()?;
    let common = req.take_common();
    let echo = flag("echo", req.echo.as_ref())?;
    refuse_unless_default("suffix", req.suffix.as_ref())?;
    if !matches!(&req.best_of, None | Some(Value::Null))
        && req.best_of.as_ref().and_then(Value::as_u64) != Some(1)
    {
        return Err(ApiError::unsupported("best_of", "; only best_of=1 is"));
    }
    // `echo` with `max_tokens: 0` scores the prompt and generates nothing (how evaluation
    // harnesses ask for log-likelihoods); without `echo`, 0 stays an error.
    let score_only = echo && common.max_tokens == Some(0);
    let max_tokens = if score_only { None } else { common.max_tokens };
    let logprobs = super::logprobs::completion_param(common.logprobs.as_ref())?;
    let mut params = gen_params(common, max_tokens, "max_tokens", Some(DEFAULT_MAX_TOKENS))?;
    params.sampling.logprobs = logprobs;
    if score_only {
        params.max_tokens = Some(0);
    }
    let prompt = parse_prompt(&req.prompt)?;
    let target = state.resolve(serving, &params.model).await?;
    let engine = serving.engine.clone();
    let (ids, text) = tokio::task::spawn_blocking(move || {
        let tk = engine.tokenizer();
        let cannot = |what: &str, e| ApiError::internal(format!("cannot {what} the prompt: {e}"));
        match prompt {
            Prompt::Text(text) => Ok((tk.encode(&text).map_err(|e| cannot("tokenize", e))?, text)),
            Prompt::Ids(ids) if echo => {
                let text = tk.decode(&ids, false).map_err(|e| cannot("decode", e))?;
                Ok((ids, text))
            }
            Prompt::Ids(ids) => Ok((ids, String::new())),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    if echo {
        params.echo = Some(Echo { text });
        // Scored whenever the prompt's logprobs are shown, and to answer `max_tokens: 0`.
        params.prompt_logprobs = logprobs.or(score_only.then_some(0));
    }
    respond(serving, Kind::Completion, target, ids, params).await
}

/// `prompt`: a string, `[string]`, `[ids...]` or `[[ids...]]`; several prompts are refused.
fn parse_prompt(v: &Value) -> Result<Prompt, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request("prompt", format!("Invalid value for 'prompt': {why}"))
            .code("invalid_value")
    };
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("token ids must be non-negative integers"))
            })
            .collect()
    };
    let several = || bad("only one prompt per request is supported (n prompts in an array)");
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(items) => match items.first() {
            None => Err(bad("must not be empty")),
            Some(Value::String(_)) => match items.as_slice() {
                [Value::String(s)] => Ok(Prompt::Text(s.clone())),
                _ if items.iter().all(Value::is_string) => Err(several()),
                _ => Err(bad("expected a string, an array of strings or an array of token ids")),
            },
            Some(Value::Number(_)) => ids(items).map(Prompt::Ids),
            Some(Value::Array(inner)) if items.len() == 1 => ids(inner).map(Prompt::Ids),
            Some(Value::Array(_)) => Err(several()),
            Some(_) => Err(bad("expected a string, an array of strings or an array of token ids")),
        },
        _ => Err(bad("expected a string, an array of strings or an array of token ids")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prompt_forms() {
        assert_eq!(parse_prompt(&json!("hi")).unwrap(), Prompt::Text("hi".into()));
        assert_eq!(parse_prompt(&json!(["hi"])).unwrap(), Prompt::Text("hi".into()));
        assert_eq!(parse_prompt(&json!([1, 2])).unwrap(), Prompt::Ids(vec![1, 2]));
        assert_eq!(parse_prompt(&json!([[3]])).unwrap(), Prompt::Ids(vec![3]));
        for bad in
            [json!(["a", "b"]), json!([[1], [2]]), json!([]), json!(3), json!([-1]), json!(null)]
        {
            assert_eq!(parse_prompt(&bad).unwrap_err().param.as_deref(), Some("prompt"), "{bad}");
        }
    }
}
