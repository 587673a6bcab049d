//! The Postgres event store: stream snapshots, the append itself, idempotency records and owner uniqueness.
//! Every function here runs inside the caller's transaction; none commits.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Key of the transaction-scoped advisory lock every append takes before allocating positions,
/// so that position order is commit order and a reader of `position > checkpoint` never skips
/// an event that commits late (ARCHITECTURE.md, "Ordering").
pub const APPEND_LOCK_KEY: i64 = 0x7461_6c6c_7901;

/// A stream's last version, the position of its last event and its last hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub version: i64,
    pub position: i64,
    pub last_hash: [u8; 32],
    /// `recorded_at` of the stream's last event: the next one is never stamped earlier.
    pub recorded_at: DateTime<Utc>,
}

impl StreamHead {
    pub const EMPTY: StreamHead = StreamHead {
        version: 0,
        position: 0,
        last_hash: tally_shared::envelope::GENESIS_HASH,
        recorded_at: DateTime::<Utc>::MIN_UTC,
    };
}

#[derive(Debug, Clone)]
pub struct LoadedStream {
    pub stream_id: String,
    pub head: StreamHead,
    pub state: serde_json::Value,
}

/// A `streams` row as read: id, version, position, state, last hash, last `recorded_at`.
type SnapshotRow = (String, i64, i64, serde_json::Value, Vec<u8>, DateTime<Utc>);

/// Reads the snapshots of `stream_ids`; with `lock`, takes their row locks in `stream_id` order,
/// so that two appenders touching the same streams queue instead of deadlocking.
#[tracing::instrument(skip_all, fields(streams = stream_ids.len(), lock))]
pub async fn load_streams(
    connection: &mut PgConnection,
    stream_ids: &[String],
    lock: bool,
) -> anyhow::Result<Vec<LoadedStream>> {
    let sql = if lock {
        "SELECT stream_id, version, position, state, last_hash, updated_at FROM streams
         WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE"
    } else {
        "SELECT stream_id, version, position, state, last_hash, updated_at FROM streams WHERE stream_id = ANY($1)"
    };
    let rows: Vec<SnapshotRow> =
        sqlx::query_as(sql).bind(stream_ids).fetch_all(&mut *connection).await.context("load stream snapshots")?;
    rows.into_iter()
        .map(|(stream_id, version, position, state, last_hash, recorded_at)| {
            let last_hash: [u8; 32] =
                last_hash.try_into().map_err(|_| anyhow::anyhow!("snapshot of {stream_id} has a malformed hash"))?;
            Ok(LoadedStream { stream_id, head: StreamHead { version, position, last_hash, recorded_at }, state })
        })
        .collect()
}

/// The user wallets of these `(owner_id, asset)` pairs that exist.
pub async fn load_owners(
    connection: &mut PgConnection,
    pairs: &[(String, String)],
) -> anyhow::Result<HashMap<(String, String), Uuid>> {
    let (owners, assets): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT o.owner_id, o.asset, o.wallet_id FROM wallet_owners o
         JOIN unnest($1::text[], $2::text[]) AS p(owner_id, asset) USING (owner_id, asset)",
    )
    .bind(&owners)
    .bind(&assets)
    .fetch_all(&mut *connection)
    .await
    .context("load wallet owners")?;
    Ok(rows.into_iter().map(|(owner, asset, wallet)| ((owner, asset), wallet)).collect())
}

/// A completed command's record.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: serde_json::Value,
}

pub async fn stored_responses(
    connection: &mut PgConnection,
    keys: &[(String, String)],
) -> anyhow::Result<HashMap<(String, String), StoredResponse>> {
    let (principals, idempotency_keys): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
    let rows: Vec<(String, String, Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT k.principal, k.idempotency_key, k.fingerprint, k.status, k.response FROM idempotency_keys k
         JOIN unnest($1::text[], $2::text[]) AS p(principal, idempotency_key) USING (principal, idempotency_key)",
    )
    .bind(&principals)
    .bind(&idempotency_keys)
    .fetch_all(&mut *connection)
    .await
    .context("read stored responses")?;
    rows.into_iter()
        .map(|(principal, key, fingerprint, status, body)| {
            let fingerprint: [u8; 32] = fingerprint
                .try_into()
                .map_err(|_| anyhow::anyhow!("idempotency record has a malformed fingerprint"))?;
            let status = u16::try_from(status).context("stored status")?;
            Ok(((principal, key), StoredResponse { fingerprint, status, body }))
        })
        .collect()
}

