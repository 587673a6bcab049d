//! How each request is seen from outside: its request id, the tracing span every log line of it carries,
//! HTTP metrics by route, method and status, and the process's Prometheus recorder.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The header a request id travels in, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Characters of a client's request id at most: it is logged on every line and stored in events' metadata.
pub const REQUEST_ID_LENGTH_MAX: usize = 128;

/// Latency buckets in seconds: from tens of µs (a cached read) to the request timeout.
const LATENCY_BUCKETS_SECONDS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Commands per appended batch (group commit): powers of two up to the largest batch.
const BATCH_SIZE_BUCKETS: [f64; 12] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0];

/// The process's recorder, installed on first use and shared by every service in the process (tests and the
/// end-to-end suite run several in one), so `/metrics` of each shows what the process counted.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS_SECONDS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(Matcher::Full("tally_batch_size".to_owned()), &BATCH_SIZE_BUCKETS)
                })
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder was installed first; /metrics will miss what it records");
            }
            handle
        })
        .clone()
}

/// Request ids are UUID v7 unless the client sent a usable `X-Request-Id`.
#[derive(Debug, Clone, Copy)]
pub struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).ok().map(RequestId::new)
    }
}

/// Drops a client's request id that is empty, too long or not visible ASCII, so that a fresh one is made:
/// what lands in logs and event metadata stays bounded and printable.
pub fn bound_request_id(mut request: Request) -> Request {
    let usable = request.headers().get(&REQUEST_ID_HEADER).map(|value| {
        let bytes = value.as_bytes();
        (1..=REQUEST_ID_LENGTH_MAX).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
    });
    if usable == Some(false) {
        request.headers_mut().remove(&REQUEST_ID_HEADER);
    }
    request
}

/// The span of one request: every log line inside it carries the request id (and, once authenticated, the
/// principal's name).
pub fn request_span(request: &Request) -> tracing::Span {
    let request_id = request.headers().get(&REQUEST_ID_HEADER).and_then(|value| value.to_str().ok()).unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        principal = tracing::field::Empty,
    )
}

/// Counts each request and records its latency, by route template, method and status.
pub struct HttpMetrics {
    started: Instant,
    route: String,
    method: &'static str,
}

impl HttpMetrics {
    pub fn start(request: &Request) -> HttpMetrics {
        HttpMetrics {
            started: Instant::now(),
            route: request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned(),
            method: method_label(request.method()),
        }
    }

    /// Records the request's answer, refusals included.
    pub fn record(self, response: &Response) {
        let status = response.status().as_u16().to_string();
        let labels = [("route", self.route), ("method", self.method.to_owned()), ("status", status)];
        metrics::counter!("tally_http_requests_total", &labels).increment(1);
        metrics::histogram!("tally_http_request_duration_seconds", &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// A bounded set of labels: a client cannot create series with invented methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
