//! The admin API: adapter upload, listing with residency tier, pin/unpin, removal. Every route
//! needs `Authorization: Bearer <token>` matching the configured admin token; with no token
//! configured the whole API answers 403, so a node is never administrable by accident.
//!
//! | route | |
//! |---|---|
//! | `GET /v1/adapters` | every stored adapter with its tier (`device`, `host`, `disk`) and the device budget it takes |
//! | `POST /v1/adapters` | multipart upload: `name`, `adapter_config.json`, `adapter_model.safetensors` |
//! | `POST /v1/adapters/{name}/pin`, `.../unpin` | keep resident in every tier, or not (409 when the pins would leave another adapter no room) |
//! | `DELETE /v1/adapters/{name}[?force=true&drain_secs=N]` | remove; 409 while in use unless forced |

use std::time::Duration;

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use lorad_engine::EngineError;
use lorad_store::StoreError;
use lorad_store::disk::StoredInfo;
use serde::{Deserialize, Serialize};

use super::auth;
use super::errors::ApiError;
use super::state::{AppState, Serving, adapter_error};

/// Checks the bearer token (constant-time comparison).
pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.config().admin_token.as_deref() else {
        return Err(ApiError::http(
            StatusCode::FORBIDDEN,
            "the admin API is disabled; start lorad with --admin-token-file",
            "admin_disabled",
        ));
    };
    if auth::same_token(auth::bearer(headers), expected) {
        Ok(())
    } else {
        Err(ApiError::http(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin bearer token",
            "invalid_api_key",
        ))
    }
}

/// A stored adapter and where it lives now.
#[derive(Debug, Serialize)]
pub(crate) struct AdapterEntry {
    #[serde(flatten)]
    info: StoredInfo,
    tier: &'static str,
    in_use: bool,
    /// The device budget (`adapters.device_bytes`) it takes once resident: a bound from its
    /// stored size and `adapters.dtype`, whatever its tier now.
    device_bytes: u64,
}

/// `{"object": "list", "data": [...]}`
#[derive(Debug, Serialize)]
pub(crate) struct AdapterList {
    object: &'static str,
    data: Vec<AdapterEntry>,
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("admin task failed: {e}")))
}

/// `GET /v1/adapters`
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<AdapterList>, ApiError> {
    authorize(&state, &headers)?;
    let serving = state.serving()?.clone();
    let data = blocking(move || {
        if let Err(e) = serving.manager.store().refresh() {
            tracing::warn!(error = %e, "cannot refresh the adapter store index");
        }
        serving
            .manager
            .store()
            .list()
            .into_iter()
            .map(|info| AdapterEntry {
                tier: serving.manager.tier_of(&info.name).as_str(),
                in_use: serving.manager.in_use(&info.name),
                device_bytes: serving.manager.engine().resident_bytes_bound(&info),
                info,
            })
            .collect()
    })
    .await?;
    Ok(Json(AdapterList { object: "list", data }))
}

pub(super) fn store_error(name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::model_not_found(name),
        e @ StoreError::AdapterExists { .. } => {
            ApiError::http(StatusCode::CONFLICT, e.to_string(), "adapter_exists")
        }
        e @ (StoreError::Io { .. } | StoreError::ShortRead { .. }) => {
            tracing::error!(adapter = name, error = %e, "adapter store failure");
            ApiError::internal(e.to_string())
        }
        // Everything else is about the uploaded adapter or the name: the client's to fix.
        e => ApiError::bad_request("adapter", e.to_string()).code("invalid_adapter"),
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::http(e.status(), format!("invalid multipart body: {}", e.body_text()), "invalid_body")
}

