//! Hostile input, found by trying Tally as an attacker would (issue #19), over HTTP: each a clear 4xx problem
//! with a stable code, and not one event written.
#![allow(clippy::unwrap_used)]

mod support;

use reqwest::header::CONTENT_TYPE;
use reqwest::RequestBuilder;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{key, Reply, TestApp};

/// NGN (scale 2) and a wallet of alice's holding 10.00.
async fn ledger(pool: PgPool) -> (TestApp, String) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("NGN", 2, None).await;
    let wallet = app.open_wallet("alice", "NGN").await;
    assert_eq!(app.money(&wallet, "topup", "10.00").await.status, 201);
    (app, wallet)
}

fn raw(app: &TestApp, path: &str, content_type: &str, body: &str) -> RequestBuilder {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key())
        .header(CONTENT_TYPE, content_type)
        .body(body.to_owned())
}

/// Sends `request`; asserts the problem's status and code, and that the log did not grow.
async fn assert_refused(app: &TestApp, request: RequestBuilder, status: u16, code: &str) -> Reply {
    let before = app.event_count().await;
    let reply = app.send(request).await;
    assert_eq!((reply.status, reply.code()), (status, code), "{:?}", reply.body);
    let content_type = reply.headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {:?}", reply.body);
    reply
}

#[sqlx::test(migrations = "../migrations")]
async fn a_json_array_is_no_command_body_on_any_route(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let other = app.open_wallet("bob", "NGN").await;
    let transfer = app.money(&wallet, "spend", "1.00").await.body["transfer_id"].as_str().unwrap().to_owned();
    let cases: Vec<(String, Value)> = vec![
        ("/v1/assets".into(), json!(["ARR", 2])),
        ("/v1/wallets".into(), json!(["carol", "NGN"])),
        (format!("/v1/wallets/{wallet}/topup"), json!(["1.00"])),
        (format!("/v1/wallets/{wallet}/bonus"), json!(["1.00"])),
        (format!("/v1/wallets/{wallet}/spend"), json!(["1.00"])),
        (format!("/v1/wallets/{wallet}/withdrawal"), json!(["1.00"])),
        (format!("/v1/wallets/{wallet}/cash-in"), json!(["1.00"])),
        ("/v1/transfers".into(), json!([wallet, other, "0.40"])),
        (format!("/v1/transfers/{transfer}/reversal"), json!(["0.50"])),
        (format!("/v1/wallets/{wallet}/freeze"), json!([])),
        (format!("/v1/wallets/{wallet}/close"), json!(["why"])),
    ];
    for (path, body) in cases {
        let reply =
            assert_refused(&app, raw(&app, &path, "application/json", &body.to_string()), 422, "validation_failed")
                .await;
        assert_eq!(reply.body["field"], "body", "{path}: {:?}", reply.body);
    }
    for scalar in ["\"1.00\"", "1", "null", "true"] {
        let path = format!("/v1/wallets/{wallet}/topup");
        assert_refused(&app, raw(&app, &path, "application/json", scalar), 422, "validation_failed").await;
    }
    assert_eq!(app.balance(&wallet).await.to_string(), "9.00", "only the spend moved money");
    // `null` is no body, as an empty one is: a top-up lacks its amount, a freeze (whose body may be empty) freezes.
    let path = format!("/v1/wallets/{wallet}/topup");
    let topup = assert_refused(&app, raw(&app, &path, "application/json", "null"), 422, "validation_failed").await;
    assert_eq!(topup.body["field"], "amount", "{:?}", topup.body);
    let frozen = app.send(raw(&app, &format!("/v1/wallets/{wallet}/freeze"), "application/json", "null")).await;
    assert_eq!((frozen.status, &frozen.body["status"]), (200, &json!("frozen")), "{:?}", frozen.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_charset_other_than_utf_8_is_415(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let path = format!("/v1/wallets/{wallet}/topup");
    for content_type in [
        "application/json; charset=latin1",
        "application/json;charset=\"ISO-8859-1\"",
        "application/json; charset=utf-16",
    ] {
        assert_refused(&app, raw(&app, &path, content_type, r#"{"amount":"1"}"#), 415, "unsupported_media_type").await;
    }
    for content_type in ["application/json; charset=utf-8", "application/json; charset=\"UTF-8\""] {
        let reply = app.send(raw(&app, &path, content_type, r#"{"amount":"1"}"#)).await;
        assert_eq!(reply.status, 201, "{content_type}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_encoded_body_is_415_not_read_as_json(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let path = format!("/v1/wallets/{wallet}/topup");
    for encoding in ["gzip", "deflate", "br", "identity, gzip"] {
        let request = raw(&app, &path, "application/json", r#"{"amount":"1"}"#).header("content-encoding", encoding);
        assert_refused(&app, request, 415, "unsupported_media_type").await;
    }
    let identity = raw(&app, &path, "application/json", r#"{"amount":"1"}"#).header("content-encoding", "identity");
    assert_eq!(app.send(identity).await.status, 201);
}

#[sqlx::test(migrations = "../migrations")]
async fn metadata_nested_too_deep_is_422_however_deep(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let path = format!("/v1/wallets/{wallet}/topup");
    for depth in [9, 200, 1_000] {
        let metadata = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let body = format!(r#"{{"amount":"1","metadata":{metadata}}}"#);
        let reply = assert_refused(&app, raw(&app, &path, "application/json", &body), 422, "validation_failed").await;
        assert_eq!(reply.body["field"], "metadata", "depth {depth}: {:?}", reply.body);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_status_change_answers_the_whole_wallet_as_its_schema_says(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let opened_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT recorded_at FROM events WHERE stream_id = $1 AND version = 1")
            .bind(format!("wallet-{wallet}"))
            .fetch_one(&app.pool)
            .await
            .unwrap();

    let frozen = app.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({})).await;
    let again = app.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({})).await;
    let unfrozen = app.post(&format!("/v1/wallets/{wallet}/unfreeze"), &key(), json!({})).await;

    for reply in [&frozen, &again, &unfrozen] {
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let shown: chrono::DateTime<chrono::Utc> = reply.body["opened_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(shown, opened_at, "opened_at is when the wallet was opened: {:?}", reply.body);
        assert!(reply.body["updated_at"].is_string());
    }
    assert_eq!(again.body["updated_at"], frozen.body["updated_at"], "a freeze of a frozen wallet changed nothing");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_undeclared_method_is_405_before_its_query_is_read(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    let path = format!("/v1/wallets/{wallet}/topup?min_position=nonsense&limit=-1");
    let reply = assert_refused(&app, app.client.delete(app.url(&path)), 405, "method_not_allowed").await;
    assert_eq!(reply.headers["allow"], "POST");
}

/// A body of white space alone is no empty body: it is malformed (schemathesis sent a form feed and a newline,
/// each taken for `{}`), where a body of no byte at all on a route whose body may be empty stands for `{}`.
#[sqlx::test(migrations = "../migrations")]
async fn white_space_alone_is_malformed_not_empty(pool: PgPool) {
    let (app, wallet) = ledger(pool).await;
    for body in ["\u{c}", "\u{b}", " \u{c} ", "\n", " \r\n\t"] {
        let request = raw(&app, &format!("/v1/wallets/{wallet}/freeze"), "application/json", body);
        assert_refused(&app, request, 400, "malformed_json").await;
    }
    let request = raw(&app, &format!("/v1/wallets/{wallet}/freeze"), "application/json", "");
    assert_eq!(app.send(request).await.status, 200, "no body at all is an empty body");
    app.stop().await;
}
