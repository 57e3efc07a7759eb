//! `lorad serve`.
//!
//! Start-up order: check flags, open the adapter store, bind the listen address (so a taken port
//! fails at once, before seconds of model loading), serve `/healthz` (200) and `/readyz` (503)
//! while the model is found (fetched on first start), loaded, the engine started and pinned
//! adapters paged in; then readiness flips to 200. Other adapters page in on first use.
//!
//! Shutdown on SIGINT/SIGTERM: readiness goes 503 and new generation requests get 503, the
//! listener closes, in-flight requests get `--shutdown-timeout` seconds to finish (a second
//! signal cuts that short), then the engine stops, which ends whatever is still running with an
//! error event.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lorad_engine::{AdapterManager, EngineConfig, EngineHandle, ResidencyConfig};
use lorad_store::disk::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::common::{device, load, model_to_run, open_store};
use crate::api::{self, ApiConfig, AppState, AttributionMode, Attributor, Twin, has_grad_index};
use crate::cli::{ServeArgs, StoreIo};
use crate::exit::{ExitExt, ExitKind, coded};

/// Runs the server until a signal (or a start-up failure).
pub(crate) fn run(
    home: &Path,
    io: StoreIo,
    args: ServeArgs,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = validate(&args)?;
    let api_config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        admin_token: admin_token(&args)?,
        api_keys: api_keys(&args)?,
        reasoning_parser: args.reasoning_parser,
        ..ApiConfig::default()
    };
    // A template that does not compile fails now, not after the model has loaded.
    if let Some(spec) = &args.model.chat_template {
        super::common::chat_template(spec)?;
    }
    let store = open_store(home, io)?;
    let (receipts, followed) = super::receipts::open_desk(home, &args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lorad-http")
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(
        home.to_owned(),
        args,
        cfg,
        store,
        api_config,
        (receipts, followed),
        config,
    ));
    // A model load abandoned by a signal may still be running on a blocking thread.
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// The limits `serve` refuses before doing anything (also `lorad config check`).
pub(crate) fn validate(args: &ServeArgs) -> anyhow::Result<EngineConfig> {
    let cfg = args.engine_config();
    cfg.validate().exit_kind(ExitKind::Usage).context("invalid engine limits")?;
    if args.max_body_bytes == 0 {
        return Err(coded(ExitKind::Usage, anyhow::anyhow!("--max-body-bytes must be at least 1")));
    }
    if args.served_model_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!("--served-model-name must not be empty"),
        ));
    }
    if args.host_adapter_bytes == 0 {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!("--host-adapter-bytes must be at least 1"),
        ));
    }
    if !(1..=MAX_ADMIT_TIMEOUT_SECS).contains(&args.adapter_admit_timeout) {
        return Err(coded(
            ExitKind::Usage,
            anyhow::anyhow!(
                "--adapter-admit-timeout (adapters.admit_timeout_secs) must be 1 to \
                 {MAX_ADMIT_TIMEOUT_SECS} seconds, not {}",
                args.adapter_admit_timeout
            ),
        ));
    }
    Ok(cfg)
}

/// An hour: a request that waited longer for adapter room has long lost its client.
const MAX_ADMIT_TIMEOUT_SECS: u64 = 3600;

/// The admin API's bearer token: `--admin-token-file`, else `$LORAD_ADMIN_TOKEN`, else none.
pub(crate) fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.admin_token_file {
        warn_if_world_readable(path, "the admin token file");
    }
    read_admin_token(args)
}

/// [`admin_token`] without the permission warning (read again to compare with the API keys).
fn read_admin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match &args.admin_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .exit_kind(ExitKind::Config)
                .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?,
        ),
        None => std::env::var("LORAD_ADMIN_TOKEN").ok(),
    };
    match token.map(|t| t.trim().to_owned()) {
        Some(t) if t.len() < 16 => Err(coded(
            ExitKind::Config,
            anyhow::anyhow!("the admin token must be at least 16 characters"),
        )),
        other => Ok(other),
    }
}

/// The API keys of the OpenAI routes: `--api-key-file` (one a line; blank lines and `#`
/// comments skipped), else `$LORAD_API_KEY` (one key), else none (those routes are open). Each
/// is at least 16 characters without whitespace, and none is the admin token.
pub(crate) fn api_keys(args: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let (text, source) = match &args.api_key_file {
        Some(path) => {
            warn_if_world_readable(path, "the API key file");
            (
                std::fs::read_to_string(path)
                    .exit_kind(ExitKind::Config)
                    .with_context(|| format!("cannot read --api-key-file {}", path.display()))?,
                format!("--api-key-file {}", path.display()),
            )
        }
        None => match std::env::var("LORAD_API_KEY") {
            Ok(key) => (key, "$LORAD_API_KEY".to_owned()),
            Err(_) => return Ok(Vec::new()),
        },
    };
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let key = line.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        if key.len() < 16 || key.contains(char::is_whitespace) {
            return Err(coded(
                ExitKind::Config,
                anyhow::anyhow!(
                    "{source}, line {}: an API key is at least 16 characters without spaces",
                    i + 1
                ),
            ));
        }
        keys.push(key.to_owned());
    }
    if keys.is_empty() {
        return Err(coded(ExitKind::Config, anyhow::anyhow!("{source} holds no API key")));
    }
    if let Ok(Some(admin)) = read_admin_token(args)
        && keys.contains(&admin)
    {
        return Err(coded(
            ExitKind::Config,
            anyhow::anyhow!(
                "{source}: an API key must differ from the admin token (its clients could administer the node)"
            ),
        ));
    }
    Ok(keys)
}

