//! Request bodies from API clients, mutated (`lorad-fuzz`): every OpenAI-compatible route must
//! answer a malformed or hostile request with a 4xx OpenAI error object naming the problem, and a
//! valid one with well-formed JSON or SSE, never a 5xx or a dropped connection. Afterwards the
//! engine is idle with every KV block free and still answers. The context is capped at 256
//! tokens so accepted requests stay short on a CPU.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use lorad_engine::EngineConfig;
use lorad_fuzz::{Campaign, JsonMutator, Mutator, Outcome};
use serde_json::{Value, json};

use crate::common::{
    ADMIN_TOKEN, BASE, BOUNDARY, Server, admin, call, eventually, multipart, peft_files, post,
    server, sse_data,
};

/// `(route, body)` seeds covering each endpoint's options.
fn seeds() -> Vec<(&'static str, Value)> {
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
    let tool = json!({"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
    vec![
        (
            "/v1/chat/completions",
            json!({"model": BASE, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "ada", "messages": [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour"}], "max_tokens": 5, "temperature": 0.7, "top_p": 0.9,
            "seed": 3, "stop": ["\n"], "logprobs": true, "top_logprobs": 2, "n": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": BASE, "messages": [{"role": "user", "content": "JSON please"}],
            "max_tokens": 12, "stream": true, "stream_options": {"include_usage": true},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": BASE, "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "max_tokens": 16, "tools": [tool], "tool_choice": "auto"}),
        ),
        (
            "/v1/completions",
            json!({"model": BASE, "prompt": "Once upon", "max_tokens": 6, "echo": true,
            "logprobs": 2, "frequency_penalty": 0.5, "logit_bias": {"13": -100}}),
        ),
        (
            "/v1/completions",
            json!({"model": "ada", "prompt": [[1, 2, 3], [4, 5]], "max_tokens": 4,
            "stream": true, "min_tokens": 1, "ignore_eos": true, "structured_outputs": {"regex": "[a-z]{1,4}"}}),
        ),
        ("/v1/responses", json!({"model": BASE, "input": "Say yes", "max_output_tokens": 6})),
        ("/tokenize", json!({"model": BASE, "prompt": "hello world"})),
        ("/detokenize", json!({"model": BASE, "tokens": [28, 1521]})),
    ]
}

const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "prompt",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "seed",
    "stop",
    "stop_token_ids",
    "stream",
    "stream_options",
    "include_usage",
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "echo",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "min_tokens",
    "ignore_eos",
    "response_format",
    "json_schema",
    "schema",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "input",
    "instructions",
    "tokens",
    "suffix",
    "user",
    "priority",
    "best_of",
    "skip_special_tokens",
    "add_generation_prompt",
    "chat_template_kwargs",
    "reasoning_effort",
    "tool_calls",
    "name",
    "ada",
    "type",
    "function",
];

/// Judges one response: an OpenAI error for a refusal; for an answer, parseable JSON, or
/// well-formed SSE events when `sse` (the answer's content type is an event stream).
fn judge(route: &str, sse: bool, status: StatusCode, body: &str) -> Outcome {
    assert!(
        !status.is_server_error(),
        "{route} answered {status} (a server error) to a client's request: {body}"
    );
    if !status.is_success() {
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{route} {status}: the error is not JSON ({e}): {body}"));
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{route} {status}: no error message in {body}");
        return Err(format!("{status} {message}"));
    }
    if sse {
        for data in sse_data(body) {
            if data != "[DONE]" {
                let chunk: Result<Value, _> = serde_json::from_str(&data);
                assert!(chunk.is_ok(), "{route}: a malformed SSE chunk {data:?}");
            }
        }
    } else {
        let v: Result<Value, _> = serde_json::from_str(body);
        assert!(v.is_ok(), "{route} {status}: the answer is not JSON: {body}");
    }
    Ok(())
}

fn kv_blocks_used(s: &Server) -> usize {
    s.engine.stats().kv_blocks_used.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_request_bodies() {
    let cfg =
        EngineConfig { kv_cache_tokens: 1024, max_seq_len: Some(256), ..EngineConfig::default() };
    let Some(s) = server(cfg) else { return };
    let seeds = seeds();
    let bodies: Vec<Value> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let campaign = Campaign::new("api-bodies", 150);
    let mut m = JsonMutator::new(campaign.seed(), KEYS.iter().copied());
    let handle = tokio::runtime::Handle::current();
    let router = s.router.clone();
    let mut turn = 0;
    // The campaign drives one request at a time from a blocking thread.
    let report = tokio::task::block_in_place(|| {
        campaign.run(
            &bodies,
            |b| m.mutate(b),
            |body| {
                let route = seeds[turn % seeds.len()].0;
                turn += 1;
                let stream = body["stream"] == Value::Bool(true);
                let (status, headers, text) =
                    handle.block_on(call(&router, "POST", route, body.to_string()));
                // The answer's content type decides how to read it, not the request: /tokenize
                // and /detokenize answer JSON to `"stream": true` (a field they ignore).
                let sse = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                if status.is_success() && route.starts_with("/v1/") {
                    assert_eq!(sse, stream, "{route}: `stream` {stream}, answered {headers:?}");
                }
                judge(route, sse, status, &text)
            },
        )
    });
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
    assert!(
        eventually(Duration::from_secs(10), || s.engine.stats().running.load(Ordering::SeqCst)
            == 0
            && kv_blocks_used(&s) == 0)
        .await,
        "the engine did not return to idle: {} running, {} KV blocks used",
        s.engine.stats().running.load(Ordering::SeqCst),
        kv_blocks_used(&s)
    );
    let (status, _, v) =
        post(&s.router, "/v1/completions", json!({"model": BASE, "prompt": "Hi", "max_tokens": 2}))
            .await;
    assert_eq!(status, StatusCode::OK, "the engine stopped answering: {v}");
}

/// Adapter uploads (`POST /v1/adapters`, multipart), mutated: each is stored (201) or refused
/// with an OpenAI error, never a 5xx. A stored upload is served at once and removed again (so
/// the next one under the same name is not a conflict); afterwards the store verifies clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_adapter_uploads() {
    let Some(s) = server(crate::common::test_config()) else { return };
    let (config, weights) = peft_files(&s, "fz", 31);
    let seed = multipart(&[
        ("name", b"fz".to_vec()),
        ("adapter_config.json", config),
        ("adapter_model.safetensors", weights),
    ]);
    let campaign = Campaign::new("api-uploads", 150);
    let mut m = Mutator::new(campaign.seed(), 8 << 20).with_dictionary([
        &b"\r\n"[..],
        b"--",
        BOUNDARY.as_bytes(),
        b"Content-Disposition: form-data; name=\"",
        b"adapter_config.json",
        b"adapter_model.safetensors",
    ]);
    let handle = tokio::runtime::Handle::current();
    let report = tokio::task::block_in_place(|| {
        campaign.run(
            std::slice::from_ref(&seed),
            |b| m.mutate(b),
            |body| {
                let (status, v) = handle.block_on(admin(
                    &s,
                    "POST",
                    "/v1/adapters",
                    Some(ADMIN_TOKEN),
                    body.clone(),
                ));
                assert!(!status.is_server_error(), "upload answered {status}: {v}");
                if status != StatusCode::CREATED {
                    let message = v["error"]["message"].as_str().unwrap_or_default();
                    assert!(!message.is_empty(), "upload {status} without an OpenAI error: {v}");
                    return Err(format!("{status} {message}"));
                }
                let name = v["name"].as_str().unwrap_or_default().to_owned();
                let (status, models) = handle.block_on(crate::common::get(&s.router, "/v1/models"));
                let listed =
                    models["data"].as_array().is_some_and(|d| d.iter().any(|m| m["id"] == name));
                assert!(
                    status.is_success() && listed,
                    "stored upload {name} is not served: {models}"
                );
                let path = format!("/v1/adapters/{name}");
                let (status, v) =
                    handle.block_on(admin(&s, "DELETE", &path, Some(ADMIN_TOKEN), Vec::new()));
                assert!(status.is_success(), "removing {name}: {status} {v}");
                Ok(())
            },
        )
    });
    assert!(report.rejected > 0 && report.accepted > 0, "{report:?}");
    let verified = s.manager.store().verify();
    assert!(verified.failed.is_empty(), "the store no longer verifies: {:?}", verified.failed);
}
