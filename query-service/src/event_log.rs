//! SQL over the event store (`events`), for auditors: one stream's events, the global log in order, and a
//! wallet's balance at any moment recomputed from its own events.
//!
//! Ordering: command-service takes a transaction-scoped advisory lock before it allocates positions and
//! holds it until commit, so position order is commit order. A reader that sees position `p` committed can
//! therefore never later see a position below `p` appear; `position > after ORDER BY position` skips nothing
//! (rolled-back appends leave holes that stay holes).

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use tally_shared::envelope::StoredEvent;
use tally_shared::money::parse_decimal;
use uuid::Uuid;

use crate::read_models::scale;

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
    /// The debit or credit that set `balance`; `None` when nothing had moved yet (the balance is zero).
    pub posting: Option<Posting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub version: i64,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct BalanceRow {
    asset: Option<String>,
    scale: Option<i32>,
    version: i64,
    posting_version: Option<i64>,
    posting_position: Option<i64>,
    posting_recorded_at: Option<DateTime<Utc>>,
    balance_after: Option<String>,
}

/// The balance of wallet stream `stream_id` at `moment`: the `balance_after` of its last `WalletDebited` or
/// `WalletCredited` event at or before it, zero if none; `None` if the stream does not exist.
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
             SELECT data->>'asset' AS asset, (data->>'scale')::int AS scale
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
         SELECT opened.asset, opened.scale, reached.version,
                posting.version AS posting_version, posting.position AS posting_position,
                posting.recorded_at AS posting_recorded_at, posting.balance_after
         FROM opened
         CROSS JOIN reached
         LEFT JOIN LATERAL (
             SELECT e.version, e.position, e.recorded_at, e.data->>'balance_after' AS balance_after
             FROM events e
             WHERE e.stream_id = $1 AND e.version <= reached.version
               AND e.event_type IN ('WalletDebited', 'WalletCredited')
             ORDER BY e.version DESC
             LIMIT 1
         ) posting ON true",
    )
    .bind(stream_id)
    .bind(position)
    .bind(instant)
    .fetch_optional(&mut *connection)
    .await
    .context("recompute a balance from events")?;
    let Some(row) = row else { return Ok(None) };
    let asset = row.asset.ok_or_else(|| anyhow!("{stream_id} does not start with WalletOpened"))?;
    let scale = scale(row.scale.ok_or_else(|| anyhow!("{stream_id} opened without a scale"))?)?;
    let (balance, posting) =
        match (row.balance_after, row.posting_version, row.posting_position, row.posting_recorded_at) {
            (Some(balance_after), Some(version), Some(position), Some(recorded_at)) => {
                let balance = parse_decimal(&balance_after)
                    .map_err(|error| anyhow!("{stream_id} v{version}: balance_after {balance_after:?}: {error}"))?;
                (balance, Some(Posting { version, position, recorded_at }))
            }
            _ => (Decimal::ZERO, None),
        };
    Ok(Some(BalanceAt { asset, scale, version: row.version, balance, posting }))
}
