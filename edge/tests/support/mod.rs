//! A toy router behind the edge, shared by the edge's test binaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::response::Response;
use axum::Router;
use clap::Parser;
use tally_edge::{Access, Authenticator, EdgeConfig, Principal, RouteSpec, Routes, Scope};
use tower::ServiceExt;

#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    edge: EdgeConfig,
}

pub fn edge(arguments: &[&str]) -> EdgeConfig {
    Flags::parse_from(std::iter::once("test").chain(arguments.iter().copied())).edge
}

pub async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(300)).await;
    "slow"
}

pub async fn logged(principal: Principal) -> String {
    tracing::info!("inside the handler");
    principal.name
}

pub fn toy(arguments: &[&str]) -> Router {
    let routes = Routes::new(Authenticator::open())
        .route(RouteSpec::new(Method::GET, "/slow", Access::Open, &[]), slow)
        .route(RouteSpec::new(Method::GET, "/logged", Access::Scope(Scope::Read), &[]), logged);
    let (router, guard) = routes.into_parts();
    tally_edge::wrap(router, guard, &edge(arguments))
}

pub async fn call(router: &Router, request: Request<Body>) -> Response {
    router.clone().oneshot(request).await.unwrap()
}

pub async fn code(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    problem["code"].as_str().unwrap().to_owned()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}
