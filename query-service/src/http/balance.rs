//! `GET /v1/wallets/{wallet_id}/balance?as_of=RFC3339` or `?at_position=N`: a balance, what was held and what
//! was available at a moment, recomputed from the wallet's own events (not from the read models), exact.
//!
//! An unknown wallet answers `404 wallet_not_found`. A moment before the wallet was opened answers a zero
//! balance at version 0: summing every wallet of an asset at any moment then still gives exactly zero.
//! A moment beyond the head of the log answers the latest balance, which later commits may still change.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_shared::envelope::StreamId;
use tally_shared::wallet::WalletId;

use crate::event_log::{self, Moment};
use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;

/// A wallet's balance at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalanceAtView {
    #[schema(value_type = Uuid)]
    pub wallet_id: WalletId,
    pub asset: String,
    /// At the asset's scale; zero before the first debit or credit.
    pub balance: String,
    /// What the wallet's active holds reserved at that moment.
    pub held: String,
    /// `balance − held`.
    pub available: String,
    /// The wallet stream's version at that moment; 0 before it was opened.
    pub version: i64,
    /// Global position of the debit or credit that set `balance`; `null` if none had happened.
    pub position: Option<i64>,
    /// When that debit or credit was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<i64>,
}

pub async fn at(
    State(state): State<AppState>,
    Segment(wallet_id): Segment,
    query: QueryParams,
) -> Result<Json<BalanceAtView>, ApiError> {
    let query = query.allow(&["as_of", "at_position"])?;
    let wallet_id = params::wallet_id(&wallet_id)?;
    let as_of = query.instant("as_of")?;
    let at_position = query.integer("at_position", 0)?;
    let moment = match (as_of, at_position) {
        (Some(instant), None) => Moment::Instant(instant),
        (None, Some(position)) => Moment::Position(position),
        (Some(_), Some(_)) => return Err(ApiError::validation("as_of", "and at_position exclude each other")),
        (None, None) => return Err(ApiError::validation("as_of", "or at_position is required")),
    };
    let stream_id = StreamId::Wallet(WalletId(wallet_id)).to_string();
    let balance = state
        .read(async |connection| event_log::balance_at(connection, &stream_id, moment).await)
        .await?
        .ok_or(ApiError::WalletNotFound { wallet_id })?;
    Ok(Json(BalanceAtView {
        wallet_id: WalletId(wallet_id),
        asset: balance.asset,
        balance: balance.scale.format(balance.balance),
        held: balance.scale.format(balance.held),
        available: balance.scale.format(balance.balance - balance.held),
        version: balance.version,
        position: balance.last_move.map(|moved| moved.position),
        recorded_at: balance.last_move.map(|moved| moved.recorded_at),
        as_of,
        at_position,
    }))
}
