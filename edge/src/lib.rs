//! What every Tally HTTP service does at its edge, in one implementation shared by command-service and
//! query-service: who is calling, how much they may ask, and how each request is seen from outside.
//!
//! - [`config`]: [`EdgeConfig`], the flags and environment variables below, flattened into each service's `Config`.
//! - [`auth`]: the token file, bearer verification, [`Principal`], [`Scope`] and per-token rate limits.
//! - [`routes`]: [`Routes`], the one route table a service declares: it builds the router, guards each route
//!   with its scope, and is what the OpenAPI document is checked against.
//! - [`admission`]: metrics, limits and the guard of every request, as one tower service.
//! - [`limits`]: in-flight, body-size and time limits, each refused with its own problem code.
//! - [`observe`]: request ids, the per-request tracing span, HTTP metrics and the process's Prometheus recorder.
//! - [`openapi`]: completes a service's generated document (security, problem responses) and serves it
//!   with the `/docs` UI, whose assets are embedded in the binary.
//! - [`problem`]: `application/problem+json` responses.
//! - [`servers`]: lists of Postgres and NATS servers: which Postgres server to use (the primary for writers,
//!   moving on at a failover) and the notification stream's settings, for every service.
//! - [`serve`]: HTTP/1.1 and HTTP/2 with header-read and keep-alive timeouts, and graceful shutdown.
//! - [`shutdown`]: [`shutdown_signal`], Ctrl-C or SIGTERM.

pub mod admission;
pub mod auth;
pub mod config;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod serve;
pub mod servers;
pub mod shutdown;

pub use auth::{Authenticator, Principal, Scope};
pub use config::EdgeConfig;
pub use routes::{Access, Guard, RouteSpec, Routes};
pub use serve::{serve, ServeLimits};
pub use shutdown::shutdown_signal;

use std::sync::Arc;

use admission::Admission;
use axum::extract::{DefaultBodyLimit, Request};
use axum::Router;
use limits::Limits;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Wraps a service's router (its own middleware included) in the edge every request crosses, outermost first:
/// a bounded request id (made when absent, echoed in the answer), the request's span, then [`Admission`]:
/// HTTP metrics (which see every answer, refusals included), the in-flight limit, the body limit, the route
/// table's [`Guard`] (tokens, rate limits, scopes) and the request timeout, so that nothing of the service
/// runs for a refused request.
///
/// The stack is one layer of plain services, so that a request in flight costs one boxed route future
/// besides its handler's, not one per check.
pub fn wrap<S: Clone + Send + Sync + 'static>(router: Router<S>, guard: Guard, config: &EdgeConfig) -> Router<S> {
    let limits = Limits {
        permits: Arc::new(tokio::sync::Semaphore::new(config.concurrency_max)),
        body_bytes_max: config.body_bytes_max,
        timeout: config.request_timeout(),
    };
    router.layer(
        ServiceBuilder::new()
            .map_request(observe::bound_request_id)
            .layer(SetRequestIdLayer::new(observe::REQUEST_ID_HEADER, observe::MakeRequestIdV7))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| observe::request_span(request)))
            .layer(PropagateRequestIdLayer::new(observe::REQUEST_ID_HEADER))
            .layer(Admission::new(guard, limits))
            .layer(DefaultBodyLimit::max(config.body_bytes_max)),
    )
}
