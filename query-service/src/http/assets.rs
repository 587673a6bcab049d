//! `GET /v1/assets` and `GET /v1/assets/{code}`: assets with their totals.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::api::AssetView;
use tally_shared::asset::AssetCode;

use crate::http::error::ApiError;
use crate::http::params::{QueryParams, Segment};
use crate::http::AppState;
use crate::read_models;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetList {
    pub items: Vec<AssetView>,
}

pub async fn list(State(state): State<AppState>, query: QueryParams) -> Result<Json<AssetList>, ApiError> {
    query.allow(&[])?;
    Ok(Json(AssetList { items: state.read(async |connection| read_models::assets(connection).await).await? }))
}

pub async fn one(
    State(state): State<AppState>,
    Segment(code): Segment,
    query: QueryParams,
) -> Result<Json<AssetView>, ApiError> {
    query.allow(&[])?;
    let code =
        AssetCode::parse(&code).map_err(|_| ApiError::validation("code", "must match ^[A-Z][A-Z0-9_]{0,15}$"))?;
    let asset = state.read(async |connection| read_models::asset(connection, code.as_str()).await).await?;
    asset.map(Json).ok_or(ApiError::AssetNotFound { code: code.to_string() })
}
