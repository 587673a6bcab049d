//! Limits of every request, each refused at once with its own problem code rather than queued without bound:
//! requests in flight (`503 overloaded`), declared body size (`413 payload_too_large`) and time (`503 timeout`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use tally_shared::api::ProblemCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::refuse;

/// Seconds an overloaded or timed-out client is told to wait.
const RETRY_AFTER_S: u64 = 1;

/// The limits every request is held to, checked in this order: requests in flight, declared body size, time.
#[derive(Debug)]
pub struct Limits {
    /// Requests in flight at most: one permit each.
    pub permits: Arc<Semaphore>,
    pub body_bytes_max: usize,
    pub timeout: Duration,
}

impl Limits {
    /// A permit for one more request in flight, or none when they are all taken: the request is then
    /// refused at once ([`overloaded`]), since a client retrying in a second costs less than a queue that
    /// grows until memory runs out.
    pub fn permit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            metrics::counter!("tally_http_overloaded_total").increment(1);
        }
        permit
    }

    /// `413 payload_too_large` for a body whose declared length is over the limit, before reading any of it.
    /// Bodies without a length (chunked) are cut at the same limit by the extractors that read them
    /// (`DefaultBodyLimit`).
    pub fn refuse_declared_length(&self, request: &Request) -> Option<Response> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.body_bytes_max as u64) {
            let detail = format!("the request body is larger than {} bytes", self.body_bytes_max);
            return Some(refuse(ProblemCode::PayloadTooLarge, &detail, None));
        }
        None
    }
}

/// `503 overloaded`: every permit of [`Limits::permits`] is taken.
pub fn overloaded() -> Response {
    refuse(ProblemCode::Overloaded, "too many requests in flight; retry shortly", Some(RETRY_AFTER_S))
}

/// `503 timeout`: the request took longer than [`Limits::timeout`], and its handler's future was dropped.
pub fn timed_out() -> Response {
    refuse(
        ProblemCode::Timeout,
        "the request took too long; a command may still complete: retry with the same idempotency key to learn its outcome",
        Some(RETRY_AFTER_S),
    )
}
