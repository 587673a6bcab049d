//! The HTTP API of SPEC §5 (command-service): router, shared state and how outcomes become responses.

mod assets;
pub mod error;
mod health;
mod input;
mod transfers;
mod wallets;

use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tally_shared::api::ProblemCode;
use tally_shared::ledger::{Command, DomainError};
use tally_shared::money::{AmountError, WireDecimal};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::execute::{CommandRequest, Executor, Outcome};
use error::{json_response, ApiError};
use input::CommandInput;

/// Who a request acts for, until bearer tokens name principals.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub executor: Executor,
    pub pool: PgPool,
    pub nats: Option<async_nats::Client>,
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_bytes_max: usize,
    pub request_timeout: Duration,
}

pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .route("/v1/assets", post(assets::define))
        .route("/v1/wallets", post(wallets::open))
        .route("/v1/wallets/{id}/{action}", post(wallets::act))
        .route("/v1/transfers", post(transfers::transfer))
        .route("/v1/transfers/{id}/reversal", post(transfers::reverse))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    api.layer(middleware::from_fn(move |request, next| with_timeout(limits.request_timeout, request, next)))
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(limits.body_bytes_max))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestIdV7))
}

/// Request ids are UUID v7 unless the client sent `X-Request-Id`.
#[derive(Clone, Copy)]
struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).ok().map(RequestId::new)
    }
}

async fn with_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ProblemCode::Timeout,
            "the request took too long; retry with the same idempotency key to learn its outcome",
        )
        .into_response(),
    }
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("tally_http_requests_total", &labels).increment(1);
    metrics::histogram!("tally_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(ProblemCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ProblemCode::MethodNotAllowed, "this route does not take that method")
}

/// Runs a command and answers with its (possibly replayed) outcome.
async fn run<T>(state: &AppState, input: CommandInput<T>, command: Command) -> Result<Response, ApiError> {
    let request = CommandRequest {
        principal: ANONYMOUS_PRINCIPAL.to_owned(),
        idempotency_key: input.idempotency_key,
        fingerprint: input.fingerprint,
        command,
        expected_version: input.expected_version,
        request_id: input.request_id,
    };
    let outcome = state.executor.execute(request).await?;
    Ok(respond(outcome))
}

fn respond(outcome: Outcome) -> Response {
    let status = StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &outcome.body);
    if outcome.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Shared by handlers: optional text fields within their limits.
fn optional_text(field: &str, text: &Option<String>, length_max: usize) -> Result<Option<String>, ApiError> {
    match text {
        Some(text) => tally_shared::api::check_text(field, text, length_max)
            .map(|()| Some(text.clone()))
            .map_err(|error| ApiError::from(&error)),
        None => Ok(None),
    }
}

fn metadata(value: &Option<serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    tally_shared::api::check_metadata(value).map_err(|error| ApiError::from(&error))
}

/// An amount must be above zero whatever the wallet: refused here, before anything is stored, so the
/// client can fix the body and retry under the same key. Scale is checked by the domain, which knows the asset.
fn positive(field: &str, amount: WireDecimal) -> Result<rust_decimal::Decimal, ApiError> {
    if amount.0 <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::from(&DomainError::InvalidAmount {
            field: field.to_owned(),
            reason: AmountError::NotPositive,
        }));
    }
    Ok(amount.0)
}

/// A fee or a limit may be zero, never negative.
fn non_negative(field: &str, amount: WireDecimal) -> Result<rust_decimal::Decimal, ApiError> {
    if amount.0 < rust_decimal::Decimal::ZERO {
        return Err(ApiError::from(&DomainError::InvalidAmount {
            field: field.to_owned(),
            reason: AmountError::Negative,
        }));
    }
    Ok(amount.0)
}

fn path_id(field: &str, text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::validation(field, "must be a UUID"))
}
