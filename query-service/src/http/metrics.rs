//! `GET /metrics`: Prometheus text from the process-wide recorder, which `tally_edge::observe` installs
//! together with the per-request counters and latency histograms.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::http::AppState;

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
