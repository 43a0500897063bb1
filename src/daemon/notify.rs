//! Readiness and status reports to systemd (Type=notify), sent only when systemd asked for them.

pub use sd_notify::NotifyState;

/// Tells systemd (Type=notify) how we are doing, when it asked.
pub fn sd_notify(state: &[NotifyState]) {
    if under_systemd() {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

/// Whether systemd waits for our notifications.
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}
