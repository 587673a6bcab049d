//! `application/problem+json` responses (RFC 9457) for what the edge refuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_shared::api::{Problem, ProblemCode};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `problem` as `application/problem+json`, with `Retry-After` in seconds when the client should come back.
pub fn problem_response(problem: &Problem, retry_after_s: Option<u64>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).expect("problems serialize");
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if let Some(seconds) = retry_after_s {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A problem of `code` with `detail` and no extra member.
pub fn refuse(code: ProblemCode, detail: &str, retry_after_s: Option<u64>) -> Response {
    problem_response(&Problem::new(code, detail), retry_after_s)
}
