//! Successful generation: non-streaming and streaming, completions and chat, on the base model,
//! on an adapter loaded at start-up and on one imported while serving (loaded on demand).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::{BASE, call, import_random, post, shared, sse_data};

/// Streams `body` to `path`; returns the parsed JSON chunks (the `[DONE]` marker checked and
/// removed).
pub async fn stream(path: &str, body: Value) -> Vec<Value> {
    let s = shared().expect("checked by the caller");
    let (status, headers, text) = call(&s.router, "POST", path, body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let mut data = sse_data(&text);
    assert_eq!(data.pop().as_deref(), Some("[DONE]"), "stream must end with [DONE]: {text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk {d} is not JSON: {e}")))
        .collect()
}

fn assert_usage(u: &Value) -> u64 {
    let (p, c, t) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0 && p + c == t, "{u}");
    let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64();
    assert!(
        cached.is_some_and(|n| n <= p),
        "cached prompt tokens missing or above the prompt: {u}"
    );
    c
}

#[tokio::test]
async fn completion_on_base_is_openai_shaped() {
    let Some(s) = shared() else { return };
    let body = json!({"model": BASE, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0});
    let (status, _, v) = post(&s.router, "/v1/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("text_completion"), Some(BASE)));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &v["choices"][0];
    assert_eq!((choice["index"].as_u64(), &choice["logprobs"]), (Some(0), &Value::Null));
    assert!(choice["text"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(assert_usage(&v["usage"]), 6);

    // Token ids work as a prompt too.
    let ids = s.engine.tokenizer().encode("The capital of France is").unwrap();
    let (status, _, w) = post(
        &s.router,
        "/v1/completions",
        json!({"model": BASE, "prompt": ids, "max_tokens": 6, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["choices"][0]["text"], choice["text"]);
}

#[tokio::test]
async fn streaming_chat_on_base() {
    if shared().is_none() {
        return;
    }
    let body = json!({
        "model": BASE,
        "messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16, "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
    });
    let chunks = stream("/v1/chat/completions", body).await;
    let id = chunks[0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(
            (c["object"].as_str(), c["model"].as_str(), c["id"].as_str()),
            (Some("chat.completion.chunk"), Some(BASE), Some(id.as_str()))
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(text.contains("Paris"), "{text}");
    // Final chunk: finish_reason and usage; then the include_usage chunk with no choices.
    let (finish, usage_chunk) = (&chunks[chunks.len() - 2], &chunks[chunks.len() - 1]);
    assert!(finish["choices"][0]["finish_reason"].is_string(), "{finish}");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_usage(&finish["usage"]);
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], finish["usage"]);
    // Content chunks have no finish reason.
    assert!(chunks[1..chunks.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn streaming_completion_without_include_usage_still_reports_usage_last() {
    if shared().is_none() {
        return;
    }
    let chunks = stream("/v1/completions", json!({"model": BASE, "prompt": "Once upon a time", "max_tokens": 5, "stream": true, "seed": 3})).await;
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(assert_usage(&last["usage"]), 5);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn adapters_at_start_up_and_imported_while_serving() {
    let Some(s) = shared() else { return };
    // Loaded at start-up: non-streaming chat.
    let body = json!({"model": "ada", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6, "temperature": 0});
    let (status, _, v) = post(&s.router, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("chat.completion"), Some("ada")));
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert_usage(&v["usage"]);

    // Imported after start-up: unknown to the engine, found in the store, paged in on demand.
    import_random(&s.engine, s.state.store(), s.home.path(), "late", 11);
    assert!(!s.engine.has_adapter("late"));
    let chunks = stream(
        "/v1/chat/completions",
        json!({"model": "late", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "stream": true, "temperature": 0}),
    )
    .await;
    assert!(s.engine.has_adapter("late"));
    assert!(chunks.iter().all(|c| c["model"] == "late" && c["object"] == "chat.completion.chunk"));
    assert_usage(&chunks.last().unwrap()["usage"]);
}

/// `logit_bias` steers greedy decoding: -100 bans the token greedy picks, +100 forces another.
#[tokio::test]
async fn logit_bias_bans_and_forces_tokens() {
    let Some(s) = shared() else { return };
    let first = |bias: Value| {
        let body = json!({"model": BASE, "prompt": "The capital of France is", "max_tokens": 1,
                          "temperature": 0, "logit_bias": bias});
        async move {
            let (status, _, v) = post(&s.router, "/v1/completions", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v["choices"][0]["text"].as_str().unwrap().to_owned()
        }
    };
    let tk = s.engine.tokenizer();
    let plain = first(json!({})).await;
    let greedy = tk.encode(&plain).unwrap();
    assert_eq!(greedy.len(), 1, "{plain:?} is one token");
    let banned = first(json!({greedy[0].to_string(): -100})).await;
    assert_ne!(banned, plain);
    let banana = tk.encode(" banana").unwrap()[0];
    let forced = first(json!({banana.to_string(): 100})).await;
    assert_eq!(tk.encode(&forced).unwrap(), [banana]);
}

/// vLLM's extensions reach the engine: `ignore_eos` runs past the answer's natural end to
/// `max_tokens` (what benchmark clients rely on), `stop_token_ids` ends at a given token,
/// `include_stop_str_in_output` keeps the stop string.
#[tokio::test]
async fn vllm_extensions_ignore_eos_and_stop_token_ids() {
    let Some(s) = shared() else { return };
    let chat = |extra: Value| {
        let mut body = json!({"model": BASE, "max_tokens": 40, "temperature": 0,
                              "messages": [{"role": "user", "content": "What is the capital of France?"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        async move {
            let (status, _, v) = post(&s.router, "/v1/chat/completions", body).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v
        }
    };
    let plain = chat(json!({})).await;
    assert_eq!(plain["choices"][0]["finish_reason"], "stop", "{plain}");
    let n = plain["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(n < 40);
    let long = chat(json!({"ignore_eos": true})).await;
    assert_eq!(long["usage"]["completion_tokens"], 40, "{long}");
    assert_eq!(long["choices"][0]["finish_reason"], "length");
    let text = plain["choices"][0]["message"]["content"].as_str().unwrap();
    let ids = s.engine.tokenizer().encode(text).unwrap();
    let stopped = chat(json!({"stop_token_ids": [ids[1]]})).await;
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    let cut = stopped["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with(cut) && cut.len() < text.len(), "{cut:?} vs {text:?}");
    let kept = chat(json!({"stop": ["Paris"], "include_stop_str_in_output": true})).await;
    let kept = kept["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(kept.ends_with("Paris") && text.starts_with(kept), "{kept:?} vs {text:?}");
}

/// vLLM's `continue_final_message`: the answer continues the final assistant message's text
/// instead of starting a new turn.
#[tokio::test]
async fn continue_final_message_extends_the_last_turn() {
    let Some(s) = shared() else { return };
    let messages = json!([
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is"}
    ]);
    let body = json!({"model": BASE, "max_tokens": 4, "temperature": 0, "messages": messages,
                      "continue_final_message": true});
    let (status, _, v) = post(&s.router, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with(" Paris"), "{text:?}");
    for (extra, why) in [
        (json!({"continue_final_message": true, "add_generation_prompt": true}), "both"),
        (
            json!({"continue_final_message": true,
                   "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]}),
            "final message with text",
        ),
    ] {
        let mut body = json!({"model": BASE, "max_tokens": 2, "messages": messages});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, _, v) = post(&s.router, "/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["param"], "continue_final_message");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }
}

/// A server that schedules by priority takes vLLM's `priority` on both endpoints (the shared
/// test server, first come first served, refuses it: `errors.rs`).
#[tokio::test]
async fn priority_is_taken_when_the_server_schedules_by_it() {
    let cfg = lorad_engine::EngineConfig {
        scheduling: lorad_engine::SchedulingPolicy::Priority,
        ..crate::common::test_config()
    };
    let Some(s) = crate::common::server(cfg) else { return };
    let chat = json!({"model": BASE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "priority": -3});
    let (status, _, v) = post(&s.router, "/v1/chat/completions", chat).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let completion = json!({"model": "ada", "prompt": "Hi", "max_tokens": 2, "priority": 9});
    let (status, _, v) = post(&s.router, "/v1/completions", completion).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let bad = json!({"model": BASE, "prompt": "Hi", "max_tokens": 2, "priority": 1.5});
    let got = post(&s.router, "/v1/completions", bad).await;
    crate::common::assert_error(&got, StatusCode::BAD_REQUEST, Some("priority"));
}

/// A server that shares fairly between adapters serves the base and adapters alike, and
/// refuses `priority` (fairness is by service received, not by what a client asks for).
#[tokio::test]
async fn fair_sharing_serves_every_model_and_refuses_priority() {
    let cfg = lorad_engine::EngineConfig {
        scheduling: lorad_engine::SchedulingPolicy::Fair,
        ..crate::common::test_config()
    };
    let Some(s) = crate::common::server(cfg) else { return };
    for model in [BASE, "ada"] {
        let completion = json!({"model": model, "prompt": "Hi", "max_tokens": 2});
        let (status, _, v) = post(&s.router, "/v1/completions", completion).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["usage"]["completion_tokens"], 2);
    }
    let chat = json!({"model": "ada", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "priority": -3});
    let got = post(&s.router, "/v1/chat/completions", chat).await;
    crate::common::assert_error(&got, StatusCode::BAD_REQUEST, Some("priority"));
    assert!(got.2["error"]["message"].as_str().unwrap().contains("fairly"), "{}", got.2);
}

/// A server that speculates by prompt lookup answers as one that does not, and counts its
/// drafts in `/metrics`.
#[tokio::test]
async fn speculative_decoding_keeps_answers_and_counts_drafts() {
    let spec =
        lorad_engine::NgramSpec { tokens: 4, max_n: 4, min_n: 1, disable_by_batch_size: None };
    let cfg =
        lorad_engine::EngineConfig { speculative: Some(spec), ..crate::common::test_config() };
    let Some(on) = crate::common::server(cfg) else { return };
    let Some(off) = crate::common::shared() else { return };
    let ask = json!({"model": "ada", "messages": [{"role": "user", "content": "Repeat: red, green, blue, red, green, blue."}], "max_tokens": 24, "temperature": 0});
    let (status, _, a) = post(&on.router, "/v1/chat/completions", ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (_, _, b) = post(&off.router, "/v1/chat/completions", ask).await;
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    let (_, _, text) =
        crate::common::call(&on.router, "GET", "/metrics", axum::body::Body::empty()).await;
    let drafts = text
        .lines()
        .find_map(|l| l.strip_prefix("lorad_spec_decode_draft_tokens_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(drafts.is_some_and(|d| d > 0), "no drafts counted: {drafts:?}");
}
