//! The bulk path of the flat-cost scenario: a million top-ups of one wallet, decided in-process by the
//! domain's own Decider and written straight to the event store with `COPY`, far faster than HTTP.
//!
//! What lands is what command-service would have written: events with contiguous versions and the SHA-256
//! hash chain, a snapshot row for each new transfer stream, and the wallet's and treasury's snapshots;
//! every leg is balanced against the treasury, so the asset still sums to zero. Each chunk is one
//! transaction that takes the append lock and then the stream row locks, in the same order as an append,
//! and allocates its positions under that lock, so that position order stays commit order for the projector.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use command_service::event_store;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tally_shared::envelope::{self, EventMetadata, SealedEvent, StreamId, GENESIS_HASH};
use tally_shared::ledger::{self, Command, Dependency, World};
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::WalletId;
use uuid::Uuid;

/// Top-ups per transaction: about 3 events each, so a chunk is a few tens of MB of COPY data.
const CHUNK_COMMANDS: u64 = 10_000;
/// COPY data is sent in pieces of about this size.
const COPY_PIECE_BYTES: usize = 4 << 20;
/// Rounds of dependency loading at most: a wallet names its asset, the asset its system wallets
/// (three rounds, and one more to see that nothing is missing; the rest is margin).
const DEPENDENCY_ROUNDS_MAX: usize = 6;
/// Who the seeded events say issued them.
const SEED_PRINCIPAL: &str = "tally-bench-seed";

#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub commands: u64,
    pub events: u64,
    pub elapsed: Duration,
    /// The wallet's version afterwards: its number of events.
    pub wallet_version: i64,
}

#[derive(Debug, Clone, Copy)]
struct Head {
    version: i64,
    last_hash: [u8; 32],
}

/// One transaction's worth of top-ups, decided, hashed and serialized for COPY: everything but positions,
/// which the identity column assigns in row order under the append lock.
struct Chunk {
    /// `COPY events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)` rows.
    events_csv: Vec<u8>,
    event_count: usize,
    first_event_id: Uuid,
    /// The long-lived streams (wallet, asset, system wallets) and their versions before this chunk.
    expected_versions: Vec<(String, i64)>,
    /// Each new transfer stream's snapshot: `stream_id,version,` and `,state,last_hash,updated_at`, around
    /// the position of its (only) event, known after the COPY.
    transfers: Vec<(String, usize, String)>,
    /// The long-lived streams this chunk moved, with their state and head after it.
    snapshots: Vec<LongLivedSnapshot>,
    recorded_at: DateTime<Utc>,
}

struct LongLivedSnapshot {
    stream_id: String,
    head: Head,
    state: serde_json::Value,
    /// Index in the chunk of the stream's last event.
    row: usize,
}

/// Chunks decided ahead of the one being written: the Decider and the hashing run on one core while
/// Postgres writes on the other.
const CHUNKS_AHEAD: usize = 1;

/// Adds `commands` top-ups of 1 to `wallet_id`. Nothing else may append to the wallet or its treasury
/// meanwhile (each chunk checks that their versions did not move, and fails if they did).
pub async fn topups(pool: &PgPool, wallet_id: Uuid, commands: u64) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let wallet_id = WalletId(wallet_id);
    let (world, heads) = load(pool, &topup(wallet_id)).await?;
    let (chunks, mut ready) = tokio::sync::mpsc::channel::<Chunk>(CHUNKS_AHEAD);
    let decider = tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
        let (mut world, mut heads) = (world, heads);
        let long_lived: Vec<StreamId> =
            heads.keys().filter(|stream| !matches!(stream, StreamId::Transfer(_))).cloned().collect();
        let mut done = 0;
        while done < commands {
            let count = CHUNK_COMMANDS.min(commands - done);
            let chunk = decide_chunk(wallet_id, count, &mut world, &mut heads, &long_lived)?;
            if chunks.blocking_send(chunk).is_err() {
                // The writer failed and said why.
                break;
            }
            done += count;
        }
        Ok(heads.get(&StreamId::Wallet(wallet_id)).map_or(0, |head| head.version))
    });
    let mut events = 0;
    let written = async {
        while let Some(chunk) = ready.recv().await {
            events += write_chunk(pool, chunk).await?;
        }
        anyhow::Ok(())
    }
    .await;
    drop(ready);
    let wallet_version = decider.await.context("the seed's Decider panicked")??;
    written?;
    Ok(Seeded { commands, events, elapsed: started.elapsed(), wallet_version })
}

