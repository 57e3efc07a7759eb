//! `POST /v1/responses`: OpenAI's Responses API (what the OpenAI Agents SDK and newer clients
//! call), served by the chat pipeline: the request becomes a chat request, the chat answer
//! becomes a `response` object (or, streamed, the Responses API's typed events, in
//! `responses_stream`).
//!
//! Everything a chat request has comes along: adapters by `model`, structured output
//! (`text.format`), tool calling (`tools`, `tool_choice`), attribution and receipts (the
//! response carries the same `attribution` / `receipt` extensions), and lorad's and vLLM's
//! sampling extensions (`seed`, `top_k`, `logit_bias`, ...) passed through as they are. lorad
//! keeps no conversation state: `previous_response_id` and `conversation` are refused, and the
//! response says `store: false`. The response's `id` is the chat completion's, so a receipt's
//! job is the response id.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lorad_grammar::Json;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::extract::ApiJson;
use super::openai::ChatRequest;
use super::state::AppState;

/// Request fields the chat request does not take as they are.
const OWN_FIELDS: &[&str] = &[
    "input",
    "instructions",
    "max_output_tokens",
    "text",
    "tools",
    "tool_choice",
    "store",
    "metadata",
    "previous_response_id",
    "conversation",
    "background",
    "truncation",
    "reasoning",
    "include",
    "top_logprobs",
    "prompt",
    "service_tier",
    "stream_options",
    "prompt_cache_key",
    "safety_identifier",
    "max_tool_calls",
    "n",
];

fn invalid(param: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(param, format!("Invalid value for '{param}': {why}"))
        .code("invalid_value")
}

fn is_set(v: Option<&Json>) -> bool {
    !matches!(v, None | Some(Json::Null))
}

fn s(v: &str) -> Json {
    Json::String(v.to_owned())
}

/// What the response object echoes of the request.
#[derive(Debug, Clone)]
pub(crate) struct Echoed {
    pub(crate) model: String,
    pub(crate) instructions: Value,
    pub(crate) max_output_tokens: Value,
    pub(crate) metadata: Value,
    pub(crate) parallel_tool_calls: bool,
    pub(crate) temperature: Value,
    pub(crate) top_p: Value,
    pub(crate) text: Value,
    pub(crate) tool_choice: Value,
    pub(crate) tools: Value,
    pub(crate) user: Value,
}

fn value(v: Option<&Json>) -> Value {
    v.map_or(Value::Null, Json::to_value)
}

