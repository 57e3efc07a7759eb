//! Every refusal: status, OpenAI error body, `param` naming the field; 404/405/413 from the HTTP
//! layer; health and readiness; the model list.

use axum::body::Body;
use axum::http::StatusCode;
use lorad::api::{ApiConfig, AppState, router};
use serde_json::{Value, json};

use crate::common::{BASE, assert_error, call, get, post, shared};

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let Some(s) = shared() else { return };
    for (path, body) in [
        ("/v1/completions", json!({"model": "nope", "prompt": "hi"})),
        (
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let got = post(&s.router, path, body).await;
        let err = assert_error(&got, StatusCode::NOT_FOUND, Some("model"));
        assert_eq!(err["code"], "model_not_found");
        assert_eq!(err["message"], "The model 'nope' does not exist");
        assert_eq!(err["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_field() {
    let Some(s) = shared() else { return };
    let completion = |extra: Value| {
        let mut body = json!({"model": BASE, "prompt": "hi", "max_tokens": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (json!({"temperature": 5}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"n": 0}), "n"),
        (json!({"n": 65}), "n"),
        (json!({"logprobs": 21}), "logprobs"),
        (json!({"logprobs": "3"}), "logprobs"),
        (json!({"echo": "yes"}), "echo"),
        (json!({"best_of": 3}), "best_of"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (json!({"logit_bias": {"five": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 101}}), "logit_bias"),
        (json!({"logit_bias": [5]}), "logit_bias"),
        (json!({"suffix": "x"}), "suffix"),
        (json!({"max_tokens": -1}), "max_tokens"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"prompt": ["one", 2]}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"presence_penalty": 3}), "presence_penalty"),
        (json!({"stream": "yes"}), "stream"),
        (json!({"cache_salt": ""}), "cache_salt"),
        (json!({"cache_salt": 7}), "cache_salt"),
        (json!({"min_p": 2}), "min_p"),
        (json!({"repetition_penalty": 0}), "repetition_penalty"),
        (json!({"min_tokens": 3}), "min_tokens"),
        (json!({"stop_token_ids": [99999999]}), "stop_token_ids"),
        (json!({"stop_token_ids": "x"}), "stop_token_ids"),
        // The test server schedules first come, first served.
        (json!({"priority": 1}), "priority"),
        (json!({"priority": "high"}), "priority"),
    ];
    for (extra, param) in cases {
        let got = post(&s.router, "/v1/completions", completion(extra.clone())).await;
        let err = assert_error(&got, StatusCode::BAD_REQUEST, Some(param));
        assert_eq!(err["type"], "invalid_request_error", "{extra}");
    }
    let got = post(&s.router, "/v1/completions", json!({"prompt": "hi"})).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("model"));

    let chat = |extra: Value| {
        let mut body = json!({"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, param) in [
        (json!({"messages": "hi"}), "messages"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), "messages[0].role"),
        (
            json!({"messages": [{"role": "user", "content": "x", "tool_calls": 1}]}),
            "messages[0].tool_calls",
        ),
        (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "user", "content": 3}]}), "messages[0].content"),
        (json!({"logprobs": 2}), "logprobs"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"logprobs": true, "top_logprobs": 21}), "top_logprobs"),
        (json!({"n": 0}), "n"),
        (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
        (json!({"tools": [{"type": "function"}]}), "tools[0].function"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
    ] {
        let got = post(&s.router, "/v1/chat/completions", chat(extra.clone())).await;
        assert_error(&got, StatusCode::BAD_REQUEST, Some(param));
    }
    // Defaults of unsupported fields are accepted.
    let ok = post(
        &s.router,
        "/v1/chat/completions",
        chat(json!({"logprobs": false, "n": 1, "user": "u", "unknown": 1})),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.2);
}

