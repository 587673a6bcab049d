//! SQL over the event store (`events`), for auditors: one stream's events, the global log in order, and a
//! wallet's balance at any moment recomputed from its own events.
//!
//! Ordering: command-service takes a transaction-scoped advisory lock before it allocates positions and
//! holds it until commit, so position order is commit order. A reader that sees position `p` committed can
//! therefore never later see a position below `p` appear; `position > after ORDER BY position` skips nothing
//! (rolled-back appends leave holes that stay holes).

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use tally_shared::digest::DigestView;
use tally_shared::envelope::{Event, StoredEvent, StreamId};
use tally_shared::wallet::WalletEvent;
use uuid::Uuid;

const EVENT_SELECT: &str =
    "SELECT position, stream_id, version, event_id, event_type, data, metadata, recorded_at, hash FROM events";

#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    stream_id: String,
    version: i64,
    event_id: Uuid,
    event_type: String,
    data: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
    hash: Vec<u8>,
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> StoredEvent {
        StoredEvent {
            position: row.position,
            stream_id: row.stream_id,
            version: row.version,
            event_id: row.event_id,
            event_type: row.event_type,
            data: row.data,
            metadata: row.metadata,
            recorded_at: row.recorded_at,
            hash: hex::encode(row.hash),
        }
    }
}

/// Up to `limit` events of `stream_id` from version `from_version` on, in version order.
pub async fn stream_events(
    connection: &mut PgConnection,
    stream_id: &str,
    from_version: i64,
    limit: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let rows: Vec<EventRow> =
        sqlx::query_as(&format!("{EVENT_SELECT} WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"))
            .bind(stream_id)
            .bind(from_version)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await
            .context("read a stream's events")?;
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}

/// Whether `stream_id` has any event (streams start at version 1 and have no gaps).
pub async fn stream_exists(connection: &mut PgConnection, stream_id: &str) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM events WHERE stream_id = $1 AND version = 1)")
        .bind(stream_id)
        .fetch_one(&mut *connection)
        .await
        .context("look for a stream")
}

/// Up to `limit` events of the global log after position `after`, in position (= commit) order.
pub async fn events_after(connection: &mut PgConnection, after: i64, limit: i64) -> anyhow::Result<Vec<StoredEvent>> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!("{EVENT_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *connection)
        .await
        .context("read the global log")?;
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}

/// Up to `limit` events after position `after` and at or before `until`, in position order: a page of an export.
pub async fn events_between(
    connection: &mut PgConnection,
    after: i64,
    until: i64,
    limit: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let rows: Vec<EventRow> =
        sqlx::query_as(&format!("{EVENT_SELECT} WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"))
            .bind(after)
            .bind(until)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await
            .context("read a page of the export")?;
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}

/// The position of the last event committed (0 for an empty log).
pub async fn head(connection: &mut PgConnection) -> anyhow::Result<i64> {
    let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&mut *connection)
        .await
        .context("read the head")?;
    Ok(head.unwrap_or(0))
}

/// A `digests` row: position, log hash, recorded_at, public key, signature.
type DigestRow = (i64, Vec<u8>, DateTime<Utc>, Vec<u8>, Vec<u8>);

fn digest_view((position, log_hash, recorded_at, public_key, signature): DigestRow) -> DigestView {
    DigestView {
        position,
        log_hash: hex::encode(log_hash),
        recorded_at,
        public_key: hex::encode(public_key),
        signature: hex::encode(signature),
    }
}

const DIGEST_SELECT: &str = "SELECT position, log_hash, recorded_at, public_key, signature FROM digests";

/// Up to `limit` digests after position `after`, oldest first.
pub async fn digests_after(connection: &mut PgConnection, after: i64, limit: i64) -> anyhow::Result<Vec<DigestView>> {
    let rows: Vec<DigestRow> =
        sqlx::query_as(&format!("{DIGEST_SELECT} WHERE position > $1 ORDER BY position LIMIT $2"))
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *connection)
            .await
            .context("read digests")?;
    Ok(rows.into_iter().map(digest_view).collect())
}

/// The digest of the highest position, if any.
pub async fn latest_digest(connection: &mut PgConnection) -> anyhow::Result<Option<DigestView>> {
    let row: Option<DigestRow> = sqlx::query_as(&format!("{DIGEST_SELECT} ORDER BY position DESC LIMIT 1"))
        .fetch_optional(&mut *connection)
        .await
        .context("read the latest digest")?;
    Ok(row.map(digest_view))
}

/// A moment in a stream's life: the last event at or before a global position, or at or before an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Position(i64),
    Instant(DateTime<Utc>),
}

/// A wallet's balance at a [`Moment`], from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAt {
    pub asset: String,
    pub scale: tally_shared::money::Scale,
    /// The wallet stream's version at that moment; 0 before the wallet was opened.
    pub version: i64,
    pub balance: Decimal,
    /// What the wallet's active holds reserved at that moment: the `held_after` of its last hold event.
    pub held: Decimal,
    /// Where the debit or credit that set `balance` stands; `None` when nothing had moved yet (the balance is zero).
    pub last_move: Option<LastMove>,
}

/// The event that last moved a wallet's balance: its stream version, global position and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastMove {
    pub version: i64,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct BalanceRow {
    opened_type: String,
    opened_data: String,
    version: i64,
    posting_version: Option<i64>,
    posting_position: Option<i64>,
    posting_recorded_at: Option<DateTime<Utc>>,
    posting_type: Option<String>,
    posting_data: Option<String>,
    held_version: Option<i64>,
    held_type: Option<String>,
    held_data: Option<String>,
}

