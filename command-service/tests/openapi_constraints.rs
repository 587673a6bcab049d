//! The OpenAPI document states every constraint the code enforces (issue #19, finding 5), so that a client
//! generated from it builds valid commands: each limit equals the code's own constant, and each pattern
//! accepts exactly what the code accepts, on a table of edge cases.
#![allow(clippy::unwrap_used)]

mod support;

use regex::Regex;
use serde_json::Value;
use sqlx::PgPool;
use support::TestApp;
use tally_shared::api::{
    self, IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_KEY_PATTERN, IF_MATCH_PATTERN, NON_NEGATIVE_AMOUNT_PATTERN,
    POSITIVE_AMOUNT_PATTERN, REASON_LENGTH_MAX, REFERENCE_LENGTH_MAX,
};
use tally_shared::asset::{AssetCode, ASSET_CODE_PATTERN};
use tally_shared::money::{parse_decimal, SCALE_MAX};
use tally_shared::wallet::OWNER_ID_LENGTH_MAX;

/// `If-Match` values and whether they are valid: the document's pattern and the service agree on each.
const IF_MATCH_CASES: &[(&str, bool)] = &[
    ("\"3\"", true),
    ("\"0\"", true),
    ("3", true),
    ("\"999999999999999999\"", true),
    ("\"1000000000000000000\"", false),
    ("\"+3\"", false),
    ("+3", false),
    ("\"-1\"", false),
    ("W/\"3\"", false),
    ("\"3", false),
    ("\"\"", false),
];

async fn document(pool: PgPool) -> Value {
    let app = TestApp::spawn(pool).await;
    let document = app.send(app.client.get(app.url("/openapi.json"))).await.body;
    app.stop().await;
    document
}

fn property<'a>(document: &'a Value, schema: &str, name: &str) -> &'a Value {
    let property = &document["components"]["schemas"][schema]["properties"][name];
    assert!(property.is_object(), "{schema}.{name} is not in the document");
    property
}

/// The schema of a header parameter of `POST path`.
fn header<'a>(document: &'a Value, path: &str, name: &str) -> &'a Value {
    let parameters = document["paths"][path]["post"]["parameters"].as_array().unwrap();
    let parameter = parameters.iter().find(|parameter| parameter["name"] == name).unwrap();
    &parameter["schema"]
}

#[sqlx::test(migrations = "../migrations")]
async fn every_limit_in_the_document_is_the_codes_own(pool: PgPool) {
    let document = document(pool).await;

    let key = header(&document, "/v1/wallets", "Idempotency-Key");
    assert_eq!(key["maxLength"], IDEMPOTENCY_KEY_LENGTH_MAX);
    assert_eq!(key["minLength"], 1);
    assert_eq!(key["pattern"], IDEMPOTENCY_KEY_PATTERN);
    assert_eq!(header(&document, "/v1/wallets/{wallet_id}/spend", "If-Match")["pattern"], IF_MATCH_PATTERN);
    assert_eq!(property(&document, "OpenWalletRequest", "owner_id")["maxLength"], OWNER_ID_LENGTH_MAX);
    assert_eq!(property(&document, "OpenWalletRequest", "asset")["pattern"], ASSET_CODE_PATTERN);
    assert_eq!(property(&document, "DefineAssetRequest", "code")["pattern"], ASSET_CODE_PATTERN);
    assert_eq!(property(&document, "DefineAssetRequest", "scale")["maximum"], SCALE_MAX);
    for schema in ["MoveRequest", "TransferRequest"] {
        assert_eq!(property(&document, schema, "reference")["maxLength"], REFERENCE_LENGTH_MAX, "{schema}");
        assert_eq!(property(&document, schema, "amount")["pattern"], POSITIVE_AMOUNT_PATTERN, "{schema}");
    }
    for schema in ["ReversalRequest", "StatusRequest"] {
        assert_eq!(property(&document, schema, "reason")["maxLength"], REASON_LENGTH_MAX, "{schema}");
    }
    assert_eq!(property(&document, "ReversalRequest", "amount")["pattern"], POSITIVE_AMOUNT_PATTERN);
    assert_eq!(property(&document, "TransferRequest", "fee")["pattern"], NON_NEGATIVE_AMOUNT_PATTERN);
    assert_eq!(property(&document, "OpenWalletRequest", "overdraft_limit")["pattern"], NON_NEGATIVE_AMOUNT_PATTERN);
}

/// Texts on both sides of every pattern's edge.
const AMOUNTS: [&str; 16] =
    ["1", "0", "0.00", "0.01", "10.50", "00.5", "007", "-1", "+1", ".5", "5.", "1e3", "NaN", " 1", "1 ", ""];

#[test]
fn the_amount_patterns_accept_what_the_amount_parser_accepts() {
    let positive = Regex::new(POSITIVE_AMOUNT_PATTERN).unwrap();
    let non_negative = Regex::new(NON_NEGATIVE_AMOUNT_PATTERN).unwrap();
    for text in AMOUNTS {
        let parsed = parse_decimal(text).ok();
        let above_zero = parsed.is_some_and(|value| value > rust_decimal::Decimal::ZERO);
        let at_least_zero = parsed.is_some_and(|value| value >= rust_decimal::Decimal::ZERO);
        assert_eq!(positive.is_match(text), above_zero, "positive: {text:?}");
        assert_eq!(non_negative.is_match(text), at_least_zero, "non-negative: {text:?}");
    }
}

#[test]
fn the_key_and_asset_patterns_accept_what_the_code_accepts() {
    let key = Regex::new(IDEMPOTENCY_KEY_PATTERN).unwrap();
    let long = "k".repeat(IDEMPOTENCY_KEY_LENGTH_MAX);
    let too_long = "k".repeat(IDEMPOTENCY_KEY_LENGTH_MAX + 1);
    for text in ["a", "order-17/retry#2", "~!", &long, &too_long, "", "with space", "tab\t", "é"] {
        assert_eq!(key.is_match(text), api::is_valid_idempotency_key(text), "key {text:?}");
    }
    let code = Regex::new(ASSET_CODE_PATTERN).unwrap();
    for text in ["GOLD", "G", "NGN_2", "A234567890123456", "A2345678901234567", "gold", "1GOLD", "_A", "GO LD", ""] {
        assert_eq!(code.is_match(text), AssetCode::parse(text).is_ok(), "asset code {text:?}");
    }
    let if_match = Regex::new(IF_MATCH_PATTERN).unwrap();
    for (text, valid) in IF_MATCH_CASES {
        assert_eq!(if_match.is_match(text), *valid, "If-Match {text:?}");
    }
}

/// The service reads `If-Match` as the document's pattern says: each valid value is a version (the wallet's
/// own answers 201, any other 412), each invalid one is `422 validation_failed` naming the header.
#[sqlx::test(migrations = "../migrations")]
async fn the_service_reads_if_match_as_the_document_says(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("GOLD", 2, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    for (text, valid) in IF_MATCH_CASES {
        let request = app
            .client
            .post(app.url(&format!("/v1/wallets/{wallet}/topup")))
            .header("idempotency-key", support::key())
            .header("if-match", *text)
            .json(&serde_json::json!({ "amount": "1.00" }));
        let reply = app.send(request).await;
        match valid {
            true => assert!(
                matches!((reply.status, reply.code()), (201, _) | (412, "version_mismatch")),
                "If-Match {text}: {:?}",
                reply.body
            ),
            false => {
                assert_eq!((reply.status, reply.code()), (422, "validation_failed"), "If-Match {text}");
                assert_eq!(reply.body["field"], "If-Match");
            }
        }
    }
    app.stop().await;
}
