//! Read-your-writes across the CQRS boundary: command → event store → NATS → projector → read models →
//! query-service, each read given the position its command answered.

use sqlx::PgPool;

use crate::commands::{unique_prefix, CommandService};
use crate::projector::Projector;
use crate::support::TestApp;

const COMMANDS: usize = 200;

#[sqlx::test(migrations = "../migrations")]
async fn every_read_at_its_commands_position_shows_the_effect(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    // A generous bound: what is tested is that no read at its command's position misses the effect, not speed.
    let queries = TestApp::spawn_with(pool, &["--min-position-wait-ms", "10000"]).await;
    commands.define_asset("GOLD", 2).await;
    let opened = commands.open_wallet("alice", "GOLD").await;
    let wallet_id = opened.body["wallet_id"].as_str().unwrap().to_owned();
    let shown = queries.get(&format!("/v1/wallets/{wallet_id}?min_position={}", opened.position())).await;
    assert_eq!(shown.ok()["balance"], "0.00", "the wallet is readable as soon as it is opened");

    for command in 1..=COMMANDS {
        let answered = commands.money(&wallet_id, "topup", "1.00").await;
        let position = answered.position();

        let wallet = queries.get(&format!("/v1/wallets/{wallet_id}?min_position={position}")).await;
        let history = queries
            .get_with(&format!("/v1/wallets/{wallet_id}/history?limit=1"), &[("X-Min-Position", &position.to_string())])
            .await;

        assert!(wallet.projection_position() >= position);
        assert_eq!(wallet.ok()["balance"], format!("{command}.00"), "after command {command}");
        assert_eq!(history.ok()["items"][0]["transfer_id"], answered.body["transfer_id"], "after command {command}");
        assert_eq!(history.body["items"][0]["balance_after"], format!("{command}.00"));
    }

    let last = commands.money(&wallet_id, "spend", "0.50").await;
    let transfer_id = last.body["transfer_id"].as_str().unwrap();
    let transfer = queries.get(&format!("/v1/transfers/{transfer_id}?min_position={}", last.position())).await;
    let asset = queries.get(&format!("/v1/assets/GOLD?min_position={}", last.position())).await;
    let transfer = transfer.ok();
    assert_eq!(transfer["kind"], "spend");
    assert_eq!(transfer["amount"], "0.50");
    assert_eq!(transfer["legs"][0]["from_wallet_id"], wallet_id);
    assert_eq!(transfer["reversals"], serde_json::json!([]));
    let asset = asset.ok();
    assert_eq!(asset["supply"], format!("{COMMANDS}.00"));
    assert_eq!(asset["user_balance_total"], format!("{}.50", COMMANDS - 1));
    assert_eq!(asset["balance_sum"], "0.00");
    assert_eq!(asset["volume_by_kind"]["topup"], format!("{COMMANDS}.00"));
    assert_eq!(asset["volume_by_kind"]["spend"], "0.50");
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}

/// What query-service shows is what the commands answered: the same asset, wallet and transfer documents.
#[sqlx::test(migrations = "../migrations")]
async fn reads_show_what_the_commands_answered(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn_with(pool, &["--min-position-wait-ms", "10000"]).await;
    let fee = serde_json::json!({ "percent": "1.5", "fixed": "0.10", "min": "0.20", "max": "50" });
    let defined =
        commands.post("/v1/assets", serde_json::json!({ "code": "NGN", "scale": 2, "cash_in_fee": fee })).await;
    let opened = commands
        .post("/v1/wallets", serde_json::json!({ "owner_id": "bola", "asset": "NGN", "metadata": { "tier": 2 } }))
        .await;
    let wallet_id = opened.body["wallet_id"].as_str().unwrap().to_owned();
    let cashed_in = commands.money(&wallet_id, "cash-in", "100.00").await;
    let position = cashed_in.position();

    let asset = queries.get(&format!("/v1/assets/NGN?min_position={position}")).await;
    let wallet = queries.get(&format!("/v1/wallets/{wallet_id}?min_position={position}")).await;
    let transfer_id = cashed_in.body["transfer_id"].as_str().unwrap();
    let transfer = queries.get(&format!("/v1/transfers/{transfer_id}?min_position={position}")).await;

    let asset = asset.ok();
    for member in ["code", "scale", "cash_in_fee", "system_wallets"] {
        assert_eq!(asset[member], defined.body[member], "{member}");
    }
    let mut opened_view = opened.body.clone();
    let mut wallet_view = wallet.ok().clone();
    for member in ["position", "balance", "available", "version", "updated_at"] {
        opened_view.as_object_mut().unwrap().remove(member);
        wallet_view.as_object_mut().unwrap().remove(member);
    }
    assert_eq!(wallet_view, opened_view, "the wallet as the command answered it, apart from what moved since");
    assert_eq!(wallet.body["balance"], "98.40", "100.00 in, a fee of 1.5 % + 0.10 out");
    let mut transfer_view = transfer.ok().clone();
    assert_eq!(transfer_view.as_object_mut().unwrap().remove("reversals"), Some(serde_json::json!([])));
    assert_eq!(transfer_view, cashed_in.body, "the transfer as the command answered it");
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}

/// `projector rebuild` swaps fresh tables in under a running query-service: its cached statements follow.
#[sqlx::test(migrations = "../migrations")]
async fn reads_survive_a_rebuild_swapped_in_underneath(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    // One connection, so that every statement read after the swap was prepared against the old tables.
    let queries =
        TestApp::spawn_with(pool.clone(), &["--database-pool-size", "1", "--min-position-wait-ms", "10000"]).await;
    commands.define_asset("GOLD", 0).await;
    let wallet_id = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let position = commands.money(&wallet_id, "topup", "7").await.position();
    let paths = [
        format!("/v1/wallets/{wallet_id}"),
        format!("/v1/wallets/{wallet_id}/history"),
        "/v1/assets".to_owned(),
        "/v1/owners/alice/wallets".to_owned(),
    ];
    let mut before = Vec::new();
    for path in &paths {
        before.push(queries.get(&format!("{path}?min_position={position}")).await.ok().clone());
    }
    projector.stop().await;

    projector::rebuild::rebuild(&pool, 1_000, |_| {}).await.expect("the rebuild swaps in");

    for (path, before) in paths.iter().zip(before) {
        let after = queries.get(path).await;
        assert_eq!(after.ok(), &before, "{path}");
    }
    queries.stop().await;
    service.stop().await;
}
