//! OpenAI wire types: request bodies (only the fields lorad reads; unknown fields are ignored)
//! and response bodies / stream chunks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attribution::AttributionOut;
use super::logprobs::{ChatLogprobs, CompletionLogprobs};
use super::receipts::RefusedOut;
use super::structured::StructuredIn;
use lorad_grammar::Json;

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct StreamOptions {
    /// Send a final chunk with `choices: []` and `usage`.
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
    /// vLLM's: with `include_usage`, every chunk also carries the usage so far.
    #[serde(default)]
    pub(crate) continuous_usage_stats: Option<bool>,
}

/// Fields shared by both endpoints (see `request_struct!`).
#[derive(Debug, Clone, Default)]
pub(crate) struct CommonParams {
    pub(crate) model: String,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) temperature: Option<f32>,
    pub(crate) top_p: Option<f32>,
    /// Extension (vLLM-style): keep the k most likely tokens; 0 or -1 turn it off.
    pub(crate) top_k: Option<i64>,
    pub(crate) seed: Option<i64>,
    /// A string or an array of up to 4 strings.
    pub(crate) stop: Option<Value>,
    pub(crate) presence_penalty: Option<f32>,
    pub(crate) frequency_penalty: Option<f32>,
    pub(crate) n: Option<u32>,
    pub(crate) stream: Option<bool>,
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) logit_bias: Option<Value>,
    /// Completions: an integer; chat: a boolean.
    pub(crate) logprobs: Option<Value>,
    /// Extension: attribute this answer (`true`) or not (`false`); absent: the server's mode.
    pub(crate) attribution: Option<bool>,
    /// OpenAI's end-user id; lorad reads a 0x address here as the receipt's requester.
    pub(crate) user: Option<Value>,
    /// Extension (vLLM's): salts the prefix cache, so only requests with the same salt share
    /// cached K/V.
    pub(crate) cache_salt: Option<String>,
    /// Extension (vLLM's): keep generating past end-of-sequence (benchmark clients send it).
    pub(crate) ignore_eos: Option<bool>,
    /// Extension (vLLM's): the matched stop string ends the answer instead of being cut.
    pub(crate) include_stop_str_in_output: Option<bool>,
    /// Extensions (vLLM's sampling parameters).
    pub(crate) min_p: Option<f32>,
    pub(crate) repetition_penalty: Option<f32>,
    pub(crate) min_tokens: Option<u32>,
    pub(crate) stop_token_ids: Option<Vec<u32>>,
    /// vLLM's scheduling `priority` (lower first).
    pub(crate) priority: Option<i64>,
    /// Structured output (OpenAI's `response_format`, vLLM's `structured_outputs` and
    /// `guided_*`).
    pub(crate) structured: StructuredIn,
}