fn topup(wallet_id: WalletId) -> Command {
    Command::Move {
        transfer_id: TransferId(Uuid::now_v7()),
        kind: TransferKind::Topup,
        wallet_id,
        amount: Decimal::ONE,
        reference: None,
        metadata: serde_json::Value::Null,
    }
}

/// The states a top-up of the wallet depends on, from their snapshots, as command-service loads them.
async fn load(pool: &PgPool, sample: &Command) -> anyhow::Result<(World, HashMap<StreamId, Head>)> {
    let mut world = World::default();
    let mut heads = HashMap::new();
    for _ in 0..DEPENDENCY_ROUNDS_MAX {
        let dependencies = ledger::dependencies(&world, sample);
        if dependencies.is_empty() {
            return Ok((world, heads));
        }
        for dependency in dependencies {
            let Dependency::Stream(stream) = dependency else { bail!("a top-up depends on no owner") };
            let snapshot: Option<(i64, serde_json::Value, Vec<u8>)> =
                sqlx::query_as("SELECT version, state, last_hash FROM streams WHERE stream_id = $1")
                    .bind(stream.to_string())
                    .fetch_optional(pool)
                    .await
                    .with_context(|| format!("load the snapshot of {stream}"))?;
            let state = match snapshot {
                Some((version, state, last_hash)) => {
                    let last_hash = last_hash.try_into().map_err(|_| anyhow::anyhow!("malformed hash of {stream}"))?;
                    heads.insert(stream.clone(), Head { version, last_hash });
                    state
                }
                None => serde_json::Value::Null,
            };
            put(&mut world, &stream, state).with_context(|| format!("read the snapshot of {stream}"))?;
        }
    }
    bail!("the dependencies of a top-up did not settle in {DEPENDENCY_ROUNDS_MAX} rounds")
}

/// Puts a snapshot's state into the world; `Null` is a stream that does not exist yet.
fn put(world: &mut World, stream: &StreamId, state: serde_json::Value) -> anyhow::Result<()> {
    let missing = state.is_null();
    match stream {
        StreamId::Asset(code) => {
            world
                .assets
                .insert(code.clone(), if missing { Default::default() } else { serde_json::from_value(state)? });
        }
        StreamId::Wallet(id) => {
            world.wallets.insert(*id, if missing { Default::default() } else { serde_json::from_value(state)? });
        }
        StreamId::Transfer(id) => {
            world.transfers.insert(*id, if missing { Default::default() } else { serde_json::from_value(state)? });
        }
        StreamId::Hold(id) => {
            world.holds.insert(*id, if missing { Default::default() } else { serde_json::from_value(state)? });
        }
    }
    Ok(())
}

