//! The Postgres event store: stream snapshots, the append itself, idempotency records and owner uniqueness.
//! Reads see what is committed; a batch is written by one statement ([`write_batch`]), its own transaction.
//!
//! What a database error means is decided here and nowhere else: callers get a [`Written`] outcome for the
//! races the constraints settle, and a [`StoreError`] that says whether trying again may help.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::answer::Answer;

/// Key of the transaction-scoped advisory lock every append takes before it allocates positions (or writes
/// anything), so that position order is commit order and a reader of `position > checkpoint` never skips
/// an event that commits late (ARCHITECTURE.md, "Ordering").
pub const APPEND_LOCK_KEY: i64 = 0x7461_6c6c_7901;

/// The constraint that refuses a second event at one `(stream_id, version)`: the loser of a race.
const STREAM_VERSION_CONSTRAINT: &str = "events_stream_version_key";
/// The constraint that refuses a second answer under one `(principal, idempotency_key)`.
const IDEMPOTENCY_KEY_CONSTRAINT: &str = "idempotency_keys_pkey";

/// Why a call to the store failed, and whether the same call may succeed if made again.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A lost race the constraints did not name, a deadlock, a timeout, a lost connection, a failover.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Anything else: trying again would fail again.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl StoreError {
    fn of(error: sqlx::Error, doing: &'static str) -> StoreError {
        let transient = is_transient(&error);
        let cause = anyhow::Error::new(error).context(doing);
        if transient {
            StoreError::Transient(cause)
        } else {
            StoreError::Fatal(cause)
        }
    }

    /// Stored data that cannot be what the service wrote.
    fn corrupt(what: String) -> StoreError {
        StoreError::Fatal(anyhow::anyhow!(what))
    }
}

/// Errors after which the same call may succeed: unique violations (a race), serialization failures,
/// deadlocks, statement timeouts, a server shutting down or in recovery, lost connections, and a write refused
/// as read-only (25006: a connection that ended up on a standby; the pool moves to the primary meanwhile).
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            matches!(
                database.code().as_deref(),
                Some(
                    "23505"
                        | "40001"
                        | "40P01"
                        | "57014"
                        | "57P01"
                        | "57P02"
                        | "57P03"
                        | "08006"
                        | "08003"
                        | "25P03"
                        | "25006"
                )
            )
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.constraint() == Some(constraint))
}

/// Takes the append lock until the end of the caller's transaction: no other append can write meanwhile.
pub async fn take_append_lock(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(APPEND_LOCK_KEY).execute(connection).await?;
    Ok(())
}

