//! `GET /v1/assets` and `GET /v1/assets/{code}`.

use serde_json::json;
use sqlx::PgPool;

use crate::support::{insert_asset, TestApp};

#[sqlx::test(migrations = "../migrations")]
async fn an_asset_shows_its_totals_at_its_scale(pool: PgPool) {
    let fee = json!({ "percent": "1.5", "fixed": "0.1", "min": "0.5" });
    let system_wallets = insert_asset(&pool, "GOLD", 2, Some(fee)).await;
    sqlx::query("UPDATE rm_assets SET supply = 150.5, user_balance_total = 120, wallet_count = 5 WHERE code = 'GOLD'")
        .execute(&pool)
        .await
        .unwrap();
    // The treasury issued 150.50: 120 is with users, 20 with revenue, 10.50 with fees.
    for (wallet, balance) in
        [(system_wallets.treasury, "-150.5"), (system_wallets.revenue, "20"), (system_wallets.fees, "10.5")]
    {
        sqlx::query("UPDATE rm_wallets SET balance = $2::numeric WHERE wallet_id = $1")
            .bind(wallet.0)
            .bind(balance)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO rm_asset_volumes (asset, kind, volume, transfer_count) VALUES ('GOLD', 'topup', 150.5, 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    insert_asset(&pool, "DIAMONDS", 0, None).await;
    let app = TestApp::spawn(pool).await;

    let gold = app.get("/v1/assets/GOLD").await;
    let list = app.get("/v1/assets").await;

    let gold = gold.ok();
    assert_eq!(gold["code"], "GOLD");
    assert_eq!(gold["scale"], 2);
    assert_eq!(gold["cash_in_fee"], json!({ "percent": "1.5", "fixed": "0.10", "min": "0.50" }));
    assert_eq!(gold["system_wallets"]["treasury"], system_wallets.treasury.to_string());
    assert_eq!(gold["system_wallets"]["revenue"], system_wallets.revenue.to_string());
    assert_eq!(gold["system_wallets"]["fees"], system_wallets.fees.to_string());
    assert_eq!(gold["supply"], "150.50");
    assert_eq!(gold["user_balance_total"], "120.00");
    assert_eq!(gold["balance_sum"], "0.00", "every wallet's balance, system wallets included, sums to zero");
    assert_eq!(gold["wallet_count"], 5);
    assert_eq!(gold["volume_by_kind"]["topup"], "150.50");
    assert_eq!(gold["volume_by_kind"]["spend"], "0.00");
    assert_eq!(gold["volume_by_kind"].as_object().unwrap().len(), 7);
    let codes: Vec<&str> =
        list.ok()["items"].as_array().unwrap().iter().map(|asset| asset["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["DIAMONDS", "GOLD"]);
    assert_eq!(list.body["items"][0]["cash_in_fee"], serde_json::Value::Null);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_balance_sum_off_zero_is_shown_as_it_is(pool: PgPool) {
    let system_wallets = insert_asset(&pool, "GOLD", 2, None).await;
    sqlx::query("UPDATE rm_assets SET user_balance_total = 100 WHERE code = 'GOLD'").execute(&pool).await.unwrap();
    sqlx::query("UPDATE rm_wallets SET balance = -99.99 WHERE wallet_id = $1")
        .bind(system_wallets.treasury.0)
        .execute(&pool)
        .await
        .unwrap();
    let app = TestApp::spawn(pool).await;

    let gold = app.get("/v1/assets/GOLD").await;

    assert_eq!(gold.ok()["balance_sum"], "0.01");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_and_malformed_codes_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let unknown = app.get("/v1/assets/SILVER").await;
    let lower_case = app.get("/v1/assets/gold").await;
    let too_long = app.get(&format!("/v1/assets/{}", "A".repeat(17))).await;
    let unknown_parameter = app.get("/v1/assets?limit=5").await;

    assert_eq!(unknown.problem(404, "asset_not_found")["asset"], "SILVER");
    lower_case.validation("code");
    too_long.validation("code");
    unknown_parameter.validation("limit");
    app.stop().await;
}