/// The chat request for a Responses request (as JSON text, key order kept), what the response
/// echoes, and whether it streams.
pub(crate) fn to_chat(req: &Json) -> Result<(String, Echoed, bool), ApiError> {
    let Json::Object(fields) = req else {
        return Err(ApiError::http(
            StatusCode::BAD_REQUEST,
            "The request body must be a JSON object",
            "invalid_type",
        ));
    };
    for (k, why) in [
        (
            "previous_response_id",
            "lorad keeps no responses; send the whole conversation as 'input'",
        ),
        ("conversation", "lorad keeps no conversations; send the whole conversation as 'input'"),
        ("prompt", "stored prompts are not supported"),
    ] {
        if is_set(req.get(k)) {
            return Err(ApiError::unsupported(k, &format!("; {why}")));
        }
    }
    if matches!(req.get("background"), Some(Json::Bool(true))) {
        return Err(ApiError::unsupported("background", "; responses run in the foreground"));
    }
    if let Some(Json::String(t)) = req.get("truncation")
        && t != "disabled"
    {
        return Err(invalid(
            "truncation",
            "only 'disabled' is supported: a prompt that does not fit is refused",
        ));
    }
    if matches!(req.get("include"), Some(Json::Array(a)) if !a.is_empty()) {
        return Err(ApiError::unsupported("include", "; no extra output is available"));
    }
    if req.get("top_logprobs").and_then(Json::as_u64).is_some_and(|n| n > 0) {
        return Err(ApiError::unsupported("top_logprobs", ""));
    }
    if req.get("n").is_some_and(|n| !matches!(n, Json::Null) && n.as_u64() != Some(1)) {
        return Err(ApiError::unsupported("n", "; a response has one answer"));
    }
    let mut messages = Vec::new();
    match req.get("instructions") {
        None | Some(Json::Null) => {}
        Some(Json::String(text)) => messages
            .push(Json::Object(vec![("role".into(), s("system")), ("content".into(), s(text))])),
        Some(_) => return Err(invalid("instructions", "expected a string")),
    }
    messages.extend(input_messages(req.get("input"))?);
    let tools = match req.get("tools") {
        None | Some(Json::Null) => None,
        Some(Json::Array(list)) if list.is_empty() => None,
        Some(Json::Array(list)) => Some(Json::Array(
            list.iter().enumerate().map(|(i, t)| chat_tool(i, t)).collect::<Result<_, _>>()?,
        )),
        Some(_) => return Err(invalid("tools", "expected an array of tools")),
    };
    let mut chat: Vec<(String, Json)> =
        fields.iter().filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str())).cloned().collect();
    chat.push(("messages".into(), Json::Array(messages)));
    if let Some(m) = req.get("max_output_tokens").filter(|m| !matches!(m, Json::Null)) {
        chat.push(("max_tokens".into(), m.clone()));
    }
    if let Some(f) = req.pointer("/text/format").filter(|f| !matches!(f, Json::Null)) {
        chat.push(("response_format".into(), response_format(f)?));
    }
    if let Some(t) = &tools {
        chat.push(("tools".into(), t.clone()));
    }
    if let Some(c) = req.get("tool_choice").filter(|c| !matches!(c, Json::Null)) {
        chat.push(("tool_choice".into(), tool_choice(c)?));
    }
    let stream = matches!(req.get("stream"), Some(Json::Bool(true)));
    if stream {
        // The usage arrives in the chat stream's last chunk.
        chat.push((
            "stream_options".into(),
            Json::Object(vec![("include_usage".into(), Json::Bool(true))]),
        ));
    }
    let echoed = Echoed {
        model: req.get("model").and_then(Json::as_str).unwrap_or_default().to_owned(),
        instructions: value(req.get("instructions")),
        max_output_tokens: value(req.get("max_output_tokens")),
        metadata: match value(req.get("metadata")) {
            Value::Null => json!({}),
            m => m,
        },
        parallel_tool_calls: !matches!(req.get("parallel_tool_calls"), Some(Json::Bool(false))),
        temperature: value(req.get("temperature")),
        top_p: value(req.get("top_p")),
        text: match value(req.get("text")) {
            Value::Null => json!({"format": {"type": "text"}}),
            t => t,
        },
        tool_choice: match value(req.get("tool_choice")) {
            Value::Null => json!("auto"),
            c => c,
        },
        tools: match value(req.get("tools")) {
            Value::Null => json!([]),
            t => t,
        },
        user: value(req.get("user")),
    };
    Ok((Json::Object(chat).to_text(), echoed, stream))
}

/// `input`: a string (one user message) or a list of items: messages (`role` and `content`:
/// a string or `input_text` / `output_text` parts), `function_call` (calls the model made,
/// consecutive ones forming one assistant turn) and `function_call_output` (their results).
/// `reasoning` items (a previous answer's thinking, sent back with its output) are skipped, as
/// reasoning models' templates drop the thinking of earlier turns.
fn input_messages(input: Option<&Json>) -> Result<Vec<Json>, ApiError> {
    let items = match input {
        Some(Json::String(text)) => {
            return Ok(vec![Json::Object(vec![
                ("role".into(), s("user")),
                ("content".into(), s(text)),
            ])]);
        }
        Some(Json::Array(items)) if !items.is_empty() => items,
        _ => return Err(invalid("input", "expected a string or a non-empty array of items")),
    };
    let mut out: Vec<Json> = Vec::with_capacity(items.len());
    // The calls of the assistant turn being built.
    let mut calls: Vec<Json> = Vec::new();
    let flush = |out: &mut Vec<Json>, calls: &mut Vec<Json>| {
        if !calls.is_empty() {
            out.push(Json::Object(vec![
                ("role".into(), s("assistant")),
                ("content".into(), Json::Null),
                ("tool_calls".into(), Json::Array(std::mem::take(calls))),
            ]));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let at = |k: &str| format!("input[{i}].{k}");
        let field = |k: &str| -> Result<String, ApiError> {
            item.get(k)
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid(&at(k), "expected a string"))
        };
        match item.get("type").and_then(Json::as_str) {
            Some("function_call") => {
                calls.push(Json::Object(vec![
                    ("id".into(), s(&field("call_id")?)),
                    ("type".into(), s("function")),
                    (
                        "function".into(),
                        Json::Object(vec![
                            ("name".into(), s(&field("name")?)),
                            ("arguments".into(), s(&field("arguments")?)),
                        ]),
                    ),
                ]));
            }
            Some("function_call_output") => {
                flush(&mut out, &mut calls);
                let output = match item.get("output") {
                    Some(Json::String(t)) => t.clone(),
                    Some(parts @ Json::Array(_)) => content_text(parts, &at("output"))?,
                    _ => return Err(invalid(&at("output"), "expected a string")),
                };
                out.push(Json::Object(vec![
                    ("role".into(), s("tool")),
                    ("tool_call_id".into(), s(&field("call_id")?)),
                    ("content".into(), s(&output)),
                ]));
            }
            Some("reasoning") => {}
            Some("message") | None => {
                flush(&mut out, &mut calls);
                let role = field("role")?;
                let content = match item.get("content") {
                    Some(Json::String(t)) => t.clone(),
                    Some(parts @ Json::Array(_)) => content_text(parts, &at("content"))?,
                    _ => return Err(invalid(&at("content"), "expected a string or content parts")),
                };
                out.push(Json::Object(vec![
                    ("role".into(), s(&role)),
                    ("content".into(), s(&content)),
                ]));
            }
            Some(other) => {
                return Err(ApiError::unsupported(
                    &at("type"),
                    &format!(
                        "; items of type '{other}' are not (messages, function_call, function_call_output and reasoning are)"
                    ),
                ));
            }
        }
    }
    flush(&mut out, &mut calls);
    Ok(out)
}