/// `POST /v1/adapters` (multipart: `name`, `adapter_config.json`, `adapter_model.safetensors`).
pub(crate) async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<(StatusCode, Json<StoredInfo>), ApiError> {
    authorize(&state, &headers)?;
    let serving = state.serving()?.clone();
    let (mut name, mut config, mut weights) = (None, None, None);
    loop {
        let field = form.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        let field_name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        match field_name.as_str() {
            "name" => {
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::bad_request("name", "'name' is not UTF-8"))?;
                name = Some(text.trim().to_owned());
            }
            "adapter_config.json" => config = Some(bytes),
            "adapter_model.safetensors" => weights = Some(bytes),
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!(
                        "unknown form field '{other}'; expected name, adapter_config.json, adapter_model.safetensors"
                    ),
                ));
            }
        }
    }
    let missing = |f: &str| ApiError::bad_request(f, format!("the form field '{f}' is missing"));
    let name = name.ok_or_else(|| missing("name"))?;
    let config = config.ok_or_else(|| missing("adapter_config.json"))?;
    let weights = weights.ok_or_else(|| missing("adapter_model.safetensors"))?;
    let owned = name.clone();
    let info = blocking(move || {
        let engine = serving.manager.engine();
        let info = engine.info();
        serving.manager.store().import_files(
            &owned,
            &config,
            &weights,
            &info.base_shape,
            &info.base_hash,
        )
    })
    .await?
    .map_err(|e| store_error(&name, e))?;
    tracing::info!(adapter = %info.name, hash = %info.content_hash, "adapter uploaded");
    Ok((StatusCode::CREATED, Json(info)))
}

async fn set_pin(
    state: AppState,
    headers: HeaderMap,
    name: String,
    pinned: bool,
) -> Result<Json<StoredInfo>, ApiError> {
    authorize(&state, &headers)?;
    let serving: Serving = state.serving()?.clone();
    let owned = name.clone();
    blocking(move || {
        // Pinning means resident: paged in first, recorded only once it is.
        match pinned {
            true => serving.manager.pin(&owned)?,
            false => serving.manager.set_pinned(&owned, false)?,
        }
        Ok::<_, EngineError>(serving.manager.store().get(&owned)?)
    })
    .await?
    .map(Json)
    .map_err(|e| match e {
        e @ EngineError::PinLeavesNoRoom { .. } => {
            ApiError::http(StatusCode::CONFLICT, e.to_string(), "pin_budget")
        }
        e => adapter_error(&name, e),
    })
}

/// `POST /v1/adapters/{name}/pin`
pub(crate) async fn pin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<StoredInfo>, ApiError> {
    set_pin(state, headers, name, true).await
}

/// `POST /v1/adapters/{name}/unpin`
pub(crate) async fn unpin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<StoredInfo>, ApiError> {
    set_pin(state, headers, name, false).await
}

/// A failed removal of adapter `name`: 409 while requests run on it.
pub(super) fn removal_error(name: &str, e: EngineError) -> ApiError {
    match e {
        e @ EngineError::AdapterInUse(_) => {
            ApiError::http(StatusCode::CONFLICT, e.to_string(), "adapter_in_use")
        }
        e => adapter_error(name, e),
    }
}

/// Query of `DELETE /v1/adapters/{name}`.
#[derive(Debug, Deserialize)]
pub(crate) struct RemoveQuery {
    /// Remove even while requests run on it: stop admitting new ones, wait for the running ones.
    #[serde(default)]
    force: bool,
    /// How long a forced removal waits for running requests [default 30].
    drain_secs: Option<u64>,
}

/// `{"id": name, "object": "adapter", "deleted": true}`
#[derive(Debug, Serialize)]
pub(crate) struct Deleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

/// `DELETE /v1/adapters/{name}`
pub(crate) async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Deleted>, ApiError> {
    authorize(&state, &headers)?;
    let serving = state.serving()?.clone();
    let drain = q.force.then(|| Duration::from_secs(q.drain_secs.unwrap_or(30)));
    let owned = name.clone();
    blocking(move || serving.manager.remove(&owned, drain))
        .await?
        .map_err(|e| removal_error(&name, e))?;
    tracing::info!(adapter = %name, "adapter removed");
    Ok(Json(Deleted { id: name, object: "adapter", deleted: true }))
}
