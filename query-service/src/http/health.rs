//! `GET /health/live` (the process answers) and `GET /health/ready` (Postgres answers; its role, a replica's
//! lag and NATS state reported).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tally_shared::api::{Problem, ProblemCode};

use crate::database;
use crate::http::error::RETRY_AFTER_SECS;
use crate::http::AppState;

/// How long readiness waits for Postgres before calling it down.
const POSTGRES_PING_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when Postgres answers. NATS is reported but not required: query-service reads only Postgres. The
/// report says which server the reads go to and, on a replica, how far behind the primary it is (SPEC §11).
pub async fn ready(State(state): State<AppState>) -> Response {
    let role = match tokio::time::timeout(POSTGRES_PING_TIMEOUT, database::server_role(&state.pool)).await {
        Ok(Ok(role)) => Some(role),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: Postgres is down");
            None
        }
        Err(_) => None,
    };
    let nats = match state.nats.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "pending",
    };
    let server = tally_edge::servers::server_name(&state.pool.connect_options());
    let position = state.checkpoint.current();
    let waiting = state.checkpoint.waiting();
    let Some(role) = role else {
        let problem = Problem::new(ProblemCode::Unavailable, "Postgres does not answer")
            .with("postgres", "down")
            .with("postgres_server", server)
            .with("nats", nats)
            .with("projection_position", position)
            .with("read_your_writes_waiting", waiting);
        return tally_edge::problem::problem_response(&problem, Some(RETRY_AFTER_SECS));
    };
    let replica = role.in_recovery.then(|| {
        json!({
            "replay_lag_bytes": role.replay_lag_bytes,
            "last_replay_age_ms": role.last_replay_age_ms,
            "positions_behind": state.checkpoint.behind(),
        })
    });
    Json(json!({
        "status": "ready",
        "postgres": "up",
        "postgres_server": server,
        "postgres_role": if role.in_recovery { "replica" } else { "primary" },
        "replica": replica,
        "nats": nats,
        "projection_position": position,
        "projection_announced": state.checkpoint.announced(),
        "read_your_writes_waiting": waiting,
    }))
    .into_response()
}
