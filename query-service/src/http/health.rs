//! `GET /health/live` (the process answers) and `GET /health/ready` (Postgres answers; NATS state reported).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tally_shared::api::{Problem, ProblemCode};

use crate::http::error::RETRY_AFTER_SECS;
use crate::http::AppState;

/// How long readiness waits for Postgres before calling it down.
const POSTGRES_PING_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when Postgres answers. NATS is reported but not required: query-service reads only Postgres.
pub async fn ready(State(state): State<AppState>) -> Response {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    let postgres = match tokio::time::timeout(POSTGRES_PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => "up",
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: Postgres is down");
            "down"
        }
        Err(_) => "down",
    };
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "pending",
    };
    let position = state.checkpoint.current();
    let waiting = state.checkpoint.waiting();
    if postgres == "up" {
        let report = json!({
            "status": "ready",
            "postgres": postgres,
            "nats": nats,
            "projection_position": position,
            "read_your_writes_waiting": waiting,
        });
        return Json(report).into_response();
    }
    let problem = Problem::new(ProblemCode::Unavailable, "Postgres does not answer")
        .with("postgres", postgres)
        .with("nats", nats)
        .with("projection_position", position)
        .with("read_your_writes_waiting", waiting);
    tally_edge::problem::problem_response(&problem, Some(RETRY_AFTER_SECS))
}