/// Text content parts (`input_text`, `output_text`, `text`) joined; others refused by name.
fn content_text(parts: &Json, at: &str) -> Result<String, ApiError> {
    let Json::Array(parts) = parts else { return Err(invalid(at, "expected content parts")) };
    let mut text = String::new();
    for (j, p) in parts.iter().enumerate() {
        match (p.get("type").and_then(Json::as_str), p.get("text").and_then(Json::as_str)) {
            (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
            (Some(kind), _) => {
                return Err(ApiError::unsupported(
                    &format!("{at}[{j}].type"),
                    &format!("; content of type '{kind}' is not (only text is)"),
                ));
            }
            (None, _) => return Err(invalid(&format!("{at}[{j}]"), "each part needs a 'type'")),
        }
    }
    Ok(text)
}

/// A Responses tool (`{"type": "function", "name", "description", "parameters"}`) as a chat
/// tool (the function's fields under `function`).
fn chat_tool(i: usize, t: &Json) -> Result<Json, ApiError> {
    match t.get("type").and_then(Json::as_str) {
        Some("function") => {}
        other => {
            return Err(ApiError::unsupported(
                &format!("tools[{i}].type"),
                &format!("; tools of type '{}' are not (only 'function' is)", other.unwrap_or("?")),
            ));
        }
    }
    let Json::Object(fields) = t else { return Err(invalid("tools", "expected objects")) };
    let function =
        fields.iter().filter(|(k, _)| k != "type" && k != "strict").cloned().collect::<Vec<_>>();
    Ok(Json::Object(vec![
        ("type".into(), s("function")),
        ("function".into(), Json::Object(function)),
    ]))
}

/// `tool_choice`: the strings as they are; `{"type": "function", "name"}` as the chat form.
fn tool_choice(c: &Json) -> Result<Json, ApiError> {
    match c {
        Json::String(_) => Ok(c.clone()),
        Json::Object(_) if c.get("type").and_then(Json::as_str) == Some("function") => {
            let name = c.get("name").and_then(Json::as_str).ok_or_else(|| {
                invalid("tool_choice", "expected {\"type\": \"function\", \"name\": ...}")
            })?;
            Ok(Json::Object(vec![
                ("type".into(), s("function")),
                ("function".into(), Json::Object(vec![("name".into(), s(name))])),
            ]))
        }
        _ => Err(invalid("tool_choice", "expected \"auto\", \"none\", \"required\" or a function")),
    }
}

/// `text.format`: `text`, `json_object`, or `json_schema` with its fields inline (the chat
/// form nests them under `json_schema`).
fn response_format(f: &Json) -> Result<Json, ApiError> {
    match f.get("type").and_then(Json::as_str) {
        Some("json_schema") => {
            let Json::Object(fields) = f else {
                return Err(invalid("text.format", "expected an object"));
            };
            let inner = fields.iter().filter(|(k, _)| k != "type").cloned().collect();
            Ok(Json::Object(vec![
                ("type".into(), s("json_schema")),
                ("json_schema".into(), Json::Object(inner)),
            ]))
        }
        Some(_) => Ok(f.clone()),
        None => Err(invalid("text.format", "'type' must be a string")),
    }
}

/// A chat error with the Responses API's names for the fields.
pub(crate) fn renamed(mut e: ApiError) -> ApiError {
    if let Some(p) = e.param.take() {
        let renamed = if p == "max_tokens" {
            "max_output_tokens".to_owned()
        } else if p == "response_format" {
            "text.format".to_owned()
        } else if p.starts_with("messages") {
            // Items and messages do not line up one to one (instructions, merged calls).
            "input".to_owned()
        } else {
            p
        };
        e.message = e.message.replace("'max_tokens'", "'max_output_tokens'");
        e.param = Some(renamed);
    }
    e
}

/// The handler.
pub(crate) async fn handle(
    state: State<AppState>,
    ApiJson(req): ApiJson<Json>,
) -> Result<Response, ApiError> {
    let (chat, echoed, stream) = to_chat(&req)?;
    // Type errors of the fields passed through name them as the chat request does.
    let chat: ChatRequest = super::extract::parse(chat.as_bytes()).map_err(renamed)?;
    let answer = super::chat::handle(state, ApiJson(chat)).await.map_err(renamed)?;
    if stream {
        return Ok(super::responses_stream::respond(answer, echoed));
    }
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the answer: {e}")))?;
    let chat: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("the answer is not JSON: {e}")))?;
    Ok(axum::Json(from_chat(&chat, &echoed)).into_response())
}