/// The connection a batch attempt runs on. Optimistic: a plain connection, on which the write is a transaction
/// of its own. Locked: a transaction that took the append lock before anything else, committed by [`finish`].
///
/// [`finish`]: Session::finish
pub enum Session {
    Optimistic(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Locked(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Session {
    pub async fn open(pool: &PgPool, locked: bool) -> Result<Session, StoreError> {
        if !locked {
            let connection = pool.acquire().await.map_err(|error| StoreError::of(error, "acquire a connection"))?;
            return Ok(Session::Optimistic(connection));
        }
        let mut transaction = pool.begin().await.map_err(|error| StoreError::of(error, "begin a transaction"))?;
        take_append_lock(&mut transaction).await.map_err(|error| StoreError::of(error, "take the append lock"))?;
        Ok(Session::Locked(transaction))
    }

    pub fn connection(&mut self) -> &mut PgConnection {
        match self {
            Session::Optimistic(connection) => connection,
            Session::Locked(transaction) => transaction,
        }
    }

    pub async fn finish(self) -> Result<(), StoreError> {
        match self {
            Session::Optimistic(_) => Ok(()),
            Session::Locked(transaction) => {
                transaction.commit().await.map_err(|error| StoreError::of(error, "commit the locked batch"))
            }
        }
    }
}

/// A stream's last version, the position of its last event and its last hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub version: i64,
    pub position: i64,
    pub last_hash: [u8; 32],
    /// `recorded_at` of the stream's last event: the next one is never stamped earlier.
    pub recorded_at: DateTime<Utc>,
    /// `recorded_at` of the stream's first event: when a wallet was opened.
    pub created_at: DateTime<Utc>,
}

impl StreamHead {
    pub const EMPTY: StreamHead = StreamHead {
        version: 0,
        position: 0,
        last_hash: tally_shared::envelope::GENESIS_HASH,
        recorded_at: DateTime::<Utc>::MIN_UTC,
        created_at: DateTime::<Utc>::MIN_UTC,
    };
}

#[derive(Debug, Clone)]
pub struct LoadedStream {
    pub stream_id: String,
    pub head: StreamHead,
    pub state: serde_json::Value,
}

/// A `streams` row as read: id, version, position, state, last hash, last and first `recorded_at`.
type SnapshotRow = (String, i64, i64, serde_json::Value, Vec<u8>, DateTime<Utc>, DateTime<Utc>);

/// Reads the snapshots of `stream_ids` as they are now; those that do not exist are missing from the answer.
/// No lock: a batch decided on them is written only if they are still at these versions ([`write_batch`]).
#[tracing::instrument(skip_all, fields(streams = stream_ids.len()))]
pub async fn load_streams(
    connection: &mut PgConnection,
    stream_ids: &[String],
) -> Result<Vec<LoadedStream>, StoreError> {
    let sql = "SELECT stream_id, version, position, state, last_hash, updated_at, created_at FROM streams
         WHERE stream_id = ANY($1)";
    let rows: Vec<SnapshotRow> = sqlx::query_as(sql)
        .bind(stream_ids)
        .fetch_all(&mut *connection)
        .await
        .map_err(|error| StoreError::of(error, "load stream snapshots"))?;
    rows.into_iter()
        .map(|(stream_id, version, position, state, last_hash, recorded_at, created_at)| {
            let last_hash: [u8; 32] = last_hash
                .try_into()
                .map_err(|_| StoreError::corrupt(format!("snapshot of {stream_id} has a malformed hash")))?;
            let head = StreamHead { version, position, last_hash, recorded_at, created_at };
            Ok(LoadedStream { stream_id, head, state })
        })
        .collect()
}

/// The user wallets of these `(owner_id, asset)` pairs that exist.
pub async fn load_owners(
    connection: &mut PgConnection,
    pairs: &[(String, String)],
) -> Result<HashMap<(String, String), Uuid>, StoreError> {
    let (owners, assets): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT o.owner_id, o.asset, o.wallet_id FROM wallet_owners o
         JOIN unnest($1::text[], $2::text[]) AS p(owner_id, asset) USING (owner_id, asset)",
    )
    .bind(&owners)
    .bind(&assets)
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| StoreError::of(error, "load wallet owners"))?;
    Ok(rows.into_iter().map(|(owner, asset, wallet)| ((owner, asset), wallet)).collect())
}

/// An answer as stored under its key: the request's fingerprint, the answer, and its position.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub fingerprint: [u8; 32],
    pub answer: Answer,
    pub position: Option<i64>,
}

/// An `idempotency_keys` row as read: principal, key, fingerprint, status, body, position.
type AnswerRow = (String, String, Vec<u8>, i16, serde_json::Value, Option<i64>);

