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