/// An output item's id: `prefix_` and the chat id's hex with the item's position.
pub(crate) fn item_id(prefix: &str, chat_id: &str, n: usize) -> String {
    let hex = chat_id.rsplit('-').next().unwrap_or(chat_id);
    format!("{prefix}_{hex}{n:02x}")
}

/// The `response` object of a whole chat answer.
pub(crate) fn from_chat(chat: &Value, echoed: &Echoed) -> Value {
    let id = chat.get("id").and_then(Value::as_str).unwrap_or_default();
    let choice = chat.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let mut output = Vec::new();
    if let Some(thought) = choice.pointer("/message/reasoning_content").and_then(Value::as_str)
        && !thought.is_empty()
    {
        output.push(reasoning_item(&item_id("rs", id, 0), thought, "completed"));
    }
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str)
        && !text.is_empty()
    {
        output.push(message_item(&item_id("msg", id, 0), text, "completed"));
    }
    for (k, c) in choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        output.push(call_item(
            &item_id("fc", id, k + 1),
            c.get("id").and_then(Value::as_str).unwrap_or_default(),
            c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
            c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default(),
            "completed",
        ));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let mut r = response(id, chat.get("created").cloned(), echoed, status(finish), output);
    r["usage"] = usage(chat.get("usage"));
    extras(&mut r, chat);
    r
}

/// `completed`, or `incomplete` when the answer was cut by the token limit.
pub(crate) fn status(finish: Option<&str>) -> &'static str {
    if finish == Some("length") { "incomplete" } else { "completed" }
}

/// A `message` output item holding `text`.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

/// A `reasoning` output item holding a reasoning model's thinking (`--reasoning-parser`), as
/// OpenAI's reasoning models write theirs: the text as one `reasoning_text` part, no summary.
pub(crate) fn reasoning_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "reasoning", "id": id, "status": status, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    })
}

/// A `function_call` output item.
pub(crate) fn call_item(id: &str, call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": args, "status": status,
    })
}

/// The `response` object around `output`.
pub(crate) fn response(
    id: &str,
    created: Option<Value>,
    e: &Echoed,
    status: &str,
    output: Vec<Value>,
) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id, "object": "response", "created_at": created.unwrap_or(Value::Null),
        "status": status, "error": null, "incomplete_details": incomplete,
        "model": e.model, "output": output, "instructions": e.instructions,
        "max_output_tokens": e.max_output_tokens, "metadata": e.metadata,
        "parallel_tool_calls": e.parallel_tool_calls, "temperature": e.temperature,
        "top_p": e.top_p, "text": e.text, "tool_choice": e.tool_choice, "tools": e.tools,
        "truncation": "disabled", "store": false, "previous_response_id": null,
        "reasoning": null, "user": e.user, "usage": null,
    })
}

/// The Responses API's usage of a chat usage.
pub(crate) fn usage(u: Option<&Value>) -> Value {
    let Some(u) = u.filter(|u| !u.is_null()) else { return Value::Null };
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut out = json!({
        "input_tokens": n("/prompt_tokens"),
        "input_tokens_details": {"cached_tokens": n("/prompt_tokens_details/cached_tokens"), "cache_write_tokens": 0},
        "output_tokens": n("/completion_tokens"),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": n("/total_tokens"),
    });
    for k in ["attribution_ms", "attribution_tokens"] {
        if let Some(v) = u.get(k) {
            out[k] = v.clone();
        }
    }
    out
}

