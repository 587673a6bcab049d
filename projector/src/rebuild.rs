//! `projector rebuild`: rebuilds every read model from position 0 into fresh tables in a staging schema, then
//! swaps them in with one transaction, so that queries see either the old models or the new ones, never half.
//!
//! Coordination with a running projector: rebuild tries the leadership lock and, when it gets it, holds it to
//! the end, so that projectors stand by meanwhile. When a projector holds it, rebuild builds alongside and the
//! swap relies on the checkpoint row lock (the same fence every batch takes first): the swap locks the row,
//! brings the staging tables up to the head in that transaction, swaps, and moves the checkpoint; the running
//! projector's next batch sees a checkpoint it did not expect, applies nothing, and continues from the new one.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::config::RebuildConfig;
use crate::events::{self, DecodedEvent};
use crate::schema::READ_MODEL_TABLES;
use crate::{batch, catch_up, leader, read_models, schema, PROJECTOR_LOCK_KEY};

/// Where fresh tables are built. Dropped and recreated by every rebuild.
pub const STAGING_SCHEMA: &str = "projector_rebuild";

/// Held for the whole rebuild, so that two rebuilds never share the staging schema.
const REBUILD_LOCK_KEY: i64 = PROJECTOR_LOCK_KEY + 1;

/// Decoded batches buffered between the reader and the writer at most: overlap, not unbounded read-ahead.
const READ_AHEAD_BATCHES: usize = 2;

/// How often a plain progress line is printed when stderr is not a terminal.
const PROGRESS_LINE_INTERVAL: Duration = Duration::from_secs(2);

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildStats {
    pub events: u64,
    pub checkpoint: i64,
    pub elapsed: Duration,
}

