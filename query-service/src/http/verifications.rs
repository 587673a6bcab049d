//! `GET /v1/verifications?limit=`: the outcomes of `projector verify` runs, newest first (SPEC §9), so that a
//! dashboard shows the last one and its age.

use std::collections::BTreeMap;

use anyhow::Context;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;

/// One run of `projector verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerificationView {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The head of the log and the read models' checkpoint in the snapshot it verified.
    pub head: i64,
    pub checkpoint: i64,
    pub events: i64,
    pub streams: i64,
    pub findings: i64,
    /// No finding at all.
    pub clean: bool,
    /// Findings per check, e.g. `{"HashChain": 1}`.
    pub by_check: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerificationList {
    pub items: Vec<VerificationView>,
}

type Row = (i64, DateTime<Utc>, DateTime<Utc>, i64, i64, i64, i64, i64, serde_json::Value);

pub async fn list(State(state): State<AppState>, query: QueryParams) -> Result<Json<VerificationList>, ApiError> {
    let query = query.allow(&["limit"])?;
    let limit = query.limit()?;
    let items = state.read(async |connection| newest(connection, limit).await).await?;
    Ok(Json(VerificationList { items }))
}

async fn newest(connection: &mut PgConnection, limit: i64) -> anyhow::Result<Vec<VerificationView>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, started_at, finished_at, head, checkpoint, events, streams, findings, by_check
         FROM verifications ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *connection)
    .await
    .context("read the verifications")?;
    rows.into_iter()
        .map(|(id, started_at, finished_at, head, checkpoint, events, streams, findings, by_check)| {
            let by_check = serde_json::from_value(by_check).context("a verification's findings per check")?;
            Ok(VerificationView {
                id,
                started_at,
                finished_at,
                head,
                checkpoint,
                events,
                streams,
                findings,
                clean: findings == 0,
                by_check,
            })
        })
        .collect()
}
