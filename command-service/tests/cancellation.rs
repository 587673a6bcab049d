//! Clients that give up mid-request never leave a pooled connection inside a transaction (issue #19).
//!
//! sqlx 0.8.6 and 0.9.0 both leave a pooled Postgres connection in an open transaction when a future is
//! cancelled during `BEGIN` (sqlx #4393; the fix, #4394, came after 0.9.0). Tally keeps every `begin()` out of
//! futures that a client disconnect or a timeout can cancel: transactions run in the appender's own tasks,
//! which a request only waits for. This test tries to break that: hundreds of commands whose clients hang up
//! after a few milliseconds, then a look at every session of the test's database.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use support::{key, TestApp};

/// Commands sent, each abandoned by its client after 0 to 7 ms.
const ABANDONED: usize = 600;

#[sqlx::test(migrations = "../migrations")]
async fn requests_cancelled_mid_transaction_leave_no_connection_idle_in_transaction(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.define_asset("NGN", 2, None).await;
    let wallet = app.open_wallet("alice", "NGN").await;
    let mut cancelled = 0;
    let mut requests = tokio::task::JoinSet::new();
    for index in 0..ABANDONED {
        let client = reqwest::Client::builder().timeout(Duration::from_millis((index % 8) as u64)).build().unwrap();
        let url = app.url(&format!("/v1/wallets/{wallet}/topup"));
        requests.spawn(async move {
            client.post(url).header("idempotency-key", key()).json(&json!({"amount": "1.00"})).send().await.is_err()
        });
    }
    while let Some(gave_up) = requests.join_next().await {
        cancelled += usize::from(gave_up.unwrap());
    }
    assert!(cancelled > 0, "no client gave up: the test did not test anything");

    // The appender finishes what was queued; then every session of this database must be outside a transaction.
    let settled = app.money(&wallet, "topup", "1.00").await;
    assert_eq!(settled.status, 201, "{:?}", settled.body);
    let stuck: Vec<(i32, String)> = sqlx::query_as(
        "SELECT pid, coalesce(state, '') FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(stuck.is_empty(), "{} of {ABANDONED} cancelled; sessions left in a transaction: {stuck:?}", cancelled);
    app.assert_versions_contiguous().await;
    assert_eq!(app.asset_sum("NGN").await, rust_decimal::Decimal::ZERO);
}
