//! `GET /v1/holds/{hold_id}`, `GET /v1/wallets/{wallet_id}/holds?status=&limit=&cursor=` and
//! `GET /v1/holds?reference=` (SPEC §8).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::api::{HoldView, Page};
use tally_shared::hold::HoldStatus;

use crate::cursor::HoldsCursor;
use crate::hold_reads;
use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldList {
    pub items: Vec<HoldView>,
}

pub async fn one(
    State(state): State<AppState>,
    Segment(hold_id): Segment,
    query: QueryParams,
) -> Result<Json<HoldView>, ApiError> {
    query.allow(&[])?;
    let hold_id = params::hold_id(&hold_id)?;
    let hold = state.read(async |connection| hold_reads::hold(connection, hold_id).await).await?;
    hold.map(Json).ok_or(ApiError::HoldNotFound { hold_id })
}

/// A wallet's holds, newest first, a keyset page at a time, optionally of one status.
pub async fn of_wallet(
    State(state): State<AppState>,
    Segment(wallet_id): Segment,
    query: QueryParams,
) -> Result<Json<Page<HoldView>>, ApiError> {
    let query = query.allow(&["status", "limit", "cursor"])?;
    let wallet_id = params::wallet_id(&wallet_id)?;
    let limit = query.limit()?;
    let status = match query.text("status") {
        Some(text) => Some(
            HoldStatus::parse(text)
                .ok_or_else(|| ApiError::validation("status", "must be one of active, captured, voided, expired"))?,
        ),
        None => None,
    };
    let before_position = match query.text("cursor") {
        Some(text) => {
            HoldsCursor::decode(text, wallet_id)
                .map_err(|error| ApiError::validation("cursor", error.to_string()))?
                .before_position
        }
        None => i64::MAX,
    };
    let status = status.map(HoldStatus::as_str);
    // One more than asked tells whether another page follows, without a count.
    let mut holds = state
        .read(async |connection| {
            hold_reads::wallet_holds(connection, wallet_id, status, before_position, limit + 1).await
        })
        .await?
        .ok_or(ApiError::WalletNotFound { wallet_id })?;
    let next_cursor = if holds.len() as i64 > limit {
        holds.truncate(limit as usize);
        holds.last().map(|(_, placed)| HoldsCursor { wallet_id, before_position: *placed }.encode())
    } else {
        None
    };
    Ok(Json(Page { items: holds.into_iter().map(|(hold, _)| hold).collect(), next_cursor }))
}

/// The holds carrying a reference, oldest first (at most `HOLDS_BY_REFERENCE_MAX`).
pub async fn by_reference(State(state): State<AppState>, query: QueryParams) -> Result<Json<HoldList>, ApiError> {
    let query = query.allow(&["reference"])?;
    let reference = query.reference()?;
    Ok(Json(HoldList {
        items: state.read(async |connection| hold_reads::holds_by_reference(connection, reference).await).await?,
    }))
}
