//! Tool calls in Mistral's syntax, end to end on the real model: a Mistral-style chat template
//! replaces the default model's, so what the grammar lets the model write over the real
//! vocabulary is what the answer's parser reads, and the history's calls reach the template
//! with the ids it accepts.

use std::sync::Arc;

use axum::http::StatusCode;
use lorad::api::{AppState, router};
use lorad_engine::EngineHandle;
use lorad_model::{ChatTemplate, LoadOptions, ToolSupport, testing::test_model_path};
use lorad_store::disk::{Store, StoreConfig};
use serde_json::{Value, json};

use crate::common::{BASE, api_config, call, manager, post, sse_data, test_config};

/// Mistral 7B Instruct v0.3's template in short: tools before the last user turn, calls as a
/// `[TOOL_CALLS]` list with ids of 9 characters (anything else raises, as the real one does).
const MISTRAL: &str = r#"{% for m in messages %}{% if m.role == 'user' %}{% if tools and loop.last %}[AVAILABLE_TOOLS] {{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}[INST] {{ m.content }}[/INST]{% elif m.tool_calls %}[TOOL_CALLS] [{% for c in m.tool_calls %}{% if c.id is not defined or c.id|length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}{{ c.function | tojson }}{% if not loop.last %}, {% endif %}{% endfor %}]</s>{% elif m.role == 'tool' %}{% if m.tool_call_id|length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}[TOOL_RESULTS] {"content": {{ m.content | tojson }}, "call_id": "{{ m.tool_call_id }}"}[/TOOL_RESULTS]{% else %}{{ m.content }}</s>{% endif %}{% endfor %}"#;

/// Mistral Small 3.1's in short: calls as `[TOOL_CALLS]name[ARGS]{...}`, one after another.
const MISTRAL_ARGS: &str = r#"{% for m in messages %}{% if m.role == 'user' %}{% if tools and loop.last %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}[INST]{{ m.content }}[/INST]{% elif m.tool_calls %}{% for c in m.tool_calls %}{% if c.id is not defined or c.id|length != 9 %}{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}{% set arguments = c.function.arguments %}{% if arguments is not string %}{% set arguments = arguments | tojson %}{% endif %}[TOOL_CALLS]{{ c.function.name }}[ARGS]{{ arguments }}{% endfor %}</s>{% elif m.role == 'tool' %}[TOOL_RESULTS]{{ m.content }}[/TOOL_RESULTS]{% else %}{{ m.content }}</s>{% endif %}{% endfor %}"#;

fn mistral_router() -> Option<(axum::Router, tempfile::TempDir)> {
    router_with(MISTRAL, ToolSupport::Mistral)
}

fn router_with(template: &str, support: ToolSupport) -> Option<(axum::Router, tempfile::TempDir)> {
    let path = test_model_path()?;
    let mut model = lorad_model::load_model(&path, &LoadOptions::default()).expect("load model");
    model.chat_template = ChatTemplate::new(template).expect("template");
    assert_eq!(model.chat_template.tool_support(), support);
    let engine = EngineHandle::start(model, test_config()).expect("start engine");
    let home = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(&home.path().join("store"), StoreConfig::default()).expect("open store"),
    );
    let manager = manager(&store, &engine);
    let state = AppState::new(store, api_config());
    assert!(state.set_ready(manager, BASE.to_owned()));
    Some((router(state), home))
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": false}}}])
}

#[tokio::test]
async fn mistral_templates_get_calls_in_their_syntax() {
    let Some((router, _home)) = mistral_router() else { return };
    calls_in_the_template_syntax(&router).await;
}

#[tokio::test]
async fn newer_mistral_templates_get_calls_in_their_syntax() {
    let Some((router, _home)) = router_with(MISTRAL_ARGS, ToolSupport::MistralArgs) else {
        return;
    };
    calls_in_the_template_syntax(&router).await;
    // `auto` is no longer refused for this syntax; the answer is text or calls.
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": BASE, "messages": [ask], "tools": tools(),
                      "max_tokens": 30, "temperature": 0});
    let (status, _, out) = post(&router, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let finish = out["choices"][0]["finish_reason"].as_str().expect("finish_reason");
    assert!(["stop", "length", "tool_calls"].contains(&finish), "{out}");
}

/// A call under `tool_choice: "required"`, whole and streamed, then the call and its result
/// back in the history through the template.
async fn calls_in_the_template_syntax(router: &axum::Router) {
    let router = router.clone();
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": BASE, "messages": [ask], "tools": tools(),
                      "tool_choice": "required", "parallel_tool_calls": false,
                      "max_tokens": 60, "temperature": 0});
    let (status, _, out) = post(&router, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{out}");
    assert_eq!(choice["message"].get("content"), Some(&Value::Null), "as OpenAI writes it: {out}");
    let calls = choice["message"]["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls[0]["function"]["name"], "get_weather", "{out}");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().expect("text"))
            .expect("arguments are JSON");
    assert!(args["city"].is_string(), "{args}");

    // The same, streamed: the call's id and name first, then its arguments as they come.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, _, text) =
        call(&router, "POST", "/v1/chat/completions", streamed.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk"))
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .flat_map(|d| d.as_array().expect("array"))
        .collect();
    assert!(deltas.len() > 1, "arguments come in pieces: {text}");
    assert!(deltas.iter().all(|d| d["index"] == 0), "{text}");
    assert_eq!(deltas[0]["function"]["name"], "get_weather", "{text}");
    assert!(deltas[0]["id"].as_str().is_some_and(|id| id.starts_with("call_")), "{text}");
    assert!(deltas[1..].iter().all(|d| d.get("id").is_none()), "{text}");
    let joined: String =
        deltas.iter().map(|d| d["function"]["arguments"].as_str().expect("text")).collect();
    assert_eq!(serde_json::from_str::<Value>(&joined).expect("whole arguments"), args, "{text}");
    let finish = chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"), "{text}");

    // The call and its result go back in the history with lorad's own ids, which the
    // template accepts only as 9 characters.
    let id = calls[0]["id"].as_str().expect("id");
    assert!(id.len() > 9, "{id}");
    let history = json!([
        ask,
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": id, "content": "{\"celsius\": 21}"},
        {"role": "user", "content": "And in Oslo?"}
    ]);
    let body = json!({"model": BASE, "messages": history, "tools": tools(),
                      "max_tokens": 40, "temperature": 0});
    let (status, _, out) = post(&router, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, _, out) =
        post(&router, "/tokenize", json!({"model": BASE, "messages": history, "tools": tools()}))
            .await;
    assert_eq!(status, StatusCode::OK, "{out}");
}

/// A template that refuses a conversation answers a 400 naming `messages` with the template's
/// own reason, in one line (not the template engine's dump of the template and its variables).
#[tokio::test]
async fn a_template_refusal_is_a_short_400() {
    let Some((router, _home)) = mistral_router() else { return };
    let call = json!({"id": "x", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{}"}});
    let mut history = json!([{"role": "user", "content": "Weather?"},
                             {"role": "assistant", "content": null, "tool_calls": [call]}]);
    // A call without an id is refused by the template.
    history[1]["tool_calls"][0].as_object_mut().expect("object").remove("id");
    let body = json!({"model": BASE, "messages": history, "max_tokens": 4});
    let (status, _, out) = post(&router, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    let message = out["error"]["message"].as_str().expect("message");
    assert_eq!(out["error"]["param"], "messages", "{out}");
    assert!(message.contains("Tool call IDs should be alphanumeric"), "{message}");
    assert!(!message.contains("Referenced variables") && message.len() < 400, "{message}");
}
