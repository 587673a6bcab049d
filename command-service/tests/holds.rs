//! Holds against the real stack (SPEC §8): the HTTP contract, idempotency, and the races that must never
//! let a hold resolve twice or let `available` go below its limit: concurrent holds, captures against voids,
//! captures against the expirer at `expires_at`, and two expirers at once.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{key, Reply, TestApp};

/// Key of the expirer's advisory lock, as `pg_locks` shows a bigint key: high and low halves.
const EXPIRER_LOCK: (i64, i64) =
    (command_service::expirer::EXPIRER_LOCK_KEY >> 32, command_service::expirer::EXPIRER_LOCK_KEY & 0xffff_ffff);

fn tally(replies: &[Reply]) -> HashMap<(u16, String), usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts.entry((reply.status, reply.code().to_owned())).or_default() += 1;
    }
    counts
}

/// GOLD at scale 2 and a wallet of alice topped up with `balance`.
async fn funded(app: &TestApp, balance: &str) -> String {
    app.define_asset("GOLD", 2, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    assert_eq!(app.money(&wallet, "topup", balance).await.status, 201);
    wallet
}

async fn place(app: &TestApp, wallet: &str, body: Value) -> Reply {
    app.post(&format!("/v1/wallets/{wallet}/holds"), &key(), body).await
}

/// How many events of each type the hold's stream has.
async fn hold_events(app: &TestApp, hold_id: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_type, count(*) FROM events WHERE stream_id = $1 GROUP BY event_type")
            .bind(format!("hold-{hold_id}"))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Resolutions a hold's stream records: at most one, ever.
async fn resolutions(app: &TestApp, hold_id: &str) -> i64 {
    let resolved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id = $1
         AND (event_type IN ('HoldVoided', 'HoldExpired') OR (event_type = 'HoldCaptured' AND (data->>'final')::bool))",
    )
    .bind(format!("hold-{hold_id}"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    resolved
}

/// The wallet's `(balance, held)` as its snapshot has them.
async fn balance_and_held(app: &TestApp, wallet: &str) -> (Decimal, Decimal) {
    let state: Value = sqlx::query_scalar("SELECT state FROM streams WHERE stream_id = $1")
        .bind(format!("wallet-{wallet}"))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let number = |field: &str| state[field].as_str().unwrap_or("0").parse::<Decimal>().unwrap();
    (number("balance"), number("held"))
}

/// Waits (bounded) until no hold is due any more.
async fn until_no_hold_is_active(app: &TestApp) {
    for _ in 0..200 {
        let active: i64 = sqlx::query_scalar("SELECT count(*) FROM holds_due").fetch_one(&app.pool).await.unwrap();
        if active == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("holds still active after 10 s");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_hold_is_placed_partly_captured_and_voided_over_http(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let wallet = funded(&app, "100").await;

    let placed = place(&app, &wallet, json!({"amount": "30", "expires_in_s": 600, "reference": "order-7"})).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    let hold = &placed.body;
    assert_eq!(
        (hold["amount"].as_str(), hold["remaining"].as_str(), hold["status"].as_str()),
        (Some("30.00"), Some("30.00"), Some("active"))
    );
    assert_eq!(hold["wallet"], json!({"balance": "100.00", "held": "30.00", "available": "70.00", "version": 3}));
    assert!(hold["position"].as_i64().unwrap() > 0);
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();

    let spend = app.money(&wallet, "spend", "70.01").await;
    assert_eq!((spend.status, spend.code()), (422, "insufficient_funds"));
    assert_eq!(spend.body["available"], "70.00");

    let captured =
        app.post(&format!("/v1/holds/{hold_id}/capture"), &key(), json!({"amount": "10", "final": false})).await;
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    assert_eq!(captured.body["kind"], "spend");
    assert_eq!(captured.body["hold_id"].as_str(), Some(hold_id.as_str()));
    assert_eq!(captured.body["hold"]["remaining"], "20.00");
    assert_eq!(captured.body["hold"]["wallet"]["balance"], "90.00");
    assert_eq!(captured.body["hold"]["wallet"]["held"], "20.00");

    let voided = app.post(&format!("/v1/holds/{hold_id}/void"), &key(), json!({"reason": "cancelled"})).await;
    assert_eq!(voided.status, 201, "{:?}", voided.body);
    assert_eq!((voided.body["status"].as_str(), voided.body["released"].as_str()), (Some("voided"), Some("20.00")));
    assert_eq!(voided.body["wallet"]["available"], "90.00");

    let again = app.post(&format!("/v1/holds/{hold_id}/capture"), &key(), json!({})).await;
    assert_eq!((again.status, again.code()), (409, "hold_not_active"));
    assert_eq!(again.body["hold_status"], "voided", "the problem's own status stays the HTTP status");
    assert_eq!(again.body["status"], 409);
    let unknown = app.post(&format!("/v1/holds/{}/void", uuid::Uuid::now_v7()), &key(), json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "hold_not_found"));
    let close = app.post(&format!("/v1/wallets/{wallet}/close"), &key(), json!({})).await;
    assert_eq!(close.code(), "wallet_not_empty", "no hold is active any more");
    app.assert_versions_contiguous().await;
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_hold_requests_are_refused_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let wallet = funded(&app, "100").await;
    let events = app.event_count().await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    for (body, status, code) in [
        (json!({"amount": "1", "expires_in_s": 60, "expires_at": in_an_hour}), 422, "validation_failed"),
        (json!({"amount": "1", "expires_in_s": 0}), 422, "validation_failed"),
        (json!({"amount": "1", "expires_in_s": 2_592_001}), 422, "validation_failed"),
        (json!({"amount": "1", "expires_at": "2020-01-01T00:00:00Z"}), 422, "validation_failed"),
        (json!({"amount": "0"}), 422, "invalid_amount"),
        (json!({"amount": "0.001"}), 422, "invalid_amount"),
        (json!({"amount": "100.01"}), 422, "insufficient_funds"),
        (json!({"amount": "1", "colour": "red"}), 422, "validation_failed"),
    ] {
        let reply = place(&app, &wallet, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {:?}", reply.body);
    }
    // A malformed expiry is refused before anything is read: not even a stale If-Match gets to answer 412.
    let stale = app
        .send(
            app.client
                .post(app.url(&format!("/v1/wallets/{wallet}/holds")))
                .header("idempotency-key", key())
                .header("if-match", "\"999\"")
                .json(&json!({"amount": "1", "expires_in_s": 2_592_001})),
        )
        .await;
    assert_eq!((stale.status, stale.code()), (422, "validation_failed"), "{:?}", stale.body);
    let placed = place(&app, &wallet, json!({"amount": "1"})).await;
    let hold_id = placed.body["hold_id"].as_str().unwrap();
    let expected = chrono::DateTime::parse_from_rfc3339(placed.body["created_at"].as_str().unwrap()).unwrap()
        + chrono::Duration::seconds(3_600);
    let expires_at = chrono::DateTime::parse_from_rfc3339(placed.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at, expected, "an hour by default");
    let events_after_one_hold = app.event_count().await;
    assert_eq!(events_after_one_hold, events + 2, "only the one hold was written");
    let too_much = app.post(&format!("/v1/holds/{hold_id}/capture"), &key(), json!({"amount": "1.01"})).await;
    assert_eq!((too_much.status, too_much.code()), (422, "hold_exceeded"));
    assert_eq!(
        (too_much.body["remaining"].as_str(), too_much.body["requested"].as_str()),
        (Some("1.00"), Some("1.01"))
    );
    assert_eq!(app.event_count().await, events_after_one_hold);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_replayed_hold_returns_the_same_hold_and_a_replayed_capture_has_one_effect(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let wallet = funded(&app, "100").await;
    let hold_key = key();
    let path = format!("/v1/wallets/{wallet}/holds");
    let first = app.post(&path, &hold_key, json!({"amount": "40"})).await;
    let second = app.post(&path, &hold_key, json!({"amount": "40"})).await;
    assert_eq!(first.status, 201);
    assert!(second.replayed());
    assert_eq!(first.body, second.body, "the same hold_id, the same answer");
    let hold_id = first.body["hold_id"].as_str().unwrap();

    let capture_key = key();
    let capture_path = format!("/v1/holds/{hold_id}/capture");
    let captures =
        join_all((0..20).map(|_| app.post(&capture_path, &capture_key, json!({"amount": "15", "final": false})))).await;
    let transfer_ids: std::collections::HashSet<&str> =
        captures.iter().filter_map(|reply| reply.body["transfer_id"].as_str()).collect();
    assert_eq!(transfer_ids.len(), 1, "{:?}", tally(&captures));
    assert!(captures.iter().all(|reply| reply.status == 201 || reply.code() == "idempotency_key_in_flight"));
    assert_eq!(hold_events(&app, hold_id).await.get("HoldCaptured"), Some(&1));
    assert_eq!(balance_and_held(&app, &wallet).await, (Decimal::from(85), Decimal::from(25)));
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn two_thousand_concurrent_holds_of_one_on_a_wallet_funded_for_a_thousand_place_exactly_a_thousand(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    assert_eq!(app.money(&wallet, "topup", "1000").await.status, 201);

    let replies = join_all((0..2_000).map(|_| place(&app, &wallet, json!({"amount": "1"})))).await;

    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&1_000), "{counts:?}");
    assert_eq!(counts.get(&(422, "insufficient_funds".to_owned())), Some(&1_000), "{counts:?}");
    assert_eq!(balance_and_held(&app, &wallet).await, (Decimal::from(1_000), Decimal::from(1_000)));
    let spend = app.money(&wallet, "spend", "1").await;
    assert_eq!((spend.status, spend.code()), (422, "insufficient_funds"), "nothing is available");
    let due: i64 = sqlx::query_scalar("SELECT count(*) FROM holds_due").fetch_one(&app.pool).await.unwrap();
    assert_eq!(due, 1_000, "every placed hold is in the expirer's index, once");
    app.assert_versions_contiguous().await;
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_captures_and_voids_of_one_hold_resolve_it_exactly_once(pool: PgPool) {
    let app = TestApp::spawn_with(pool, support::config(&["--appenders", "4"])).await;
    let wallet = funded(&app, "100").await;
    for round in 0..10 {
        let hold = place(&app, &wallet, json!({"amount": "5"})).await;
        let hold_id = hold.body["hold_id"].as_str().unwrap().to_owned();
        let requests = (0..40).map(|index| {
            let (app, hold_id) = (&app, hold_id.clone());
            async move {
                let action = if index % 2 == 0 { "capture" } else { "void" };
                app.post(&format!("/v1/holds/{hold_id}/{action}"), &key(), json!({})).await
            }
        });
        let replies = join_all(requests).await;
        let counts = tally(&replies);
        assert_eq!(replies.iter().filter(|reply| reply.status == 201).count(), 1, "round {round}: {counts:?}");
        assert_eq!(counts.get(&(409, "hold_not_active".to_owned())), Some(&39), "round {round}: {counts:?}");
        assert_eq!(resolutions(&app, &hold_id).await, 1);
    }
    let (balance, held) = balance_and_held(&app, &wallet).await;
    assert_eq!(held, Decimal::ZERO);
    assert!(balance >= Decimal::from(50) && balance <= Decimal::from(100), "{balance}");
    assert_eq!(app.asset_sum("GOLD").await, Decimal::ZERO);
    app.stop().await;
}

/// Captures sent around `expires_at` of holds that expire in one second, with the expirer polling fast: each
/// hold is either captured before its expiry or expired, never both, and no capture is recorded at or after
/// its `expires_at`.
#[sqlx::test(migrations = "../migrations")]
async fn a_capture_racing_the_expirer_at_expiry_loses_or_wins_but_never_both(pool: PgPool) {
    let app = TestApp::spawn_with(pool, support::config(&["--expirer-poll-ms", "5"])).await;
    let wallet = funded(&app, "1000").await;
    let holds = join_all((0..30).map(|_| place(&app, &wallet, json!({"amount": "1", "expires_in_s": 1})))).await;
    let holds: Vec<(String, chrono::DateTime<chrono::Utc>)> = holds
        .iter()
        .map(|reply| {
            let expires_at = reply.body["expires_at"].as_str().unwrap().parse().unwrap();
            (reply.body["hold_id"].as_str().unwrap().to_owned(), expires_at)
        })
        .collect();
    let captures = holds.iter().enumerate().map(|(index, (hold_id, expires_at))| {
        let app = &app;
        async move {
            // From 15 ms before to 15 ms after the expiry, a millisecond apart.
            let target = *expires_at + chrono::Duration::milliseconds(index as i64 - 15);
            let wait = (target - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            app.post(&format!("/v1/holds/{hold_id}/capture"), &key(), json!({})).await
        }
    });
    let replies = join_all(captures).await;
    until_no_hold_is_active(&app).await;
    for ((hold_id, expires_at), reply) in holds.iter().zip(&replies) {
        let events = hold_events(&app, hold_id).await;
        assert_eq!(resolutions(&app, hold_id).await, 1, "{hold_id}: {events:?}");
        match reply.status {
            201 => assert_eq!(events.get("HoldExpired"), None),
            409 => {
                assert!(matches!(reply.code(), "hold_expired" | "hold_not_active"), "{:?}", reply.body);
                assert_eq!(events.get("HoldCaptured"), None);
            }
            other => panic!("capture answered {other}: {:?}", reply.body),
        }
        let captured_at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT recorded_at FROM events WHERE stream_id = $1 AND event_type = 'HoldCaptured'")
                .bind(format!("hold-{hold_id}"))
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        assert!(captured_at.is_none_or(|at| at < *expires_at), "{hold_id} captured at {captured_at:?}");
    }
    assert_eq!(balance_and_held(&app, &wallet).await.1, Decimal::ZERO);
    app.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn two_instances_run_one_expirer_and_release_each_hold_once(pool: PgPool) {
    let fast = ["--expirer-poll-ms", "20"];
    let first = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    let second = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    let wallet = funded(&first, "1000").await;
    let placed = join_all((0..200).map(|index| {
        let app = if index % 2 == 0 { &first } else { &second };
        place(app, &wallet, json!({"amount": "1", "expires_in_s": 1}))
    }))
    .await;
    assert!(placed.iter().all(|reply| reply.status == 201));
    let leaders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = $1
         AND objid::bigint = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(EXPIRER_LOCK.0)
    .bind(EXPIRER_LOCK.1)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaders, 1, "exactly one instance holds the expirer's lock");

    until_no_hold_is_active(&first).await;

    let released: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*) FROM events WHERE stream_id LIKE 'hold-%' AND event_type = 'HoldExpired'
         GROUP BY stream_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(released.len(), 200);
    assert!(released.iter().all(|(_, count)| *count == 1), "a hold expired twice");
    assert_eq!(balance_and_held(&first, &wallet).await, (Decimal::from(1_000), Decimal::ZERO));
    first.stop().await;
    second.stop().await;
}

/// The active expirer dies (its task aborted: its connection, and the lock with it, go away); the standby
/// takes over and releases every due hold, none twice.
#[sqlx::test(migrations = "../migrations")]
async fn a_standby_expirer_takes_over_when_the_active_one_dies(pool: PgPool) {
    let fast = ["--expirer-poll-ms", "20"];
    let active = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    let wallet = funded(&active, "1000").await;
    // The first instance leads once it has started; then the standby comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let standby = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    let placed = join_all((0..100).map(|_| place(&standby, &wallet, json!({"amount": "1", "expires_in_s": 2})))).await;
    assert!(placed.iter().all(|reply| reply.status == 201));

    active.abort().await;
    until_no_hold_is_active(&standby).await;

    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'HoldExpired'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'HoldExpired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((expired, distinct), (100, 100));
    assert_eq!(balance_and_held(&standby, &wallet).await.1, Decimal::ZERO);
    standby.stop().await;
}

/// The only instance dies with holds about to fall due; a new one starts later and releases every hold that
/// fell due meanwhile, each once.
#[sqlx::test(migrations = "../migrations")]
async fn a_restarted_expirer_releases_what_fell_due_while_it_was_down(pool: PgPool) {
    let fast = ["--expirer-poll-ms", "20"];
    let first = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    let wallet = funded(&first, "1000").await;
    let placed = join_all((0..50).map(|_| place(&first, &wallet, json!({"amount": "1", "expires_in_s": 1})))).await;
    assert!(placed.iter().all(|reply| reply.status == 201));
    first.abort().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let due: i64 = sqlx::query_scalar("SELECT count(*) FROM holds_due").fetch_one(&pool).await.unwrap();
    assert_eq!(due, 50, "nothing released them while no instance ran");

    let restarted = TestApp::spawn_with(pool.clone(), support::config(&fast)).await;
    until_no_hold_is_active(&restarted).await;

    let (expired, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT stream_id) FROM events WHERE event_type = 'HoldExpired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((expired, distinct), (50, 50));
    assert_eq!(balance_and_held(&restarted, &wallet).await, (Decimal::from(1_000), Decimal::ZERO));
    restarted.stop().await;
}
