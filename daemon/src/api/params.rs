//! Request parameters → engine parameters, with 400s naming the field for values lorad cannot
//! honour. Ranges the engine checks itself (temperature, top_p, penalties) are left to it: its
//! errors name the field too.

use lorad_engine::SamplingParams;
use serde_json::Value;

use super::errors::ApiError;
use super::openai::CommonParams;

/// Most stop sequences a request may give (OpenAI's limit).
const MAX_STOP: usize = 4;

/// What both endpoints take from a request besides the prompt.
#[derive(Debug, Clone)]
pub(crate) struct GenParams {
    pub(crate) model: String,
    pub(crate) sampling: SamplingParams,
    pub(crate) stop: Vec<String>,
    pub(crate) max_tokens: Option<usize>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    /// vLLM's `continuous_usage_stats` (with `include_usage`): usage in every chunk.
    pub(crate) continuous_usage: bool,
    /// The request's `attribution` field.
    pub(crate) attribution: Option<bool>,
    /// The request's `user` field (a 0x address asks for a receipt).
    pub(crate) user: Option<Value>,
    /// Answers per prompt (`n`).
    pub(crate) n: usize,
    /// Completions' `echo`: the answer starts with the prompt.
    pub(crate) echo: Option<Echo>,
    /// Score the prompt with this many alternatives per token (for `echo` with `logprobs`).
    pub(crate) prompt_logprobs: Option<usize>,
    /// The prefix cache's salt (`cache_salt`).
    pub(crate) cache_salt: Option<String>,
    /// vLLM's `stop_token_ids`.
    pub(crate) stop_token_ids: Vec<u32>,
    /// vLLM's scheduling `priority` (lower first; 0 unless the server schedules by priority).
    pub(crate) priority: i64,
    /// vLLM's `min_tokens`.
    pub(crate) min_tokens: usize,
    /// vLLM's `ignore_eos`.
    pub(crate) ignore_eos: bool,
    /// vLLM's `include_stop_str_in_output`.
    pub(crate) include_stop_str_in_output: bool,
    /// Structured output's constraint as asked for; the handler compiles it into
    /// `constraint`.
    pub(crate) structured: Option<super::structured::Spec>,
    /// The compiled constraint.
    pub(crate) constraint: Option<std::sync::Arc<lorad_grammar::Grammar>>,
    /// Chat's tool calling mode (`tool_choice`), when the answer calls tools.
    pub(crate) tools: Option<super::tools::ToolMode>,
    /// How a chat answer's thinking is split from its content, if it is.
    pub(crate) reasoning: Option<super::ReasoningParser>,
}

/// What `echo: true` puts before the answer (with `logprobs`, the prompt's tokens get entries
/// too).
#[derive(Debug, Clone)]
pub(crate) struct Echo {
    /// The prompt's text (as given, or decoded from its token ids).
    pub(crate) text: String,
}

/// Whether `v` is absent or one of the values meaning "feature off".
pub(crate) fn is_default(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    }
}

/// A boolean field: absent or null is `false`; anything but a boolean is a 400 naming `param`.
pub(crate) fn flag(param: &str, v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(
            param,
            format!("Invalid value for '{param}': expected a boolean"),
        )
        .code("invalid_type")),
    }
}

/// Refuses `param` when it is set to something other than its default.
pub(crate) fn refuse_unless_default(param: &str, v: Option<&Value>) -> Result<(), ApiError> {
    if is_default(v) { Ok(()) } else { Err(ApiError::unsupported(param, "")) }
}

