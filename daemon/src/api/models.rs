//! `GET /v1/models` and `GET /v1/models/{model}`: the base model and every adapter in the store
//! (paged in on first use) or resident in the engine.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};

use super::errors::ApiError;
use super::openai::{ModelCard, ModelList};
use super::state::{AppState, Serving};

const OWNER: &str = "lorad";

fn base_card(serving: &Serving) -> ModelCard {
    ModelCard {
        id: serving.model_name.clone(),
        object: "model",
        created: serving.created,
        owned_by: OWNER,
        parent: None,
        max_model_len: serving.engine.info().max_seq_len,
    }
}

fn adapter_card(serving: &Serving, name: String, created: Option<u64>) -> ModelCard {
    ModelCard {
        id: name,
        object: "model",
        created: created.unwrap_or(serving.created),
        owned_by: OWNER,
        parent: Some(serving.model_name.clone()),
        max_model_len: serving.engine.info().max_seq_len,
    }
}

/// Lists the base model, then adapters sorted by name.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let serving = state.serving()?;
    let store = state.store().clone();
    let registered = tokio::task::spawn_blocking(move || {
        if let Err(e) = store.refresh() {
            tracing::warn!(error = %e, "cannot refresh the adapter store index");
        }
        store.list()
    })
    .await
    .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?;
    let mut adapters: BTreeMap<String, Option<u64>> =
        serving.engine.adapter_names().into_iter().map(|n| (n, None)).collect();
    for info in registered {
        adapters.insert(info.name, Some(info.created));
    }
    adapters.remove(&serving.model_name);
    let mut data = vec![base_card(serving)];
    data.extend(adapters.into_iter().map(|(name, created)| adapter_card(serving, name, created)));
    Ok(Json(ModelList { object: "list", data }))
}

/// One model's card, or 404.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    let serving = state.serving()?;
    Ok(Json(card(&state, serving, model).await?))
}

/// The card of `model` (the base or an adapter in the store or the engine), without paging
/// anything in; 404 for any other name.
pub(crate) async fn card(
    state: &AppState,
    serving: &Serving,
    model: String,
) -> Result<ModelCard, ApiError> {
    if model == serving.model_name {
        return Ok(base_card(serving));
    }
    let store = state.store().clone();
    let name = model.clone();
    let created = tokio::task::spawn_blocking(move || store.get(&name).ok().map(|i| i.created))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?;
    if created.is_some() || serving.engine.has_adapter(&model) {
        return Ok(adapter_card(serving, model, created));
    }
    Err(ApiError::model_not_found(&model))
}