/// Secrets under /etc/lorad are `root:lorad 0640`: readable by the service, not by every user.
fn warn_if_world_readable(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(path = %path.display(), "{what} is readable by every user; chmod o-rwx it");
    }
}

async fn serve(
    home: PathBuf,
    args: ServeArgs,
    cfg: EngineConfig,
    store: Arc<Store>,
    api_config: ApiConfig,
    (receipts, followed): (Option<Arc<api::ReceiptDesk>>, Option<super::receipts::FollowedState>),
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .exit_kind(ExitKind::Unavailable)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("cannot read the bound address")?;
    let state = AppState::new(store.clone(), api_config);
    if let Some(desk) = receipts {
        state.set_receipts(desk);
    }
    if let Some(followed) = followed {
        state.set_lightclient(followed);
    }
    state.set_gpu(Arc::new(crate::gpu::GpuMonitor::init()));
    let app = api::router(state.clone());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    tracing::info!(%addr, "listening; /readyz reports 503 until the model is loaded");
    crate::notify::status(&format!("listening on {addr}; loading the model"));

    let mut signal = pin!(shutdown_signal());
    let store_for_reload = store.clone();
    let started = tokio::select! {
        r = start_engine(home, args.clone(), cfg, store) => r,
        sig = &mut signal => {
            tracing::info!(signal = sig, "signal received while starting; exiting");
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Ok(());
        }
    };
    let (manager, name, attributor) = match started {
        Ok(ok) => ok,
        Err(e) => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            return Err(e);
        }
    };
    let engine = manager.engine().clone();
    let reconciler = tokio::spawn(reconcile_loop(manager.clone()));
    let reloader = tokio::spawn(reload_on_sighup(
        manager.clone(),
        store_for_reload,
        config,
        (state.clone(), args.clone()),
    ));
    let watchdog = tokio::spawn(crate::notify::feed_watchdog(engine.clone()));
    state.set_ready_with(manager, name.clone(), attributor);
    tracing::info!(%addr, model = %name, "ready");
    crate::notify::ready(&format!("serving {name} on {addr}"));

    tokio::select! {
        sig = &mut signal => tracing::info!(signal = sig, "shutting down"),
        r = &mut server => {
            // The accept loop only ends on shutdown; anything else is a bug worth a restart.
            engine.shutdown();
            return match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task failed")),
            };
        }
    }
    reconciler.abort();
    reloader.abort();
    watchdog.abort();
    crate::notify::stopping();
    state.begin_drain();
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(args.shutdown_timeout);
    let drained = tokio::select! {
        _ = &mut server => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(secs = grace.as_secs(), "in-flight requests did not finish in time; cancelling them");
            false
        }
        sig = shutdown_signal() => {
            tracing::warn!(signal = sig, "second signal; cancelling in-flight requests");
            false
        }
    };
    // Stopping the engine ends any request still running with an error event, which closes its
    // response, which lets the server finish.
    let stopping = engine.clone();
    let _ = tokio::task::spawn_blocking(move || stopping.shutdown()).await;
    if !drained && tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
        tracing::warn!("connections still open after the engine stopped; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Finds and loads the model, starts the engine and the adapter residency manager, pages in the
/// pinned adapters.
async fn start_engine(
    home: PathBuf,
    args: ServeArgs,
    cfg: EngineConfig,
    store: Arc<Store>,
) -> anyhow::Result<(Arc<AdapterManager>, String, Option<Arc<Attributor>>)> {
    tokio::task::spawn_blocking(move || {
        let device = device(args.model.device)?;
        crate::notify::status("finding the model (the default model is fetched on first start)");
        let path = model_to_run(&home, args.model.model.as_deref())?;
        crate::notify::status(&format!("loading the model {}", path.display()));
        let model = load(&path, &args.model, device)?;
        let name = args.served_model_name.clone().unwrap_or_else(|| model.name.clone());
        // The differentiable twin shares the engine's f32 weights; over other dtypes it is an
        // f32 copy, made now only when a gradient index exists (else on first use).
        let attributor = match args.attribution {
            AttributionMode::Off => None,
            mode => {
                crate::notify::status("preparing attribution");
                let root = home.join("attribution");
                let diff = Twin::new(&model.config, &model.weights, has_grad_index(&root))
                    .map_err(anyhow::Error::msg)
                    .exit_kind(ExitKind::Config)
                    .context("cannot prepare the model for attribution")?;
                let datanets = super::common::datanets_dir(&home);
                let tok = model.tokenizer.clone();
                Some(Arc::new(Attributor::new(mode, diff, store.clone(), root, datanets, tok)))
            }
        };
        crate::notify::status("starting the engine");
        let start = Instant::now();
        let engine = EngineHandle::start(model, cfg.clone())
            .exit_kind(ExitKind::Config)
            .context("cannot start the engine")?;
        tracing::info!(
            max_batch_size = cfg.max_batch_size,
            max_batch_tokens = cfg.max_batch_tokens,
            max_waiting = cfg.max_waiting,
            kv_cache_tokens = engine.kv_capacity_tokens(),
            context = engine.info().max_seq_len,
            adapter_dtype = ?cfg.adapter_dtype,
            ms = start.elapsed().as_millis() as u64,
            "engine started"
        );
        let residency = ResidencyConfig {
            host_cache_bytes: args.host_adapter_bytes,
            admit_timeout: Duration::from_secs(args.adapter_admit_timeout),
        };
        let manager = AdapterManager::new(store.clone(), engine, residency)
            .exit_kind(ExitKind::Usage)
            .context("invalid adapter residency limits")?;
        let manager = Arc::new(manager);
        crate::notify::status("paging in pinned adapters");
        preload_pinned(&manager, &store, &name);
        Ok((manager, name, attributor))
    })
    .await
    .context("the start-up task failed")?
}

/// How often the server re-reads the store index to notice imports and removals made by other
/// processes (the CLI).
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// Periodically drops adapters removed or replaced in the store from the host and device tiers.
async fn reconcile_loop(manager: Arc<AdapterManager>) {
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let m = manager.clone();
        match tokio::task::spawn_blocking(move || m.reconcile()).await {
            Ok(Ok(dropped)) => {
                for name in dropped {
                    tracing::info!(adapter = %name, "adapter removed or replaced in the store; unloaded");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot re-read the adapter store index"),
            Err(e) => tracing::warn!(error = %e, "store reconcile task failed"),
        }
    }
}

/// Pages in every pinned adapter; one that fails is logged and skipped (never blocks start-up).
fn preload_pinned(manager: &AdapterManager, store: &Store, base_name: &str) {
    let infos = store.list();
    let mut loaded = 0;
    for info in infos.iter().filter(|i| i.pinned) {
        if info.name == base_name {
            tracing::warn!(adapter = %info.name, "adapter has the base model's name; requests for that name run the base model");
        }
        match manager.acquire(&info.name) {
            Ok(_) => loaded += 1,
            Err(e) => {
                tracing::error!(adapter = %info.name, error = %e, "cannot page in pinned adapter")
            }
        }
    }
    tracing::info!(
        registered = infos.len(),
        pinned_resident = loaded,
        io = store.io_backend().as_str(),
        "adapter store open"
    );
}

/// On SIGHUP: re-reads the adapter store at once (imports, removals, pins made with the CLI;
/// normally noticed within a few seconds), re-reads the API key file (rotation), and applies
/// what can change live from the configuration file: `log_level`. Everything else takes a
/// restart, and the log says so.
async fn reload_on_sighup(
    manager: Arc<AdapterManager>,
    store: Arc<Store>,
    config: Option<PathBuf>,
    (state, args): (AppState, ServeArgs),
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads are off");
            return;
        }
    };
    while hup.recv().await.is_some() {
        crate::notify::status("reloading (SIGHUP)");
        let (m, s) = (manager.clone(), store.clone());
        let adapters = tokio::task::spawn_blocking(move || {
            let dropped = m.reconcile();
            let name = m.engine().info().name.clone();
            preload_pinned(&m, &s, &name);
            dropped
        })
        .await;
        match adapters {
            Ok(Ok(dropped)) => tracing::info!(unloaded = dropped.len(), "adapter store re-read"),
            Ok(Err(e)) => tracing::warn!(error = %e, "re-reading the adapter store failed"),
            Err(e) => tracing::warn!(error = %e, "the reload task failed"),
        }
        // Key rotation without a restart; a file that no longer reads keeps the old keys.
        if args.api_key_file.is_some() {
            match api_keys(&args) {
                Ok(keys) => {
                    tracing::info!(api_keys = keys.len(), "API keys re-read");
                    state.set_api_keys(keys);
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "API keys not re-read; the previous ones stay in force"
                ),
            }
        }
        let level = match config.as_deref().map(crate::config::load) {
            None => None,
            Some(Ok(file)) => file.log_level,
            Some(Err(e)) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the configuration file is not valid; nothing reloaded from it"
                );
                None
            }
        };
        if let Some(level) = &level {
            match crate::logging::set_level(level) {
                Ok(()) => tracing::info!(log_level = %level, "log level reloaded"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "log level not changed"),
            }
        }
        tracing::info!(
            "reloaded on SIGHUP (settings other than log_level and the API keys take effect at the next restart)"
        );
        crate::notify::status("serving (reloaded)");
    }
}

/// Resolves on SIGINT or SIGTERM with the signal's name. If a handler cannot be installed, that
/// signal is logged and never fires (rather than shutting down at once).
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGINT");
                std::future::pending().await
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        s = interrupt => s,
        s = terminate => s,
    }
}
