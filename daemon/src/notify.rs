//! systemd readiness protocol (`Type=notify`): `STATUS=` lines during start-up, `READY=1`
//! once the model is loaded, the store open and the listener bound, `STOPPING=1` when a
//! drain begins. Without `$NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    // A lost notification must not take the daemon down: log it and go on.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// A human-readable start-up or shutdown step (`systemctl status` shows it).
pub(crate) fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The service is ready: listener bound, store open, model loaded.
pub(crate) fn ready(line: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(line)]);
}

/// A graceful stop has begun.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining in-flight requests")]);
}

/// Feeds systemd's watchdog (`WatchdogSec=`) while the engine's scheduler loop answers.
/// Pings every half period; a ping unanswered for that long (a wedged forward step, a dead
/// engine thread) stops the feeding, so systemd kills and restarts the service. Returns at
/// once when no watchdog is configured.
pub(crate) async fn feed_watchdog(engine: lorad_engine::EngineHandle) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let half = period / 2;
    tracing::info!(period_ms = period.as_millis() as u64, "systemd watchdog enabled");
    loop {
        let probe = engine.clone();
        let alive =
            tokio::task::spawn_blocking(move || probe.is_responsive(half)).await.unwrap_or(false);
        if alive {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("the engine's scheduler did not answer; withholding the watchdog");
        }
        tokio::time::sleep(half).await;
    }
}
