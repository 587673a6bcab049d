//! `ApiError`: the only place that turns failures into HTTP statuses, as `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_shared::api::{Problem, ProblemCode};

use crate::execute::ExecuteError;

pub use tally_edge::problem::PROBLEM_JSON;

/// A problem to answer with, plus an optional `Retry-After` in seconds.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> ApiError {
        ApiError::from(Problem::new(code, detail))
    }

    pub fn validation(field: &str, detail: impl Into<String>) -> ApiError {
        let detail = detail.into();
        ApiError::from(Problem::new(ProblemCode::ValidationFailed, format!("{field}: {detail}")).with("field", field))
    }

    /// Logs the cause with its chain; the client learns nothing of it.
    pub fn internal(cause: &anyhow::Error) -> ApiError {
        tracing::error!(error = format!("{cause:#}"), "internal error");
        ApiError::new(
            ProblemCode::Internal,
            "the request could not be completed; it is safe to retry with the same idempotency key",
        )
    }

    fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> ApiError {
        ApiError { problem: Box::new(problem), retry_after_s: None }
    }
}

impl From<&tally_shared::ledger::DomainError> for ApiError {
    fn from(error: &tally_shared::ledger::DomainError) -> ApiError {
        ApiError::from(Problem::from(error))
    }
}

impl From<ExecuteError> for ApiError {
    fn from(error: ExecuteError) -> ApiError {
        match error {
            ExecuteError::InFlight => {
                ApiError::new(ProblemCode::IdempotencyKeyInFlight, error.to_string()).retry_after(1)
            }
            ExecuteError::Overloaded => ApiError::new(ProblemCode::Overloaded, error.to_string()).retry_after(1),
            ExecuteError::ConcurrencyConflict => {
                ApiError::new(ProblemCode::ConcurrencyConflict, error.to_string()).retry_after(1)
            }
            ExecuteError::Unavailable => ApiError::new(ProblemCode::Unavailable, error.to_string()).retry_after(1),
            ExecuteError::Internal => ApiError::new(
                ProblemCode::Internal,
                "the request could not be completed; it is safe to retry with the same idempotency key",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tally_edge::problem::problem_response(&self.problem, self.retry_after_s)
    }
}

/// A JSON response; `application/problem+json` for any error status.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let content_type =
        if status.is_client_error() || status.is_server_error() { PROBLEM_JSON } else { "application/json" };
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response()
}
