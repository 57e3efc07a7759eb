//! `X-Request-Id` on every response: the client's when usable, a new `req_` id otherwise, on
//! JSON answers, errors, fallbacks and streams alike.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use crate::common::{BASE, TIMEOUT, post, shared};

async fn with_header(path: &str, body: serde_json::Value, id: &str) -> axum::response::Response {
    let s = shared().expect("shared server");
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Body::from(body.to_string()))
        .expect("request");
    tokio::time::timeout(TIMEOUT, s.router.clone().oneshot(req))
        .await
        .expect("timed out")
        .expect("infallible")
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let Some(s) = shared() else { return };
    let id = |h: &axum::http::HeaderMap| {
        h.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let (status, h1, _) = post(&s.router, "/tokenize", json!({"prompt": "hi"})).await;
    let (_, h2, _) = post(&s.router, "/tokenize", json!({"prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    let (a, b) = (id(&h1).expect("an id"), id(&h2).expect("an id"));
    assert!(a.starts_with("req_") && a != b, "{a} {b}");
    // Errors and unknown paths too.
    let (status, h, _) = post(&s.router, "/v1/nowhere", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(id(&h).is_some());
    // The client's own id comes back, on a stream as well; an unusable one is replaced.
    let r = with_header("/tokenize", json!({"prompt": "hi"}), "lb-7f3a/42").await;
    assert_eq!(id(r.headers()).as_deref(), Some("lb-7f3a/42"));
    let chat = json!({"model": BASE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": true});
    let r = with_header("/v1/chat/completions", chat, "trace-1").await;
    assert_eq!(id(r.headers()).as_deref(), Some("trace-1"));
    let body = tokio::time::timeout(
        Duration::from_secs(60),
        axum::body::to_bytes(r.into_body(), usize::MAX),
    )
    .await
    .expect("timed out")
    .expect("body");
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    let r = with_header("/tokenize", json!({"prompt": "hi"}), "has space").await;
    assert!(id(r.headers()).is_some_and(|v| v.starts_with("req_")));
}
