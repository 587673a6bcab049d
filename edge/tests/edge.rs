//! The edge around a toy router, in process: limits answer with their own problem codes, and request ids are
//! made, kept or replaced. (JSON log lines are tested in `logs.rs`, a binary of their own.)
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use support::{call, code, edge, get, toy};

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