/// Copies lorad's extensions (attribution, receipt) from a chat body.
pub(crate) fn extras(r: &mut Value, chat: &Value) {
    for k in ["attribution", "receipt", "receipt_refused"] {
        if let Some(v) = chat.get(k) {
            r[k] = v.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(req: &str) -> Value {
        let (text, _, _) = to_chat(&Json::parse(req).unwrap()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn requests_become_chat_requests() {
        let c = chat(
            r#"{"model":"m","instructions":"Be brief.","input":"Hi","max_output_tokens":9,"seed":3,"store":true,"text":{"format":{"type":"json_schema","name":"x","schema":{"type":"object"}}}}"#,
        );
        assert_eq!(
            c,
            json!({"model": "m", "seed": 3, "max_tokens": 9,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}})
        );
        // Consecutive calls form one assistant turn; results follow as tool messages.
        let c = chat(
            r#"{"model":"m","stream":true,"tool_choice":{"type":"function","name":"f"},"tools":[{"type":"function","name":"f","strict":true,"parameters":{"type":"object"}}],"input":[
                {"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
                {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
                {"type":"function_call","call_id":"c2","name":"f","arguments":"{\"x\":1}"},
                {"type":"function_call_output","call_id":"c1","output":"one"},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"done"}]}]}"#,
        );
        let m = c["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "user", "content": "ab"}));
        assert_eq!(m[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m[1]["tool_calls"][1]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(m[2], json!({"role": "tool", "tool_call_id": "c1", "content": "one"}));
        assert_eq!(m[3], json!({"role": "assistant", "content": "done"}));
        assert_eq!(
            c["tools"],
            json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
        );
        assert_eq!(c["tool_choice"], json!({"type": "function", "function": {"name": "f"}}));
        assert_eq!(c["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn unsupported_fields_are_named() {
        let param = |req: &str| to_chat(&Json::parse(req).unwrap()).unwrap_err().param;
        assert_eq!(
            param(r#"{"input":"x","previous_response_id":"r"}"#).as_deref(),
            Some("previous_response_id")
        );
        assert_eq!(param(r#"{"input":[]}"#).as_deref(), Some("input"));
        assert_eq!(
            param(r#"{"input":[{"type":"file_search_call"}]}"#).as_deref(),
            Some("input[0].type")
        );
        assert_eq!(param(r#"{"input":"x","truncation":"auto"}"#).as_deref(), Some("truncation"));
        assert_eq!(param(r#"{"input":"x","n":2}"#).as_deref(), Some("n"));
        let e = renamed(ApiError::bad_request("messages[2].content", "x"));
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = renamed(ApiError::bad_request("max_tokens", "Invalid value for 'max_tokens'"));
        assert_eq!(
            (e.param.as_deref(), e.message.as_str()),
            (Some("max_output_tokens"), "Invalid value for 'max_output_tokens'")
        );
    }

    #[test]
    fn chat_answers_become_responses() {
        let e = to_chat(&Json::parse(r#"{"model":"m","input":"x"}"#).unwrap()).unwrap().1;
        let chat = json!({"id": "chatcmpl-00ab", "created": 7, "choices": [{"finish_reason": "tool_calls",
            "message": {"content": "Checking.", "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": {"cached_tokens": 2}},
            "attribution": {"k": 1}});
        let r = from_chat(&chat, &e);
        assert_eq!(
            (r["id"].as_str(), r["status"].as_str(), r["created_at"].as_u64()),
            (Some("chatcmpl-00ab"), Some("completed"), Some(7))
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "Checking.");
        assert_eq!(
            (r["output"][1]["type"].as_str(), r["output"][1]["call_id"].as_str()),
            (Some("function_call"), Some("call_1"))
        );
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(
            (r["attribution"]["k"].as_u64(), r["tool_choice"].as_str()),
            (Some(1), Some("auto"))
        );
        assert_eq!(status(Some("length")), "incomplete");
        // A reasoning model's thinking comes first, as a reasoning item.
        let chat = json!({"id": "chatcmpl-00ab", "choices": [{"finish_reason": "stop",
            "message": {"content": "9.8", "reasoning_content": "Compare tenths."}}]});
        let r = from_chat(&chat, &e);
        assert_eq!(r["output"][0]["type"], "reasoning");
        assert_eq!(r["output"][0]["content"][0]["text"], "Compare tenths.");
        assert_eq!(r["output"][1]["content"][0]["text"], "9.8");
        // And an input that sends it back is read without it.
        let input = r#"{"model":"m","input":[{"type":"reasoning","id":"rs_1","summary":[]},
            {"role":"user","content":"Which is larger?"}]}"#;
        let chat = self::chat(input);
        assert_eq!(chat["messages"].as_array().map(Vec::len), Some(1), "{chat}");
    }
}
