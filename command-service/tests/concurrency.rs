//! Concurrency and faults: no overdraft, no lost or doubled effect, whatever the interleaving.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use support::{key, Reply, TestApp};

/// Spends `count` units of 1 concurrently from `wallet`, spread over `apps`, and returns the replies.
async fn spend_concurrently(apps: &[&TestApp], wallet: &str, count: usize) -> Vec<Reply> {
    let requests = (0..count).map(|index| {
        let app = apps[index % apps.len()];
        async move { app.money(wallet, "spend", "1").await }
    });
    join_all(requests).await
}

fn tally(replies: &[Reply]) -> HashMap<(u16, String), usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts.entry((reply.status, reply.code().to_owned())).or_default() += 1;
    }
    counts
}

#[sqlx::test(migrations = "../migrations")]
async fn two_thousand_concurrent_spends_never_overdraw_a_wallet_funded_for_five_hundred(pool: PgPool) {
    spend_two_thousand_of_five_hundred(TestApp::spawn(pool).await).await;
}

/// Appenders of one process share what they know of the streams, and each decides its batch while another
/// may be writing the same wallet: the one that loses must decide again, never append on a stale balance.
#[sqlx::test(migrations = "../migrations")]
async fn four_appenders_in_one_process_never_overdraw_a_wallet_either(pool: PgPool) {
    spend_two_thousand_of_five_hundred(TestApp::spawn_with(pool, support::config(&["--appenders", "4"])).await).await;
}

async fn spend_two_thousand_of_five_hundred(app: TestApp) {
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    assert_eq!(app.money(&wallet, "topup", "500").await.status, 201);

    let replies = spend_concurrently(&[&app], &wallet, 2_000).await;

    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&500), "{counts:?}");
    assert_eq!(counts.get(&(422, "insufficient_funds".to_owned())), Some(&1_500), "{counts:?}");
    assert_eq!(app.balance(&wallet).await, Decimal::ZERO);
    assert_eq!(app.asset_sum("GOLD").await, Decimal::ZERO);
    app.assert_versions_contiguous().await;
    let wallet_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(format!("wallet-{wallet}"))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(wallet_events, 1 + 1 + 500, "opened, topped up, 500 spends");
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn two_instances_on_one_database_stay_exact(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    first.define_asset("GOLD", 0, None).await;
    let wallet = first.open_wallet("alice", "GOLD").await;
    assert_eq!(second.money(&wallet, "topup", "500").await.status, 201);

    let replies = spend_concurrently(&[&first, &second], &wallet, 2_000).await;

    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&500), "{counts:?}");
    assert_eq!(counts.get(&(422, "insufficient_funds".to_owned())), Some(&1_500), "{counts:?}");
    assert_eq!(first.balance(&wallet).await, Decimal::ZERO);
    assert_eq!(first.asset_sum("GOLD").await, Decimal::ZERO);
    first.assert_versions_contiguous().await;
    first.stop().await;
    second.stop().await;
}

/// Every top-up debits the treasury, so two instances (and two appenders in each) contend for it on every
/// batch: a batch that loses the race must win its one retry (which holds the append lock throughout), never
/// answer `409 concurrency_conflict` because the same race kept repeating.
#[sqlx::test(migrations = "../migrations")]
async fn writers_contending_for_a_system_wallet_all_succeed_on_their_first_retry(pool: PgPool) {
    let config = || support::config(&["--appenders", "2", "--append-retries-max", "1"]);
    let apps = [TestApp::spawn_with(pool.clone(), config()).await, TestApp::spawn_with(pool, config()).await];
    apps[0].define_asset("GOLD", 0, None).await;
    let mut wallets = Vec::new();
    for owner in 0..20 {
        wallets.push(apps[owner % 2].open_wallet(&format!("owner-{owner}"), "GOLD").await);
    }

    let topups = (0..2_000).map(|index| {
        let (app, wallet) = (&apps[index % 2], &wallets[index % wallets.len()]);
        async move { app.money(wallet, "topup", "1").await }
    });
    let replies = join_all(topups).await;

    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&2_000), "{counts:?}");
    for wallet in &wallets {
        assert_eq!(apps[0].balance(wallet).await, Decimal::from(100));
    }
    assert_eq!(apps[0].asset_sum("GOLD").await, Decimal::ZERO);
    apps[0].assert_versions_contiguous().await;
    for app in apps {
        app.stop().await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn random_concurrent_transfers_preserve_the_sum_without_deadlock_or_server_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("GOLD", 0, None).await;
    let mut wallets = Vec::new();
    for owner in 0..8 {
        let wallet = app.open_wallet(&format!("owner-{owner}"), "GOLD").await;
        assert_eq!(app.money(&wallet, "topup", "100").await.status, 201);
        wallets.push(wallet);
    }
    let wallets = Arc::new(wallets);

    let transfers = (0..1_500).map(|_| {
        let (from, to, amount) = {
            let mut random = rand::rng();
            let from = random.random_range(0..8);
            let to = (from + random.random_range(1..8)) % 8;
            (from, to, random.random_range(1..=40))
        };
        let body = json!({"from_wallet_id": wallets[from], "to_wallet_id": wallets[to], "amount": amount.to_string()});
        let app = &app;
        async move { app.post("/v1/transfers", &key(), body).await }
    });
    let replies = join_all(transfers).await;

    let counts = tally(&replies);
    assert!(replies.iter().all(|reply| reply.status == 201 || reply.code() == "insufficient_funds"), "{counts:?}");
    assert!(counts.get(&(201, String::new())).copied().unwrap_or(0) > 100, "most transfers go through: {counts:?}");
    let mut total = Decimal::ZERO;
    for wallet in wallets.iter() {
        let balance = app.balance(wallet).await;
        assert!(balance >= Decimal::ZERO, "wallet {wallet} went negative: {balance}");
        total += balance;
    }
    assert_eq!(total, Decimal::from(800));
    assert_eq!(app.asset_sum("GOLD").await, Decimal::ZERO);
    app.assert_versions_contiguous().await;
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn twenty_concurrent_requests_with_one_key_have_one_effect(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    let idempotency_key = key();

    let path = format!("/v1/wallets/{wallet}/topup");
    let requests = (0..20).map(|_| app.post(&path, &idempotency_key, json!({"amount": "7"})));
    let replies = join_all(requests).await;

    let created: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 201).collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|reply| reply.body == created[0].body), "every 201 carries the same body");
    assert_eq!(created.iter().filter(|reply| !reply.replayed()).count(), 1, "exactly one original answer");
    assert!(
        replies.iter().all(|reply| reply.status == 201 || reply.code() == "idempotency_key_in_flight"),
        "the rest are replays or in flight: {:?}",
        tally(&replies)
    );
    assert_eq!(app.balance(&wallet).await, Decimal::from(7));
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'TransferRecorded' AND metadata->>'idempotency_key' = $1",
    )
    .bind(&idempotency_key)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
    app.stop().await;
}