#[tokio::test]
async fn malformed_json_is_400_openai_error() {
    let Some(s) = shared() else { return };
    for body in ["{\"model\": ", "not json", "{\"model\": \"x\", \"prompt\": \"y\"} trailing"] {
        let (status, _, text) = call(&s.router, "POST", "/v1/completions", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON error body");
        assert_eq!(v["error"]["code"], "invalid_json", "{text}");
    }
}

#[tokio::test]
async fn context_length_is_400_context_length_exceeded() {
    let Some(s) = shared() else { return };
    let got = post(
        &s.router,
        "/v1/completions",
        json!({"model": BASE, "prompt": "hi", "max_tokens": 1_000_000}),
    )
    .await;
    let err = assert_error(&got, StatusCode::BAD_REQUEST, Some("prompt"));
    assert_eq!(err["code"], "context_length_exceeded");
    let body = json!({"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1_000_000});
    let got = post(&s.router, "/v1/chat/completions", body).await;
    let err = assert_error(&got, StatusCode::BAD_REQUEST, Some("messages"));
    assert_eq!(err["code"], "context_length_exceeded");
    assert!(err["message"].as_str().unwrap().contains("maximum context length"), "{err}");
}

#[tokio::test]
async fn body_over_the_limit_is_413_json() {
    let Some(s) = shared() else { return };
    // A small limit on a second state over the same engine, and the default 4 MiB limit.
    let small = AppState::new(
        s.state.store().clone(),
        ApiConfig { max_body_bytes: 1024, ..ApiConfig::default() },
    );
    small.set_ready(s.manager.clone(), BASE.to_owned());
    let small = router(small);
    let big = json!({"model": BASE, "prompt": "a".repeat(2000)}).to_string();
    let huge = json!({"model": BASE, "prompt": "a".repeat(5 << 20)}).to_string();
    for (router, body) in [(&small, big), (&s.router, huge)] {
        let (status, _, text) = call(router, "POST", "/v1/completions", body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let v: Value = serde_json::from_str(&text).expect("JSON error body");
        assert_eq!(v["error"]["code"], "request_too_large", "{text}");
    }
}

#[tokio::test]
async fn unknown_path_404_and_wrong_method_405_are_json() {
    let Some(s) = shared() else { return };
    let (status, _, text) = call(&s.router, "GET", "/v1/nothing", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], "unknown_url");
    let (status, _, text) = call(&s.router, "GET", "/v1/completions", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let (status, _, _) = call(&s.router, "POST", "/v1/models", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn models_lists_base_and_adapters() {
    let Some(s) = shared() else { return };
    let (status, v) = get(&s.router, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data[0]["id"], BASE);
    assert_eq!(data[0]["parent"], Value::Null);
    let ada = data.iter().find(|m| m["id"] == "ada").expect("adapter listed");
    assert_eq!(
        (ada["object"].as_str(), ada["owned_by"].as_str(), ada["parent"].as_str()),
        (Some("model"), Some("lorad"), Some(BASE))
    );
    assert!(ada["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(get(&s.router, "/v1/models/ada").await.1["parent"], BASE);
    // vLLM's context length field, on the base and on adapters alike.
    let len = data[0]["max_model_len"].as_u64().expect("max_model_len");
    assert!(len > 0 && ada["max_model_len"].as_u64() == Some(len), "{data:?}");
    assert_eq!(get(&s.router, &format!("/v1/models/{BASE}")).await.1["id"], BASE);
    assert_eq!(get(&s.router, "/v1/models/nope").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_and_readiness() {
    let Some(s) = shared() else { return };
    assert_eq!(call(&s.router, "GET", "/healthz", Body::empty()).await.2, "ok");
    assert_eq!(call(&s.router, "GET", "/readyz", Body::empty()).await.0, StatusCode::OK);
    assert_eq!(call(&s.router, "GET", "/health", Body::empty()).await.0, StatusCode::OK);
    let (status, _, v) = call(&s.router, "GET", "/version", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v.contains(env!("CARGO_PKG_VERSION")), "{v}");

    // Before the engine is up: alive, not ready, generation refused with 503.
    let state = AppState::new(s.state.store().clone(), ApiConfig::default());
    let r = router(state.clone());
    assert_eq!(call(&r, "GET", "/healthz", Body::empty()).await.0, StatusCode::OK);
    assert_eq!(call(&r, "GET", "/readyz", Body::empty()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call(&r, "GET", "/health", Body::empty()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let got = post(&r, "/v1/completions", json!({"model": BASE, "prompt": "hi"})).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(get(&r, "/v1/models").await.0, StatusCode::SERVICE_UNAVAILABLE);

    // Ready, then draining for shutdown.
    state.set_ready(s.manager.clone(), BASE.to_owned());
    assert_eq!(call(&r, "GET", "/readyz", Body::empty()).await.0, StatusCode::OK);
    state.begin_drain();
    assert_eq!(call(&r, "GET", "/readyz", Body::empty()).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let got = post(&r, "/v1/completions", json!({"model": BASE, "prompt": "hi"})).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(call(&r, "GET", "/healthz", Body::empty()).await.0, StatusCode::OK);
}
