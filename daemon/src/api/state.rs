//! Shared state of the HTTP API. The router exists before the engine does: the daemon binds and
//! answers `/healthz` while the model loads, and readiness flips once [`AppState::set_ready`] is
//! called; it flips back when shutdown begins ([`AppState::begin_drain`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use lorad_engine::{AdapterManager, EngineError, EngineHandle, ResidentAdapter};
use lorad_store::StoreError;
use lorad_store::disk::Store;

use super::attribution::Attributor;
use super::errors::ApiError;
use super::ids::unix_now;
use super::receipts::ReceiptDesk;
use super::telemetry::Telemetry;

/// Compiled structured-output grammars kept (each with its cached token masks).
const GRAMMAR_CACHE: usize = 64;

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Bearer token of the admin API; `None` disables it (403).
    pub admin_token: Option<String>,
    /// Largest accepted adapter upload (`POST /v1/adapters`).
    pub max_upload_bytes: usize,
    /// Bearer keys the OpenAI routes accept at start (`auth.rs`; [`AppState::set_api_keys`]
    /// replaces them); empty: those routes are open.
    pub api_keys: Vec<String>,
    /// How chat answers' thinking is split from their content (`--reasoning-parser`); `None`:
    /// not split.
    pub reasoning_parser: Option<super::ReasoningParser>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            admin_token: None,
            max_upload_bytes: 1 << 30,
            api_keys: Vec::new(),
            reasoning_parser: None,
        }
    }
}

/// What exists once the engine is up.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The engine.
    pub engine: EngineHandle,
    /// Adapter residency (store → host cache → the engine's working set).
    pub manager: Arc<AdapterManager>,
    /// The id clients use for the base model.
    pub model_name: String,
    /// When serving started (Unix seconds): the base model's `created`.
    pub created: u64,
    /// Attributes adapter answers (`None`: attribution is off).
    pub attributor: Option<Arc<Attributor>>,
    /// Signs receipts behind the gate (`None`: receipts are off).
    pub receipts: Option<Arc<ReceiptDesk>>,
    /// Request, token and latency counters for `/metrics`.
    pub(crate) telemetry: Arc<Telemetry>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    config: ApiConfig,
    serving: OnceLock<Serving>,
    receipts: OnceLock<Arc<ReceiptDesk>>,
    gpu: OnceLock<Arc<crate::gpu::GpuMonitor>>,
    telemetry: Arc<Telemetry>,
    lightclient: OnceLock<Arc<std::sync::Mutex<lorad_lightclient::verified::VerifiedState>>>,
    draining: AtomicBool,
    /// Compiled structured-output grammars, by constraint.
    grammars: lorad_grammar::GrammarCache,
    /// The API keys in force: [`ApiConfig::api_keys`] until [`AppState::set_api_keys`].
    api_keys: RwLock<Arc<[String]>>,
}

/// Cheap to clone; every handler gets one.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What a request's `model` resolved to.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The base model.
    Base,
    /// A resident adapter, leased until the request is queued (the engine then holds its own
    /// lease), so it cannot be evicted in between.
    Adapter(Arc<ResidentAdapter>),
}