/// An instance decides against the streams as it last knew them; what another instance changed meanwhile must
/// never leak into an answer, not even into a refusal that writes no event.
#[sqlx::test(migrations = "../migrations")]
async fn an_instance_never_answers_from_what_another_instance_changed(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    first.define_asset("GOLD", 0, None).await;
    let wallet = first.open_wallet("alice", "GOLD").await;
    // The first instance knows the wallet empty: it refuses a spend.
    assert_eq!(first.money(&wallet, "spend", "50").await.code(), "insufficient_funds");

    // The second funds it; the first must see that.
    assert_eq!(second.money(&wallet, "topup", "100").await.status, 201);
    let spent = first.money(&wallet, "spend", "50").await;
    assert_eq!(spent.status, 201, "{:?}", spent.body);
    assert_eq!(spent.body["balances"][0]["balance"], "50");

    // The second freezes it; the first must refuse.
    let frozen = second.post(&format!("/v1/wallets/{wallet}/freeze"), &key(), json!({})).await;
    assert_eq!(frozen.status, 200, "{:?}", frozen.body);
    assert_eq!(first.money(&wallet, "spend", "1").await.code(), "wallet_frozen");

    // The second spends what is left; the first refuses for want of funds, at the version the second left.
    let unfrozen = second.post(&format!("/v1/wallets/{wallet}/unfreeze"), &key(), json!({})).await;
    assert_eq!(unfrozen.status, 200, "{:?}", unfrozen.body);
    assert_eq!(second.money(&wallet, "spend", "50").await.status, 201);
    assert_eq!(first.money(&wallet, "spend", "1").await.code(), "insufficient_funds");
    assert_eq!(first.balance(&wallet).await, Decimal::ZERO);
    first.assert_versions_contiguous().await;
    first.stop().await;
    second.stop().await;
}

/// An instance reads stored answers only for keys it may have answered itself; a key answered before a
/// restart (or by another instance) must still be replayed, or refused if its request differs.
#[sqlx::test(migrations = "../migrations")]
async fn a_key_answered_before_a_restart_is_replayed_after_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    let path = format!("/v1/wallets/{wallet}/topup");
    let idempotency_key = key();
    let first = app.post(&path, &idempotency_key, json!({"amount": "7"})).await;
    assert_eq!(first.status, 201);
    app.stop().await;

    let app = TestApp::spawn(pool).await;
    let again = app.post(&path, &idempotency_key, json!({"amount": "7"})).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert!(again.replayed());
    let changed = app.post(&path, &idempotency_key, json!({"amount": "8"})).await;
    assert_eq!(changed.code(), "idempotency_key_reused");
    // The batch that found the key used is decided again: a new command sent with it still takes effect once.
    let together = join_all([
        app.post(&path, &idempotency_key, json!({"amount": "7"})),
        app.post(&path, &key(), json!({"amount": "5"})),
    ])
    .await;
    assert!(together.iter().all(|reply| reply.status == 201), "{:?}", tally(&together));
    assert_eq!(app.balance(&wallet).await, Decimal::from(12));
    app.stop().await;
}

