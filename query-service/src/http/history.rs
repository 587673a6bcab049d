//! `GET /v1/wallets/{wallet_id}/history?limit=&cursor=`: a wallet's legs, newest first, a keyset page at a time.

use axum::extract::State;
use axum::Json;
use tally_shared::api::{HistoryEntryView, Page};

use crate::cursor::HistoryCursor;
use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;
use crate::read_models;

pub async fn page(
    State(state): State<AppState>,
    Segment(wallet_id): Segment,
    query: QueryParams,
) -> Result<Json<Page<HistoryEntryView>>, ApiError> {
    let query = query.allow(&["limit", "cursor"])?;
    let wallet_id = params::wallet_id(&wallet_id)?;
    let limit = query.limit()?;
    let before_version = match query.text("cursor") {
        Some(text) => {
            HistoryCursor::decode(text, wallet_id)
                .map_err(|error| ApiError::validation("cursor", error.to_string()))?
                .before_version
        }
        None => i64::MAX,
    };
    // One more than asked tells whether another page follows, without a count.
    let mut items = state
        .read(async |connection| read_models::wallet_history(connection, wallet_id, before_version, limit + 1).await)
        .await?
        .ok_or(ApiError::WalletNotFound { wallet_id })?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| HistoryCursor { wallet_id, before_version: last.version }.encode())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}
