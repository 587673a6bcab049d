//! `/health/live`, `/health/ready` and `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// How long readiness waits for Postgres to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"live\"}`", body = serde_json::Value)))]
pub async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "live"}))
}

/// Ready when Postgres answers; NATS is reported but not required (projections poll without it).
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "`status`, `postgres` (`up`) and `nats` (`connected`, `connecting`, `disconnected` or `disabled`)", body = serde_json::Value),
    (status = 503, description = "Postgres does not answer", body = serde_json::Value)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let postgres = matches!(
        tokio::time::timeout(READINESS_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool)).await,
        Ok(Ok(_))
    );
    let nats = match &state.nats {
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => "connected",
            async_nats::connection::State::Pending => "connecting",
            async_nats::connection::State::Disconnected => "disconnected",
        },
        None => "disabled",
    };
    let status = if postgres { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if postgres { "ready" } else { "unavailable" },
        "postgres": if postgres { "up" } else { "down" },
        "nats": nats,
    });
    (status, Json(body)).into_response()
}

/// Prometheus text: `tally_http_requests_total` and `tally_http_request_duration_seconds` by route, method and
/// status; appends, conflicts, retries, batch sizes, idempotent replays, publish failures.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render()).into_response()
}