/// Keys each sent at once to two instances on one database: no in-process deduplication helps there, so
/// only the database's primary key on stored answers keeps one effect per key.
const SHARED_KEYS: usize = 40;

#[sqlx::test(migrations = "../migrations")]
async fn one_key_sent_to_two_instances_at_once_has_one_effect(pool: PgPool) {
    let first = TestApp::spawn(pool.clone()).await;
    let second = TestApp::spawn(pool).await;
    first.define_asset("GOLD", 0, None).await;
    let wallet = first.open_wallet("alice", "GOLD").await;
    let path = format!("/v1/wallets/{wallet}/topup");
    let keys: Vec<String> = (0..SHARED_KEYS).map(|_| key()).collect();

    let requests = keys.iter().flat_map(|idempotency_key| {
        [&first, &second, &first, &second].map(|app| app.post(&path, idempotency_key, json!({"amount": "7"})))
    });
    let replies = join_all(requests).await;

    for (idempotency_key, answers) in keys.iter().zip(replies.chunks(4)) {
        let created: Vec<&Reply> = answers.iter().filter(|reply| reply.status == 201).collect();
        assert!(!created.is_empty(), "{idempotency_key}: {:?}", tally(answers));
        assert!(created.iter().all(|reply| reply.body == created[0].body), "one answer per key");
        assert!(
            answers.iter().all(|reply| reply.status == 201 || reply.code() == "idempotency_key_in_flight"),
            "{:?}",
            tally(answers)
        );
    }
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TransferRecorded'")
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(recorded, SHARED_KEYS as i64, "one transfer per key");
    assert_eq!(first.balance(&wallet).await, Decimal::from(7 * SHARED_KEYS as i64));
    first.stop().await;
    second.stop().await;
}

/// Rounds of `pg_terminate_backend` on every connection of the test database, and the pause between them.
const KILL_ROUNDS: usize = 200;
const KILL_INTERVAL: Duration = Duration::from_millis(50);
/// Waves of 300 spends at most, sent until a termination has hit a statement in flight.
const LOAD_WAVES_MAX: usize = 20;
/// Attempts of one command at most, while faults are injected.
const ATTEMPTS_MAX: usize = 500;

/// Retries a command with the same key until it gets an answer that is not a transient failure.
async fn until_answered(app: &TestApp, path: &str, idempotency_key: &str, body: serde_json::Value) -> Reply {
    for _ in 0..ATTEMPTS_MAX {
        let reply = app.post(path, idempotency_key, body.clone()).await;
        if reply.status < 500 && reply.code() != "idempotency_key_in_flight" && reply.code() != "concurrency_conflict" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never got an answer");
}

#[sqlx::test(migrations = "../migrations")]
async fn terminated_backends_lose_no_acknowledged_command_and_apply_none_twice(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    assert_eq!(app.money(&wallet, "topup", "100000").await.status, 201);
    let killer_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Backends terminated while running a statement (a batch's write): requests in flight that were hit.
    let mid_statement = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let killer = {
        let (stop, mid_statement) = (stop.clone(), mid_statement.clone());
        tokio::spawn(async move {
            let mut terminated = 0_i64;
            // A bounded burst of faults while the load runs, then the service must converge.
            for _ in 0..KILL_ROUNDS {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (killed, active): (i64, i64) = sqlx::query_as(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM (
                         SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS killed",
                )
                .fetch_one(&killer_pool)
                .await
                .unwrap_or((0, 0));
                terminated += killed;
                mid_statement.fetch_add(active, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(KILL_INTERVAL).await;
            }
            terminated
        })
    };

    // Waves of spends until a termination has hit a statement in flight (at most LOAD_WAVES_MAX waves).
    let path = format!("/v1/wallets/{wallet}/spend");
    let mut keys: Vec<String> = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..LOAD_WAVES_MAX {
        let wave: Vec<String> = (0..300).map(|_| key()).collect();
        let answered = join_all(
            wave.iter().map(|idempotency_key| until_answered(&app, &path, idempotency_key, json!({"amount": "1"}))),
        )
        .await;
        keys.extend(wave);
        replies.extend(answered);
        if mid_statement.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let terminated = killer.await.unwrap();

    assert!(terminated > 0, "the test terminated no backend");
    assert!(
        mid_statement.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no backend was terminated in the middle of a statement: no request in flight was hit"
    );
    assert!(replies.iter().all(|reply| reply.status == 201), "{:?}", tally(&replies));
    // Retrying every key once more replays, never applies again.
    for idempotency_key in &keys {
        let again = until_answered(&app, &path, idempotency_key, json!({"amount": "1"})).await;
        assert!(again.replayed());
    }
    assert_eq!(app.balance(&wallet).await, Decimal::from(100_000 - keys.len() as i64));
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT metadata->>'idempotency_key' FROM events WHERE event_type = 'TransferRecorded'
         GROUP BY 1 HAVING count(*) > 1) AS doubled",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
    assert_eq!(app.asset_sum("GOLD").await, Decimal::ZERO);
    app.assert_versions_contiguous().await;
    app.stop().await;
}
