//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;
use lorad_grammar::Json;
use lorad_model::{ChatMessage, ChatTemplate, ToolSupport};
use serde_json::Value;

use super::choices::{self, PromptIn};
use super::errors::ApiError;
use super::extract::ApiJson;
use super::generate::{Kind, respond};
use super::openai::{ChatRequest, MessageIn};
use super::params::{gen_params, refuse_unless_default};
use super::state::AppState;

/// The handler.
pub(crate) async fn handle(
    State(state): State<AppState>,
    ApiJson(mut req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let serving = state.serving()?;
    let common = req.take_common();
    let logprobs =
        super::logprobs::chat_param(common.logprobs.as_ref(), req.top_logprobs.as_ref())?;
    refuse_unless_default("functions", req.functions.as_ref())?;
    refuse_unless_default("function_call", req.function_call.as_ref())?;
    let support = serving.engine.info().chat_template.tool_support();
    let tools = super::tools::parse(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
        support,
    )?;
    let (max_tokens, max_param) = match req.max_completion_tokens {
        Some(m) => (Some(m), "max_completion_tokens"),
        None => (common.max_tokens, "max_tokens"),
    };
    let mut params = gen_params(common, max_tokens, max_param, None, false)?;
    params.sampling.logprobs = logprobs;
    let definitions = match tools {
        Some(t) => {
            if let Some((_, other)) = &params.structured {
                return Err(ApiError::bad_request(
                    *other,
                    format!("'{other}' cannot be combined with a tool_choice that calls tools"),
                )
                .code("invalid_value"));
            }
            params.structured = Some(t.spec);
            params.tools = Some(t.mode);
            Some(t.definitions)
        }
        None => None,
    };
    params.reasoning = state.config().reasoning_parser;
    params.constraint =
        super::structured::compile_blocking(&state, params.structured.clone()).await?;
    let messages = convert_messages(&req.messages)?;
    let open_end = open_final_message(&req, &messages)?;
    let add_generation_prompt = req.add_generation_prompt.unwrap_or(open_end.is_none());
    let target = state.resolve(serving, &params.model).await?;
    let engine = serving.engine.clone();
    let ids = tokio::task::spawn_blocking(move || {
        let template = &engine.info().chat_template;
        let mut text =
            render_prompt(template, &messages, definitions.as_ref(), add_generation_prompt)?;
        if let Some(content) = open_end {
            // Cut the rendered conversation right after the final message's text, before the
            // template closes its turn (vLLM's way: it works for any template).
            let Some(at) = text.rfind(&content) else {
                return Err(ApiError::bad_request(
                    "continue_final_message",
                    "The chat template does not render the final message's text as given",
                )
                .code("invalid_value"));
            };
            text.truncate(at + content.len());
        }
        engine
            .tokenizer()
            .encode(&text)
            .map_err(|e| ApiError::internal(format!("cannot tokenize the prompt: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))??;
    if params.n > 1 {
        let n = params.n;
        let prompt = vec![PromptIn { ids, echo: None }];
        return choices::respond(serving, Kind::Chat, target, prompt, n, params).await;
    }
    respond(serving, Kind::Chat, target, ids, params).await
}

/// The prompt text of a conversation, with `tools` described to the model: by the template
/// when it knows tools, by lorad in the Hermes format when it ignores them (the history's
/// calls and results too, which such a template would drop).
pub(crate) fn render_prompt(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    tools: Option<&Json>,
    add_generation_prompt: bool,
) -> Result<String, ApiError> {
    let rewritten;
    let mut messages = messages;
    if template.tool_support() == ToolSupport::None
        && (tools.is_some() || super::hermes::has_tool_turns(messages))
    {
        rewritten = super::hermes::messages(messages, tools);
        messages = &rewritten;
    } else if super::hermes::has_tool_turns(messages) {
        let mistral =
            matches!(template.tool_support(), ToolSupport::Mistral | ToolSupport::MistralArgs);
        rewritten = calls_for_template(messages, mistral);
        messages = &rewritten;
    }
    let tools = tools.map(Json::to_value);
    template.render_with_tools(messages, add_generation_prompt, tools.as_ref()).map_err(|e| {
        ApiError::bad_request(
            "messages",
            format!("The chat template cannot format these messages: {e}"),
        )
        .code("invalid_value")
    })
}

/// The history's calls as templates that write calls themselves expect them, as vLLM passes
/// them:
/// - each `function.arguments` as a JSON object (Qwen 2.5's and Llama 3.1's templates pass it
///   through `tojson`; OpenAI's API sends JSON text, which would come out quoted twice). Text
///   that is not a JSON object stays text; keys come out sorted (serde_json's map), which
///   changes no call;
/// - with `mistral_ids`, call ids (and the results' `tool_call_id`) as [`mistral_id`]s.
fn calls_for_template(messages: &[ChatMessage], mistral_ids: bool) -> Vec<ChatMessage> {
    let mut out = messages.to_vec();
    for m in &mut out {
        if mistral_ids && let Some(id) = &mut m.tool_call_id {
            *id = mistral_id(id);
        }
        let Some(Value::Array(calls)) = &mut m.tool_calls else { continue };
        for call in calls {
            if mistral_ids && let Some(Value::String(id)) = call.get_mut("id") {
                *id = mistral_id(id);
            }
            let Some(args) = call.pointer_mut("/function/arguments") else { continue };
            let parsed = args
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .filter(Value::is_object);
            if let Some(object) = parsed {
                *args = object;
            }
        }
    }
    out
}

/// Mistral's templates refuse call ids that are not 9 letters and digits: an id becomes its
/// last 9 letters and digits, left-padded with `0`. The same id always maps to the same one,
/// so a call and its result still match (lorad's own `call_` ids differ in their last 9).
fn mistral_id(id: &str) -> String {
    let alnum: Vec<char> = id.chars().filter(char::is_ascii_alphanumeric).collect();
    let tail: String = alnum[alnum.len().saturating_sub(9)..].iter().collect();
    format!("{tail:0>9}")
}

/// With `continue_final_message`, the final message's text the prompt must end with (its
/// trailing whitespace trimmed, as templates often trim); `None` otherwise.
fn open_final_message(
    req: &ChatRequest,
    messages: &[ChatMessage],
) -> Result<Option<String>, ApiError> {
    if !req.continue_final_message.unwrap_or(false) {
        return Ok(None);
    }
    let bad = |why: &str| {
        Err(ApiError::bad_request("continue_final_message", why.to_owned()).code("invalid_value"))
    };
    if req.add_generation_prompt == Some(true) {
        return bad("Cannot set both continue_final_message and add_generation_prompt to true");
    }
    match messages.last() {
        Some(m) if !m.content.trim_end().is_empty() => Ok(Some(m.content.trim_end().to_owned())),
        _ => bad("continue_final_message needs a final message with text to continue"),
    }
}

/// Checks roles and flattens content parts into text. `developer` (OpenAI's newer name for
/// `system`) is mapped to `system`.
pub(crate) fn convert_messages(messages: &[MessageIn]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages",
            "'messages' must contain at least one message",
        )
        .code("invalid_value"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(ApiError::bad_request(
                        format!("messages[{i}].role"),
                        format!("Invalid value for 'messages[{i}].role': '{other}'; supported roles are system, developer, user, assistant and tool"),
                    )
                    .code("invalid_value"));
                }
            };
            let mut msg = ChatMessage::new(role, content_text(&m.content, i)?);
            match &m.tool_calls {
                None | Some(Value::Null) => {}
                Some(calls @ Value::Array(_)) if role == "assistant" => {
                    msg.tool_calls = Some(calls.clone());
                }
                Some(_) => {
                    let param = format!("messages[{i}].tool_calls");
                    return Err(ApiError::bad_request(
                        param.clone(),
                        format!("Invalid value for '{param}': an assistant message's array of calls"),
                    )
                    .code("invalid_value"));
                }
            }
            msg.tool_call_id = m.tool_call_id.clone();
            Ok(msg)
        })
        .collect()
}

/// `content`: a string, null (empty), or an array of `{type: "text", text}` parts.
fn content_text(content: &Value, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    let bad = |why: &str| {
        ApiError::bad_request(param.clone(), format!("Invalid value for '{param}': {why}"))
            .code("invalid_value")
    };
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (Some("text"), None) => return Err(bad("a text part needs a string 'text'")),
                    (Some(other), _) => {
                        return Err(bad(&format!(
                            "content parts of type '{other}' are not supported; only 'text' is"
                        )));
                    }
                    (None, _) => return Err(bad("each content part needs a 'type'")),
                }
            }
            Ok(text)
        }
        _ => Err(bad("expected a string or an array of content parts")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg(role: &str, content: Value) -> MessageIn {
        MessageIn { role: role.into(), content, tool_calls: None, tool_call_id: None }
    }

    #[test]
    fn messages_convert() {
        let out = convert_messages(&[
            msg("developer", json!("be brief")),
            msg("user", json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])),
            msg("assistant", Value::Null),
        ])
        .unwrap();
        assert_eq!(
            out,
            vec![
                ChatMessage::new("system", "be brief"),
                ChatMessage::new("user", "ab"),
                ChatMessage::new("assistant", "")
            ]
        );
        let e = convert_messages(&[msg("robot", json!("x"))]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = convert_messages(&[msg("user", json!([{"type": "image_url"}]))]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        assert_eq!(convert_messages(&[]).unwrap_err().param.as_deref(), Some("messages"));
    }

    #[test]
    fn templates_that_write_calls_get_arguments_as_objects() {
        // Qwen 2.5's way of writing the history's calls.
        let src = "{% if tools %}T{% endif %}{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}</tool_call>{% endfor %}{% else %}{{ m.content }}{% endif %}{% endfor %}";
        let template = ChatTemplate::new(src).unwrap();
        assert_eq!(template.tool_support(), ToolSupport::Hermes);
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(json!([
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "echo", "arguments": "not json"}}
        ]));
        let history = [ChatMessage::new("user", "Weather?"), call];
        let prompt = render_prompt(&template, &history, None, false).unwrap();
        assert!(prompt.contains(r#""arguments": {"city":"Oslo"}}"#), "{prompt}");
        assert!(prompt.contains(r#""arguments": "not json"}"#), "{prompt}");
        // The caller's messages are left as they were.
        assert!(history[1].tool_calls.as_ref().unwrap()[0]["function"]["arguments"].is_string());
    }

    #[test]
    fn mistral_templates_get_nine_character_call_ids() {
        // Mistral v0.3's checks, in short.
        let check = "{% if x|length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}";
        let src = format!(
            "{{% for m in messages %}}{{% if tools and loop.last %}}[AVAILABLE_TOOLS]{{% endif %}}{{% if m.tool_calls %}}[TOOL_CALLS] [{{% for c in m.tool_calls %}}{{% set x = c.id %}}{check}{{{{ c.function.name }}}} {{{{ c.id }}}}{{% endfor %}}]{{% elif m.role == 'tool' %}}{{% set x = m.tool_call_id %}}{check}[TOOL_RESULTS] {{{{ m.tool_call_id }}}}{{% else %}}{{{{ m.content }}}}{{% endif %}}{{% endfor %}}"
        );
        let template = ChatTemplate::new(&src).unwrap();
        assert_eq!(template.tool_support(), ToolSupport::Mistral);
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = Some(json!([
            {"id": "call_0123456789abcdef01234567", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c-1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
        ]));
        let mut result = ChatMessage::new("tool", "-3 C");
        result.tool_call_id = Some("call_0123456789abcdef01234567".into());
        let history = [ChatMessage::new("user", "Weather?"), call, result];
        let prompt = render_prompt(&template, &history, None, false).unwrap();
        assert!(prompt.contains("get_weather f01234567now 0000000c1]"), "{prompt}");
        assert!(prompt.ends_with("[TOOL_RESULTS] f01234567"), "{prompt}");
        assert_eq!(mistral_id("abc123XYZ"), "abc123XYZ");
    }
}
