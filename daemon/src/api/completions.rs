//! `POST /v1/completions`.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::choices::{self, PromptIn};
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
    let max_tokens = common.max_tokens;
    let logprobs = super::logprobs::completion_param(common.logprobs.as_ref())?;
    let mut params =
        gen_params(common, max_tokens, "max_tokens", Some(DEFAULT_MAX_TOKENS), score_only)?;
    params.sampling.logprobs = logprobs;
    params.constraint =
        super::structured::compile_blocking(&state, params.structured.clone()).await?;
    let prompts = parse_prompts(&req.prompt)?;
    let target = state.resolve(serving, &params.model).await?;
    let engine = serving.engine.clone();
    let prompts = tokio::task::spawn_blocking(move || {
        let tk = engine.tokenizer();
        let cannot = |what: &str, e| ApiError::internal(format!("cannot {what} the prompt: {e}"));
        prompts
            .into_iter()
            .map(|prompt| match prompt {
                Prompt::Text(text) => {
                    let ids = tk.encode(&text).map_err(|e| cannot("tokenize", e))?;
                    Ok(PromptIn { ids, echo: echo.then_some(text) })
                }
                Prompt::Ids(ids) if echo => {
                    let text = tk.decode(&ids, false).map_err(|e| cannot("decode", e))?;
                    Ok(PromptIn { ids, echo: Some(text) })
                }
                Prompt::Ids(ids) => Ok(PromptIn { ids, echo: None }),
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    if echo {
        // Scored whenever the prompt's logprobs are shown, and to answer `max_tokens: 0`.
        params.prompt_logprobs = logprobs.or(score_only.then_some(0));
    }
    match <[PromptIn; 1]>::try_from(prompts) {
        Ok([one]) if params.n == 1 => {
            params.echo = one.echo.map(|text| Echo { text });
            respond(serving, Kind::Completion, target, one.ids, params).await
        }
        Ok(one) => {
            let n = params.n;
            choices::respond(serving, Kind::Completion, target, one.into(), n, params).await
        }
        Err(several) => {
            let n = params.n;
            choices::respond(serving, Kind::Completion, target, several, n, params).await
        }
    }
}

/// `prompt`: a string, `[string, ...]`, `[ids...]` or `[[ids...], ...]`: one prompt or several
/// (answered as several choices).
fn parse_prompts(v: &Value) -> Result<Vec<Prompt>, ApiError> {
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
    let forms = "expected a string, an array of strings, an array of token ids or an array of \
                 such arrays";
    match v {
        Value::String(s) => Ok(vec![Prompt::Text(s.clone())]),
        Value::Array(items) => match items.first() {
            None => Err(bad("must not be empty")),
            Some(Value::String(_)) => items
                .iter()
                .map(|i| i.as_str().map(|s| Prompt::Text(s.to_owned())).ok_or_else(|| bad(forms)))
                .collect(),
            Some(Value::Number(_)) => Ok(vec![Prompt::Ids(ids(items)?)]),
            Some(Value::Array(_)) => items
                .iter()
                .map(|i| match i {
                    Value::Array(inner) => ids(inner).map(Prompt::Ids),
                    _ => Err(bad(forms)),
                })
                .collect(),
            Some(_) => Err(bad(forms)),
        },
        _ => Err(bad(forms)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prompt_forms() {
        let text = |s: &str| Prompt::Text(s.into());
        assert_eq!(parse_prompts(&json!("hi")).unwrap(), [text("hi")]);
        assert_eq!(parse_prompts(&json!(["hi"])).unwrap(), [text("hi")]);
        assert_eq!(parse_prompts(&json!(["a", "b"])).unwrap(), [text("a"), text("b")]);
        assert_eq!(parse_prompts(&json!([1, 2])).unwrap(), [Prompt::Ids(vec![1, 2])]);
        assert_eq!(parse_prompts(&json!([[3]])).unwrap(), [Prompt::Ids(vec![3])]);
        assert_eq!(
            parse_prompts(&json!([[1], [2, 3]])).unwrap(),
            [Prompt::Ids(vec![1]), Prompt::Ids(vec![2, 3])]
        );
        for bad in [
            json!(["a", 2]),
            json!([[1], "b"]),
            json!([]),
            json!(3),
            json!([-1]),
            json!(null),
            json!([1, "x"]),
        ] {
            assert_eq!(parse_prompts(&bad).unwrap_err().param.as_deref(), Some("prompt"), "{bad}");
        }
    }
}
