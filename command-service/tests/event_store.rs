//! The stored log itself: timestamps, hash chains and snapshots as the append path writes them.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use command_service::answer::Answer;
use command_service::event_store::{
    take_append_lock, write_batch, AnswerPosition, BatchWrite, NewAnswer, NewEvent, Snapshot, Written,
};
use serde_json::json;
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

/// A batch of one answered command that appends one event to each of `streams` (each at `version`), decided
/// against `expected`.
struct TestBatch {
    expected: Vec<(String, i64)>,
    events: Vec<NewEvent>,
    snapshots: Vec<Snapshot>,
    answer: Answer,
    key: String,
}

impl TestBatch {
    fn new(expected: &[(&str, i64)], appends: &[(&str, i64)]) -> TestBatch {
        let metadata = std::sync::Arc::new(json!({}));
        let events: Vec<NewEvent> = appends
            .iter()
            .map(|(stream_id, version)| NewEvent {
                stream_id: (*stream_id).to_owned(),
                version: *version,
                event_id: uuid::Uuid::now_v7(),
                event_type: "TestEvent".to_owned(),
                data: json!({"n": version}),
                metadata: metadata.clone(),
                recorded_at: Utc::now(),
                hash: [7; 32],
            })
            .collect();
        let snapshots = appends
            .iter()
            .enumerate()
            .map(|(index, (stream_id, version))| Snapshot {
                stream_id: (*stream_id).to_owned(),
                version: *version,
                last_hash: [7; 32],
                last_event: index,
                state: "{}".to_owned(),
            })
            .collect();
        TestBatch {
            expected: expected.iter().map(|(stream_id, version)| ((*stream_id).to_owned(), *version)).collect(),
            events,
            snapshots,
            answer: Answer { status: 201, body: json!({"transfer_id": "t"}) },
            key: uuid::Uuid::now_v7().to_string(),
        }
    }

    async fn write(&self, pool: &PgPool) -> Written {
        let answers = [NewAnswer {
            principal: "tester",
            idempotency_key: &self.key,
            fingerprint: [1; 32],
            answer: &self.answer,
            position: if self.events.is_empty() {
                AnswerPosition::None
            } else {
                AnswerPosition::Appended(self.events.len() - 1)
            },
        }];
        let batch = BatchWrite {
            expected: &self.expected,
            events: &self.events,
            snapshots: &self.snapshots,
            recorded_at: Utc::now(),
            owners: &[],
            answers: &answers,
            now: Utc::now(),
            due: &[],
        };
        let mut connection = pool.acquire().await.unwrap();
        write_batch(&mut connection, &batch).await.unwrap()
    }
}

