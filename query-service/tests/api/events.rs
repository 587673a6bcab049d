//! `GET /v1/streams/{stream_id}/events`, `GET /v1/events` and `GET /v1/projections`: the log, for auditors.

use chrono::Utc;
use sqlx::PgPool;
use tally_shared::asset::SystemWallets;
use tally_shared::envelope::StreamId;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use crate::support::{advance_checkpoint, append, asset_defined, posting, wallet_opened, TestApp};

/// An asset stream with one event and a wallet stream with `postings` credits after its opening.
async fn arrange(pool: &PgPool, postings: i64) -> (Uuid, Vec<i64>) {
    let system_wallets = SystemWallets {
        treasury: WalletId(Uuid::now_v7()),
        revenue: WalletId(Uuid::now_v7()),
        fees: WalletId(Uuid::now_v7()),
    };
    let mut positions = vec![
        append(pool, &"asset-GOLD".parse().unwrap(), 1, asset_defined("GOLD", 0, system_wallets), Utc::now()).await,
    ];
    let wallet_id = Uuid::now_v7();
    let stream = StreamId::Wallet(WalletId(wallet_id));
    positions.push(append(pool, &stream, 1, wallet_opened(wallet_id, "alice", "GOLD", 0), Utc::now()).await);
    for version in 2..=postings + 1 {
        let event = posting(true, "1", &(version - 1).to_string(), system_wallets.treasury.0);
        positions.push(append(pool, &stream, version, event, Utc::now()).await);
    }
    (wallet_id, positions)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_stream_reads_in_version_order_with_its_hashes(pool: PgPool) {
    let (wallet_id, positions) = arrange(&pool, 4).await;
    let app = TestApp::spawn(pool).await;

    let first = app.get(&format!("/v1/streams/wallet-{wallet_id}/events?limit=3")).await;
    let rest = app.get(&format!("/v1/streams/wallet-{wallet_id}/events?from_version=4&limit=3")).await;
    let asset = app.get("/v1/streams/asset-GOLD/events").await;

    let first = first.ok();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(first["next_from_version"], 4);
    let opened = &items[0];
    assert_eq!(opened["stream_id"], format!("wallet-{wallet_id}"));
    assert_eq!(opened["version"], 1);
    assert_eq!(opened["position"], positions[1]);
    assert_eq!(opened["type"], "WalletOpened");
    assert_eq!(opened["data"]["owner_id"], "alice");
    assert_eq!(opened["metadata"]["request_id"], "test");
    assert_eq!(opened["hash"], "0".repeat(64));
    assert!(opened["event_id"].is_string() && opened["recorded_at"].is_string());
    assert_eq!(items[2]["type"], "WalletCredited");
    let rest = rest.ok();
    let versions: Vec<i64> = rest["items"].as_array().unwrap().iter().map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [4, 5]);
    assert!(rest.get("next_from_version").is_none());
    assert_eq!(asset.ok()["items"][0]["type"], "AssetDefined");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_and_malformed_streams_are_refused(pool: PgPool) {
    let (wallet_id, _) = arrange(&pool, 1).await;
    let app = TestApp::spawn(pool).await;

    let past_the_end = app.get(&format!("/v1/streams/wallet-{wallet_id}/events?from_version=100")).await;

    assert_eq!(past_the_end.ok()["items"], serde_json::json!([]));
    app.get(&format!("/v1/streams/wallet-{}/events", Uuid::now_v7())).await.problem(404, "wallet_not_found");
    app.get(&format!("/v1/streams/transfer-{}/events", Uuid::now_v7())).await.problem(404, "transfer_not_found");
    app.get("/v1/streams/asset-SILVER/events").await.problem(404, "asset_not_found");
    for bad in ["wallet-x", "account-1", "asset-gold", "wallet"] {
        app.get(&format!("/v1/streams/{bad}/events")).await.validation("stream_id");
    }
    app.get(&format!("/v1/streams/wallet-{wallet_id}/events?from_version=0")).await.validation("from_version");
    app.get(&format!("/v1/streams/wallet-{wallet_id}/events?limit=2000")).await.validation("limit");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_global_log_reads_in_position_order(pool: PgPool) {
    let (_, positions) = arrange(&pool, 5).await;
    let app = TestApp::spawn(pool).await;

    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = app.get(&format!("/v1/events?after={after}&limit=2")).await;
        let page = page.ok();
        let items = page["items"].as_array().unwrap();
        read.extend(items.iter().map(|event| event["position"].as_i64().unwrap()));
        let next_after = page["next_after"].as_i64().unwrap();
        if items.is_empty() {
            assert_eq!(next_after, after, "an empty page keeps the place");
            break;
        }
        after = next_after;
    }

    assert_eq!(read, positions);
    app.get("/v1/events?after=-1").await.validation("after");
    app.get("/v1/events?after=x").await.validation("after");
    app.get("/v1/events?limit=0").await.validation("limit");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn projections_report_checkpoint_head_and_lag(pool: PgPool) {
    let (_, positions) = arrange(&pool, 3).await;
    let head = *positions.last().unwrap();
    let app = TestApp::spawn(pool.clone()).await;

    let before_any_batch = app.get("/v1/projections").await;
    advance_checkpoint(&pool, positions[2], true).await;
    let behind = app.get("/v1/projections").await;
    advance_checkpoint(&pool, head, true).await;
    let caught_up = app.get("/v1/projections").await;

    let before_any_batch = &before_any_batch.ok()["items"][0];
    assert_eq!(before_any_batch["projection"], "read_models");
    assert_eq!(before_any_batch["position"], 0);
    assert_eq!(before_any_batch["lag_events"], positions.len());
    let behind = &behind.ok()["items"][0];
    assert_eq!(behind["position"], positions[2]);
    assert_eq!(behind["head"], head);
    assert_eq!(behind["lag_events"], positions.len() - 3);
    assert!(behind["lag_ms"].as_i64().unwrap() >= 0);
    let caught_up = &caught_up.ok()["items"][0];
    assert_eq!(caught_up["lag_events"], 0);
    assert_eq!(caught_up["lag_ms"], 0);
    assert!(caught_up["updated_at"].is_string());
    app.stop().await;
}
