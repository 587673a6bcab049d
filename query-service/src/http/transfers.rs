//! `GET /v1/transfers/{transfer_id}` and `GET /v1/transfers?reference=`: transfers as the command answered
//! them, with their reversals.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::api::TransferView;

use crate::http::error::ApiError;
use crate::http::params::{self, QueryParams, Segment};
use crate::http::AppState;
use crate::read_models;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferList {
    pub items: Vec<TransferView>,
}

pub async fn one(
    State(state): State<AppState>,
    Segment(transfer_id): Segment,
    query: QueryParams,
) -> Result<Json<TransferView>, ApiError> {
    query.allow(&[])?;
    let transfer_id = params::transfer_id(&transfer_id)?;
    let transfer = state.read(async |connection| read_models::transfer(connection, transfer_id).await).await?;
    transfer.map(Json).ok_or(ApiError::TransferNotFound { transfer_id })
}

/// The transfers carrying a reference, oldest first (at most `TRANSFERS_BY_REFERENCE_MAX`).
pub async fn by_reference(State(state): State<AppState>, query: QueryParams) -> Result<Json<TransferList>, ApiError> {
    let query = query.allow(&["reference"])?;
    let reference = query.reference()?;
    Ok(Json(TransferList {
        items: state.read(async |connection| read_models::transfers_by_reference(connection, reference).await).await?,
    }))
}
