//! The edge around a toy router, in process: limits answer with their own problem codes, request ids are made,
//! kept or replaced, and every log line of a request carries its request id in JSON logs.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
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

fn edge(arguments: &[&str]) -> EdgeConfig {
    Flags::parse_from(std::iter::once("test").chain(arguments.iter().copied())).edge
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(300)).await;
    "slow"
}

async fn logged(principal: Principal) -> String {
    tracing::info!("inside the handler");
    principal.name
}

fn toy(arguments: &[&str]) -> Router {
    let routes = Routes::new(Authenticator::open())
        .route(RouteSpec::new(Method::GET, "/slow", Access::Open, &[]), slow)
        .route(RouteSpec::new(Method::GET, "/logged", Access::Scope(Scope::Read), &[]), logged);
    let (router, guard) = routes.into_parts();
    tally_edge::wrap(router, guard, &edge(arguments))
}

async fn call(router: &Router, request: Request<Body>) -> Response {
    router.clone().oneshot(request).await.unwrap()
}

async fn code(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    problem["code"].as_str().unwrap().to_owned()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[test]
fn the_defaults_are_64_kib_bodies_and_a_10_s_timeout() {
    let defaults = edge(&[]);
    assert_eq!(defaults.body_bytes_max, 64 * 1024);
    assert_eq!(defaults.request_timeout(), Duration::from_secs(10));
    assert!(defaults.auth_tokens_file.is_none());
}

#[tokio::test]
async fn requests_beyond_concurrency_max_are_503_overloaded_at_once() {
    let router = toy(&["--concurrency-max", "2"]);

    let answers = futures::future::join_all((0..5).map(|_| call(&router, get("/slow")))).await;

    let statuses: Vec<StatusCode> = answers.iter().map(Response::status).collect();
    assert_eq!(statuses.iter().filter(|status| **status == StatusCode::OK).count(), 2, "{statuses:?}");
    for answer in answers.into_iter().filter(|answer| answer.status() != StatusCode::OK) {
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(code(answer).await, "overloaded");
    }
}

#[tokio::test]
async fn a_request_over_request_timeout_ms_is_503_timeout() {
    let router = toy(&["--request-timeout-ms", "50"]);

    let answer = call(&router, get("/slow")).await;

    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(answer).await, "timeout");
}

#[tokio::test]
async fn a_declared_body_over_body_bytes_max_is_413_before_anything_is_read() {
    let router = toy(&["--body-bytes-max", "10"]);
    let request = Request::get("/slow").header("content-length", "11").body(Body::from("x".repeat(11))).unwrap();

    let answer = call(&router, request).await;

    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    assert_eq!(code(answer).await, "payload_too_large");
}

#[tokio::test]
async fn a_request_id_is_kept_made_or_replaced_and_always_echoed() {
    let router = toy(&[]);
    let with = |value: &str| Request::get("/logged").header("x-request-id", value).body(Body::empty()).unwrap();

    let kept = call(&router, with("client-1")).await;
    let made = call(&router, get("/logged")).await;
    let replaced = call(&router, with(&"y".repeat(129))).await;

    assert_eq!(kept.headers()["x-request-id"], "client-1");
    for answer in [made, replaced] {
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    }
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_json_log_line_of_a_request_carries_its_request_id_and_principal() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let router = toy(&[]);

    let request = Request::get("/logged").header("x-request-id", "trace-me").body(Body::empty()).unwrap();
    assert_eq!(call(&router, request).await.status(), StatusCode::OK);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.iter().any(|line| line["message"] == "inside the handler"), "{text}");
    for line in &lines {
        assert_eq!(line["span"]["request_id"], "trace-me", "{line}");
    }
    let inside = lines.iter().find(|line| line["message"] == "inside the handler").unwrap();
    assert_eq!(inside["span"]["principal"], "anonymous", "{inside}");
}
