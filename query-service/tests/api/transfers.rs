//! `GET /v1/transfers/{transfer_id}` and `GET /v1/transfers?reference=`.

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{dec, insert_asset, TestApp};

#[allow(clippy::too_many_arguments)]
async fn insert_transfer(
    pool: &PgPool,
    kind: &str,
    amount: Decimal,
    legs: Value,
    balances: Value,
    reference: Option<&str>,
    reverses: Option<Uuid>,
    position: i64,
) -> Uuid {
    let transfer_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO rm_transfers (transfer_id, kind, asset, amount, fee, legs, balances, reference, metadata, reverses,
                                   reason, idempotency_key, reversed_amount, position, recorded_at)
         VALUES ($1, $2, 'NGN', $3, 0, $4, $5, $6, $7, $8, NULL, 'key', 0, $9, now())",
    )
    .bind(transfer_id)
    .bind(kind)
    .bind(amount)
    .bind(legs)
    .bind(balances)
    .bind(reference)
    .bind(json!({ "order": 42 }))
    .bind(reverses)
    .bind(position)
    .execute(pool)
    .await
    .unwrap();
    transfer_id
}

#[sqlx::test(migrations = "../migrations")]
async fn a_transfer_shows_its_legs_balances_and_reversals(pool: PgPool) {
    let system_wallets = insert_asset(&pool, "NGN", 2, None).await;
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let legs = json!([
        { "from_wallet_id": alice, "to_wallet_id": bob, "amount": "10.00", "role": "principal" },
        { "from_wallet_id": alice, "to_wallet_id": system_wallets.fees, "amount": "0.5", "role": "fee" },
    ]);
    let balances = json!([
        { "wallet_id": alice, "balance": "89.50", "version": 4 },
        { "wallet_id": bob, "balance": "10", "version": 2 },
    ]);
    let original = insert_transfer(&pool, "transfer", dec("10"), legs, balances, Some("order-42"), None, 10).await;
    let reversal_legs = json!([{ "from_wallet_id": bob, "to_wallet_id": alice, "amount": "4.00" }]);
    let reversal =
        insert_transfer(&pool, "reversal", dec("4"), reversal_legs, json!([]), None, Some(original), 12).await;
    sqlx::query(
        "INSERT INTO rm_transfer_reversals (transfer_id, reversal_id, amount, fee, position, recorded_at)
         VALUES ($1, $2, 4, 0, 12, now())",
    )
    .bind(original)
    .bind(reversal)
    .execute(&pool)
    .await
    .unwrap();
    let app = TestApp::spawn(pool).await;

    let transfer = app.get(&format!("/v1/transfers/{original}")).await;
    let reversed_by = app.get(&format!("/v1/transfers/{reversal}")).await;

    let transfer = transfer.ok();
    assert_eq!(transfer["transfer_id"], original.to_string());
    assert_eq!(transfer["kind"], "transfer");
    assert_eq!(transfer["asset"], "NGN");
    assert_eq!(transfer["amount"], "10.00");
    assert_eq!(transfer["fee"], "0.00");
    assert_eq!(transfer["legs"][0], json!({ "from_wallet_id": alice, "to_wallet_id": bob, "amount": "10.00" }));
    assert_eq!(transfer["legs"][1]["amount"], "0.50");
    assert_eq!(transfer["balances"][1], json!({ "wallet_id": bob, "balance": "10.00", "version": 2 }));
    assert_eq!(transfer["reference"], "order-42");
    assert_eq!(transfer["metadata"], json!({ "order": 42 }));
    assert_eq!(transfer["position"], 10);
    assert!(transfer["recorded_at"].is_string());
    let reversals = transfer["reversals"].as_array().unwrap();
    assert_eq!(reversals.len(), 1);
    assert_eq!(reversals[0]["transfer_id"], reversal.to_string());
    assert_eq!(reversals[0]["amount"], "4.00");
    assert_eq!(reversals[0]["fee"], "0.00");
    assert_eq!(reversals[0]["position"], 12);
    let reversed_by = reversed_by.ok();
    assert_eq!(reversed_by["reverses"], original.to_string());
    assert_eq!(reversed_by["reversals"], json!([]));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn transfers_are_found_by_reference_oldest_first(pool: PgPool) {
    insert_asset(&pool, "NGN", 2, None).await;
    let wallet = Uuid::now_v7();
    let legs = json!([{ "from_wallet_id": wallet, "to_wallet_id": wallet, "amount": "1.00" }]);
    let later = insert_transfer(&pool, "topup", dec("1"), legs.clone(), json!([]), Some("batch 7"), None, 30).await;
    let earlier = insert_transfer(&pool, "spend", dec("1"), legs.clone(), json!([]), Some("batch 7"), None, 20).await;
    insert_transfer(&pool, "spend", dec("1"), legs, json!([]), Some("batch 8"), None, 25).await;
    let app = TestApp::spawn(pool).await;

    let found = app.get("/v1/transfers?reference=batch%207").await;
    let none = app.get("/v1/transfers?reference=nothing").await;

    let ids: Vec<&str> =
        found.ok()["items"].as_array().unwrap().iter().map(|t| t["transfer_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [earlier.to_string(), later.to_string()]);
    assert_eq!(none.ok()["items"], json!([]));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_and_malformed_transfers_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    let unknown = app.get("/v1/transfers/0192f0c1-8a7e-7d00-8000-000000000001").await;

    assert_eq!(unknown.problem(404, "transfer_not_found")["transfer_id"], "0192f0c1-8a7e-7d00-8000-000000000001");
    app.get("/v1/transfers/12345").await.validation("transfer_id");
    app.get("/v1/transfers").await.validation("reference");
    app.get("/v1/transfers?reference=").await.validation("reference");
    app.get(&format!("/v1/transfers?reference={}", "r".repeat(129))).await.validation("reference");
    app.get("/v1/transfers?ref=x").await.validation("ref");
    app.stop().await;
}