impl RebuildStats {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `projector rebuild`.
pub async fn main(config: RebuildConfig) -> anyhow::Result<()> {
    // No statement timeout: building an index over millions of rows may take longer than a batch ever does.
    let options = crate::app::primary_options(&config.database_url).await?.options([("statement_timeout", "0")]);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.context("connect to Postgres")?;
    anyhow::ensure!(schema::is_ready(&pool).await?, "the schema is missing: start command-service first (it migrates)");
    let head = {
        let mut connection = pool.acquire().await?;
        events::head(&mut connection).await?
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(head.max(0) as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} positions ({per_sec}, eta {eta})",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = Instant::now();
    let stats = rebuild(&pool, config.batch_size, |position| match &bar {
        Some(bar) => bar.set_position(position.max(0) as u64),
        None if last_line.elapsed() >= PROGRESS_LINE_INTERVAL => {
            last_line = Instant::now();
            eprintln!("rebuild: position {position} of {head}");
        }
        None => {}
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish();
    }
    println!(
        "rebuilt the read models from {} events up to position {} in {:.2}s: {:.0} events/s",
        stats.events,
        stats.checkpoint,
        stats.elapsed.as_secs_f64(),
        stats.events_per_second()
    );
    Ok(())
}

/// Rebuilds and swaps; `progress` is called with the position reached after each batch.
pub async fn rebuild(pool: &PgPool, batch_size: i64, mut progress: impl FnMut(i64)) -> anyhow::Result<RebuildStats> {
    let started = Instant::now();
    schema::ensure_checkpoint(pool).await?;
    let options = (*pool.connect_options()).clone();
    let mut exclusive = sqlx::ConnectOptions::connect(&options).await.context("connect for the rebuild lock")?;
    let alone: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK_KEY)
        .fetch_one(&mut exclusive)
        .await
        .context("take the rebuild lock")?;
    anyhow::ensure!(alone, "another rebuild is running");
    let leadership = leader::try_acquire(&options).await?;
    match &leadership {
        Some(_) => tracing::info!("no projector is running; projectors that start now stand by until the swap"),
        None => tracing::info!("a projector is running; it keeps the live models current until the swap"),
    }

    let result = build_and_swap(pool, batch_size, &mut progress).await;
    if let Some(lock) = leadership {
        lock.release().await;
    }
    sqlx::Connection::close(exclusive).await.ok();
    let (events, checkpoint) = result?;
    Ok(RebuildStats { events, checkpoint, elapsed: started.elapsed() })
}

async fn build_and_swap(pool: &PgPool, batch_size: i64, progress: &mut impl FnMut(i64)) -> anyhow::Result<(u64, i64)> {
    let secondary_indexes = prepare_staging(pool).await?;
    let staging = format!("{STAGING_SCHEMA}.");
    let target = {
        let mut connection = pool.acquire().await?;
        events::head(&mut connection).await?
    };

    // The reader decodes the next batches while the writer writes this one: both cores work.
    let (sender, mut receiver) = mpsc::channel::<anyhow::Result<Vec<DecodedEvent>>>(READ_AHEAD_BATCHES);
    let reader_pool = pool.clone();
    let reader = tokio::spawn(async move {
        let mut after = 0;
        while after < target {
            let batch = read_decoded(&reader_pool, after, batch_size).await;
            let last = batch.as_ref().ok().and_then(|events| events.last().map(|event| event.position));
            let failed = batch.is_err();
            if sender.send(batch).await.is_err() || failed {
                return;
            }
            match last {
                Some(position) => after = position,
                None => return,
            }
        }
    });
    let (mut events, mut position, mut log_hash) = (0_u64, 0_i64, tally_shared::digest::LOG_GENESIS_HASH);
    while let Some(batch) = receiver.recv().await {
        let batch = batch?;
        log_hash = catch_up::chain_log_over(log_hash, &batch);
        let writes = {
            let mut connection = pool.acquire().await?;
            let prior = read_models::load_prior(&mut connection, &staging, &batch::needs(&batch)).await?;
            batch::fold(&batch, &prior)?
        };
        // History on one connection, the other models on another: two Postgres backends, two cores. Each commits
        // on its own; that is safe here because nothing reads the staging tables before the swap, and a crash
        // only loses them.
        let (history, others) =
            tokio::join!(write_staging(pool, &staging, &writes, true), write_staging(pool, &staging, &writes, false));
        history?;
        others?;
        events += batch.len() as u64;
        position = batch.last().map_or(position, |event| event.position);
        progress(position);
    }
    reader.await.context("join the reader")?;

    for definition in &secondary_indexes {
        sqlx::query(definition).execute(pool).await.with_context(|| format!("create index: {definition}"))?;
    }
    // Logged from here on, before the swap (which then only renames), so that the live models survive a crash.
    for table in READ_MODEL_TABLES {
        sqlx::query(&format!("ALTER TABLE {STAGING_SCHEMA}.{table} SET LOGGED"))
            .execute(pool)
            .await
            .with_context(|| format!("make {STAGING_SCHEMA}.{table} logged"))?;
    }
    swap(pool, batch_size, &staging, (position, log_hash), events).await
}

async fn write_staging(pool: &PgPool, staging: &str, writes: &batch::Writes, history: bool) -> anyhow::Result<()> {
    let mut transaction = pool.begin().await?;
    // A crash loses the staging tables only, which the next rebuild recreates: no need to wait for fsync.
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *transaction).await?;
    if history {
        read_models::copy_history(&mut transaction, staging, writes).await?;
    } else {
        read_models::write_all_but_history(&mut transaction, staging, writes).await?;
    }
    transaction.commit().await.context("commit a rebuild batch")
}

async fn read_decoded(pool: &PgPool, after: i64, batch_size: i64) -> anyhow::Result<Vec<DecodedEvent>> {
    let mut connection = pool.acquire().await?;
    events::read_to_project(&mut connection, after, batch_size).await
}

async fn apply(connection: &mut PgConnection, schema_prefix: &str, batch: &[DecodedEvent]) -> anyhow::Result<()> {
    let prior = read_models::load_prior(connection, schema_prefix, &batch::needs(batch)).await?;
    let writes = batch::fold(batch, &prior)?;
    read_models::write(connection, schema_prefix, &writes).await
}

/// Recreates the staging schema with empty copies of the read-model tables (columns, defaults, checks, primary
/// and unique keys under their own names). Returns the statements that create the other indexes, to run after
/// the bulk load, when building them is cheapest.
async fn prepare_staging(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut connection = pool.acquire().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {STAGING_SCHEMA} CASCADE")).execute(&mut *connection).await?;
    sqlx::query(&format!("CREATE SCHEMA {STAGING_SCHEMA}")).execute(&mut *connection).await?;
    let mut secondary_indexes = Vec::new();
    for table in READ_MODEL_TABLES {
        sqlx::query(&format!("CREATE TABLE {STAGING_SCHEMA}.{table} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"))
            .execute(&mut *connection)
            .await
            .with_context(|| format!("create {STAGING_SCHEMA}.{table}"))?;
        let keys: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY conname",
        )
        .bind(table)
        .fetch_all(&mut *connection)
        .await?;
        for (name, definition) in keys {
            sqlx::query(&format!("ALTER TABLE {STAGING_SCHEMA}.{table} ADD CONSTRAINT \"{name}\" {definition}"))
                .execute(&mut *connection)
                .await
                .with_context(|| format!("add {name} to {STAGING_SCHEMA}.{table}"))?;
        }
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT pg_get_indexdef(i.indexrelid),
                 quote_ident(n.nspname) || '.' || quote_ident(c.relname)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE i.indrelid = $1::regclass
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
             ORDER BY i.indexrelid",
        )
        .bind(table)
        .fetch_all(&mut *connection)
        .await?;
        for (definition, qualified) in indexes {
            let live = format!(" ON {qualified} ");
            anyhow::ensure!(definition.contains(&live), "unexpected index definition: {definition}");
            secondary_indexes.push(definition.replacen(&live, &format!(" ON {STAGING_SCHEMA}.{table} "), 1));
        }
    }
    Ok(secondary_indexes)
}