/// Decides `count` top-ups in order, each against the state the previous one left, as the appender does.
fn decide_chunk(
    wallet_id: WalletId,
    count: u64,
    world: &mut World,
    heads: &mut HashMap<StreamId, Head>,
    long_lived: &[StreamId],
) -> anyhow::Result<Chunk> {
    let recorded_at = envelope::truncate_to_micros(Utc::now());
    let recorded_at_text = envelope::canonical_time(recorded_at);
    let expected_versions = long_lived
        .iter()
        .map(|stream| (stream.to_string(), heads.get(stream).map_or(0, |head| head.version)))
        .collect();
    let mut events_csv = Vec::with_capacity(count as usize * 3 * 700);
    let mut event_count = 0;
    let mut first_event_id = None;
    let mut transfers = Vec::with_capacity(count as usize);
    let mut last_row_of: HashMap<StreamId, usize> = HashMap::new();
    for _ in 0..count {
        let command = topup(wallet_id);
        let Command::Move { transfer_id, .. } = &command else { unreachable!("a top-up is a move") };
        let transfer_stream = StreamId::Transfer(*transfer_id);
        let changes =
            ledger::decide(world, &command).map_err(|error| anyhow::anyhow!("seed top-up refused: {error}"))?;
        let metadata = json!(EventMetadata {
            principal: Some(SEED_PRINCIPAL.to_owned()),
            causation_id: Some(transfer_stream.to_string()),
            ..EventMetadata::default()
        });
        let metadata_text = metadata.to_string();
        for change in &changes {
            world.apply(change);
            let head = heads.entry(change.stream.clone()).or_insert(Head { version: 0, last_hash: GENESIS_HASH });
            let sealed = change.seal(head.version, &head.last_hash, Uuid::now_v7(), &metadata, recorded_at);
            let SealedEvent { stream_id, version, event_id, event_type, data, hash } = sealed;
            first_event_id.get_or_insert(event_id);
            *head = Head { version, last_hash: hash };
            last_row_of.insert(change.stream.clone(), event_count);
            csv_text(&mut events_csv, &stream_id);
            events_csv.extend_from_slice(format!(",{version},{event_id},").as_bytes());
            csv_text(&mut events_csv, &event_type);
            events_csv.push(b',');
            csv_text(&mut events_csv, &data.to_string());
            events_csv.push(b',');
            csv_text(&mut events_csv, &metadata_text);
            events_csv.extend_from_slice(format!(",{recorded_at_text},\\x{}\n", hex(&hash)).as_bytes());
            event_count += 1;
        }
        // A transfer stream is written once and never again: keep neither its state nor its head.
        let state = world.transfers.remove(transfer_id).context("the top-up recorded its transfer")?;
        let head = heads.remove(&transfer_stream).context("the transfer has a head")?;
        let row = last_row_of.remove(&transfer_stream).context("the transfer has an event")?;
        let mut prefix = Vec::new();
        csv_text(&mut prefix, &transfer_stream.to_string());
        let mut suffix = Vec::new();
        csv_text(&mut suffix, &serde_json::to_string(&state).context("transfer state")?);
        suffix.extend_from_slice(format!(",\\x{},{recorded_at_text}\n", hex(&head.last_hash)).as_bytes());
        transfers.push((
            format!("{},{},", String::from_utf8(prefix).context("CSV is UTF-8")?, head.version),
            row,
            format!(",{}", String::from_utf8(suffix).context("CSV is UTF-8")?),
        ));
    }
    let mut snapshots = Vec::new();
    for stream in long_lived {
        let Some(row) = last_row_of.get(stream) else { continue };
        let state = match stream {
            StreamId::Wallet(id) => serde_json::to_value(&world.wallets[id]).context("wallet state")?,
            StreamId::Asset(code) => serde_json::to_value(&world.assets[code]).context("asset state")?,
            StreamId::Transfer(_) | StreamId::Hold(_) => unreachable!("transfer and hold streams are not long-lived"),
        };
        snapshots.push(LongLivedSnapshot { stream_id: stream.to_string(), head: heads[stream], state, row: *row });
    }
    Ok(Chunk {
        events_csv,
        event_count,
        first_event_id: first_event_id.context("a chunk has events")?,
        expected_versions,
        transfers,
        snapshots,
        recorded_at,
    })
}

