//! `/health/live`, `/health/ready` and `/metrics` on `LISTEN_ADDR`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How long readiness waits for Postgres before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HttpState {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub leading: watch::Receiver<bool>,
    pub metrics: Metrics,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

/// Ready when Postgres answers and the schema exists; NATS is reported but not required (polling covers it).
async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let schema = tokio::time::timeout(READY_TIMEOUT, crate::schema::is_ready(&state.pool)).await;
    let (postgres, schema_ready) = match schema {
        Ok(Ok(ready)) => ("up", ready),
        Ok(Err(_)) | Err(_) => ("down", false),
    };
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Pending => "connecting",
        async_nats::connection::State::Disconnected => "disconnected",
    };
    let role = if *state.leading.borrow() { "leader" } else { "standby" };
    let status = if schema_ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if schema_ready { "ready" } else { "not_ready" },
        "postgres": postgres,
        "schema": if schema_ready { "present" } else { "missing" },
        "nats": nats,
        "role": role,
    });
    (status, Json(body))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
