//! vLLM's runtime LoRA endpoints, for the controllers and routers written against vLLM (they
//! load an adapter onto a replica before routing to it, and unload it when it goes cold):
//!
//! | route | body | |
//! |---|---|---|
//! | `POST /v1/load_lora_adapter` | `{"lora_name", "lora_path", "load_inplace"?}` | imports the PEFT directory `lora_path` (on this node) as `lora_name` |
//! | `POST /v1/unload_lora_adapter` | `{"lora_name", "lora_int_id"?}` | removes it, after its running requests finish (30 s at most) |
//!
//! Both answer vLLM's plain-text `Success: ...` and take the admin bearer token: they change
//! what the node serves. Loading goes through the adapter store like `lorad adapter import`
//! (validated against the base, content-addressed, durable before it answers); a name already
//! loaded is vLLM's 400 `has already been loaded` unless `load_inplace` asks to replace it.

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use lorad_store::StoreError;
use serde::Deserialize;

use super::admin::{authorize, blocking, removal_error, store_error};
use super::errors::ApiError;
use super::extract::ApiJson;
use super::state::AppState;

/// How long an unload waits for the requests running on the adapter.
const UNLOAD_DRAIN: Duration = Duration::from_secs(30);

/// Body of `POST /v1/load_lora_adapter`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoadRequest {
    lora_name: String,
    /// A PEFT directory on this node.
    lora_path: String,
    /// Replace an adapter already loaded under `lora_name` (refused while requests run on it).
    #[serde(default)]
    load_inplace: bool,
}

/// Body of `POST /v1/unload_lora_adapter` (vLLM's `lora_int_id` is ignored with any other
/// field: names are what identify adapters here).
#[derive(Debug, Deserialize)]
pub(crate) struct UnloadRequest {
    lora_name: String,
}

/// What a load did.
enum Outcome {
    New,
    Replaced,
    Exists,
}

/// `POST /v1/load_lora_adapter`
pub(crate) async fn load(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoadRequest>,
) -> Result<String, ApiError> {
    authorize(&state, &headers)?;
    let serving = state.serving()?.clone();
    let dir = PathBuf::from(&req.lora_path);
    if !dir.is_dir() {
        return Err(ApiError::bad_request(
            "lora_path",
            format!(
                "'{}' is not a directory on this node; lorad loads PEFT directories (adapter_config.json + adapter_model.safetensors)",
                req.lora_path
            ),
        ));
    }
    let name = req.lora_name.clone();
    let inplace = req.load_inplace;
    let done = blocking(move || -> Result<Outcome, ApiError> {
        let store = serving.manager.store();
        let info = serving.manager.engine().info();
        let existing = match store.get(&name) {
            Ok(e) => Some(e),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(store_error(&name, e)),
        };
        let Some(existing) = existing else {
            store
                .import_dir(&dir, Some(&name), &info.base_shape, &info.base_hash)
                .map_err(|e| store_error(&name, e))?;
            return Ok(Outcome::New);
        };
        if !inplace {
            return Ok(Outcome::Exists);
        }
        // Parsed and validated before the old one goes, so a bad directory leaves it serving.
        let adapter = lorad_store::read_peft_dir(&dir, &name, &info.base_shape)
            .map_err(|e| store_error(&name, e))?;
        if adapter.content_hash == existing.content_hash {
            return Ok(Outcome::Replaced);
        }
        serving.manager.remove(&name, None).map_err(|e| removal_error(&name, e))?;
        store
            .import_adapter(&name, &adapter, &info.base_hash)
            .map_err(|e| store_error(&name, e))?;
        Ok(Outcome::Replaced)
    })
    .await??;
    let name = req.lora_name;
    let what = match done {
        Outcome::Exists => {
            return Err(ApiError::bad_request(
                "lora_name",
                format!("The lora adapter '{name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True."),
            )
            .code("adapter_exists"));
        }
        Outcome::New => "adapter loaded",
        Outcome::Replaced => "adapter reloaded in place",
    };
    tracing::info!(adapter = %name, path = %req.lora_path, "{what}");
    Ok(format!("Success: LoRA adapter '{name}' added successfully."))
}

/// `POST /v1/unload_lora_adapter`
pub(crate) async fn unload(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UnloadRequest>,
) -> Result<String, ApiError> {
    authorize(&state, &headers)?;
    let serving = state.serving()?.clone();
    let name = req.lora_name;
    let owned = name.clone();
    blocking(move || serving.manager.remove(&owned, Some(UNLOAD_DRAIN)))
        .await?
        .map_err(|e| removal_error(&name, e))?;
    tracing::info!(adapter = %name, "adapter unloaded");
    Ok(format!("Success: LoRA adapter '{name}' removed successfully."))
}
