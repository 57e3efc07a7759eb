//! Moving adapters from the registry (disk) into the engine (device). Blocking: callers in async
//! code use `spawn_blocking`.

use std::time::Instant;

use lorad_engine::{EngineError, EngineHandle};
use lorad_store::{Registry, StoreError};

/// Why an adapter could not be made servable.
#[derive(Debug, thiserror::Error)]
pub enum AdapterLoadError {
    /// Reading or validating the registry entry failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine refused the adapter.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Loads registry adapter `name` into `engine` (replacing a loaded one of that name).
pub fn load_adapter(
    engine: &EngineHandle,
    registry: &Registry,
    name: &str,
) -> Result<(), AdapterLoadError> {
    let start = Instant::now();
    let adapter = registry.load(name, &engine.info().base_shape)?;
    engine.add_adapter(&adapter)?;
    tracing::info!(
        adapter = name,
        rank = adapter.max_rank(),
        hash = %adapter.content_hash,
        ms = start.elapsed().as_millis() as u64,
        "adapter loaded"
    );
    Ok(())
}

/// Loads every registry adapter into `engine`; returns how many loaded. A broken adapter (or an
/// unreadable registry) is logged and skipped: it must never keep the server from starting.
pub fn load_all_adapters(engine: &EngineHandle, registry: &Registry, base_name: &str) -> usize {
    let infos = match registry.list() {
        Ok(infos) => infos,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the adapter registry; serving no adapters");
            return 0;
        }
    };
    let mut loaded = 0;
    for info in &infos {
        if info.name == base_name {
            tracing::warn!(adapter = %info.name, "adapter has the base model's name; requests for that name run the base model");
        }
        match load_adapter(engine, registry, &info.name) {
            Ok(()) => loaded += 1,
            Err(e) => {
                tracing::error!(adapter = %info.name, error = %e, "skipping adapter that cannot be loaded")
            }
        }
    }
    tracing::info!(loaded, registered = infos.len(), "adapters loaded");
    loaded
}
