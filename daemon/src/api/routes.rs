//! The router: endpoints, body limit, request tracing, JSON 404/405 fallbacks.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::errors::ApiError;
use super::state::AppState;
use super::{chat, completions, models};

/// The HTTP API over `state`:
///
/// | route | |
/// |---|---|
/// | `POST /v1/completions` | OpenAI completions (streaming or not) |
/// | `POST /v1/chat/completions` | OpenAI chat completions (streaming or not) |
/// | `GET /v1/models`, `GET /v1/models/{model}` | the base model and the adapters |
/// | `GET /healthz` | 200 `ok` while the process is up |
/// | `GET /readyz` | 200 `ready` once the engine serves, 503 before and while shutting down |
///
/// Bodies over [`super::ApiConfig::max_body_bytes`] get 413; unknown paths 404 and wrong
/// methods 405, all with OpenAI JSON error bodies.
pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/v1/completions", post(completions::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::get))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Spans and events at DEBUG: 5xx are logged (at WARN) where they are produced.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
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
