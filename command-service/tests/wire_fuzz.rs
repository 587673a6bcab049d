//! Property-based fuzzing against the real store and the real service (issue #19): canonical JSON survives a
//! trip through Postgres' `jsonb` (so an event read back hashes as it was written), and no body a client can
//! send makes a command answer 5xx or write an event it should not. `PROPTEST_CASES` scales both.
#![allow(clippy::unwrap_used)]

mod support;

use std::str::FromStr;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use sqlx::PgPool;
use support::{key, TestApp};
use tally_shared::envelope::{canonical_json, HashedFields};

/// Cases per property unless `PROPTEST_CASES` says otherwise: enough to cover the shapes, few enough for CI.
const CASES_DEFAULT: u32 = 200;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(CASES_DEFAULT)
}

fn json_number() -> impl Strategy<Value = Value> {
    proptest::string::string_regex("-?(0|[1-9][0-9]{0,18})(\\.[0-9]{1,12})?([eE][-+]?[0-9]{1,2})?")
        .unwrap()
        .prop_map(|text| Value::from_str(&text).unwrap())
}

/// Any JSON value without NUL characters, which Postgres' `jsonb` refuses.
fn json_value() -> impl Strategy<Value = Value> {
    let text = || proptest::string::string_regex("[^\\x00]{0,12}").unwrap();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        text().prop_map(Value::String)
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn sample<S: Strategy>(strategy: &S, runner: &mut TestRunner, count: u32) -> Vec<S::Value> {
    (0..count).map(|_| strategy.new_tree(runner).unwrap().current()).collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn canonical_json_and_the_hash_survive_a_trip_through_jsonb(pool: PgPool) {
    let mut runner = TestRunner::deterministic();
    let values = sample(&json_value(), &mut runner, cases());
    let texts: Vec<String> = values.iter().map(|value| value.to_string()).collect();
    let read_back: Vec<Value> =
        sqlx::query_scalar("SELECT value FROM unnest($1::text[]) WITH ORDINALITY AS t(text, n), LATERAL (SELECT text::jsonb AS value) v ORDER BY n")
            .bind(&texts)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(read_back.len(), values.len());
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
    for (written, read) in values.iter().zip(&read_back) {
        assert_eq!(canonical_json(written), canonical_json(read), "written {written}, read back {read}");
        let hash = |data: &Value| {
            HashedFields {
                stream_id: "wallet-fuzz",
                version: 1,
                event_id: uuid::Uuid::nil(),
                event_type: "Fuzzed",
                data,
                metadata: &Value::Null,
                recorded_at: at,
            }
            .chain_hash(&[0; 32])
        };
        assert_eq!(hash(written), hash(read), "the hash of {written} changed through jsonb");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn no_body_makes_a_command_answer_5xx_or_write_when_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("NGN", 2, None).await;
    let wallet = app.open_wallet("alice", "NGN").await;
    let routes = [
        "/v1/assets".to_owned(),
        "/v1/wallets".to_owned(),
        format!("/v1/wallets/{wallet}/topup"),
        format!("/v1/wallets/{wallet}/spend"),
        format!("/v1/wallets/{wallet}/freeze"),
        "/v1/transfers".to_owned(),
    ];
    // Bodies of every shape, and bodies shaped like commands with fuzzed values.
    let field = prop_oneof![
        Just("amount"),
        Just("reference"),
        Just("metadata"),
        Just("owner_id"),
        Just("asset"),
        Just("code"),
        Just("scale"),
        Just("fee")
    ];
    let command_like = proptest::collection::btree_map(field, json_value(), 0..4)
        .prop_map(|fields| Value::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect()));
    let body = prop_oneof![json_value(), command_like];
    let mut runner = TestRunner::deterministic();
    for (index, body) in sample(&body, &mut runner, cases()).into_iter().enumerate() {
        let path = &routes[index % routes.len()];
        let before = app.event_count().await;
        let reply = app.post(path, &key(), body.clone()).await;
        assert!(reply.status < 500, "{path} {body} → {} {:?}", reply.status, reply.body);
        if reply.status >= 400 {
            assert_eq!(app.event_count().await, before, "{path} {body} was refused but wrote: {:?}", reply.body);
            assert!(reply.body["code"].is_string(), "{path} {body} → {:?}", reply.body);
        }
    }
    assert_eq!(app.asset_sum("NGN").await, rust_decimal::Decimal::ZERO, "whatever was accepted still sums to zero");
}