/// Defines a request struct with the [`CommonParams`] fields inline plus its own, and
/// `common()` to take the shared ones out. (Not `#[serde(flatten)]`: flattened fields lose their
/// error path, so a bad `temperature` could not be named in the 400.)
macro_rules! request_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        pub(crate) struct $name {
            model: String,
            max_tokens: Option<u32>,
            temperature: Option<f32>,
            top_p: Option<f32>,
            top_k: Option<i64>,
            seed: Option<i64>,
            stop: Option<Value>,
            presence_penalty: Option<f32>,
            frequency_penalty: Option<f32>,
            n: Option<u32>,
            stream: Option<bool>,
            stream_options: Option<StreamOptions>,
            logit_bias: Option<Value>,
            logprobs: Option<Value>,
            attribution: Option<bool>,
            /// The requester's 0x address when it wants a receipt (whose escrow pays).
            user: Option<Value>,
            cache_salt: Option<String>,
            ignore_eos: Option<bool>,
            include_stop_str_in_output: Option<bool>,
            min_p: Option<f32>,
            repetition_penalty: Option<f32>,
            min_tokens: Option<u32>,
            stop_token_ids: Option<Vec<u32>>,
            priority: Option<i64>,
            response_format: Option<Json>,
            structured_outputs: Option<Json>,
            guided_json: Option<Json>,
            guided_regex: Option<String>,
            guided_choice: Option<Vec<String>>,
            guided_grammar: Option<Json>,
            $($(#[$fm])* pub(crate) $field: $ty,)*
        }

        impl $name {
            /// Takes the shared parameters out.
            pub(crate) fn take_common(&mut self) -> CommonParams {
                CommonParams {
                    model: std::mem::take(&mut self.model),
                    max_tokens: self.max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                    top_k: self.top_k,
                    seed: self.seed,
                    stop: self.stop.take(),
                    presence_penalty: self.presence_penalty,
                    frequency_penalty: self.frequency_penalty,
                    n: self.n,
                    stream: self.stream,
                    stream_options: self.stream_options.take(),
                    logit_bias: self.logit_bias.take(),
                    logprobs: self.logprobs.take(),
                    attribution: self.attribution,
                    user: self.user.take(),
                    cache_salt: self.cache_salt.take(),
                    ignore_eos: self.ignore_eos,
                    include_stop_str_in_output: self.include_stop_str_in_output,
                    min_p: self.min_p,
                    repetition_penalty: self.repetition_penalty,
                    min_tokens: self.min_tokens,
                    stop_token_ids: self.stop_token_ids.take(),
                    priority: self.priority,
                    structured: StructuredIn {
                        response_format: self.response_format.take(),
                        structured_outputs: self.structured_outputs.take(),
                        guided_json: self.guided_json.take(),
                        guided_regex: self.guided_regex.take(),
                        guided_choice: self.guided_choice.take(),
                        guided_grammar: self.guided_grammar.take(),
                    },
                }
            }
        }
    };
}

request_struct! {
    /// `POST /v1/completions`.
    CompletionRequest {
        /// A string, an array of one string, an array of token ids or an array of one such array.
        prompt: Value,
        echo: Option<Value>,
        best_of: Option<Value>,
        suffix: Option<Value>,
    }
}

/// One input message.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MessageIn {
    pub(crate) role: String,
    /// A string, an array of `{type: "text", text}` parts, or null.
    #[serde(default)]
    pub(crate) content: Value,
    /// An assistant turn's tool calls.
    #[serde(default)]
    pub(crate) tool_calls: Option<Value>,
    /// A `tool` turn answers this call.
    #[serde(default)]
    pub(crate) tool_call_id: Option<String>,
}

request_struct! {
    /// `POST /v1/chat/completions`.
    ChatRequest {
        messages: Vec<MessageIn>,
        /// Preferred over `max_tokens` when both are set.
        max_completion_tokens: Option<u32>,
        top_logprobs: Option<Value>,
        tools: Option<Json>,
        /// `"none"`, `"required"`, or `{"type": "function", "function": {"name"}}`.
        tool_choice: Option<Json>,
        /// At most one call with `"required"` when false.
        parallel_tool_calls: Option<bool>,
        functions: Option<Value>,
        function_call: Option<Value>,
        /// vLLM's: end the prompt with the assistant's turn header (default: true, false when
        /// continuing the final message).
        add_generation_prompt: Option<bool>,
        /// vLLM's: leave the final (assistant) message open; the answer continues its text.
        continue_final_message: Option<bool>,
    }
}

/// Token counts, and what attributing the answer cost when it was attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct UsageOut {
    pub(crate) prompt_tokens: usize,
    pub(crate) completion_tokens: usize,
    pub(crate) total_tokens: usize,
    /// OpenAI's breakdown of the prompt: tokens served from the prefix cache (absent from the
    /// running usage of a stream's intermediate chunks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_tokens_details: Option<PromptTokensDetails>,
    /// Wall milliseconds spent attributing the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attribution_ms: Option<u64>,
    /// Tokens re-scored to attribute it (prompt and completion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attribution_tokens: Option<usize>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens whose K/V came from the prefix cache instead of being computed.
    pub(crate) cached_tokens: usize,
}

impl UsageOut {
    /// The usage so far of a request still generating (vLLM's `continuous_usage_stats`).
    pub(crate) fn running(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
            attribution_ms: None,
            attribution_tokens: None,
        }
    }
}

impl From<lorad_engine::Usage> for UsageOut {
    fn from(u: lorad_engine::Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: u.cached_tokens }),
            attribution_ms: None,
            attribution_tokens: None,
        }
    }
}

