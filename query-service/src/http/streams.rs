//! `GET /v1/streams/{stream_id}/events?from_version=&limit=`: one stream's raw events, for auditors.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::envelope::{StoredEvent, StreamId};

use crate::event_log;
use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamPage {
    pub items: Vec<StoredEvent>,
    /// The `from_version` of the next page; absent at the end of the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_from_version: Option<i64>,
}

pub async fn events(
    State(state): State<AppState>,
    Segment(stream_id): Segment,
    query: QueryParams,
) -> Result<Json<StreamPage>, ApiError> {
    let query = query.allow(&["from_version", "limit"])?;
    let stream = params::stream_id(&stream_id)?;
    let from_version = query.integer("from_version", 1)?.unwrap_or(1);
    let limit = query.limit()?;
    let stream_id = stream.to_string();
    let (mut items, exists) = state
        .read(async |connection| {
            let items = event_log::stream_events(connection, &stream_id, from_version, limit + 1).await?;
            let exists = !items.is_empty() || event_log::stream_exists(connection, &stream_id).await?;
            Ok((items, exists))
        })
        .await?;
    if !exists {
        return Err(not_found(stream));
    }
    let next_from_version = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| last.version + 1)
    } else {
        None
    };
    Ok(Json(StreamPage { items, next_from_version }))
}

/// A stream that does not exist is the wallet, transfer, hold or asset that does not exist.
fn not_found(stream: StreamId) -> ApiError {
    match stream {
        StreamId::Asset(code) => ApiError::AssetNotFound { code: code.to_string() },
        StreamId::Wallet(wallet_id) => ApiError::WalletNotFound { wallet_id: wallet_id.0 },
        StreamId::Transfer(transfer_id) => ApiError::TransferNotFound { transfer_id: transfer_id.0 },
        StreamId::Hold(hold_id) => ApiError::HoldNotFound { hold_id: hold_id.0 },
    }
}
