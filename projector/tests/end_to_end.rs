//! End to end: the real command-service appends and notifies through NATS, the projector projects, and the read
//! models end equal to a replay and to what the commands answered.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::*;
use tokio::sync::oneshot;

/// Requests in flight at once: enough for command-service to batch several commands per transaction.
const CONCURRENCY: usize = 8;

struct CommandService {
    base: String,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl CommandService {
    async fn start(pool: &PgPool, prefix: &str) -> CommandService {
        let config = command_service::Config::parse_from([
            "command-service",
            "--listen-addr",
            "127.0.0.1:0",
            "--nats-url",
            &nats_url(),
            "--nats-subject-prefix",
            prefix,
        ]);
        let app = command_service::App::build(config, pool.clone()).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        CommandService { base, client: reqwest::Client::new(), stop, task }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_thousand_commands_through_command_service_and_nats_are_projected_equal_to_a_replay(pool: PgPool) {
    let prefix = unique_prefix();
    let commands = CommandService::start(&pool, &prefix).await;
    // A long poll interval, so that notifications do most of the waking.
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &["--poll-interval-ms", "1000"])).await;
    let (status, _) = commands
        .post("/v1/assets", json!({"code": "GOLD", "scale": 2, "cash_in_fee": {"percent": "2.5", "fixed": "0.05"}}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(commands.post("/v1/assets", json!({"code": "GEMS", "scale": 0})).await.0, 201);
    let mut wallets: Vec<(String, &str)> = Vec::new();
    for asset in ["GOLD", "GEMS"] {
        for index in 0..10 {
            let (status, body) =
                commands.post("/v1/wallets", json!({"owner_id": format!("owner-{index}"), "asset": asset})).await;
            assert_eq!(status, 201, "{body}");
            wallets.push((body["wallet_id"].as_str().unwrap().to_owned(), asset));
        }
    }

    let mut dice = Dice::new(1_000);
    let mut transfers: Vec<String> = Vec::new();
    let mut answered = Vec::new();
    for _round in 0..10 {
        let mut requests = Vec::new();
        for _ in 0..100 {
            let (wallet, asset) = dice.pick(&wallets).clone();
            let amount = if asset == "GOLD" {
                format!("{}.{:02}", 1 + dice.below(30), dice.below(100))
            } else {
                (1 + dice.below(30)).to_string()
            };
            let same_asset: Vec<&(String, &str)> = wallets.iter().filter(|(_, other)| *other == asset).collect();
            let other = dice.pick(&same_asset).0.clone();
            let request = match dice.below(10) {
                0..=2 => (format!("/v1/wallets/{wallet}/topup"), json!({"amount": amount, "reference": "order-1"})),
                3 => (format!("/v1/wallets/{wallet}/bonus"), json!({"amount": amount})),
                4 => (format!("/v1/wallets/{wallet}/spend"), json!({"amount": amount})),
                5 => (format!("/v1/wallets/{wallet}/cash-in"), json!({"amount": amount})),
                6 | 7 => (
                    "/v1/transfers".to_owned(),
                    json!({"from_wallet_id": wallet, "to_wallet_id": other, "amount": amount, "metadata": {"n": 1}}),
                ),
                8 if !transfers.is_empty() => {
                    (format!("/v1/transfers/{}/reversal", dice.pick(&transfers)), json!({"reason": "refund"}))
                }
                _ => (format!("/v1/wallets/{wallet}/withdrawal"), json!({"amount": amount})),
            };
            requests.push(request);
        }
        let replies: Vec<(u16, Value)> = futures::stream::iter(requests)
            .map(|(path, body)| {
                let commands = &commands;
                async move { commands.post(&path, body).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (status, body) in replies {
            assert!(status == 201 || (400..500).contains(&status), "{status} {body}");
            if status == 201 {
                if body["kind"] != "reversal" {
                    transfers.push(body["transfer_id"].as_str().unwrap().to_owned());
                }
                answered.push(body);
            }
        }
    }
    caught_up(&pool).await;

    assert!(answered.len() > 500, "most commands succeed: {}", answered.len());
    assert_verified(&pool).await;
    // The read model says what each command answered.
    for answer in answered.iter().step_by(37) {
        let (balances, position): (Value, i64) =
            sqlx::query_as("SELECT balances, position FROM rm_transfers WHERE transfer_id = $1::uuid")
                .bind(answer["transfer_id"].as_str().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(balances, answer["balances"], "{answer}");
        assert_eq!(position, answer["position"].as_i64().unwrap(), "{answer}");
    }
    eventually("notifications woke the projector", Duration::from_secs(10), || async {
        let text = projector.metrics().await;
        let woken = metric(&text, "tally_projection_wakeups_total{cause=\"notification\"}").unwrap_or(0.0);
        (woken >= 1.0).then_some(())
    })
    .await;
    commands.stop().await;
    projector.stop().await;
}

/// Projection lag through the whole pipeline (run with `--release -- --ignored --nocapture`): for each command,
/// from its answer to the `projection_advanced` notification that covers its position. Prints, asserts nothing
/// about time (SPEC §6: performance is measured by benchmarks, never by timed tests).
#[sqlx::test(migrations = "../migrations")]
#[ignore = "a measurement, not a test: cargo test --release -p projector --test end_to_end -- --ignored --nocapture"]
async fn projection_lag(pool: PgPool) {
    let prefix = unique_prefix();
    let commands = CommandService::start(&pool, &prefix).await;
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &[])).await;
    assert_eq!(commands.post("/v1/assets", json!({"code": "GOLD", "scale": 2})).await.0, 201);
    let (_, wallet) = commands.post("/v1/wallets", json!({"owner_id": "lag", "asset": "GOLD"})).await;
    let wallet = wallet["wallet_id"].as_str().unwrap().to_owned();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen(tally_shared::notification::PROJECTION_ADVANCED_CHANNEL).await.unwrap();
    caught_up(&pool).await;

    let mut lags = Vec::new();
    for _ in 0..500 {
        let (status, answer) = commands.post(&format!("/v1/wallets/{wallet}/topup"), json!({"amount": "1.00"})).await;
        let answered = std::time::Instant::now();
        assert_eq!(status, 201);
        let position = answer["position"].as_i64().unwrap();
        loop {
            let notification = listener.recv().await.unwrap();
            if notification.payload().parse::<i64>().unwrap() >= position {
                break;
            }
        }
        lags.push(answered.elapsed().as_secs_f64() * 1_000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lags.sort_by(f64::total_cmp);
    let percentile = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    println!(
        "projection lag after the command's answer: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.5),
        percentile(0.99),
        lags[lags.len() - 1]
    );
    commands.stop().await;
    projector.stop().await;
}

/// The hot wallet of SPEC §7 through the whole pipeline: 2,000 concurrent spends of 1 on a wallet funded for
/// 500. Exactly 500 succeed and 1,500 are refused, the read model shows the wallet at 0 with the snapshot's
/// version, and `projector verify` finds the read models equal to a replay.
#[sqlx::test(migrations = "../migrations")]
async fn a_hot_wallet_under_concurrent_spends_is_exact_on_the_read_side_and_verified(pool: PgPool) {
    let prefix = unique_prefix();
    let commands = CommandService::start(&pool, &prefix).await;
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &[])).await;
    assert_eq!(commands.post("/v1/assets", json!({"code": "GEMS", "scale": 0})).await.0, 201);
    let (_, opened) = commands.post("/v1/wallets", json!({"owner_id": "hot", "asset": "GEMS"})).await;
    let wallet = opened["wallet_id"].as_str().unwrap().to_owned();
    assert_eq!(commands.post(&format!("/v1/wallets/{wallet}/topup"), json!({"amount": "500"})).await.0, 201);

    let spends: Vec<(u16, Value)> = futures::stream::iter(0..2_000)
        .map(|_| {
            let (commands, wallet) = (&commands, &wallet);
            async move { commands.post(&format!("/v1/wallets/{wallet}/spend"), json!({"amount": "1"})).await }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let succeeded = spends.iter().filter(|(status, _)| *status == 201).count();
    let refused = spends.iter().filter(|(status, body)| *status == 422 && body["code"] == "insufficient_funds").count();
    assert_eq!((succeeded, refused), (500, 1_500));

    caught_up(&pool).await;
    let snapshot: (i64, Value) = sqlx::query_as("SELECT version, state FROM streams WHERE stream_id = $1")
        .bind(format!("wallet-{wallet}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    let (balance, version): (String, i64) =
        sqlx::query_as("SELECT balance::text, version FROM rm_wallets WHERE wallet_id = $1::uuid")
            .bind(&wallet)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((balance.as_str(), version), ("0", snapshot.0), "the read model shows the wallet as its snapshot");
    assert_eq!(snapshot.1["balance"], "0");
    assert_verified(&pool).await;
    commands.stop().await;
    projector.stop().await;
}
