//! `ApiError`: every way a request can fail, and the only place that turns one into a status and a problem body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tally_shared::api::{Problem, ProblemCode};
use uuid::Uuid;

use crate::database::{self, Trouble};

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path segment or query parameter that does not parse, named by `field`.
    #[error("{field} {reason}")]
    Validation { field: String, reason: String },
    #[error("asset {code} not found")]
    AssetNotFound { code: String },
    #[error("wallet {wallet_id} not found")]
    WalletNotFound { wallet_id: Uuid },
    #[error("transfer {transfer_id} not found")]
    TransferNotFound { transfer_id: Uuid },
    #[error("hold {hold_id} not found")]
    HoldNotFound { hold_id: Uuid },
    #[error("no digest has been recorded yet")]
    NoDigest,
    #[error("too many live feeds are open; retry later")]
    FeedsFull,
    #[error("no route for {path}")]
    RouteNotFound { path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the projection is at {position}, below the requested min_position {min_position}")]
    ProjectionBehind { position: i64, min_position: i64 },
    /// Postgres is unreachable or every connection is busy.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("the query took too long")]
    Timeout(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::Validation { field: field.into(), reason: reason.into() }
    }

    pub fn code(&self) -> ProblemCode {
        match self {
            ApiError::Validation { .. } => ProblemCode::ValidationFailed,
            ApiError::AssetNotFound { .. } => ProblemCode::AssetNotFound,
            ApiError::WalletNotFound { .. } => ProblemCode::WalletNotFound,
            ApiError::TransferNotFound { .. } => ProblemCode::TransferNotFound,
            ApiError::HoldNotFound { .. } => ProblemCode::HoldNotFound,
            ApiError::RouteNotFound { .. } | ApiError::NoDigest => ProblemCode::NotFound,
            ApiError::FeedsFull => ProblemCode::Overloaded,
            ApiError::MethodNotAllowed => ProblemCode::MethodNotAllowed,
            ApiError::ProjectionBehind { .. } => ProblemCode::ProjectionBehind,
            ApiError::Unavailable(_) => ProblemCode::Unavailable,
            ApiError::Timeout(_) => ProblemCode::Timeout,
            ApiError::Internal(_) => ProblemCode::Internal,
        }
    }

    fn problem(&self) -> Problem {
        let problem = Problem::new(self.code(), self.to_string());
        match self {
            ApiError::Validation { field, .. } => problem.with("field", field),
            ApiError::AssetNotFound { code } => problem.with("asset", code),
            ApiError::WalletNotFound { wallet_id } => problem.with("wallet_id", wallet_id),
            ApiError::TransferNotFound { transfer_id } => problem.with("transfer_id", transfer_id),
            ApiError::HoldNotFound { hold_id } => problem.with("hold_id", hold_id),
            ApiError::ProjectionBehind { position, min_position } => {
                problem.with("position", position).with("min_position", min_position)
            }
            ApiError::RouteNotFound { .. }
            | ApiError::NoDigest
            | ApiError::FeedsFull
            | ApiError::MethodNotAllowed
            | ApiError::Unavailable(_)
            | ApiError::Timeout(_)
            | ApiError::Internal(_) => problem,
        }
    }

    fn log(&self) {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = format!("{cause:#}"), "request failed"),
            ApiError::Unavailable(cause) | ApiError::Timeout(cause) => {
                tracing::warn!(error = format!("{cause:#}"), code = self.code().code(), "request failed")
            }
            _ => {}
        }
    }
}

impl From<anyhow::Error> for ApiError {
    /// Database trouble the client can retry through is a 503; anything else is a bug or corrupt data: 500.
    fn from(error: anyhow::Error) -> ApiError {
        match database::trouble(&error) {
            Trouble::Unavailable => ApiError::Unavailable(error),
            Trouble::Timeout => ApiError::Timeout(error),
            Trouble::Other => ApiError::Internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let problem = self.problem();
        let retry_after_s = (problem.status == StatusCode::SERVICE_UNAVAILABLE.as_u16()).then_some(RETRY_AFTER_SECS);
        tally_edge::problem::problem_response(&problem, retry_after_s)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::{header, HeaderValue};

    use super::*;

    async fn body(error: ApiError) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry_after, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_of_their_cause() {
        let error = ApiError::from(anyhow::anyhow!("password=hunter2 in the connection string"));

        let (status, _, problem) = body(error).await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(problem["code"], "internal");
        assert!(!problem.to_string().contains("hunter2"), "{problem}");
    }

    #[tokio::test]
    async fn database_trouble_the_client_can_wait_out_is_a_503() {
        let busy = ApiError::from(anyhow::Error::new(sqlx::Error::PoolTimedOut).context("read a wallet"));

        let (status, retry_after, problem) = body(busy).await;

        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem["code"], "unavailable");
        assert_eq!(retry_after.unwrap(), "1");
    }

    #[tokio::test]
    async fn validation_problems_name_the_field() {
        let (status, retry_after, problem) = body(ApiError::validation("limit", "must be at most 1000")).await;

        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(retry_after.is_none());
        assert_eq!(problem["type"], "/problems/validation-failed");
        assert_eq!(problem["field"], "limit");
        assert_eq!(problem["detail"], "limit must be at most 1000");
    }
}