/// The balance of wallet stream `stream_id` at `moment`: the `balance_after` of its last `WalletDebited` or
/// `WalletCredited` event at or before it, zero if none, and what was held then (the `held_after` of its last
/// `WalletHoldPlaced` or `WalletHoldSettled`); `None` if the stream does not exist. SQL only finds
/// the events (by type, version and position); their data is read in Rust, through the upcaster
/// ([`Event::from_stored_text`]), as every other read of event data is.
///
/// The last event at or before the moment is found by a binary search over the stream's versions, each step
/// one lookup of the `(stream_id, version)` key, so the cost is O(log length) at any depth. The answer is the
/// version `v` where the moment falls between event `v` and event `v + 1`:
/// - by position this is exact: a version is appended only after the previous one committed, and positions
///   are allocated in commit order, so positions increase along a stream;
/// - by instant it is exact while `recorded_at` does not decrease along the stream. command-service stamps
///   `recorded_at` when a batch starts, so two processes (or a clock step) can make a later version carry an
///   earlier stamp by a few milliseconds; within such an inversion the search still lands on a version where
///   the stamps cross the instant, never on an invented balance.
pub async fn balance_at(
    connection: &mut PgConnection,
    stream_id: &str,
    moment: Moment,
) -> anyhow::Result<Option<BalanceAt>> {
    // The other bound is the end of time, so that one statement serves both kinds of moment.
    let (position, instant) = match moment {
        Moment::Position(position) => (position, None),
        Moment::Instant(instant) => (i64::MAX, Some(instant)),
    };
    let row: Option<BalanceRow> = sqlx::query_as(
        "WITH RECURSIVE
         bound AS (SELECT $2::bigint AS position, COALESCE($3::timestamptz, 'infinity') AS recorded_at),
         opened AS (
             SELECT event_type AS opened_type, data::text AS opened_data
             FROM events WHERE stream_id = $1 AND version = 1
         ),
         search (low, high) AS (
             SELECT 0::bigint, COALESCE((SELECT max(version) FROM events WHERE stream_id = $1), 0)
             UNION ALL
             SELECT CASE WHEN e.position <= b.position AND e.recorded_at <= b.recorded_at THEN e.version ELSE s.low END,
                    CASE WHEN e.position <= b.position AND e.recorded_at <= b.recorded_at THEN s.high ELSE e.version - 1 END
             FROM search s
             CROSS JOIN bound b
             JOIN events e ON e.stream_id = $1 AND e.version = (s.low + s.high + 1) / 2
             WHERE s.low < s.high
         ),
         reached AS (SELECT max(low) AS version FROM search)
         SELECT opened.opened_type, opened.opened_data, reached.version,
                posting.version AS posting_version, posting.position AS posting_position,
                posting.recorded_at AS posting_recorded_at, posting.event_type AS posting_type,
                posting.data AS posting_data, held.version AS held_version, held.event_type AS held_type,
                held.data AS held_data
         FROM opened
         CROSS JOIN reached
         LEFT JOIN LATERAL (
             SELECT e.version, e.position, e.recorded_at, e.event_type, e.data::text AS data
             FROM events e
             WHERE e.stream_id = $1 AND e.version <= reached.version
               AND e.event_type IN ('WalletDebited', 'WalletCredited')
             ORDER BY e.version DESC
             LIMIT 1
         ) posting ON true
         LEFT JOIN LATERAL (
             SELECT e.version, e.event_type, e.data::text AS data
             FROM events e
             WHERE e.stream_id = $1 AND e.version <= reached.version
               AND e.event_type IN ('WalletHoldPlaced', 'WalletHoldSettled')
             ORDER BY e.version DESC
             LIMIT 1
         ) held ON true",
    )
    .bind(stream_id)
    .bind(position)
    .bind(instant)
    .fetch_optional(&mut *connection)
    .await
    .context("recompute a balance from events")?;
    let Some(row) = row else { return Ok(None) };
    let stream: StreamId = stream_id.parse().map_err(|error| anyhow!("{error}"))?;
    let read = |event_type: &str, data: &str, version: i64| {
        Event::from_stored_text(&stream, event_type, data).with_context(|| format!("read {stream_id} v{version}"))
    };
    let Event::Wallet(WalletEvent::WalletOpened(opened)) = read(&row.opened_type, &row.opened_data, 1)? else {
        bail!("{stream_id} does not start with WalletOpened");
    };
    let (balance, posting) = match (row.posting_type, row.posting_data, row.posting_version, row.posting_position) {
        (Some(event_type), Some(data), Some(version), Some(position)) => {
            let balance = match read(&event_type, &data, version)? {
                Event::Wallet(WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting)) => {
                    posting.balance_after
                }
                other => bail!("{stream_id} v{version} is not a posting: {other:?}"),
            };
            let recorded_at = row.posting_recorded_at.context("a posting has its recorded_at")?;
            (balance, Some(LastMove { version, position, recorded_at }))
        }
        _ => (Decimal::ZERO, None),
    };
    let held = match (row.held_type, row.held_data, row.held_version) {
        (Some(event_type), Some(data), Some(version)) => match read(&event_type, &data, version)? {
            Event::Wallet(WalletEvent::WalletHoldPlaced(placed)) => placed.held_after,
            Event::Wallet(WalletEvent::WalletHoldSettled(settled)) => settled.held_after,
            other => bail!("{stream_id} v{version} changes no hold: {other:?}"),
        },
        _ => Decimal::ZERO,
    };
    let (asset, scale, version) = (opened.asset.to_string(), opened.scale, row.version);
    Ok(Some(BalanceAt { asset, scale, version, balance, held, last_move: posting }))
}