/// The answers stored under these `(principal, idempotency_key)` pairs.
pub async fn stored_answers(
    connection: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), StoredAnswer>, StoreError> {
    let (principals, idempotency_keys): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
    let rows: Vec<AnswerRow> = sqlx::query_as(
        "SELECT k.principal, k.idempotency_key, k.fingerprint, k.status, k.response, k.position FROM idempotency_keys k
         JOIN unnest($1::text[], $2::text[]) AS p(principal, idempotency_key) USING (principal, idempotency_key)",
    )
    .bind(&principals)
    .bind(&idempotency_keys)
    .fetch_all(&mut *connection)
    .await
    .map_err(|error| StoreError::of(error, "read stored answers"))?;
    rows.into_iter()
        .map(|(principal, key, fingerprint, status, body, position)| {
            let fingerprint: [u8; 32] = fingerprint
                .try_into()
                .map_err(|_| StoreError::corrupt(format!("the answer under {key:?} has a malformed fingerprint")))?;
            let status = u16::try_from(status)
                .map_err(|_| StoreError::corrupt(format!("the answer under {key:?} has status {status}")))?;
            Ok(((principal, key), StoredAnswer { fingerprint, answer: Answer { status, body }, position }))
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
    pub metadata: Arc<serde_json::Value>,
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

/// Where an answer's position comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPosition {
    /// The answer has none (a refusal).
    None,
    /// The position of this event of the batch (by index): known once the write has drawn it.
    Appended(usize),
    /// A position already in the log (a command that appended nothing reports its stream's).
    Existing(i64),
}

impl AnswerPosition {
    /// The position itself, given the positions the write drew for the batch's events.
    pub fn resolve(self, positions: &[i64]) -> Option<i64> {
        match self {
            AnswerPosition::None => None,
            AnswerPosition::Appended(event) => positions.get(event).copied(),
            AnswerPosition::Existing(position) => Some(position),
        }
    }
}

/// A decided command's answer, to be stored under its idempotency key.
#[derive(Debug, Clone)]
pub struct NewAnswer<'a> {
    pub principal: &'a str,
    pub idempotency_key: &'a str,
    pub fingerprint: [u8; 32],
    /// The answer without its position: the store keeps that in a column of its own.
    pub answer: &'a Answer,
    pub position: AnswerPosition,
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
    pub answers: &'a [NewAnswer<'a>],
    pub now: DateTime<Utc>,
    /// The holds the batch placed or resolved, for the expirer's index (`holds_due`).
    pub due: &'a [DueHold],
}

/// A hold the batch touched: still active, due at `expires_at`, or resolved (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueHold {
    pub hold_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

impl BatchWrite<'_> {
    /// Nothing to write: every command of the batch was answered from its stored answer.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.snapshots.is_empty()
            && self.owners.is_empty()
            && self.answers.is_empty()
            && self.due.is_empty()
    }
}

/// What [`write_batch`] did. Every outcome but `Appended` wrote nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Everything is committed; the events' positions, in the batch's order.
    Appended { positions: Vec<i64> },
    /// A stream the batch was decided against has moved (or appeared) since it was read, or a stream it
    /// appends to gained the version it meant to write: decide again on fresh state.
    StreamMoved,
    /// Another request stored an answer under one of the batch's keys meanwhile: that answer is the key's.
    KeyTaken,
}

