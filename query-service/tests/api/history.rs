//! `GET /v1/wallets/{wallet_id}/history`: keyset pages, newest first, opaque cursors.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::support::{insert_asset, insert_history, insert_wallet, TestApp};

const ENTRIES: i64 = 250;

/// A wallet with `ENTRIES` credits of 1.00 at versions 2..=251 (version 1 opened it).
async fn wallet_with_history(pool: &PgPool) -> uuid::Uuid {
    insert_asset(pool, "GOLD", 2, None).await;
    let wallet_id = insert_wallet(pool, "alice", "GOLD").await;
    for entry in 1..=ENTRIES {
        insert_history(pool, wallet_id, entry + 1, 100 + entry, Decimal::ONE, Decimal::from(entry)).await;
    }
    wallet_id
}

#[sqlx::test(migrations = "../migrations")]
async fn pages_of_ten_walk_the_whole_history_newest_first(pool: PgPool) {
    let wallet_id = wallet_with_history(&pool).await;
    let app = TestApp::spawn(pool).await;

    let mut versions = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/wallets/{wallet_id}/history?limit=10&cursor={cursor}"),
            None => format!("/v1/wallets/{wallet_id}/history?limit=10"),
        };
        let page = app.get(&path).await;
        let page = page.ok();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        versions.extend(items.iter().map(|item| item["version"].as_i64().unwrap()));
        pages += 1;
        assert!(pages <= ENTRIES / 10, "more pages than entries allow");
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    let expected: Vec<i64> = (2..=ENTRIES + 1).rev().collect();
    assert_eq!(versions, expected, "every entry once, newest first");
    assert_eq!(versions.iter().collect::<HashSet<_>>().len(), ENTRIES as usize);
    assert_eq!(pages, ENTRIES / 10);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_entry_has_the_specified_shape(pool: PgPool) {
    let wallet_id = wallet_with_history(&pool).await;
    let app = TestApp::spawn(pool).await;

    let page = app.get(&format!("/v1/wallets/{wallet_id}/history?limit=1")).await;

    let entry = &page.ok()["items"][0];
    assert_eq!(entry["version"], ENTRIES + 1);
    assert_eq!(entry["position"], 100 + ENTRIES);
    assert_eq!(entry["kind"], "topup");
    assert_eq!(entry["direction"], "credit");
    assert_eq!(entry["amount"], "1.00");
    assert_eq!(entry["balance_after"], "250.00");
    assert_eq!(entry["reference"], format!("ref-{}", ENTRIES + 1));
    for member in ["transfer_id", "counterparty_wallet_id", "recorded_at"] {
        assert!(entry[member].is_string(), "{member}: {entry}");
    }
    assert!(page.body["next_cursor"].is_string());
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn forged_and_foreign_cursors_are_refused(pool: PgPool) {
    let wallet_id = wallet_with_history(&pool).await;
    let other_wallet = insert_wallet(&pool, "bob", "GOLD").await;
    let app = TestApp::spawn(pool).await;
    let first = app.get(&format!("/v1/wallets/{wallet_id}/history?limit=10")).await;
    let cursor = first.ok()["next_cursor"].as_str().unwrap().to_owned();
    let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    bytes[20] ^= 0x40; // move the version without fixing the checksum
    let forged = URL_SAFE_NO_PAD.encode(&bytes);

    for bad in [forged.as_str(), "bm90LWEtY3Vyc29y", "%%%", "", &"A".repeat(100)] {
        let answer = app.get(&format!("/v1/wallets/{wallet_id}/history?cursor={bad}")).await;
        answer.validation("cursor");
    }
    let foreign = app.get(&format!("/v1/wallets/{other_wallet}/history?cursor={cursor}")).await;
    foreign.validation("cursor");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn limits_parameters_and_wallets_are_checked(pool: PgPool) {
    insert_asset(&pool, "GOLD", 2, None).await;
    let empty_wallet = insert_wallet(&pool, "carol", "GOLD").await;
    let app = TestApp::spawn(pool).await;

    for bad in ["0", "1001", "-5", "ten", "1.5"] {
        app.get(&format!("/v1/wallets/{empty_wallet}/history?limit={bad}")).await.validation("limit");
    }
    app.get(&format!("/v1/wallets/{empty_wallet}/history?limit=5&limit=6")).await.validation("limit");
    app.get(&format!("/v1/wallets/{empty_wallet}/history?page=2")).await.validation("page");
    app.get("/v1/wallets/nope/history").await.validation("wallet_id");
    let unknown = app.get("/v1/wallets/0192f0c1-8a7e-7d00-8000-000000000009/history").await;
    let empty = app.get(&format!("/v1/wallets/{empty_wallet}/history?limit=1000")).await;

    unknown.problem(404, "wallet_not_found");
    assert_eq!(empty.ok()["items"], serde_json::json!([]));
    assert!(empty.body.get("next_cursor").is_none());
    app.stop().await;
}
