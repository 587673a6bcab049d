//! `GET /v1/wallets/{wallet_id}` and `GET /v1/owners/{owner_id}/wallets`.

use sqlx::PgPool;

use crate::support::{dec, insert_asset, insert_wallet, insert_wallet_row, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn a_wallet_shows_its_balance_at_the_asset_scale(pool: PgPool) {
    let system_wallets = insert_asset(&pool, "NGN", 2, None).await;
    let wallet_id = uuid::Uuid::now_v7();
    insert_wallet_row(&pool, wallet_id, "alice", "NGN", "user", dec("10.5"), Some(dec("5")), 3).await;
    let app = TestApp::spawn(pool).await;

    let wallet = app.get(&format!("/v1/wallets/{wallet_id}")).await;
    let treasury = app.get(&format!("/v1/wallets/{}", system_wallets.treasury)).await;

    let wallet = wallet.ok();
    assert_eq!(wallet["wallet_id"], wallet_id.to_string());
    assert_eq!(wallet["owner_id"], "alice");
    assert_eq!(wallet["asset"], "NGN");
    assert_eq!(wallet["kind"], "user");
    assert_eq!(wallet["status"], "active");
    assert_eq!(wallet["balance"], "10.50");
    assert_eq!(wallet["overdraft_limit"], "5.00");
    assert_eq!(wallet["version"], 3);
    assert!(wallet["opened_at"].is_string() && wallet["updated_at"].is_string());
    assert_eq!(treasury.ok()["overdraft_limit"], serde_json::Value::Null);
    assert_eq!(treasury.body["kind"], "treasury");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn an_owner_lists_all_their_wallets(pool: PgPool) {
    insert_asset(&pool, "GOLD", 0, None).await;
    insert_asset(&pool, "NGN", 2, None).await;
    let gold = insert_wallet(&pool, "owner 42/ü", "GOLD").await;
    let naira = insert_wallet(&pool, "owner 42/ü", "NGN").await;
    insert_wallet(&pool, "someone else", "NGN").await;
    let app = TestApp::spawn(pool).await;

    let wallets = app.get("/v1/owners/owner%2042%2F%C3%BC/wallets").await;
    let nobody = app.get("/v1/owners/nobody/wallets").await;

    let items = wallets.ok()["items"].as_array().unwrap().clone();
    let ids: Vec<&str> = items.iter().map(|wallet| wallet["wallet_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [gold.to_string(), naira.to_string()]);
    assert_eq!(items[0]["balance"], "0");
    assert_eq!(items[1]["balance"], "0.00");
    assert_eq!(nobody.ok()["items"], serde_json::json!([]));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_and_malformed_wallet_ids_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let unknown = app.get("/v1/wallets/0192f0c1-8a7e-7d00-8000-000000000001").await;
    let malformed = app.get("/v1/wallets/not-a-uuid").await;
    let overlong_owner = app.get(&format!("/v1/owners/{}/wallets", "o".repeat(129))).await;
    let control_owner = app.get("/v1/owners/a%00b/wallets").await;

    assert_eq!(unknown.problem(404, "wallet_not_found")["wallet_id"], "0192f0c1-8a7e-7d00-8000-000000000001");
    malformed.validation("wallet_id");
    overlong_owner.validation("owner_id");
    control_owner.validation("owner_id");
    app.stop().await;
}