/// The one statement of [`write_batch`]. Order of evaluation: `guard` reads its one row from `lock` before it
/// computes `ok`, so the lock is held before any row is locked; everything else waits for `ok`
/// (`WHERE (SELECT ok FROM guard)` is a one-time filter, evaluated before its node reads a row), so nothing
/// is drawn or written before the check. `FOR SHARE` makes the check read each row's latest committed version,
/// not the statement's snapshot (taken before the lock was): a row updated since is locked in its new version.
/// `FOR KEY SHARE` would not do: it does not conflict with an update that keeps the key, so it locks the old
/// version as it stands.
const WRITE_BATCH_SQL: &str = "WITH lock AS MATERIALIZED (
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
                e.data, ($30::jsonb[])[e.metadata], e.recorded_at, e.hash
         FROM unnest($5::text[], $6::bigint[], $7::uuid[], $8::text[], $9::jsonb[], $10::integer[],
                     $11::timestamptz[], $12::bytea[])
             WITH ORDINALITY AS e(stream_id, version, event_id, event_type, data, metadata, recorded_at, hash,
                                  ordinal)
         WHERE (SELECT ok FROM guard)
     ), snapshots AS (
         INSERT INTO streams (stream_id, version, position, state, last_hash, updated_at, created_at)
         SELECT s.stream_id, s.version, (SELECT positions FROM drawn)[s.last_event], s.state::jsonb,
                s.last_hash, $18, $18
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
         SELECT c.principal, c.idempotency_key, c.fingerprint, c.status, c.response,
                coalesce((SELECT positions FROM drawn)[c.last_event], c.position), $29
         FROM unnest($22::text[], $23::text[], $24::bytea[], $25::smallint[], $26::jsonb[], $27::integer[],
                     $28::bigint[])
             AS c(principal, idempotency_key, fingerprint, status, response, last_event, position)
         WHERE (SELECT ok FROM guard)
     ), due_added AS (
         INSERT INTO holds_due (hold_id, expires_at)
         SELECT * FROM unnest($31::uuid[], $32::timestamptz[]) WHERE (SELECT ok FROM guard)
         ON CONFLICT (hold_id) DO NOTHING
     ), due_removed AS (
         DELETE FROM holds_due WHERE hold_id = ANY($33::uuid[]) AND (SELECT ok FROM guard)
     )
     SELECT ok, (SELECT positions FROM drawn) FROM guard";

/// Writes a decided batch in one statement, hence one implicit transaction, one round trip and one fsync:
/// 1. takes the append lock, held to the commit, so that positions are handed out one writer at a time and
///    position order is commit order (ARCHITECTURE.md, "Ordering");
/// 2. locks the rows of the streams only read and checks their versions, reading the latest committed row even
///    if it committed after the statement began; if one moved, writes nothing: [`Written::StreamMoved`];
/// 3. draws the events' positions and writes events, snapshots, new owners, answers and the expirer's index of
///    active holds.
///
/// Constraints, not checks in Rust, stop every race the expectations cannot see:
/// - `(stream_id, version)`: a stream the batch creates or appends to gained that version meanwhile
///   ([`Written::StreamMoved`]);
/// - the idempotency key's primary key: another process stored one of the keys meanwhile ([`Written::KeyTaken`]);
///   a transaction still holding such a key makes this wait for its outcome;
/// - `wallet_owners`' primary key: another process opened a wallet for the same `(owner_id, asset)`
///   meanwhile (a transient [`StoreError`]: decided again, the command meets the wallet and is refused).
#[tracing::instrument(skip_all, fields(events = batch.events.len(), answers = batch.answers.len()))]
pub async fn write_batch(connection: &mut PgConnection, batch: &BatchWrite<'_>) -> Result<Written, StoreError> {
    let columns = Columns::of(batch).map_err(StoreError::Fatal)?;
    let query = sqlx::query_as(WRITE_BATCH_SQL)
        .bind(APPEND_LOCK_KEY)
        .bind(&columns.expected_ids)
        .bind(&columns.expected_versions)
        .bind(columns.event_count)
        .bind(&columns.stream_ids)
        .bind(&columns.versions)
        .bind(&columns.event_ids)
        .bind(&columns.event_types)
        .bind(&columns.data)
        .bind(&columns.metadata_of)
        .bind(&columns.event_recorded_at)
        .bind(&columns.hashes)
        .bind(&columns.snapshot_ids)
        .bind(&columns.snapshot_versions)
        .bind(&columns.snapshot_events)
        .bind(&columns.states)
        .bind(&columns.last_hashes)
        .bind(batch.recorded_at)
        .bind(&columns.owner_ids)
        .bind(&columns.owner_assets)
        .bind(&columns.owner_wallets)
        .bind(&columns.principals)
        .bind(&columns.keys)
        .bind(&columns.fingerprints)
        .bind(&columns.statuses)
        .bind(&columns.bodies)
        .bind(&columns.answer_events)
        .bind(&columns.answer_positions)
        .bind(batch.now)
        .bind(&columns.metadata)
        .bind(&columns.due_ids)
        .bind(&columns.due_at)
        .bind(&columns.resolved_ids);
    let (fresh, positions): (bool, Option<Vec<i64>>) = match query.fetch_one(&mut *connection).await {
        Ok(row) => row,
        Err(error) if violates(&error, STREAM_VERSION_CONSTRAINT) => return Ok(Written::StreamMoved),
        Err(error) if violates(&error, IDEMPOTENCY_KEY_CONSTRAINT) => return Ok(Written::KeyTaken),
        Err(error) => return Err(StoreError::of(error, "write a batch")),
    };
    if !fresh {
        return Ok(Written::StreamMoved);
    }
    let positions = positions.unwrap_or_default();
    if positions.len() != batch.events.len() {
        return Err(StoreError::corrupt(format!(
            "{} positions drawn for {} events",
            positions.len(),
            batch.events.len()
        )));
    }
    Ok(Written::Appended { positions })
}

