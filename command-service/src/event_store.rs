//! The Postgres event store: stream snapshots, the append itself, idempotency records and owner uniqueness.
//! Reads see what is committed; a batch is written by one statement ([`write_batch`]), its own transaction.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Key of the transaction-scoped advisory lock every append takes before it allocates positions (or writes
/// anything), so that position order is commit order and a reader of `position > checkpoint` never skips
/// an event that commits late (ARCHITECTURE.md, "Ordering").
pub const APPEND_LOCK_KEY: i64 = 0x7461_6c6c_7901;

/// Takes the append lock until the end of the caller's transaction: no other append can write meanwhile.
pub async fn take_append_lock(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(APPEND_LOCK_KEY).execute(connection).await?;
    Ok(())
}

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

/// Reads the snapshots of `stream_ids` as they are now; those that do not exist are missing from the answer.
/// No lock: a batch decided on them is written only if they are still at these versions ([`write_batch`]).
#[tracing::instrument(skip_all, fields(streams = stream_ids.len()))]
pub async fn load_streams(connection: &mut PgConnection, stream_ids: &[String]) -> anyhow::Result<Vec<LoadedStream>> {
    let sql =
        "SELECT stream_id, version, position, state, last_hash, updated_at FROM streams WHERE stream_id = ANY($1)";
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
    /// Shared by the events of one command (one `Arc`): [`write_batch`] sends it once per command.
    pub metadata: std::sync::Arc<serde_json::Value>,
    pub recorded_at: DateTime<Utc>,
    pub hash: [u8; 32],
}

/// A stream's new snapshot after an append.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stream_id: String,
    pub version: i64,
    pub last_hash: [u8; 32],
    /// Index in the batch's events of the stream's last event: its position is the snapshot's.
    pub last_event: usize,
    /// The state as JSON text, serialized straight from its type.
    pub state: String,
}

/// Where a stored answer's position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPosition {
    /// The answer has none (a refusal).
    None,
    /// The position of this event of the batch (by index): known once the write has drawn it.
    Appended(usize),
    /// A position already in the log (a command that appended nothing reports its stream's).
    Existing(i64),
}

/// A decided command's answer, stored under its idempotency key.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub principal: &'a str,
    pub idempotency_key: &'a str,
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: &'a serde_json::Value,
    pub position: AnswerPosition,
    /// The body shows the position as its `position` field.
    pub shows_position: bool,
}

/// Everything a decided batch writes, and what it was decided against.
#[derive(Debug)]
pub struct BatchWrite<'a> {
    /// The streams the batch's decisions read but append nothing to, with the version they read each at
    /// (0: it did not exist). The write goes ahead only if each one is still there, at that version. (A
    /// stream appended to needs no such check: if it moved, its next version exists and the
    /// `(stream_id, version)` constraint refuses the batch.)
    pub expected: &'a [(String, i64)],
    /// The new events; their positions are drawn by the write.
    pub events: &'a [NewEvent],
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

/// What [`write_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Everything is committed; the events' positions, in the batch's order.
    Appended { positions: Vec<i64> },
    /// A stream the batch was decided against has moved (or appeared) since it was read: nothing was written.
    Stale,
}

