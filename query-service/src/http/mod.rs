//! The HTTP surface: the route table (who may read what), its middleware, and one file per resource. The edge
//! (tokens, limits, request ids, HTTP metrics, `/docs`) is `tally_edge`'s, shared with command-service.

pub mod assets;
pub mod audit;
pub mod balance;
pub mod consistency;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod feeds;
pub mod health;
pub mod history;
pub mod holds;
pub mod metrics;
pub mod openapi;
pub mod ownership;
pub mod params;
pub mod projections;
pub mod streams;
pub mod transfers;
pub mod verifications;
pub mod wallets;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tally_edge::{Access, Authenticator, EdgeConfig, RouteSpec, Routes, Scope};
use tally_shared::api::ProblemCode::{self, *};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

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
    /// The pool's connections lent to requests (see [`crate::connections`]).
    pub connections: crate::connections::Connections,
    pub checkpoint: Checkpoint,
    /// Only to report its state in `/health/ready`: query-service answers without NATS.
    pub nats: async_nats::Client,
    pub min_position_wait: Duration,
    pub metrics: PrometheusHandle,
    /// The live feeds' limits and subscriber count.
    pub feeds: feeds::Feeds,
}

impl Shared {
    /// Runs `read` on a leased connection. Only a read that completed gives its connection straight back for
    /// the next request; after an error or a cancelled request sqlx checks the connection first.
    pub async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&mut sqlx::PgConnection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut lease = self.connections.lease().await.context("lease a database connection")?;
        let result = read(&mut lease).await;
        if result.is_ok() {
            lease.done();
        }
        result
    }
}

/// What any read can answer: a bad query string, a projection behind `min_position`, a busy database.
const READ: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable];
const ASSET: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, AssetNotFound];
const WALLET: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, WalletNotFound];
const OWNER: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, NotFound];
const TRANSFER: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, TransferNotFound];
const FEED: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, Overloaded];
const DIGEST: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, NotFound];
const HOLD: &[ProblemCode] = &[ValidationFailed, ProjectionBehind, Unavailable, HoldNotFound];
const STREAM: &[ProblemCode] =
    &[ValidationFailed, ProjectionBehind, Unavailable, AssetNotFound, WalletNotFound, TransferNotFound, HoldNotFound];

/// The route table: every route, who may call it and what it can answer. It alone builds the router; the
/// OpenAPI document is completed from it and checked against it (`tests/auth.rs`).
pub fn routes(authenticator: Authenticator) -> Routes<AppState> {
    let (read, audit) = (Access::Scope(Scope::Read), Access::Scope(Scope::Audit));
    let get = |path, access, problems| RouteSpec::new(Method::GET, path, access, problems);
    Routes::new(authenticator)
        .route(get("/v1/assets", read, READ), assets::list)
        .route(get("/v1/assets/{code}", read, ASSET), assets::one)
        .route(get("/v1/wallets/{wallet_id}", read, WALLET), wallets::one)
        .route(get("/v1/wallets/{wallet_id}/history", read, WALLET), history::page)
        .route(get("/v1/wallets/{wallet_id}/balance", audit, WALLET), balance::at)
        .route(get("/v1/owners/{owner_id}/wallets", read, OWNER), wallets::of_owner)
        .route(get("/v1/transfers", read, READ), transfers::by_reference)
        .route(get("/v1/transfers/{transfer_id}", read, TRANSFER), transfers::one)
        .route(get("/v1/transfers/stream", read, FEED), feeds::transfers)
        .route(get("/v1/wallets/{wallet_id}/holds", read, WALLET), holds::of_wallet)
        .route(get("/v1/holds", read, READ), holds::by_reference)
        .route(get("/v1/holds/{hold_id}", read, HOLD), holds::one)
        .route(get("/v1/streams/{stream_id}/events", audit, STREAM), streams::events)
        .route(get("/v1/events", audit, READ), events::after)
        .route(get("/v1/export", audit, READ), audit::export)
        .route(get("/v1/events/stream", audit, FEED), feeds::events)
        .route(get("/v1/digests", audit, READ), audit::digests)
        .route(get("/v1/digests/latest", audit, DIGEST), audit::latest)
        .route(get("/v1/digests/key", audit, DIGEST), audit::key)
        .route(get("/v1/projections", read, READ), projections::list)
        .route(get("/v1/verifications", read, READ), verifications::list)
        .route(get("/dashboard", Access::Open, &[]), dashboard::page)
        .route(get("/dashboard/dashboard.js", Access::Open, &[]), dashboard::script)
        .route(get("/dashboard/dashboard.css", Access::Open, &[]), dashboard::style)
        .route(get("/health/live", Access::Open, &[]), health::live)
        .route(get("/health/ready", Access::Open, &[Unavailable]), health::ready)
        .route(get("/metrics", Access::Open, &[]), metrics::render)
        .with_docs(openapi::ApiDoc::openapi())
}

pub fn router(state: AppState, authenticator: Authenticator, edge: &EdgeConfig) -> Router {
    let (router, guard) = routes(authenticator).into_parts();
    let router = router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: the consistency wait, what an owner-bound token may see, then panics turned into
        // problems. The edge around them authenticates first, so a refused request never waits.
        .layer(middleware::from_fn_with_state(state.clone(), consistency::read_your_writes))
        .layer(middleware::from_fn_with_state(state.clone(), ownership::restrict))
        .layer(CatchPanicLayer::custom(|_panic| -> Response {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .with_state(state);
    tally_edge::wrap(router, guard, edge)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound { path: uri.path().chars().take(256).collect() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
