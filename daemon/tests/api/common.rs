//! Shared set-up: a real engine on the real default model behind the real router, a temporary
//! home with an adapter store holding a random adapter, and small HTTP helpers over `oneshot`.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use lorad::api::{ApiConfig, AppState, router};
use lorad_engine::{AdapterManager, EngineConfig, EngineHandle, ResidencyConfig};
use lorad_model::{LoadOptions, testing::test_model_path};
use lorad_store::disk::{Store, StoreConfig};
use lorad_store::{RandomAdapterSpec, TensorDtype};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// The base model's served name.
pub const BASE: &str = "SmolLM2-135M-Instruct";

/// A server under test.
pub struct Server {
    pub router: Router,
    pub state: AppState,
    pub engine: EngineHandle,
    pub manager: Arc<AdapterManager>,
    pub home: TempDir,
}

/// The admin token of test servers.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Engine limits for tests: a small KV cache, the context capped to it (as `lorad serve` does).
pub fn test_config() -> EngineConfig {
    EngineConfig { kv_cache_tokens: 2048, max_seq_len: Some(2048), ..EngineConfig::default() }
}

/// Starts an engine on the real model; `None` (skipped loudly) without the model.
pub fn engine(cfg: EngineConfig) -> Option<EngineHandle> {
    let path = test_model_path()?;
    let model = lorad_model::load_model(&path, &LoadOptions::default()).expect("load model");
    Some(EngineHandle::start(model, cfg).expect("start engine"))
}

/// Writes a random PEFT adapter to `dir` and imports it into `store` as `name`.
pub fn import_random(engine: &EngineHandle, store: &Store, scratch: &Path, name: &str, seed: u64) {
    let base = engine.info().base_shape;
    let adapter =
        lorad_store::random_adapter(name, &base, &RandomAdapterSpec { seed, ..Default::default() });
    let dir = scratch.join(format!("src-{name}"));
    lorad_store::write_peft_dir(&dir, &adapter, TensorDtype::F32).expect("write adapter");
    store.import_dir(&dir, Some(name), &base, &engine.info().base_hash).expect("import adapter");
}

/// The API configuration of test servers (admin API on).
pub fn api_config() -> ApiConfig {
    ApiConfig { admin_token: Some(ADMIN_TOKEN.to_owned()), ..ApiConfig::default() }
}

/// A residency manager over `store` for `engine`.
pub fn manager(store: &Arc<Store>, engine: &EngineHandle) -> Arc<AdapterManager> {
    Arc::new(
        AdapterManager::new(store.clone(), engine.clone(), ResidencyConfig::default())
            .expect("manager"),
    )
}

/// A ready server over a fresh engine; the store holds adapter `ada`, made resident before the
/// first request.
pub fn server(cfg: EngineConfig) -> Option<Server> {
    let engine = engine(cfg)?;
    let home = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(&home.path().join("store"), StoreConfig::default()).expect("open store"),
    );
    import_random(&engine, &store, home.path(), "ada", 7);
    let manager = manager(&store, &engine);
    manager.acquire("ada").expect("page in ada");
    let state = AppState::new(store, api_config());
    assert!(state.set_ready(manager.clone(), BASE.to_owned()));
    Some(Server { router: router(state.clone()), state, engine, manager, home })
}

/// One server shared by the tests that do not look at engine counters.
pub fn shared() -> Option<&'static Server> {
    static SHARED: OnceLock<Option<Server>> = OnceLock::new();
    SHARED.get_or_init(|| server(test_config())).as_ref()
}

/// Generous bound for any single request in tests.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends a request and returns the raw response.
pub async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> axum::response::Response {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    tokio::time::timeout(TIMEOUT, router.clone().oneshot(req))
        .await
        .expect("timed out")
        .expect("infallible")
}

/// Status, headers and body text.
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, String) {
    let resp = send(router, method, path, body).await;
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(TIMEOUT, axum::body::to_bytes(body, usize::MAX))
        .await
        .expect("timed out")
        .expect("body");
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

/// POSTs JSON; returns status, headers and the body parsed as JSON (Null if it is not JSON).
pub async fn post(router: &Router, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, text) = call(router, "POST", path, body.to_string()).await;
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// GETs; returns status and JSON body.
pub async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
    let (status, _, text) = call(router, "GET", path, Body::empty()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an OpenAI error body with `status` and `param`; returns the error object.
pub fn assert_error(
    got: &(StatusCode, HeaderMap, Value),
    status: StatusCode,
    param: Option<&str>,
) -> Value {
    let (s, _, body) = got;
    assert_eq!(*s, status, "body: {body}");
    let err = body.get("error").unwrap_or_else(|| panic!("no error object in {body}")).clone();
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{err}");
    assert!(err["type"].is_string(), "{err}");
    assert_eq!(err["param"].as_str(), param, "{err}");
    err
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Polls `f` until it is true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

pub const BOUNDARY: &str = "lorad-test-boundary-7d3f";

/// A multipart body with the given (field, bytes) parts.
pub fn multipart(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub async fn admin(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"));
    }
    let resp = tokio::time::timeout(
        TIMEOUT,
        s.router.clone().oneshot(req.body(Body::from(body)).expect("request")),
    )
    .await
    .expect("timed out")
    .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The PEFT files of a random adapter for the served base.
pub fn peft_files(s: &Server, name: &str, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let base = s.engine.info().base_shape;
    let a =
        lorad_store::random_adapter(name, &base, &RandomAdapterSpec { seed, ..Default::default() });
    let dir = s.home.path().join(format!("upload-{name}"));
    lorad_store::write_peft_dir(&dir, &a, TensorDtype::BF16).expect("write");
    (
        std::fs::read(dir.join("adapter_config.json")).expect("config"),
        std::fs::read(dir.join("adapter_model.safetensors")).expect("weights"),
    )
}
