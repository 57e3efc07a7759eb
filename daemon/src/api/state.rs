//! Shared state of the HTTP API. The router exists before the engine does: the daemon binds and
//! answers `/healthz` while the model loads, and readiness flips once [`AppState::set_ready`] is
//! called; it flips back when shutdown begins ([`AppState::begin_drain`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use lorad_engine::EngineHandle;
use lorad_store::{Registry, StoreError};

use super::errors::ApiError;
use super::ids::unix_now;
use crate::adapters::AdapterLoadError;

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { max_body_bytes: 4 * 1024 * 1024 }
    }
}

/// What exists once the engine is up.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The engine.
    pub engine: EngineHandle,
    /// The id clients use for the base model.
    pub model_name: String,
    /// When serving started (Unix seconds): the base model's `created`.
    pub created: u64,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    config: ApiConfig,
    serving: OnceLock<Serving>,
    draining: AtomicBool,
    /// Serializes on-demand adapter loads so concurrent first requests load an adapter once.
    load_lock: tokio::sync::Mutex<()>,
}

/// Cheap to clone; every handler gets one.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What a request's `model` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The base model.
    Base,
    /// A loaded adapter.
    Adapter(String),
}

impl AppState {
    /// State over `registry`, not ready yet.
    pub fn new(registry: Registry, config: ApiConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                config,
                serving: OnceLock::new(),
                draining: AtomicBool::new(false),
                load_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Starts serving `engine` with the base model under `model_name`. Only the first call has
    /// an effect; returns whether this one did.
    pub fn set_ready(&self, engine: EngineHandle, model_name: String) -> bool {
        self.inner.serving.set(Serving { engine, model_name, created: unix_now() }).is_ok()
    }

    /// Stops accepting generation requests (503) and reports not ready, for shutdown.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the engine is up and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.inner.serving.get().is_some() && !self.inner.draining.load(Ordering::SeqCst)
    }

    /// The HTTP limits.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The adapter registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The serving engine, or 503 while starting or shutting down.
    pub(crate) fn serving(&self) -> Result<&Serving, ApiError> {
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        self.inner
            .serving
            .get()
            .ok_or_else(|| ApiError::unavailable("the model is still loading; retry shortly"))
    }

    /// Resolves a request's `model`: the base name, a loaded adapter, or a registry adapter
    /// imported since start-up, which is loaded now. Anything else is 404 `model_not_found`.
    pub(crate) async fn resolve(&self, serving: &Serving, name: &str) -> Result<Target, ApiError> {
        if name == serving.model_name {
            return Ok(Target::Base);
        }
        if serving.engine.has_adapter(name) {
            return Ok(Target::Adapter(name.to_owned()));
        }
        if !self.inner.registry.contains(name) {
            return Err(ApiError::model_not_found(name));
        }
        let _guard = self.inner.load_lock.lock().await;
        if serving.engine.has_adapter(name) {
            return Ok(Target::Adapter(name.to_owned()));
        }
        let (engine, registry, owned) =
            (serving.engine.clone(), self.inner.registry.clone(), name.to_owned());
        let loaded = tokio::task::spawn_blocking(move || {
            crate::adapters::load_adapter(&engine, &registry, &owned)
        })
        .await;
        match loaded {
            Ok(Ok(())) => Ok(Target::Adapter(name.to_owned())),
            // Removed between the check and the load.
            Ok(Err(AdapterLoadError::Store(StoreError::NotFound { .. }))) => {
                Err(ApiError::model_not_found(name))
            }
            Ok(Err(e)) => {
                tracing::error!(adapter = name, error = %e, "on-demand adapter load failed");
                Err(ApiError::internal(format!("the adapter '{name}' could not be loaded: {e}")))
            }
            Err(e) => Err(ApiError::internal(format!("loading the adapter '{name}' failed: {e}"))),
        }
    }
}