/// A [`BatchWrite`] as the columns its statement unnests.
struct Columns<'a> {
    expected_ids: Vec<&'a str>,
    expected_versions: Vec<i64>,
    event_count: i32,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    data: Vec<Json<&'a serde_json::Value>>,
    /// Each event's metadata, by 1-based index into `metadata`.
    metadata_of: Vec<i32>,
    metadata: Vec<Json<&'a serde_json::Value>>,
    event_recorded_at: Vec<DateTime<Utc>>,
    hashes: Vec<&'a [u8]>,
    snapshot_ids: Vec<&'a str>,
    snapshot_versions: Vec<i64>,
    snapshot_events: Vec<i32>,
    states: Vec<&'a str>,
    last_hashes: Vec<&'a [u8]>,
    owner_ids: Vec<&'a str>,
    owner_assets: Vec<&'a str>,
    owner_wallets: Vec<Uuid>,
    principals: Vec<&'a str>,
    keys: Vec<&'a str>,
    fingerprints: Vec<&'a [u8]>,
    statuses: Vec<i16>,
    bodies: Vec<Json<&'a serde_json::Value>>,
    answer_events: Vec<Option<i32>>,
    answer_positions: Vec<Option<i64>>,
    due_ids: Vec<Uuid>,
    due_at: Vec<DateTime<Utc>>,
    resolved_ids: Vec<Uuid>,
}

/// A 1-based index into the batch's events, as SQL arrays count.
fn ordinal(index: usize) -> anyhow::Result<i32> {
    i32::try_from(index + 1).map_err(|_| anyhow::anyhow!("too many events in one batch"))
}

