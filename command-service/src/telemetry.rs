//! Logs: text for people, JSON lines with `LOG_FORMAT=json`; filters from `RUST_LOG`.
//! (Metrics are recorded through `tally_edge::observe`, shared by every service.)

use tracing_subscriber::EnvFilter;

/// Installs the tracing subscriber once; a second call (tests start several services in one process) is a no-op.
pub fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if format == "json" {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}
