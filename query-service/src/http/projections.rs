//! `GET /v1/projections`: each projection's checkpoint, the head of the log, and the lag between them.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;
use crate::read_models::{self, ProjectionView};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectionList {
    pub items: Vec<ProjectionView>,
}

pub async fn list(State(state): State<AppState>, query: QueryParams) -> Result<Json<ProjectionList>, ApiError> {
    query.allow(&[])?;
    Ok(Json(ProjectionList { items: state.read(async |connection| read_models::projections(connection).await).await? }))
}