/// Returns once a session is waiting for the append lock (seen in `pg_locks`, not guessed from a sleep); panics
/// after 10 s.
async fn waits_for_the_append_lock(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                            AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(command_service::event_store::APPEND_LOCK_KEY)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no write came to wait for the append lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn last_drawn(pool: &PgPool) -> (i64, bool) {
    sqlx::query_as("SELECT last_value, is_called FROM events_position_seq").fetch_one(pool).await.unwrap()
}

/// Position order is commit order only if nobody draws a position before holding the append lock: a write
/// must wait for the lock's holder, and the sequence must not move until it has the lock.
#[sqlx::test(migrations = "../migrations")]
async fn positions_are_drawn_only_under_the_append_lock(pool: PgPool) {
    let before = last_drawn(&pool).await;
    let mut holder = pool.begin().await.unwrap();
    take_append_lock(&mut holder).await.unwrap();

    let batch = TestBatch::new(&[], &[("test-a", 1), ("test-b", 1), ("test-c", 1)]);
    let writing = tokio::spawn({
        let pool = pool.clone();
        async move { batch.write(&pool).await }
    });
    waits_for_the_append_lock(&pool).await;
    assert!(!writing.is_finished(), "a write went ahead while another transaction held the append lock");
    assert_eq!(last_drawn(&pool).await, before, "positions were drawn before the append lock was held");

    holder.commit().await.unwrap();
    let written = writing.await.unwrap();
    assert_eq!(written, Written::Appended { positions: vec![1, 2, 3] }, "one write's positions are consecutive");
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT stream_id, position FROM events ORDER BY position").fetch_all(&pool).await.unwrap();
    assert_eq!(stored, [("test-a".to_owned(), 1), ("test-b".to_owned(), 2), ("test-c".to_owned(), 3)]);
    let snapshots: Vec<(String, i64)> =
        sqlx::query_as("SELECT stream_id, position FROM streams ORDER BY stream_id").fetch_all(&pool).await.unwrap();
    assert_eq!(snapshots, stored, "each snapshot holds the position of its stream's last event");
    let (column, body): (Option<i64>, serde_json::Value) =
        sqlx::query_as("SELECT position, response FROM idempotency_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(column, Some(3), "the stored answer keeps its last event's position");
    assert_eq!(body, json!({"transfer_id": "t"}), "the stored body is the answer as given; a replay adds the position");
}

/// A batch is written only if every stream it was decided against is still at the version it was read at:
/// one that moved, or appeared, since makes the write answer `Stale` and write nothing at all.
#[sqlx::test(migrations = "../migrations")]
async fn a_batch_decided_against_a_stream_that_moved_writes_nothing(pool: PgPool) {
    assert!(matches!(TestBatch::new(&[], &[("read", 1)]).write(&pool).await, Written::Appended { .. }));
    assert!(matches!(TestBatch::new(&[("read", 1)], &[("read", 2)]).write(&pool).await, Written::Appended { .. }));
    let head = last_drawn(&pool).await;
    let counts = |pool: PgPool| async move {
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM streams),
                    (SELECT count(*) FROM idempotency_keys)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = counts(pool.clone()).await;

    // "read" is at version 2: a decision that read it at 1 (behind), at 3 (ahead) or as absent is stale,
    // even when the batch only reads it and appends elsewhere.
    for stale in [1, 3, 0] {
        let batch = TestBatch::new(&[("read", stale), ("written", 0)], &[("written", 1)]);
        assert_eq!(batch.write(&pool).await, Written::StreamMoved, "read at version {stale}");
    }
    // A stream read as absent that exists now.
    let batch = TestBatch::new(&[("read", 2), ("written", 0), ("test-created-meanwhile", 0)], &[("written", 1)]);
    sqlx::query(
        "INSERT INTO streams (stream_id, version, position, state, last_hash, updated_at)
                 VALUES ('test-created-meanwhile', 1, 2, '{}', decode(repeat('00', 32), 'hex'), now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(batch.write(&pool).await, Written::StreamMoved);
    sqlx::query("DELETE FROM streams WHERE stream_id = 'test-created-meanwhile'").execute(&pool).await.unwrap();

    assert_eq!(counts(pool.clone()).await, before, "a stale batch wrote something");
    assert_eq!(last_drawn(&pool).await, head, "a stale batch drew positions");
    let fresh = TestBatch::new(&[("read", 2), ("written", 0)], &[("written", 1)]);
    assert_eq!(fresh.write(&pool).await, Written::Appended { positions: vec![3] });
}

/// A write takes its snapshot when it starts, then may wait for the append lock while another writer commits:
/// its check must see what that writer committed, not the snapshot, or it would decide against a stale stream.
#[sqlx::test(migrations = "../migrations")]
async fn a_write_that_waited_for_the_append_lock_checks_what_the_holder_committed(pool: PgPool) {
    assert!(matches!(TestBatch::new(&[], &[("read", 1)]).write(&pool).await, Written::Appended { .. }));
    let mut holder = pool.begin().await.unwrap();
    take_append_lock(&mut holder).await.unwrap();
    sqlx::query("UPDATE streams SET version = 2 WHERE stream_id = 'read'").execute(&mut *holder).await.unwrap();

    let batch = TestBatch::new(&[("read", 1), ("written", 0)], &[("written", 1)]);
    let writing = tokio::spawn({
        let pool = pool.clone();
        async move { batch.write(&pool).await }
    });
    waits_for_the_append_lock(&pool).await;
    assert!(!writing.is_finished(), "a write went ahead while another transaction held the append lock");
    holder.commit().await.unwrap();
    assert_eq!(writing.await.unwrap(), Written::StreamMoved, "the write checked its snapshot, not the latest commit");
}

/// The events of one command share their metadata, sent once: each event must still get its own command's.
#[sqlx::test(migrations = "../migrations")]
async fn each_event_keeps_its_own_commands_metadata(pool: PgPool) {
    let mut batch = TestBatch::new(&[], &[("one", 1), ("two", 1), ("three", 1), ("four", 1)]);
    let (first, second) = (std::sync::Arc::new(json!({"command": 1})), std::sync::Arc::new(json!({"command": 2})));
    for (event, metadata) in batch.events.iter_mut().zip([&first, &first, &second, &first]) {
        event.metadata = metadata.clone();
    }
    assert!(matches!(batch.write(&pool).await, Written::Appended { .. }));
    let stored: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT metadata FROM events ORDER BY position").fetch_all(&pool).await.unwrap();
    assert_eq!(stored, [&*first, &*first, &*second, &*first].map(Clone::clone));
}

/// SPEC §3's gap case needs a writer that draws a position and commits after a later one: under the ordering
/// scheme, every writer holds the append lock from before it draws until it commits, so that writer cannot
/// exist. The database enforces it for any writer, not just the appender: an insert into `events` without the
/// lock is refused (and leaves a hole, which readers pass), while one holding it goes through.
#[sqlx::test(migrations = "../migrations")]
async fn no_writer_can_insert_an_event_without_holding_the_append_lock(pool: PgPool) {
    let insert = "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
                  VALUES ('test-gap', 1, $1, 'TestEvent', '{}', '{}', now(), $2)";
    let mut bypassing = pool.begin().await.unwrap();
    let refused = sqlx::query(insert).bind(uuid::Uuid::now_v7()).bind(&[7u8; 32][..]).execute(&mut *bypassing).await;
    let error = refused.expect_err("an insert without the append lock went through");
    assert!(error.to_string().contains("only under the append lock"), "{error}");
    drop(bypassing);
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap(), 0);

    let mut locked = pool.begin().await.unwrap();
    take_append_lock(&mut locked).await.unwrap();
    sqlx::query(insert).bind(uuid::Uuid::now_v7()).bind(&[7u8; 32][..]).execute(&mut *locked).await.unwrap();
    locked.commit().await.unwrap();
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap(), 1);
}