/// Writes a decided batch in one statement, hence one implicit transaction, one round trip and one fsync:
/// 1. takes the append lock, held to the commit, so that positions are handed out one writer at a time and
///    position order is commit order (ARCHITECTURE.md, "Ordering");
/// 2. locks the rows of the streams only read and checks their versions, reading the latest committed row even
///    if it committed after the statement began; if one moved, writes nothing and answers [`Written::Stale`];
/// 3. draws the events' positions and writes events, snapshots, new owners and answers (their bodies and
///    `position` take the drawn positions).
///
/// Constraints, not checks in Rust, stop every race the expectations cannot see, and each failure names its
/// constraint:
/// - `events_stream_version_key`: a stream the batch creates or appends to gained that version meanwhile;
/// - `idempotency_keys_pkey`: another process stored one of the keys meanwhile; a transaction still
///   holding such a key makes this wait for its outcome;
/// - `wallet_owners_pkey`: another process opened a wallet for the same `(owner_id, asset)` meanwhile.
#[tracing::instrument(skip_all, fields(events = batch.events.len(), answers = batch.completions.len()))]
pub async fn write_batch(connection: &mut PgConnection, batch: &BatchWrite<'_>) -> Result<Written, sqlx::Error> {
    let BatchWrite { expected, events, snapshots, recorded_at, owners, completions, now } = batch;
    let too_many = |what: &str| sqlx::Error::Protocol(format!("too many {what} in one batch"));
    let ordinal = |index: usize| i32::try_from(index + 1).map_err(|_| too_many("events"));
    let event_count = i32::try_from(events.len()).map_err(|_| too_many("events"))?;

    let expected_ids: Vec<&str> = expected.iter().map(|(stream_id, _)| stream_id.as_str()).collect();
    let expected_versions: Vec<i64> = expected.iter().map(|(_, version)| *version).collect();

    let stream_ids: Vec<&str> = events.iter().map(|event| event.stream_id.as_str()).collect();
    let versions: Vec<i64> = events.iter().map(|event| event.version).collect();
    let event_ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
    let event_types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    let data: Vec<Json<&serde_json::Value>> = events.iter().map(|event| Json(&event.data)).collect();
    // The events of one command share their metadata: sent (and parsed into jsonb) once per command.
    let mut metadata: Vec<Json<&serde_json::Value>> = Vec::new();
    let mut metadata_of: Vec<i32> = Vec::with_capacity(events.len());
    let mut previous: Option<&std::sync::Arc<serde_json::Value>> = None;
    for event in events.iter() {
        if !previous.is_some_and(|shared| std::sync::Arc::ptr_eq(shared, &event.metadata)) {
            metadata.push(Json(&*event.metadata));
            previous = Some(&event.metadata);
        }
        metadata_of.push(i32::try_from(metadata.len()).map_err(|_| too_many("commands"))?);
    }
    let event_recorded_at: Vec<DateTime<Utc>> = events.iter().map(|event| event.recorded_at).collect();
    let hashes: Vec<&[u8]> = events.iter().map(|event| event.hash.as_slice()).collect();

    let snapshot_ids: Vec<&str> = snapshots.iter().map(|snapshot| snapshot.stream_id.as_str()).collect();
    let snapshot_versions: Vec<i64> = snapshots.iter().map(|snapshot| snapshot.version).collect();
    let snapshot_events: Vec<i32> =
        snapshots.iter().map(|snapshot| ordinal(snapshot.last_event)).collect::<Result<_, _>>()?;
    let states: Vec<&str> = snapshots.iter().map(|snapshot| snapshot.state.as_str()).collect();
    let last_hashes: Vec<&[u8]> = snapshots.iter().map(|snapshot| snapshot.last_hash.as_slice()).collect();

    let owner_ids: Vec<&str> = owners.iter().map(|(owner, _, _)| owner.as_str()).collect();
    let owner_assets: Vec<&str> = owners.iter().map(|(_, asset, _)| asset.as_str()).collect();
    let owner_wallets: Vec<Uuid> = owners.iter().map(|(_, _, wallet)| *wallet).collect();

    let principals: Vec<&str> = completions.iter().map(|completion| completion.principal).collect();
    let keys: Vec<&str> = completions.iter().map(|completion| completion.idempotency_key).collect();
    let fingerprints: Vec<&[u8]> = completions.iter().map(|completion| completion.fingerprint.as_slice()).collect();
    let statuses: Vec<i16> = completions.iter().map(|completion| completion.status as i16).collect();
    let bodies: Vec<Json<&serde_json::Value>> = completions.iter().map(|completion| Json(completion.body)).collect();
    let answer_events: Vec<Option<i32>> = completions
        .iter()
        .map(|completion| match completion.position {
            AnswerPosition::Appended(index) => ordinal(index).map(Some),
            AnswerPosition::None | AnswerPosition::Existing(_) => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let answer_positions: Vec<Option<i64>> = completions
        .iter()
        .map(|completion| match completion.position {
            AnswerPosition::Existing(position) => Some(position),
            AnswerPosition::None | AnswerPosition::Appended(_) => None,
        })
        .collect();
    let shows_position: Vec<bool> = completions.iter().map(|completion| completion.shows_position).collect();

    // Order of evaluation: `guard` reads its one row from `lock` before it computes `ok`, so the lock is held
    // before any row is locked; everything else waits for `ok` (`WHERE (SELECT ok FROM guard)` is a one-time
    // filter, evaluated before its node reads a row), so nothing is drawn or written before the check.
    // `FOR SHARE` makes the check read each row's latest committed version, not the statement's snapshot (taken
    // before the lock was): a row updated since is locked in its new version. `FOR KEY SHARE` would not do: it
    // does not conflict with an update that keeps the key, so it locks the old version as it stands.
    let (fresh, positions): (bool, Option<Vec<i64>>) = sqlx::query_as(
        "WITH lock AS MATERIALIZED (
             SELECT pg_advisory_xact_lock($1)
         ), current AS MATERIALIZED (
             SELECT stream_id, version FROM streams WHERE stream_id = ANY($2::text[]) FOR SHARE
         ), guard AS MATERIALIZED (
             SELECT NOT EXISTS (
                 SELECT FROM unnest($2::text[], $3::bigint[]) AS e(stream_id, version)
                 LEFT JOIN current c USING (stream_id)
                 WHERE c.version IS DISTINCT FROM NULLIF(e.version, 0)
             ) AS ok
             FROM lock
         ), drawn AS MATERIALIZED (
             SELECT array_agg(d.position ORDER BY d.position) AS positions
             FROM (SELECT nextval('events_position_seq') AS position
                   FROM generate_series(1, $4::integer) WHERE (SELECT ok FROM guard)) AS d
         ), appended AS (
             INSERT INTO events (position, stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
             OVERRIDING SYSTEM VALUE
             SELECT (SELECT positions FROM drawn)[e.ordinal], e.stream_id, e.version, e.event_id, e.event_type,
                    e.data, ($31::jsonb[])[e.metadata], e.recorded_at, e.hash
             FROM unnest($5::text[], $6::bigint[], $7::uuid[], $8::text[], $9::jsonb[], $10::integer[],
                         $11::timestamptz[], $12::bytea[])
                 WITH ORDINALITY AS e(stream_id, version, event_id, event_type, data, metadata, recorded_at, hash,
                                      ordinal)
             WHERE (SELECT ok FROM guard)
         ), snapshots AS (
             INSERT INTO streams (stream_id, version, position, state, last_hash, updated_at)
             SELECT s.stream_id, s.version, (SELECT positions FROM drawn)[s.last_event], s.state::jsonb,
                    s.last_hash, $18
             FROM unnest($13::text[], $14::bigint[], $15::integer[], $16::text[], $17::bytea[])
                 AS s(stream_id, version, last_event, state, last_hash)
             WHERE (SELECT ok FROM guard)
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position,
                 state = EXCLUDED.state, last_hash = EXCLUDED.last_hash, updated_at = EXCLUDED.updated_at
         ), owners AS (
             INSERT INTO wallet_owners (owner_id, asset, wallet_id)
             SELECT * FROM unnest($19::text[], $20::text[], $21::uuid[]) WHERE (SELECT ok FROM guard)
         ), answers AS (
             INSERT INTO idempotency_keys (principal, idempotency_key, fingerprint, status, response, position,
                                           created_at)
             SELECT c.principal, c.idempotency_key, c.fingerprint, c.status,
                    CASE WHEN c.shows_position AND p.position IS NOT NULL
                         THEN jsonb_set(c.response, '{position}', to_jsonb(p.position))
                         ELSE c.response END,
                    p.position, $30
             FROM unnest($22::text[], $23::text[], $24::bytea[], $25::smallint[], $26::jsonb[], $27::integer[],
                         $28::bigint[], $29::boolean[])
                 AS c(principal, idempotency_key, fingerprint, status, response, last_event, position,
                      shows_position)
             CROSS JOIN LATERAL (
                 SELECT coalesce((SELECT positions FROM drawn)[c.last_event], c.position) AS position
             ) AS p
             WHERE (SELECT ok FROM guard)
         )
         SELECT ok, (SELECT positions FROM drawn) FROM guard",
    )
    .bind(APPEND_LOCK_KEY)
    .bind(&expected_ids)
    .bind(&expected_versions)
    .bind(event_count)
    .bind(&stream_ids)
    .bind(&versions)
    .bind(&event_ids)
    .bind(&event_types)
    .bind(&data)
    .bind(&metadata_of)
    .bind(&event_recorded_at)
    .bind(&hashes)
    .bind(&snapshot_ids)
    .bind(&snapshot_versions)
    .bind(&snapshot_events)
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
    .bind(&answer_events)
    .bind(&answer_positions)
    .bind(&shows_position)
    .bind(now)
    .bind(&metadata)
    .fetch_one(&mut *connection)
    .await?;
    if !fresh {
        return Ok(Written::Stale);
    }
    let positions = positions.unwrap_or_default();
    if positions.len() != events.len() {
        return Err(sqlx::Error::Protocol(format!("{} positions drawn for {} events", positions.len(), events.len())));
    }
    Ok(Written::Appended { positions })
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
