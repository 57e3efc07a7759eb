//! API keys (`--api-key-file`): the OpenAI routes need one as a bearer token; probes, metrics
//! and the tokenizer stay open; the admin routes take the admin token only.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lorad::api::{ApiConfig, AppState, router};
use lorad_store::disk::{Store, StoreConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{ADMIN_TOKEN, BASE, TIMEOUT, engine, manager, test_config};

const KEY: &str = "sk-lorad-test-key-0001";
const ROTATED: &str = "sk-lorad-test-key-0002";

async fn request(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = tokio::time::timeout(TIMEOUT, router.clone().oneshot(req))
        .await
        .expect("timed out")
        .expect("infallible");
    let status = resp.status();
    let challenge =
        resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, challenge, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn openai_routes_need_a_key_and_the_rest_do_not() {
    let Some(engine) = engine(test_config()) else { return };
    let home = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(&home.path().join("store"), StoreConfig::default()).expect("open store"),
    );
    let config = ApiConfig {
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        api_keys: vec![KEY.to_owned(), ROTATED.to_owned()],
        ..ApiConfig::default()
    };
    let state = AppState::new(store.clone(), config);
    assert!(state.set_ready(manager(&store, &engine), BASE.to_owned()));
    let r = router(state.clone());

    let chat = json!({"model": BASE, "max_tokens": 2,
                      "messages": [{"role": "user", "content": "Hi"}]});
    for token in [None, Some("sk-wrong-key-but-long-enough"), Some(ADMIN_TOKEN)] {
        let (status, challenge, body) = request(&r, "GET", "/v1/models", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        let (status, _, _) =
            request(&r, "POST", "/v1/chat/completions", token, Some(chat.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    for key in [KEY, ROTATED] {
        let (status, _, body) = request(&r, "GET", "/v1/models", Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"][0]["id"], BASE, "{body}");
    }
    let (status, _, body) =
        request(&r, "POST", "/v1/chat/completions", Some(KEY), Some(chat)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Probes, metrics and the tokenizer are open.
    for path in ["/healthz", "/readyz", "/health", "/version", "/metrics"] {
        let (status, _, _) = request(&r, "GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, _, _) =
        request(&r, "POST", "/tokenize", None, Some(json!({"prompt": "hello"}))).await;
    assert_eq!(status, StatusCode::OK);
    // The admin API takes the admin token, not an API key.
    let (status, _, _) = request(&r, "GET", "/v1/adapters", Some(KEY), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = request(&r, "GET", "/v1/adapters", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    // Keys re-read on SIGHUP replace the old ones at once.
    state.set_api_keys(vec![ROTATED.to_owned()]);
    let (status, _, _) = request(&r, "GET", "/v1/models", Some(KEY), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = request(&r, "GET", "/v1/models", Some(ROTATED), None).await;
    assert_eq!(status, StatusCode::OK);
    // Unknown paths are 404 with or without a key.
    let (status, _, _) = request(&r, "GET", "/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Every response is counted by status: 6 refused above, then 2 more (KEY on the admin
    // route and after the rotation).
    let (_, _, metrics) = crate::common::call(&r, "GET", "/metrics", Body::empty()).await;
    assert!(metrics.contains("lorad_http_responses_total{code=\"401\"} 8\n"), "{metrics}");
    assert!(metrics.contains("lorad_http_responses_total{code=\"404\"} 1\n"), "{metrics}");
}
