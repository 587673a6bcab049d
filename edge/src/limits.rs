//! Limits of every request, each refused at once with its own problem code rather than queued without bound:
//! requests in flight (`503 overloaded`), declared body size (`413 payload_too_large`) and time (`503 timeout`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tally_shared::api::ProblemCode;
use tokio::sync::Semaphore;

use crate::problem::refuse;

/// Seconds an overloaded or timed-out client is told to wait.
const RETRY_AFTER_S: u64 = 1;

/// Answers `503 overloaded` when `permits` are all taken, instead of queueing: a client retrying in a second
/// costs less than a queue that grows until memory runs out.
pub async fn in_flight(permits: Arc<Semaphore>, request: Request, next: Next) -> Response {
    let Ok(_permit) = permits.try_acquire_owned() else {
        metrics::counter!("tally_http_overloaded_total").increment(1);
        return refuse(ProblemCode::Overloaded, "too many requests in flight; retry shortly", Some(RETRY_AFTER_S));
    };
    next.run(request).await
}

/// Refuses a body whose declared length is over the limit before reading any of it. Bodies without a length
/// (chunked) are cut at the same limit by the extractors that read them (`DefaultBodyLimit`).
pub async fn declared_body_size(body_bytes_max: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > body_bytes_max as u64) {
        let detail = format!("the request body is larger than {body_bytes_max} bytes");
        return refuse(ProblemCode::PayloadTooLarge, &detail, None);
    }
    next.run(request).await
}

/// Answers `503 timeout` when the request takes longer than `limit`; the handler's future is dropped.
pub async fn time(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(
            ProblemCode::Timeout,
            "the request took too long; a command may still complete: retry with the same idempotency key to learn its outcome",
            Some(RETRY_AFTER_S),
        ),
    }
}
