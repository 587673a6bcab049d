//! Holds read back through the whole stack (SPEC §8): the hold as its command answered it, a wallet's holds in
//! keyset pages by status, holds by reference, `held` and `available` on wallets and assets, and the balance,
//! held and available at a past position.

use serde_json::json;
use sqlx::PgPool;

use crate::commands::{unique_prefix, CommandService};
use crate::projector::Projector;
use crate::support::TestApp;

#[sqlx::test(migrations = "../migrations")]
async fn holds_read_back_as_their_commands_answered_them(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn_with(pool, &["--min-position-wait-ms", "10000"]).await;
    commands.define_asset("GOLD", 2).await;
    let wallet_id = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    commands.money(&wallet_id, "topup", "100").await.position();
    let mut holds = Vec::new();
    for (index, amount) in ["10", "20", "30"].into_iter().enumerate() {
        let reference = if index == 2 { "basket-2" } else { "basket-1" };
        let placed = commands
            .post(&format!("/v1/wallets/{wallet_id}/holds"), json!({"amount": amount, "reference": reference}))
            .await;
        holds.push(placed);
    }
    let before_capture = holds[2].position();
    let first = holds[0].body["hold_id"].as_str().unwrap().to_owned();
    let captured = commands.post(&format!("/v1/holds/{first}/capture"), json!({"amount": "4"})).await;
    let second = holds[1].body["hold_id"].as_str().unwrap().to_owned();
    let voided = commands.post(&format!("/v1/holds/{second}/void"), json!({})).await;
    let at = voided.position();

    let hold = queries.get(&format!("/v1/holds/{first}?min_position={at}")).await;
    let hold = hold.ok();
    let mut answered = captured.body["hold"].clone();
    answered.as_object_mut().unwrap().remove("wallet");
    let mut shown = hold.clone();
    shown.as_object_mut().unwrap().remove("wallet");
    shown.as_object_mut().unwrap().remove("position");
    assert_eq!(shown, answered, "the hold as the capture answered it");
    assert_eq!(
        (hold["status"].as_str(), hold["captured"].as_str(), hold["released"].as_str()),
        (Some("captured"), Some("4.00"), Some("6.00"))
    );
    assert_eq!(hold["wallet"], json!({"balance": "96.00", "held": "30.00", "available": "66.00", "version": 8}));
    let transfer = queries.get(&format!("/v1/transfers/{}", captured.body["transfer_id"].as_str().unwrap())).await;
    assert_eq!(transfer.ok()["hold_id"].as_str(), Some(first.as_str()));

    let wallet = queries.get(&format!("/v1/wallets/{wallet_id}")).await;
    assert_eq!((wallet.ok()["held"].as_str(), wallet.ok()["available"].as_str()), (Some("30.00"), Some("66.00")));
    let asset = queries.get("/v1/assets/GOLD").await;
    assert_eq!((asset.ok()["held_total"].as_str(), asset.ok()["active_hold_count"].as_i64()), (Some("30.00"), Some(1)));

    let page = queries.get(&format!("/v1/wallets/{wallet_id}/holds?limit=2")).await;
    let page = page.ok();
    let ids: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|hold| hold["hold_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [holds[2].body["hold_id"].as_str().unwrap(), second.as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = queries.get(&format!("/v1/wallets/{wallet_id}/holds?limit=2&cursor={cursor}")).await;
    assert_eq!(rest.ok()["items"][0]["hold_id"].as_str(), Some(first.as_str()));
    assert!(rest.ok().get("next_cursor").is_none());
    let active = queries.get(&format!("/v1/wallets/{wallet_id}/holds?status=active")).await;
    assert_eq!(active.ok()["items"].as_array().unwrap().len(), 1);
    queries.get(&format!("/v1/wallets/{wallet_id}/holds?status=pending")).await.validation("status");
    queries.get(&format!("/v1/wallets/{wallet_id}/holds?cursor=nope")).await.validation("cursor");
    let by_reference = queries.get("/v1/holds?reference=basket-1").await;
    assert_eq!(by_reference.ok()["items"].as_array().unwrap().len(), 2);
    queries.get(&format!("/v1/holds/{}", uuid::Uuid::now_v7())).await.problem(404, "hold_not_found");

    let then = queries.get(&format!("/v1/wallets/{wallet_id}/balance?at_position={before_capture}")).await;
    assert_eq!(
        (then.ok()["balance"].as_str(), then.ok()["held"].as_str(), then.ok()["available"].as_str()),
        (Some("100.00"), Some("60.00"), Some("40.00"))
    );
    let now = queries.get(&format!("/v1/wallets/{wallet_id}/balance?at_position={at}")).await;
    assert_eq!((now.ok()["held"].as_str(), now.ok()["available"].as_str()), (Some("30.00"), Some("66.00")));
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}