impl AppState {
    /// State over the adapter `store`, not ready yet.
    pub fn new(store: Arc<Store>, config: ApiConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                api_keys: RwLock::new(config.api_keys.clone().into()),
                config,
                serving: OnceLock::new(),
                receipts: OnceLock::new(),
                gpu: OnceLock::new(),
                telemetry: Arc::new(Telemetry::default()),
                lightclient: OnceLock::new(),
                draining: AtomicBool::new(false),
                grammars: lorad_grammar::GrammarCache::new(GRAMMAR_CACHE),
            }),
        }
    }

    /// The API keys the OpenAI routes accept now (empty: they are open).
    pub(crate) fn api_keys(&self) -> Arc<[String]> {
        // A poisoned lock still holds a whole list: the writer only swaps the Arc.
        self.inner.api_keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the API keys (a key file re-read on SIGHUP): requests from now on need one of
    /// `keys`; those already let in run on.
    pub fn set_api_keys(&self, keys: Vec<String>) {
        *self.inner.api_keys.write().unwrap_or_else(PoisonError::into_inner) = keys.into();
    }

    /// Starts serving `manager`'s engine with the base model under `model_name`. Only the first
    /// call has an effect; returns whether this one did.
    pub fn set_ready(&self, manager: Arc<AdapterManager>, model_name: String) -> bool {
        self.set_ready_with(manager, model_name, None)
    }

    /// [`Self::set_ready`], attributing adapter answers with `attributor`.
    pub fn set_ready_with(
        &self,
        manager: Arc<AdapterManager>,
        model_name: String,
        attributor: Option<Arc<Attributor>>,
    ) -> bool {
        let engine = manager.engine().clone();
        let receipts = self.inner.receipts.get().cloned();
        let telemetry = self.inner.telemetry.clone();
        let serving = Serving {
            engine,
            manager,
            model_name,
            created: unix_now(),
            attributor,
            receipts,
            telemetry,
        };
        self.inner.serving.set(serving).is_ok()
    }

    /// Turns receipts on (call before [`Self::set_ready`]). Only the first call has an effect;
    /// returns whether this one did.
    pub fn set_receipts(&self, desk: Arc<ReceiptDesk>) -> bool {
        self.inner.receipts.set(desk).is_ok()
    }

    /// Reports GPU health on `/metrics` through `gpu`. Only the first call has an effect.
    pub fn set_gpu(&self, gpu: Arc<crate::gpu::GpuMonitor>) -> bool {
        self.inner.gpu.set(gpu).is_ok()
    }

    /// Shows the light client's verified L2 head on `/metrics`. Only the first call counts.
    pub fn set_lightclient(
        &self,
        state: Arc<std::sync::Mutex<lorad_lightclient::verified::VerifiedState>>,
    ) -> bool {
        self.inner.lightclient.set(state).is_ok()
    }

    /// The light client's verified L2 blocks, when its follower runs.
    pub(crate) fn lightclient(
        &self,
    ) -> Option<&Arc<std::sync::Mutex<lorad_lightclient::verified::VerifiedState>>> {
        self.inner.lightclient.get()
    }

    /// The API's request counters.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The GPU monitor, once set.
    pub(crate) fn gpu(&self) -> Option<&Arc<crate::gpu::GpuMonitor>> {
        self.inner.gpu.get()
    }

    /// The receipt desk, when receipts are on.
    pub(crate) fn receipts(&self) -> Option<Arc<ReceiptDesk>> {
        self.inner.receipts.get().cloned()
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

    /// The adapter store.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The serving engine, or 503 while starting or shutting down.
    pub(crate) fn grammars(&self) -> &lorad_grammar::GrammarCache {
        &self.inner.grammars
    }

    pub(crate) fn serving(&self) -> Result<&Serving, ApiError> {
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        self.inner
            .serving
            .get()
            .ok_or_else(|| ApiError::unavailable("the model is still loading; retry shortly"))
    }

    /// Resolves a request's `model`: the base name, or an adapter, which is paged in through
    /// the tiers now if it is not resident (on a blocking thread: the engine keeps stepping).
    /// Unknown names are 404 `model_not_found`.
    pub(crate) async fn resolve(&self, serving: &Serving, name: &str) -> Result<Target, ApiError> {
        if name == serving.model_name {
            return Ok(Target::Base);
        }
        if let Some(lease) = serving.manager.resident(name) {
            return Ok(Target::Adapter(lease));
        }
        let (manager, owned) = (serving.manager.clone(), name.to_owned());
        let acquired = tokio::task::spawn_blocking(move || manager.acquire(&owned)).await;
        match acquired {
            Ok(Ok(lease)) => Ok(Target::Adapter(lease)),
            Ok(Err(e)) => Err(adapter_error(name, e)),
            Err(e) => Err(ApiError::internal(format!("loading the adapter '{name}' failed: {e}"))),
        }
    }
}

/// Maps a failed page-in of adapter `name` to an API error.
pub(crate) fn adapter_error(name: &str, e: EngineError) -> ApiError {
    match e {
        EngineError::Store(e)
            if matches!(*e, StoreError::NotFound { .. } | StoreError::InvalidName { .. }) =>
        {
            ApiError::model_not_found(name)
        }
        e @ EngineError::AdapterRemoving(_) => {
            let mut err = ApiError::model_not_found(name);
            err.message = e.to_string();
            err
        }
        e @ (EngineError::AdapterPoolFull { .. }
        | EngineError::AdmitTimeout { .. }
        | EngineError::DrainTimeout { .. }) => {
            ApiError::unavailable(e.to_string()).code("adapter_capacity")
        }
        e => {
            tracing::error!(adapter = name, error = %e, "adapter page-in failed");
            ApiError::internal(format!("the adapter '{name}' cannot be served: {e}"))
                .code("adapter_unavailable")
        }
    }
}
