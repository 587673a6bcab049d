//! Reading stored events in position order, in bounded batches, and decoding them into domain events.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tally_shared::envelope::{Event, EventMetadata, StreamId};

/// One row of `events`, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

/// A stored event read back into the domain.
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    pub position: i64,
    pub stream: StreamId,
    pub version: i64,
    pub event: Event,
    /// The only part of the metadata the read models keep.
    pub idempotency_key: Option<String>,
    pub recorded_at: DateTime<Utc>,
    /// The event's own hash (its stream's chain), which the log hash chains in position order.
    pub hash: [u8; 32],
}

/// Why a stored event could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event at position {position}: {source}")]
    StreamId { position: i64, source: tally_shared::envelope::InvalidStreamId },
    #[error("event at position {position} ({event_type} on {stream_id}): {source}")]
    Data { position: i64, stream_id: String, event_type: String, source: serde_json::Error },
    #[error("event at position {position}: metadata: {source}")]
    Metadata { position: i64, source: serde_json::Error },
    #[error("event at position {position}: a hash of {length} bytes, not 32")]
    Hash { position: i64, length: usize },
}

fn hash_of(position: i64, hash: &[u8]) -> Result<[u8; 32], DecodeError> {
    hash.try_into().map_err(|_| DecodeError::Hash { position, length: hash.len() })
}

impl EventRow {
    /// Reads the event back, keeping the row (for `verify`, which also hashes it).
    pub fn decode(&self) -> Result<DecodedEvent, DecodeError> {
        self.clone().into_decoded()
    }

    /// Reads the event back, consuming the row: no copy of its JSON.
    pub fn into_decoded(self) -> Result<DecodedEvent, DecodeError> {
        let stream: StreamId =
            self.stream_id.parse().map_err(|source| DecodeError::StreamId { position: self.position, source })?;
        let event = Event::from_stored(&stream, &self.event_type, self.data).map_err(|source| DecodeError::Data {
            position: self.position,
            stream_id: self.stream_id.clone(),
            event_type: self.event_type.clone(),
            source,
        })?;
        let metadata: EventMetadata = serde_json::from_value(self.metadata)
            .map_err(|source| DecodeError::Metadata { position: self.position, source })?;
        Ok(DecodedEvent {
            position: self.position,
            stream,
            version: self.version,
            event,
            idempotency_key: metadata.idempotency_key,
            recorded_at: self.recorded_at,
            hash: hash_of(self.position, &self.hash)?,
        })
    }
}

/// Events after `after`, in position order, at most `limit`.
///
/// Correct under the store's ordering scheme: appenders take a transaction-scoped advisory lock before
/// allocating positions, so position order is commit order and a snapshot that sees position p sees every
/// committed event below p. Holes are rolled-back appends that can never fill, and are skipped.
pub async fn read_after(connection: &mut PgConnection, after: i64, limit: i64) -> anyhow::Result<Vec<EventRow>> {
    sqlx::query_as::<_, EventRow>(
        "SELECT position, stream_id, version, event_id, event_type, data, metadata, recorded_at, hash
         FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(connection)
    .await
    .with_context(|| format!("read events after position {after}"))
}

/// What projecting an event needs of its row: its data as text, and of its metadata only the idempotency key
/// (no event id, no hash).
#[derive(Debug, sqlx::FromRow)]
struct ProjectedRow {
    position: i64,
    stream_id: String,
    version: i64,
    event_type: String,
    data: String,
    idempotency_key: Option<String>,
    recorded_at: DateTime<Utc>,
    hash: Vec<u8>,
}

impl ProjectedRow {
    fn decode(self) -> Result<DecodedEvent, DecodeError> {
        let stream: StreamId =
            self.stream_id.parse().map_err(|source| DecodeError::StreamId { position: self.position, source })?;
        let event =
            Event::from_stored_text(&stream, &self.event_type, &self.data).map_err(|source| DecodeError::Data {
                position: self.position,
                stream_id: self.stream_id,
                event_type: self.event_type,
                source,
            })?;
        Ok(DecodedEvent {
            position: self.position,
            stream,
            version: self.version,
            event,
            idempotency_key: self.idempotency_key,
            recorded_at: self.recorded_at,
            hash: hash_of(self.position, &self.hash)?,
        })
    }
}

/// Events after `after`, in position order, at most `limit`, decoded for projecting: the projector's and the
/// rebuild's hot path, which reads only what the read models need (`verify` reads whole rows with
/// [`read_after`]). Ordering as for [`read_after`].
pub async fn read_to_project(
    connection: &mut PgConnection,
    after: i64,
    limit: i64,
) -> anyhow::Result<Vec<DecodedEvent>> {
    let rows = sqlx::query_as::<_, ProjectedRow>(
        "SELECT position, stream_id, version, event_type, data::text AS data,
                metadata->>'idempotency_key' AS idempotency_key, recorded_at, hash
         FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(connection)
    .await
    .with_context(|| format!("read events after position {after}"))?;
    Ok(rows.into_iter().map(ProjectedRow::decode).collect::<Result<Vec<_>, _>>()?)
}

/// The highest position committed so far (0 for an empty log).
pub async fn head(connection: &mut PgConnection) -> anyhow::Result<i64> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT max(position) FROM events").fetch_one(connection).await.context("read the head")?;
    Ok(head.unwrap_or(0))
}
