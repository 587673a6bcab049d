//! `GET /v1/wallets/{wallet_id}` and `GET /v1/owners/{owner_id}/wallets`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::api::{check_text, WalletView};
use tally_shared::wallet::OWNER_ID_LENGTH_MAX;

use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;
use crate::read_models;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletList {
    pub items: Vec<WalletView>,
}

pub async fn one(
    State(state): State<AppState>,
    Segment(wallet_id): Segment,
    query: QueryParams,
) -> Result<Json<WalletView>, ApiError> {
    query.allow(&[])?;
    let wallet_id = params::wallet_id(&wallet_id)?;
    let wallet = state.read(async |connection| read_models::wallet(connection, wallet_id).await).await?;
    wallet.map(Json).ok_or(ApiError::WalletNotFound { wallet_id })
}

/// Every wallet of an owner (none is an empty list: owners exist only through their wallets).
pub async fn of_owner(
    State(state): State<AppState>,
    Segment(owner_id): Segment,
    query: QueryParams,
) -> Result<Json<WalletList>, ApiError> {
    query.allow(&[])?;
    check_text("owner_id", &owner_id, OWNER_ID_LENGTH_MAX).map_err(|_| {
        ApiError::validation(
            "owner_id",
            format!("must have 1 to {OWNER_ID_LENGTH_MAX} characters and no control characters"),
        )
    })?;
    Ok(Json(WalletList {
        items: state.read(async |connection| read_models::owner_wallets(connection, &owner_id).await).await?,
    }))
}
