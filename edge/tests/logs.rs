//! Every JSON log line of a request carries its request id and principal. A test binary of its own:
//! it installs the process-wide subscriber, which tracing's callsite cache needs to see from the start
//! (a thread-local subscriber raced with the other tests of a shared binary and sometimes saw no span).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use support::{call, toy};

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
    tracing::subscriber::set_global_default(subscriber).unwrap();
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