/// An event ready to be stored: everything but its position.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream_id: String,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    /// Shared by the events of one command.
    pub metadata: std::sync::Arc<serde_json::Value>,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// Takes the append lock, held until the transaction ends, then draws `count` positions from the events'
/// sequence, ascending. Everyone who draws from that sequence holds this lock first, so positions are
/// handed out one transaction at a time and position order is commit order (ARCHITECTURE.md, "Ordering").
/// One round trip: the series' length is only known once the lock is held, so no position can be drawn
/// before it.
pub async fn reserve_positions(connection: &mut PgConnection, count: usize) -> Result<Vec<i64>, sqlx::Error> {
    let count = i32::try_from(count).map_err(|_| sqlx::Error::Protocol(format!("{count} positions at once")))?;
    let mut positions: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('events', 'position'))
         FROM generate_series(1, (SELECT $2::integer FROM pg_advisory_xact_lock($1)))",
    )
    .bind(APPEND_LOCK_KEY)
    .bind(count)
    .fetch_all(&mut *connection)
    .await?;
    positions.sort_unstable();
    Ok(positions)
}

/// A stream's new snapshot after an append.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stream_id: String,
    pub head: StreamHead,
    /// The state as JSON text, serialized straight from its type.
    pub state: String,
}

/// A decided command's answer, stored under its idempotency key.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub principal: &'a str,
    pub idempotency_key: &'a str,
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: &'a serde_json::Value,
    pub position: Option<i64>,
}

/// Everything a decided batch writes.
#[derive(Debug)]
pub struct BatchWrite<'a> {
    /// The new events, each with its position from [`reserve_positions`] (same order, same length).
    pub events: &'a [NewEvent],
    pub positions: &'a [i64],
    /// The touched streams' new snapshots, stamped `recorded_at`.
    pub snapshots: &'a [Snapshot],
    pub recorded_at: DateTime<Utc>,
    /// New user wallets: `(owner_id, asset, wallet_id)`.
    pub owners: &'a [(String, String, Uuid)],
    /// The answers to store, stamped `now`.
    pub completions: &'a [Completion<'a>],
    pub now: DateTime<Utc>,
}

impl BatchWrite<'_> {
    /// Nothing to write: every command of the batch was answered from its stored answer.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.snapshots.is_empty() && self.owners.is_empty() && self.completions.is_empty()
    }
}