/// What lorad adds to an answer (extensions to OpenAI's shapes), each absent when unset.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Extras {
    /// Proof of Attribution: which contributors' data shaped the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attribution: Option<AttributionOut>,
    /// The signed receipt, or `null` when it was refused; absent when receipts are off or on
    /// intermediate chunks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) receipt: Option<Value>,
    /// Why `receipt` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) receipt_refused: Option<RefusedOut>,
}

/// A completions choice (whole or streamed).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompletionChoice {
    pub(crate) index: u32,
    pub(crate) text: String,
    /// With `logprobs: N`: the tokens of `text` and their log-probabilities; else null.
    pub(crate) logprobs: Option<CompletionLogprobs>,
    pub(crate) finish_reason: Option<&'static str>,
    /// This answer's attribution and receipt, in requests with several answers (one answer has
    /// them at the top of the response).
    #[serde(flatten)]
    pub(crate) extras: Extras,
}

/// A completions response or stream chunk (`object: "text_completion"` for both).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompletionResponse {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<UsageOut>,
    /// The answer's attribution and receipt (extensions), on a whole response or the final
    /// chunk.
    #[serde(flatten)]
    pub(crate) extras: Extras,
}

/// An assistant message (whole) or delta (streamed).
///
/// A message that names its role always has `content`, `null` when there is none (an answer
/// that only calls tools, or only thinks), as OpenAI writes it: clients test
/// `content === null`, which a missing key fails in JavaScript. Deltas leave out what they do
/// not carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct MessageOut {
    pub(crate) role: Option<&'static str>,
    pub(crate) content: Option<String>,
    /// The thinking of a reasoning model (`--reasoning-parser`), written under DeepSeek's name
    /// for it, `reasoning_content`, and vLLM's newer one, `reasoning`.
    pub(crate) reasoning: Option<String>,
    /// The calls of an answer made under `tool_choice`.
    pub(crate) tool_calls: Option<Vec<ToolCallOut>>,
}

impl Serialize for MessageOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some(role) = self.role {
            map.serialize_entry("role", role)?;
        }
        if self.content.is_some() || self.role.is_some() {
            map.serialize_entry("content", &self.content)?;
        }
        if let Some(r) = &self.reasoning {
            map.serialize_entry("reasoning_content", r)?;
            map.serialize_entry("reasoning", r)?;
        }
        if let Some(calls) = &self.tool_calls {
            map.serialize_entry("tool_calls", calls)?;
        }
        map.end()
    }
}

/// One tool call (whole, or a streamed piece of one: `index` set, the rest as it comes).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToolCallOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: FunctionCallOut,
}

/// The function a tool call calls, with its arguments as JSON text.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FunctionCallOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) arguments: String,
}

/// A chat choice: `message` in responses, `delta` in chunks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChatChoice {
    pub(crate) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<MessageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta: Option<MessageOut>,
    /// With `logprobs: true`: the tokens of the content and their log-probabilities; else null.
    pub(crate) logprobs: Option<ChatLogprobs>,
    pub(crate) finish_reason: Option<&'static str>,
    /// This answer's attribution and receipt, in requests with several answers (one answer has
    /// them at the top of the response).
    #[serde(flatten)]
    pub(crate) extras: Extras,
}

/// A chat response (`chat.completion`) or chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChatResponse {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) choices: Vec<ChatChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<UsageOut>,
    /// The answer's attribution and receipt (extensions), on a whole response or the final
    /// chunk.
    #[serde(flatten)]
    pub(crate) extras: Extras,
}

/// `GET /v1/models` entry.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelCard {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
    /// The base model for adapters, null for the base.
    pub(crate) parent: Option<String>,
    /// Longest prompt plus completion in tokens (vLLM's field; clients size requests by it).
    pub(crate) max_model_len: usize,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelList {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelCard>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_with_a_role_has_content_null_when_it_has_none() {
        let whole = MessageOut { role: Some("assistant"), ..MessageOut::default() };
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#"{"role":"assistant","content":null}"#
        );
        let delta = MessageOut { reasoning: Some("x".into()), ..MessageOut::default() };
        assert_eq!(
            serde_json::to_string(&delta).unwrap(),
            r#"{"reasoning_content":"x","reasoning":"x"}"#
        );
    }
}
