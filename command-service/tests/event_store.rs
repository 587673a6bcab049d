//! The stored log itself: timestamps, hash chains and snapshots as the append path writes them.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use support::TestApp;
use tally_shared::envelope::{HashedFields, GENESIS_HASH};

#[sqlx::test(migrations = "../migrations")]
async fn recorded_at_never_goes_backwards_within_a_stream_even_after_a_clock_ahead(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("GOLD", 0, None).await;
    let wallet = app.open_wallet("alice", "GOLD").await;
    let stream = format!("wallet-{wallet}");
    let pool = app.pool.clone();
    app.stop().await;
    // Another command-service whose clock runs an hour ahead appended to this stream last. (A running
    // instance learns of such an append when its commit finds the stream's version moved; it then reads the
    // snapshot, as a fresh instance does.)
    let ahead: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE streams SET updated_at = now() + interval '1 hour' WHERE stream_id = $1 RETURNING updated_at",
    )
    .bind(&stream)
    .fetch_one(&pool)
    .await
    .unwrap();

    let app = TestApp::spawn(pool).await;
    assert_eq!(app.money(&wallet, "topup", "5").await.status, 201);

    let stamps: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT recorded_at FROM events WHERE stream_id = $1 ORDER BY version")
            .bind(&stream)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(stamps.windows(2).all(|pair| pair[0] <= pair[1]), "{stamps:?}");
    assert!(*stamps.last().unwrap() >= ahead);
    app.stop().await;
}

/// stream_id, version, event_id, type, data, metadata, recorded_at, hash.
type EventRow = (String, i64, uuid::Uuid, String, serde_json::Value, serde_json::Value, DateTime<Utc>, Vec<u8>);

#[sqlx::test(migrations = "../migrations")]
async fn every_stored_event_chains_to_the_previous_one_and_snapshots_hold_the_last_hash(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.define_asset("NGN", 2, Some(serde_json::json!({"percent": "1.5", "fixed": "0.10"}))).await;
    let wallet = app.open_wallet("alice", "NGN").await;
    for (action, amount) in [("cash-in", "100.00"), ("spend", "10.25"), ("withdrawal", "1")] {
        assert_eq!(app.money(&wallet, action, amount).await.status, 201);
    }

    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT stream_id, version, event_id, event_type, data, metadata, recorded_at, hash FROM events
             ORDER BY stream_id, version",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut previous: Option<(String, [u8; 32])> = None;
    for (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash) in &rows {
        let chained_to = match &previous {
            Some((stream, hash)) if stream == stream_id => *hash,
            _ => GENESIS_HASH,
        };
        let fields = HashedFields {
            stream_id,
            version: *version,
            event_id: *event_id,
            event_type,
            data,
            metadata,
            recorded_at: *recorded_at,
        };
        let expected = fields.chain_hash(&chained_to);
        assert_eq!(hash.as_slice(), expected.as_slice(), "{stream_id} v{version}");
        previous = Some((stream_id.clone(), expected));
    }
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM streams s JOIN LATERAL (
             SELECT hash, version, position FROM events e WHERE e.stream_id = s.stream_id ORDER BY version DESC LIMIT 1
         ) last ON true
         WHERE last.hash <> s.last_hash OR last.version <> s.version OR last.position <> s.position",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    app.stop().await;
}

/// Position order is commit order only if nobody draws a position before holding the append lock: a
/// reservation must wait for the lock's holder, and the sequence must not move until it has the lock.
#[sqlx::test(migrations = "../migrations")]
async fn positions_are_drawn_only_under_the_append_lock(pool: PgPool) {
    use command_service::event_store::{reserve_positions, APPEND_LOCK_KEY};
    use std::time::Duration;

    async fn last_drawn(pool: &PgPool) -> (i64, bool) {
        sqlx::query_as("SELECT last_value, is_called FROM events_position_seq").fetch_one(pool).await.unwrap()
    }
    let before = last_drawn(&pool).await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(APPEND_LOCK_KEY).execute(&mut *holder).await.unwrap();

    let reserving = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut transaction = pool.begin().await.unwrap();
            let positions = reserve_positions(&mut transaction, 5).await.unwrap();
            transaction.commit().await.unwrap();
            positions
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reserving.is_finished(), "a reservation went ahead while another transaction held the append lock");
    assert_eq!(last_drawn(&pool).await, before, "positions were drawn before the append lock was held");

    holder.commit().await.unwrap();
    let positions = reserving.await.unwrap();
    assert_eq!(positions, vec![1, 2, 3, 4, 5], "one transaction's positions are consecutive and ascending");
}
