//! `--reasoning-parser`: a chat answer's thinking goes to `reasoning_content` (and `reasoning`),
//! the rest to `content`, whole and streamed, for one answer and for `n` of them; under a
//! grammar a `deepseek_r1` answer thinks first, a `qwen3` one only when it opens with `<think>`
//! (engine/src/constrained.rs tests that path). The default model does not think, so its answers (which never
//! close a `<think>`) are all thinking to `deepseek_r1` (whose templates open it in the prompt)
//! and all content to `qwen3` (which needs the answer to open it): the same greedy text lands in
//! one field or the other. The split itself is unit-tested in `api/reasoning.rs`.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use lorad::api::{ApiConfig, AppState, ReasoningParser, router};
use lorad_store::disk::{Store, StoreConfig};
use serde_json::{Value, json};

use crate::common::{BASE, call, engine, manager, post, sse_data, test_config};

fn router_with(parser: ReasoningParser) -> Option<(Router, tempfile::TempDir)> {
    let engine = engine(test_config())?;
    let home = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(&home.path().join("store"), StoreConfig::default()).expect("open store"),
    );
    let config = ApiConfig { reasoning_parser: Some(parser), ..ApiConfig::default() };
    let state = AppState::new(store.clone(), config);
    assert!(state.set_ready(manager(&store, &engine), BASE.to_owned()));
    Some((router(state), home))
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"model": BASE, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

/// The chunks of a streamed answer: per choice index, its joined `reasoning_content`,
/// `reasoning` and `content` deltas.
async fn streamed(router: &Router, body: Value) -> Vec<(String, String, String)> {
    let mut body = body;
    body["stream"] = json!(true);
    let (status, _, text) = call(router, "POST", "/v1/chat/completions", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut out: Vec<(String, String, String)> = Vec::new();
    for data in sse_data(&text).iter().filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).expect("chunk");
        for c in chunk["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            if out.len() <= i {
                out.resize(i + 1, Default::default());
            }
            let d = &c["delta"];
            let piece = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            out[i].0 += &piece("reasoning_content");
            out[i].1 += &piece("reasoning");
            out[i].2 += &piece("content");
        }
    }
    out
}

#[tokio::test]
async fn thinking_goes_to_reasoning_content() {
    let Some((r1, _h1)) = router_with(ReasoningParser::DeepseekR1) else { return };
    let Some((qwen3, _h2)) = router_with(ReasoningParser::Qwen3) else { return };

    // qwen3: the answer opens no <think>, so it is all content.
    let (status, _, out) = post(&qwen3, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let message = &out["choices"][0]["message"];
    let answer = message["content"].as_str().expect("content").to_owned();
    assert!(!answer.is_empty(), "{out}");
    assert!(message.get("reasoning_content").is_none(), "{out}");

    // deepseek_r1: the same text, all thinking (never closed), no content.
    let (status, _, out) = post(&r1, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let message = &out["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], answer.as_str(), "{out}");
    assert_eq!(message["reasoning"], answer.as_str(), "{out}");
    assert_eq!(message.get("content"), Some(&Value::Null), "content is there, null: {out}");

    // Streamed: thinking deltas, joined, are the same text; no content deltas.
    let one = streamed(&r1, ask(json!({}))).await;
    assert_eq!(one, [(answer.clone(), answer.clone(), String::new())]);
    let one = streamed(&qwen3, ask(json!({}))).await;
    assert_eq!(one, [(String::new(), String::new(), answer.clone())]);

    // n answers (greedy: all the same), whole and streamed.
    let (status, _, out) = post(&r1, "/v1/chat/completions", ask(json!({"n": 2}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    for c in out["choices"].as_array().expect("choices") {
        assert_eq!(c["message"]["reasoning_content"], answer.as_str(), "{out}");
        assert!(c["message"]["content"].is_null(), "{out}");
    }
    let two = streamed(&r1, ask(json!({"n": 2}))).await;
    assert_eq!(two, vec![(answer.clone(), answer.clone(), String::new()); 2]);

    // The Responses API: the thinking is a reasoning item, whole and streamed.
    let input = json!({"model": BASE, "input": "What is the capital of France?",
                       "max_output_tokens": 12, "temperature": 0});
    let (status, _, out) = post(&r1, "/v1/responses", input.clone()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"][0]["type"], "reasoning", "{out}");
    assert_eq!(out["output"][0]["content"][0]["text"], answer.as_str(), "{out}");
    assert_eq!(out["output"].as_array().map(Vec::len), Some(1), "no message: {out}");
    let mut streamed_input = input;
    streamed_input["stream"] = json!(true);
    let (status, _, text) = call(&r1, "POST", "/v1/responses", streamed_input.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events: Vec<Value> =
        sse_data(&text).iter().map(|d| serde_json::from_str(d).expect("event")).collect();
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_text.delta")
        .map(|e| e["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(deltas, answer, "{text}");
    let done = events
        .iter()
        .find(|e| e["type"] == "response.completed" || e["type"] == "response.incomplete")
        .expect("the last event");
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], answer.as_str(), "{done}");

    // Under a grammar, a deepseek_r1 answer thinks first and the grammar waits for its
    // `</think>`: this model never writes one, so its answer stays free thinking.
    let json_mode = ask(json!({"response_format": {"type": "json_object"}, "max_tokens": 8}));
    let (status, _, out) = post(&r1, "/v1/chat/completions", json_mode.clone()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let message = &out["choices"][0]["message"];
    let thought = message["reasoning_content"].as_str().expect("thinking");
    assert!(answer.starts_with(thought) && !thought.is_empty(), "{out}");
    assert_eq!(message.get("content"), Some(&Value::Null), "{out}");
    // A qwen3 answer that does not open with `<think>` (this model has no such token) follows
    // the grammar from its first token.
    let (status, _, out) = post(&qwen3, "/v1/chat/completions", json_mode.clone()).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let message = &out["choices"][0]["message"];
    assert!(message["content"].as_str().is_some_and(|c| c.starts_with('{')), "{out}");
    assert!(message.get("reasoning_content").is_none(), "{out}");
    let streamed_json = streamed(&qwen3, json_mode).await;
    assert!(
        streamed_json[0].0.is_empty() && streamed_json[0].2.starts_with('{'),
        "{streamed_json:?}"
    );
}
