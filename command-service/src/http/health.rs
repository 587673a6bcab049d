//! `/health/live`, `/health/ready` and `/metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// How long readiness waits for Postgres to answer.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "live"}))
}

/// Ready when Postgres answers; NATS is reported but not required (projections poll without it).
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

pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render()).into_response()
}