/// Writes a batch in one statement: its events, the touched streams' snapshots, new owners and the answers.
/// Constraints, not checks in Rust, stop every race, and each failure names its constraint:
/// - `events_stream_version_key`: a stream moved since its snapshot was read (a lost race);
/// - `idempotency_keys_pkey`: another process stored one of the keys meanwhile; a transaction still
///   holding such a key makes this wait for its outcome;
/// - `wallet_owners_pkey`: another process opened a wallet for the same `(owner_id, asset)` meanwhile.
#[tracing::instrument(skip_all, fields(events = batch.events.len(), answers = batch.completions.len()))]
pub async fn write_batch(connection: &mut PgConnection, batch: &BatchWrite<'_>) -> Result<(), sqlx::Error> {
    let BatchWrite { events, positions, snapshots, recorded_at, owners, completions, now } = batch;
    assert_eq!(events.len(), positions.len(), "one reserved position per event");
    let stream_ids: Vec<&str> = events.iter().map(|event| event.stream_id.as_str()).collect();
    let versions: Vec<i64> = events.iter().map(|event| event.version).collect();
    let event_ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
    let event_types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    let data: Vec<Json<&serde_json::Value>> = events.iter().map(|event| Json(&event.data)).collect();
    let metadata: Vec<Json<&serde_json::Value>> = events.iter().map(|event| Json(&*event.metadata)).collect();
    let event_recorded_at: Vec<DateTime<Utc>> = events.iter().map(|event| event.recorded_at).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|event| event.hash.as_slice()).collect();

    let snapshot_ids: Vec<&str> = snapshots.iter().map(|snapshot| snapshot.stream_id.as_str()).collect();
    let snapshot_versions: Vec<i64> = snapshots.iter().map(|snapshot| snapshot.head.version).collect();
    let snapshot_positions: Vec<i64> = snapshots.iter().map(|snapshot| snapshot.head.position).collect();
    let states: Vec<&str> = snapshots.iter().map(|snapshot| snapshot.state.as_str()).collect();
    let last_hashes: Vec<&[u8]> = snapshots.iter().map(|snapshot| snapshot.head.last_hash.as_slice()).collect();

    let owner_ids: Vec<&str> = owners.iter().map(|(owner, _, _)| owner.as_str()).collect();
    let owner_assets: Vec<&str> = owners.iter().map(|(_, asset, _)| asset.as_str()).collect();
    let owner_wallets: Vec<Uuid> = owners.iter().map(|(_, _, wallet)| *wallet).collect();

    let principals: Vec<&str> = completions.iter().map(|completion| completion.principal).collect();
    let keys: Vec<&str> = completions.iter().map(|completion| completion.idempotency_key).collect();
    let fingerprints: Vec<&[u8]> = completions.iter().map(|completion| completion.fingerprint.as_slice()).collect();
    let statuses: Vec<i16> = completions.iter().map(|completion| completion.status as i16).collect();
    let bodies: Vec<Json<&serde_json::Value>> = completions.iter().map(|completion| Json(completion.body)).collect();
    let answer_positions: Vec<Option<i64>> = completions.iter().map(|completion| completion.position).collect();

    sqlx::query(
        "WITH appended AS (
             INSERT INTO events (position, stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::jsonb[],
                                  $7::jsonb[], $8::timestamptz[], $9::bytea[])
         ), snapshots AS (
             INSERT INTO streams (stream_id, version, position, state, last_hash, updated_at)
             SELECT s.stream_id, s.version, s.position, s.state::jsonb, s.last_hash, $15
             FROM unnest($10::text[], $11::bigint[], $12::bigint[], $13::text[], $14::bytea[])
                 AS s(stream_id, version, position, state, last_hash)
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position,
                 state = EXCLUDED.state, last_hash = EXCLUDED.last_hash, updated_at = EXCLUDED.updated_at
         ), owners AS (
             INSERT INTO wallet_owners (owner_id, asset, wallet_id)
             SELECT * FROM unnest($16::text[], $17::text[], $18::uuid[])
         )
         INSERT INTO idempotency_keys (principal, idempotency_key, fingerprint, status, response, position, created_at)
         SELECT c.*, $25 FROM unnest($19::text[], $20::text[], $21::bytea[], $22::smallint[], $23::jsonb[], $24::bigint[])
             AS c",
    )
    .bind(positions)
    .bind(&stream_ids)
    .bind(&versions)
    .bind(&event_ids)
    .bind(&event_types)
    .bind(&data)
    .bind(&metadata)
    .bind(&event_recorded_at)
    .bind(&hashes)
    .bind(&snapshot_ids)
    .bind(&snapshot_versions)
    .bind(&snapshot_positions)
    .bind(&states)
    .bind(&last_hashes)
    .bind(recorded_at)
    .bind(&owner_ids)
    .bind(&owner_assets)
    .bind(&owner_wallets)
    .bind(&principals)
    .bind(&keys)
    .bind(&fingerprints)
    .bind(&statuses)
    .bind(&bodies)
    .bind(&answer_positions)
    .bind(now)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Deletes idempotency records older than `older_than`, at most `batch_size_max` of them.
pub async fn expire_keys(pool: &sqlx::PgPool, older_than: DateTime<Utc>, batch_size_max: i64) -> anyhow::Result<u64> {
    let result = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
    )
    .bind(older_than)
    .bind(batch_size_max)
    .execute(pool)
    .await
    .context("expire idempotency keys")?;
    Ok(result.rows_affected())
}
