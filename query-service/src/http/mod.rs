//! The HTTP surface: the router, its middleware, and one file per resource.

pub mod assets;
pub mod balance;
pub mod consistency;
pub mod error;
pub mod events;
pub mod health;
pub mod history;
pub mod metrics;
pub mod params;
pub mod projections;
pub mod streams;
pub mod transfers;
pub mod wallets;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::Uri;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::checkpoint::Checkpoint;
use crate::http::error::ApiError;

/// What every handler may use. Cloned for every extractor of every request: one `Arc`, one atomic add.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub pool: PgPool,
    pub checkpoint: Checkpoint,
    /// Only to report its state in `/health/ready`: query-service answers without NATS.
    pub nats: async_nats::Client,
    pub min_position_wait: Duration,
    pub metrics: PrometheusHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/assets", get(assets::list))
        .route("/v1/assets/{code}", get(assets::one))
        .route("/v1/wallets/{wallet_id}", get(wallets::one))
        .route("/v1/wallets/{wallet_id}/history", get(history::page))
        .route("/v1/wallets/{wallet_id}/balance", get(balance::at))
        .route("/v1/owners/{owner_id}/wallets", get(wallets::of_owner))
        .route("/v1/transfers", get(transfers::by_reference))
        .route("/v1/transfers/{transfer_id}", get(transfers::one))
        .route("/v1/streams/{stream_id}/events", get(streams::events))
        .route("/v1/events", get(events::after))
        .route("/v1/projections", get(projections::list))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: the consistency wait, then panics turned into problems, then what sees the final answer.
        .layer(middleware::from_fn_with_state(state.clone(), consistency::read_your_writes))
        .layer(CatchPanicLayer::custom(|_panic| -> Response {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(middleware::from_fn(metrics::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound { path: uri.path().chars().take(256).collect() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
