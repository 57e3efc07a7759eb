//! The router: endpoints, body limit, request tracing, JSON 404/405 fallbacks.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::errors::ApiError;
use super::state::AppState;
use super::{
    admin, auth, chat, completions, metrics, models, receipts, request_id, responses, runtime_lora,
    tokenize,
};

/// The HTTP API over `state`:
///
/// | route | |
/// |---|---|
/// | `POST /v1/completions` | OpenAI completions (streaming or not) |
/// | `POST /v1/chat/completions` | OpenAI chat completions (streaming or not) |
/// | `POST /v1/responses` | OpenAI's Responses API over chat (streaming or not) |
/// | `GET /v1/models`, `GET /v1/models/{model}` | the base model and the adapters |
/// | `GET /v1/receipts/{job_id}` | a signed receipt from the journal |
/// | `POST /tokenize`, `POST /detokenize` | the base model's tokenizer (vLLM's endpoints) |
/// | `GET /healthz` | 200 `ok` while the process is up |
/// | `GET /readyz` | 200 `ready` once the engine serves, 503 before and while shutting down |
/// | `GET /metrics` | Prometheus metrics |
/// | `/v1/adapters...` | the admin API (bearer token; see `admin.rs`) |
/// | `POST /v1/load_lora_adapter`, `/v1/unload_lora_adapter` | vLLM's runtime LoRA API (bearer token; `runtime_lora.rs`) |
///
/// With [`super::ApiConfig::api_keys`], the completions, chat, responses, models and receipts
/// routes need one of them as a bearer token (`auth.rs`). Bodies over
/// [`super::ApiConfig::max_body_bytes`] get 413; unknown paths 404 and wrong
/// methods 405, all with OpenAI JSON error bodies. Every response carries an `X-Request-Id`
/// (`request_id.rs`).
pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    // Adapter uploads are far larger than generation requests: their own limit.
    let admin = Router::new()
        .route("/v1/adapters", get(admin::list).post(admin::upload))
        .route("/v1/adapters/{name}", delete(admin::remove))
        .route("/v1/adapters/{name}/pin", post(admin::pin))
        .route("/v1/adapters/{name}/unpin", post(admin::unpin))
        .layer(DefaultBodyLimit::max(state.config().max_upload_bytes));
    // The OpenAI routes: behind the API keys, when there are any.
    let openai = Router::new()
        .route("/v1/completions", post(completions::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/responses", post(responses::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::get))
        .route("/v1/receipts/{job_id}", get(receipts::get))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_api_key));
    Router::new()
        .merge(admin)
        .merge(openai)
        .route("/v1/load_lora_adapter", post(runtime_lora::load))
        .route("/v1/unload_lora_adapter", post(runtime_lora::unload))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // vLLM's names, which routers and load balancers in front of vLLM probe: `/health`
        // answers 200 only while the server can serve (our readiness).
        .route("/health", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Spans and events at DEBUG: 5xx are logged (at WARN) where they are produced.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        // Every response is counted by status, 401s, 404s and 413s included.
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_response))
        // Outermost: 404s, 405s and 413s get an id too.
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

async fn count_response(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.telemetry().responded(resp.status().as_u16());
    resp
}

async fn healthz() -> &'static str {
    "ok"
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::http(
        StatusCode::NOT_FOUND,
        format!("Invalid URL ({method} {})", uri.path()),
        "unknown_url",
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} is not allowed for {}", uri.path()),
        "method_not_allowed",
    )
}