/// One transaction: the append lock, then the long-lived streams' row locks (the order of an append), the
/// events, the new transfer snapshots and the moved long-lived snapshots. Returns the number of events.
async fn write_chunk(pool: &PgPool, chunk: Chunk) -> anyhow::Result<u64> {
    let mut transaction = pool.begin().await.context("begin a seed transaction")?;
    event_store::take_append_lock(&mut transaction).await.context("take the append lock")?;
    let mut stream_ids: Vec<&str> = chunk.expected_versions.iter().map(|(stream_id, _)| stream_id.as_str()).collect();
    stream_ids.sort_unstable();
    let locked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_id, version FROM streams WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE",
    )
    .bind(&stream_ids)
    .fetch_all(&mut *transaction)
    .await
    .context("lock the seeded streams")?;
    for (stream_id, version) in &locked {
        let expected = chunk.expected_versions.iter().find(|(expected, _)| expected == stream_id).map(|(_, v)| *v);
        if expected != Some(*version) {
            bail!("{stream_id} moved while the bench was seeding it (now at version {version})");
        }
    }
    copy(
        &mut transaction,
        "COPY events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash) \
         FROM STDIN WITH (FORMAT csv)",
        &chunk.events_csv,
    )
    .await
    .context("COPY events")?;
    // Under the append lock nobody else draws from the sequence: the rows got consecutive positions.
    let (first_position,): (i64,) = sqlx::query_as("SELECT position FROM events WHERE event_id = $1")
        .bind(chunk.first_event_id)
        .fetch_one(&mut *transaction)
        .await
        .context("read the chunk's first position")?;
    let (last_position,): (i64,) = sqlx::query_as("SELECT currval(pg_get_serial_sequence('events', 'position'))")
        .fetch_one(&mut *transaction)
        .await
        .context("read the chunk's last position")?;
    if last_position - first_position + 1 != chunk.event_count as i64 {
        bail!(
            "the chunk's positions are not consecutive: {first_position}..={last_position} for {} events",
            chunk.event_count
        );
    }

    let mut transfers_csv = Vec::with_capacity(chunk.transfers.len() * 600);
    for (prefix, row, suffix) in &chunk.transfers {
        transfers_csv.extend_from_slice(prefix.as_bytes());
        transfers_csv.extend_from_slice((first_position + *row as i64).to_string().as_bytes());
        transfers_csv.extend_from_slice(suffix.as_bytes());
    }
    copy(
        &mut transaction,
        "COPY streams (stream_id, version, position, state, last_hash, updated_at) FROM STDIN WITH (FORMAT csv)",
        &transfers_csv,
    )
    .await
    .context("COPY streams")?;
    for snapshot in &chunk.snapshots {
        sqlx::query(
            "UPDATE streams SET version = $2, position = $3, state = $4, last_hash = $5, updated_at = $6
             WHERE stream_id = $1",
        )
        .bind(&snapshot.stream_id)
        .bind(snapshot.head.version)
        .bind(first_position + snapshot.row as i64)
        .bind(&snapshot.state)
        .bind(snapshot.head.last_hash.as_slice())
        .bind(chunk.recorded_at)
        .execute(&mut *transaction)
        .await
        .with_context(|| format!("save the snapshot of {}", snapshot.stream_id))?;
    }
    transaction.commit().await.context("commit a seed chunk")?;
    Ok(chunk.event_count as u64)
}

async fn copy(connection: &mut PgConnection, statement: &str, data: &[u8]) -> anyhow::Result<()> {
    let mut copy = connection.copy_in_raw(statement).await?;
    for piece in data.chunks(COPY_PIECE_BYTES) {
        copy.send(piece).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// A CSV field, quoted, with quotes doubled.
fn csv_text(buffer: &mut Vec<u8>, text: &str) {
    buffer.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' {
            buffer.push(b'"');
        }
        buffer.push(byte);
    }
    buffer.push(b'"');
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_double_their_quotes() {
        let mut buffer = Vec::new();
        csv_text(&mut buffer, r#"{"a":"b,c"}"#);
        assert_eq!(String::from_utf8(buffer).unwrap(), r#""{""a"":""b,c""}""#);
    }

    #[test]
    fn hashes_are_written_as_lowercase_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