/// Brings the staging tables up to the head and swaps them in, in one transaction fenced by the checkpoint row.
async fn swap(
    pool: &PgPool,
    batch_size: i64,
    staging: &str,
    (mut position, mut log_hash): (i64, [u8; 32]),
    mut events: u64,
) -> anyhow::Result<(u64, i64)> {
    let mut transaction = pool.begin().await?;
    let (live_checkpoint, live_log_hash) =
        catch_up::lock_checkpoint(&mut transaction).await.context("lock the checkpoint for the swap")?;
    loop {
        let batch = events::read_to_project(&mut transaction, position, batch_size).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        events += batch.len() as u64;
        log_hash = catch_up::chain_log_over(log_hash, &batch);
        apply(&mut transaction, staging, &batch).await?;
    }
    // The live log hash is a function of the log up to its checkpoint: one the rebuild disagrees with at an equal
    // position means the log changed under it, or the live one was wrong; the rebuilt one is the replay's.
    if live_checkpoint == position && live_log_hash != log_hash {
        tracing::warn!(position, "the rebuilt log hash differs from the live one at the same position");
    }
    let live_schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut *transaction).await?;
    let live_schema = format!("\"{}\"", live_schema.replace('"', "\"\""));
    // All locks at once, so that the swap never holds one table while waiting for another.
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", READ_MODEL_TABLES.join(", ")))
        .execute(&mut *transaction)
        .await
        .context("lock the live read models")?;
    for table in READ_MODEL_TABLES {
        sqlx::query(&format!("DROP TABLE {live_schema}.{table}")).execute(&mut *transaction).await?;
        sqlx::query(&format!("ALTER TABLE {STAGING_SCHEMA}.{table} SET SCHEMA {live_schema}"))
            .execute(&mut *transaction)
            .await
            .with_context(|| format!("move {table} into place"))?;
    }
    catch_up::advance_checkpoint(&mut transaction, position, &log_hash).await?;
    sqlx::query(&format!("DROP SCHEMA {STAGING_SCHEMA}")).execute(&mut *transaction).await?;
    transaction.commit().await.context("commit the swap")?;
    tracing::info!(live_checkpoint, rebuilt_checkpoint = position, "read models swapped in");
    Ok((events, position))
}