/// Converts the shared fields; `max_tokens` is the endpoint's effective limit field, named
/// `max_tokens_param` in errors, and `default_max_tokens` applies when it is absent.
/// `logprobs` differs by endpoint (an integer or a boolean): each endpoint reads it.
/// `zero_ok`: `max_tokens: 0` is allowed (completions' `echo`: score the prompt only).
pub(crate) fn gen_params(
    c: CommonParams,
    max_tokens: Option<u32>,
    max_tokens_param: &str,
    default_max_tokens: Option<usize>,
    zero_ok: bool,
) -> Result<GenParams, ApiError> {
    let n = c.n.unwrap_or(1) as usize;
    if !(1..=super::choices::MAX_CHOICES).contains(&n) {
        return Err(ApiError::bad_request(
            "n",
            format!(
                "Invalid value for 'n': {n}; must be between 1 and {}",
                super::choices::MAX_CHOICES
            ),
        )
        .code("invalid_value"));
    }
    if max_tokens == Some(0) && !zero_ok {
        return Err(ApiError::bad_request(
            max_tokens_param,
            format!("Invalid value for '{max_tokens_param}': must be at least 1"),
        )
        .code("invalid_value"));
    }
    let top_k = match c.top_k {
        None | Some(0 | -1) => 0,
        Some(k) if k > 0 => usize::try_from(k).unwrap_or(usize::MAX),
        Some(k) => {
            return Err(ApiError::bad_request(
                "top_k",
                format!("Invalid value for 'top_k': {k}; must be positive, or 0 / -1 to disable"),
            )
            .code("invalid_value"));
        }
    };
    if c.cache_salt.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "cache_salt",
            "Invalid value for 'cache_salt': must be a non-empty string if provided",
        )
        .code("invalid_value"));
    }
    let defaults = SamplingParams::default();
    let sampling = SamplingParams {
        temperature: c.temperature.unwrap_or(defaults.temperature),
        top_k,
        top_p: c.top_p.unwrap_or(defaults.top_p),
        min_p: c.min_p.unwrap_or(defaults.min_p),
        repetition_penalty: c.repetition_penalty.unwrap_or(defaults.repetition_penalty),
        presence_penalty: c.presence_penalty.unwrap_or(0.0),
        frequency_penalty: c.frequency_penalty.unwrap_or(0.0),
        // Negative seeds are valid OpenAI seeds: reinterpret the bits.
        seed: c.seed.map(|s| s as u64),
        logprobs: None,
        logit_bias: logit_bias(c.logit_bias.as_ref())?,
    };
    Ok(GenParams {
        model: c.model,
        sampling,
        stop: stop_list(c.stop.as_ref())?,
        max_tokens: max_tokens.map(|m| m as usize).or(default_max_tokens),
        stream: c.stream.unwrap_or(false),
        include_usage: c.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        continuous_usage: c.stream_options.as_ref().is_some_and(|o| {
            o.include_usage.unwrap_or(false) && o.continuous_usage_stats.unwrap_or(false)
        }),
        attribution: c.attribution,
        user: c.user,
        n,
        echo: None,
        prompt_logprobs: None,
        cache_salt: c.cache_salt,
        stop_token_ids: c.stop_token_ids.unwrap_or_default(),
        priority: c.priority.unwrap_or(0),
        min_tokens: c.min_tokens.unwrap_or(0) as usize,
        ignore_eos: c.ignore_eos.unwrap_or(false),
        include_stop_str_in_output: c.include_stop_str_in_output.unwrap_or(false),
        structured: super::structured::spec(&c.structured)?,
        constraint: None,
        tools: None,
        reasoning: None,
    })
}

/// `logit_bias`: null or an object from token ids (as strings, OpenAI's JSON) to biases; the
/// engine checks the ranges of ids and values.
fn logit_bias(v: Option<&Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let bad = |why: String| {
        ApiError::bad_request("logit_bias", format!("Invalid value for 'logit_bias': {why}"))
            .code("invalid_value")
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, b)| {
                let id = k.parse::<u32>().map_err(|_| bad(format!("'{k}' is not a token id")))?;
                let bias =
                    b.as_f64().ok_or_else(|| bad(format!("the bias of {k} is not a number")))?;
                Ok((id, bias as f32))
            })
            .collect(),
        Some(_) => Err(bad("expected an object of token ids to biases".into())),
    }
}

/// `stop`: null, a string, or an array of at most 4 strings. Empty strings are dropped (they
/// would match at once).
fn stop_list(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request("stop", format!("Invalid value for 'stop': {why}"))
            .code("invalid_value")
    };
    let list = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(bad(&format!(
                    "at most {MAX_STOP} sequences are allowed, got {}",
                    items.len()
                )));
            }
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| bad("expected strings")))
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("expected a string or an array of strings")),
    };
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn common(v: Value) -> CommonParams {
        let mut c = CommonParams { model: "m".into(), ..Default::default() };
        c.stop = v.get("stop").cloned();
        c.n = v.get("n").and_then(Value::as_u64).map(|n| n as u32);
        c.top_k = v.get("top_k").and_then(Value::as_i64);
        c.logprobs = v.get("logprobs").cloned();
        c
    }

    #[test]
    fn conversions_and_refusals() {
        let p = gen_params(
            common(json!({"stop": ["a", "", "b"], "top_k": -1})),
            None,
            "max_tokens",
            Some(16),
            false,
        )
        .unwrap();
        assert_eq!(
            (p.stop, p.sampling.top_k, p.max_tokens),
            (vec!["a".to_string(), "b".to_string()], 0, Some(16))
        );
        let err =
            |v: Value| gen_params(common(v), None, "max_tokens", None, false).unwrap_err().param;
        assert_eq!(err(json!({"n": 0})).as_deref(), Some("n"));
        assert_eq!(err(json!({"n": 65})).as_deref(), Some("n"));
        assert_eq!(err(json!({"stop": ["1", "2", "3", "4", "5"]})).as_deref(), Some("stop"));
        assert_eq!(err(json!({"stop": 3})).as_deref(), Some("stop"));
        assert_eq!(err(json!({"top_k": -3})).as_deref(), Some("top_k"));
        assert!(
            gen_params(common(json!({"logprobs": false, "n": 1})), None, "max_tokens", None, false)
                .is_ok()
        );
        let e = gen_params(common(json!({})), Some(0), "max_completion_tokens", None, false)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
    }
}