impl<'a> Columns<'a> {
    fn of(batch: &'a BatchWrite<'a>) -> anyhow::Result<Columns<'a>> {
        let events = batch.events;
        // The events of one command share their metadata: sent (and parsed into jsonb) once per command.
        let mut metadata = Vec::new();
        let mut metadata_of = Vec::with_capacity(events.len());
        let mut previous: Option<&Arc<serde_json::Value>> = None;
        for event in events {
            if !previous.is_some_and(|shared| Arc::ptr_eq(shared, &event.metadata)) {
                metadata.push(Json(&*event.metadata));
                previous = Some(&event.metadata);
            }
            metadata_of.push(i32::try_from(metadata.len())?);
        }
        let answers = batch.answers;
        let (due, resolved): (Vec<&DueHold>, Vec<&DueHold>) =
            batch.due.iter().partition(|hold| hold.expires_at.is_some());
        Ok(Columns {
            due_ids: due.iter().map(|hold| hold.hold_id).collect(),
            due_at: due.iter().filter_map(|hold| hold.expires_at).collect(),
            resolved_ids: resolved.iter().map(|hold| hold.hold_id).collect(),
            expected_ids: batch.expected.iter().map(|(stream_id, _)| stream_id.as_str()).collect(),
            expected_versions: batch.expected.iter().map(|(_, version)| *version).collect(),
            event_count: i32::try_from(events.len())?,
            stream_ids: events.iter().map(|event| event.stream_id.as_str()).collect(),
            versions: events.iter().map(|event| event.version).collect(),
            event_ids: events.iter().map(|event| event.event_id).collect(),
            event_types: events.iter().map(|event| event.event_type.as_str()).collect(),
            data: events.iter().map(|event| Json(&event.data)).collect(),
            metadata_of,
            metadata,
            event_recorded_at: events.iter().map(|event| event.recorded_at).collect(),
            hashes: events.iter().map(|event| event.hash.as_slice()).collect(),
            snapshot_ids: batch.snapshots.iter().map(|snapshot| snapshot.stream_id.as_str()).collect(),
            snapshot_versions: batch.snapshots.iter().map(|snapshot| snapshot.version).collect(),
            snapshot_events: batch
                .snapshots
                .iter()
                .map(|snapshot| ordinal(snapshot.last_event))
                .collect::<Result<_, _>>()?,
            states: batch.snapshots.iter().map(|snapshot| snapshot.state.as_str()).collect(),
            last_hashes: batch.snapshots.iter().map(|snapshot| snapshot.last_hash.as_slice()).collect(),
            owner_ids: batch.owners.iter().map(|(owner, _, _)| owner.as_str()).collect(),
            owner_assets: batch.owners.iter().map(|(_, asset, _)| asset.as_str()).collect(),
            owner_wallets: batch.owners.iter().map(|(_, _, wallet)| *wallet).collect(),
            principals: answers.iter().map(|answer| answer.principal).collect(),
            keys: answers.iter().map(|answer| answer.idempotency_key).collect(),
            fingerprints: answers.iter().map(|answer| answer.fingerprint.as_slice()).collect(),
            statuses: answers.iter().map(|answer| answer.answer.status as i16).collect(),
            bodies: answers.iter().map(|answer| Json(&answer.answer.body)).collect(),
            answer_events: answers
                .iter()
                .map(|answer| match answer.position {
                    AnswerPosition::Appended(index) => ordinal(index).map(Some),
                    AnswerPosition::None | AnswerPosition::Existing(_) => Ok(None),
                })
                .collect::<Result<_, _>>()?,
            answer_positions: answers
                .iter()
                .map(|answer| match answer.position {
                    AnswerPosition::Existing(position) => Some(position),
                    AnswerPosition::None | AnswerPosition::Appended(_) => None,
                })
                .collect(),
        })
    }
}

/// Active holds due at or before `now`, soonest first, at most `limit` of them.
pub async fn due_holds(pool: &PgPool, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    sqlx::query_scalar("SELECT hold_id FROM holds_due WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2")
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(|error| StoreError::of(error, "find due holds"))
}

/// How many holds are active (placed, not resolved).
pub async fn active_holds(pool: &PgPool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT count(*) FROM holds_due")
        .fetch_one(pool)
        .await
        .map_err(|error| StoreError::of(error, "count the active holds"))
}

/// When the next active hold is due, if any is.
pub async fn next_due(pool: &PgPool) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar("SELECT min(expires_at) FROM holds_due")
        .fetch_one(pool)
        .await
        .map_err(|error| StoreError::of(error, "find the next due hold"))
}

/// Deletes idempotency records older than `older_than`, at most `batch_size_max` of them.
pub async fn expire_keys(pool: &PgPool, older_than: DateTime<Utc>, batch_size_max: i64) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
    )
    .bind(older_than)
    .bind(batch_size_max)
    .execute(pool)
    .await
    .map_err(|error| StoreError::of(error, "expire idempotency keys"))?;
    Ok(result.rows_affected())
}
