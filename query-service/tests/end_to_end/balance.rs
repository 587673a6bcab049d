//! Point-in-time balances of a wallet driven by real commands equal a hand-computed replay.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::commands::CommandService;
use crate::support::{dec, TestApp};

/// (action, amount): the wallet's life, with the balance after each step computed by hand below.
const STEPS: [(&str, &str); 8] = [
    ("topup", "100.00"),
    ("spend", "30.25"),
    ("bonus", "5.50"),
    ("spend", "75.25"),
    ("topup", "0.01"),
    ("withdrawal", "0.01"),
    ("topup", "12.34"),
    ("spend", "2.34"),
];
const BALANCES_AFTER: [&str; 8] = ["100.00", "69.75", "75.25", "0.00", "0.01", "0.00", "12.34", "10.00"];

#[sqlx::test(migrations = "../migrations")]
async fn balances_at_command_positions_and_times_equal_the_replay(pool: PgPool) {
    let service = CommandService::spawn(pool.clone()).await;
    let commands = &service.commands;
    let queries = TestApp::spawn(pool).await;
    commands.define_asset("NGN", 2).await;
    let opened = commands.open_wallet("alice", "NGN").await;
    let wallet_id = opened.body["wallet_id"].as_str().unwrap().to_owned();
    let opened_at = opened.position();
    // Other wallets' commands in between, so that the wallet's events are not contiguous in the log.
    let neighbour_opened = commands.open_wallet("bob", "NGN").await;
    let neighbour = neighbour_opened.body["wallet_id"].as_str().unwrap().to_owned();
    // Each step's position and time, and the position of the neighbour's command just before it.
    let mut moments: Vec<(i64, DateTime<Utc>, i64)> = Vec::new();
    let mut previous_position = neighbour_opened.position();
    let mut replayed = Decimal::ZERO;
    for ((action, amount), expected) in STEPS.iter().zip(BALANCES_AFTER) {
        let answered = commands.money(&wallet_id, action, amount).await;
        replayed = if ["topup", "bonus"].contains(action) { replayed + dec(amount) } else { replayed - dec(amount) };
        assert_eq!(replayed, dec(expected), "the hand-computed balances agree with the steps");
        let recorded_at = answered.body["recorded_at"].as_str().unwrap().parse().unwrap();
        moments.push((answered.position(), recorded_at, previous_position));
        previous_position = commands.money(&neighbour, "topup", "1.00").await.position();
    }

    let balance_at = |query: String| {
        let queries = &queries;
        let wallet_id = &wallet_id;
        async move { queries.get(&format!("/v1/wallets/{wallet_id}/balance?{query}")).await }
    };
    let before_opening = balance_at(format!("at_position={}", opened_at - 1)).await;
    assert_eq!(before_opening.ok()["balance"], "0.00");
    assert_eq!(before_opening.body["version"], 0);
    assert_eq!(balance_at(format!("at_position={opened_at}")).await.ok()["balance"], "0.00");
    for (index, (position, recorded_at, position_before)) in moments.iter().enumerate() {
        let before = if index == 0 { "0.00" } else { BALANCES_AFTER[index - 1] };
        let micro = Duration::microseconds(1);
        let time = |instant: DateTime<Utc>| instant.to_rfc3339_opts(SecondsFormat::Micros, true);

        let at = balance_at(format!("at_position={position}")).await;
        let just_before = balance_at(format!("at_position={position_before}")).await;
        let as_of = balance_at(format!("as_of={}", time(*recorded_at))).await;
        let as_of_before = balance_at(format!("as_of={}", time(*recorded_at - micro))).await;

        assert_eq!(at.ok()["balance"], BALANCES_AFTER[index], "after step {index}");
        assert_eq!(at.body["version"], index as i64 + 2, "opened, then one posting per step");
        assert_eq!(just_before.ok()["balance"], before, "before step {index}");
        assert_eq!(as_of.ok()["balance"], BALANCES_AFTER[index], "as of step {index}");
        assert_eq!(as_of_before.ok()["balance"], before, "just before step {index}");
    }
    queries.stop().await;
    service.stop().await;
}
