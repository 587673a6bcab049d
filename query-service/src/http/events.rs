//! `GET /v1/events?after=&limit=`: the global log in position order, which is commit order (see `event_log`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::envelope::StoredEvent;

use crate::event_log;
use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<StoredEvent>,
    /// The `after` of the next request: the last position returned, or `after` itself when nothing is new.
    pub next_after: i64,
}

pub async fn after(State(state): State<AppState>, query: QueryParams) -> Result<Json<EventPage>, ApiError> {
    let query = query.allow(&["after", "limit"])?;
    let after = query.integer("after", 0)?.unwrap_or(0);
    let limit = query.limit()?;
    let items = state.read(async |connection| event_log::events_after(connection, after, limit).await).await?;
    let next_after = items.last().map_or(after, |last| last.position);
    Ok(Json(EventPage { items, next_after }))
}
