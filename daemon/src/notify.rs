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
