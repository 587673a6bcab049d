//! The read models at the domain's numeric limits: the largest amounts, moved again and again, push an asset's
//! volumes past `Decimal`'s range, where no balance can go (the treasury's own balance bounds the supply, and so
//! the users' total). Every read still answers, with every digit, and the projector still projects.

use std::time::Duration;

use sqlx::PgPool;

use crate::commands::{unique_prefix, CommandService};
use crate::projector::Projector;
use crate::support::{eventually, TestApp};

/// The largest whole amount of a scale-0 asset: 28 nines, just under `Decimal::MAX` (about 7.9e28).
const LARGEST: &str = "9999999999999999999999999999";
/// How many times each wallet is topped up, withdrawn and topped up again (issue #19's recipe: 7 of each).
const ROUNDS: usize = 7;

#[sqlx::test(migrations = "../migrations")]
async fn totals_beyond_decimals_range_never_make_a_read_fail(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn(pool.clone()).await;
    commands.define_asset("BIG", 0).await;
    // Several wallets, each moving the largest amount back and forth: the volumes grow past `Decimal::MAX`.
    let mut wallets = Vec::new();
    for owner in ["a", "b", "c"] {
        wallets.push(commands.open_wallet(owner, "BIG").await.body["wallet_id"].as_str().unwrap().to_owned());
    }
    let mut last = 0;
    for wallet in &wallets {
        for _ in 0..ROUNDS {
            assert_eq!(commands.money(wallet, "topup", LARGEST).await.status, 201);
            assert_eq!(commands.money(wallet, "withdrawal", LARGEST).await.status, 201);
        }
        last = commands.money(wallet, "topup", LARGEST).await.position();
    }
    let over_max = commands.money(&wallets[0], "topup", "100000000000000000000000000000").await;
    assert_eq!((over_max.status, over_max.body["code"].as_str()), (422, Some("invalid_amount")), "{:?}", over_max.body);

    let asset = eventually(200, Duration::from_millis(50), || async {
        let answer = queries.get(&format!("/v1/assets/BIG?min_position={last}")).await;
        (answer.status == 200).then_some(answer.body)
    })
    .await;
    let largest: u128 = LARGEST.parse().unwrap();
    let topups = largest * (ROUNDS as u128 + 1);
    assert_eq!(asset["volume_by_kind"]["topup"], (topups * wallets.len() as u128).to_string(), "{asset}");
    assert_eq!(asset["volume_by_kind"]["withdrawal"], (largest * ROUNDS as u128 * wallets.len() as u128).to_string());
    assert_eq!(asset["user_balance_total"], (largest * wallets.len() as u128).to_string());
    assert_eq!(asset["supply"], (largest * wallets.len() as u128).to_string());
    assert_eq!(asset["balance_sum"], "0", "sums beyond Decimal's range still come to exactly zero");
    assert_eq!(queries.get("/v1/assets").await.status, 200, "the list of assets reads too");
    for wallet in &wallets {
        assert_eq!(queries.get(&format!("/v1/wallets/{wallet}")).await.ok()["balance"], LARGEST);
    }
    projector.stop().await;
    service.stop().await;
    queries.stop().await;
}

/// A balance can reach 29 digits (a `Decimal` holds them) though no client amount may have more than 28: at
/// scale 18, two top-ups of 6,000,000,000 make 12,000,000,000 with 18 decimals. Found by schemathesis: reading
/// the transfer back answered 500, because the read parsed stored balances with the wire's stricter grammar.
#[sqlx::test(migrations = "../migrations")]
async fn a_29_digit_balance_reads_back_in_every_view(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn(pool.clone()).await;
    assert_eq!(commands.post("/v1/assets", serde_json::json!({"code": "FINE", "scale": 18})).await.status, 201);
    let wallet = commands.open_wallet("alice", "FINE").await.body["wallet_id"].as_str().unwrap().to_owned();
    assert_eq!(commands.money(&wallet, "topup", "6000000000").await.status, 201);
    let second = commands.money(&wallet, "topup", "6000000000").await;
    let position = second.position();
    let transfer = second.body["transfer_id"].as_str().unwrap().to_owned();
    let twenty_nine_digits = "12000000000.000000000000000000";
    assert_eq!(second.body["balances"][1]["balance"], twenty_nine_digits, "{}", second.body);

    let read = queries.get(&format!("/v1/transfers/{transfer}?min_position={position}")).await;
    assert_eq!(read.ok()["balances"][1]["balance"], twenty_nine_digits);
    assert_eq!(queries.get(&format!("/v1/wallets/{wallet}")).await.ok()["balance"], twenty_nine_digits);
    let history = queries.get(&format!("/v1/wallets/{wallet}/history")).await;
    assert_eq!(history.ok()["items"][0]["balance_after"], twenty_nine_digits);
    projector.stop().await;
    service.stop().await;
    queries.stop().await;
}
