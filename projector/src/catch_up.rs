//! One fenced batch: lock the checkpoint row, read the events after it, fold them, write the read models,
//! move the checkpoint and wake query-service, all in one transaction.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::events;
use crate::{batch, read_models, PROJECTION_ADVANCED_CHANNEL, PROJECTION_NAME};

/// What one call of [`apply_next_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// `events` events up to `checkpoint` are applied and committed.
    Applied { checkpoint: i64, events: usize, last_recorded_at: DateTime<Utc> },
    /// No event after the checkpoint.
    CaughtUp,
    /// The committed checkpoint is not the one this instance expected: another instance (or a rebuild's swap)
    /// moved it. Nothing was applied; continue from `checkpoint` only if still the leader.
    Fenced { checkpoint: i64 },
}

/// Test hooks that simulate a crash at a chosen moment. Never armed in production.
#[derive(Debug, Default)]
pub struct Failpoints {
    crash_after_apply: AtomicBool,
}

/// The error a failpoint raises: the process "dies" with the batch's writes made but not committed.
#[derive(Debug, thiserror::Error)]
#[error("failpoint: crashed after applying a batch, before its checkpoint")]
pub struct InjectedCrash;

impl Failpoints {
    /// Makes the next batch fail after writing the read models and before writing the checkpoint.
    pub fn crash_after_next_apply(&self) {
        self.crash_after_apply.store(true, Ordering::SeqCst);
    }

    fn check_after_apply(&self) -> Result<(), InjectedCrash> {
        if self.crash_after_apply.swap(false, Ordering::SeqCst) {
            return Err(InjectedCrash);
        }
        Ok(())
    }
}

/// Applies the events after `expected_checkpoint`, at most `batch_size_max`, in one transaction.
///
/// The checkpoint row is locked first (`FOR UPDATE`) and compared with what this instance expects: an instance
/// that lost its leadership without noticing, or whose log position a rebuild replaced, stops here instead of
/// applying a batch twice. Every writer takes that row lock before touching a read model, so writers never deadlock.
#[tracing::instrument(level = "debug", skip(pool, failpoints))]
pub async fn apply_next_batch(
    pool: &PgPool,
    expected_checkpoint: i64,
    batch_size_max: i64,
    failpoints: &Failpoints,
) -> anyhow::Result<BatchOutcome> {
    let mut transaction = pool.begin().await.context("begin a batch")?;
    let (checkpoint, log_hash) = lock_checkpoint(&mut transaction).await?;
    if checkpoint != expected_checkpoint {
        return Ok(BatchOutcome::Fenced { checkpoint });
    }
    let decoded = events::read_to_project(&mut transaction, checkpoint, batch_size_max).await?;
    let Some(last) = decoded.last() else {
        return Ok(BatchOutcome::CaughtUp);
    };
    let (new_checkpoint, last_recorded_at, count) = (last.position, last.recorded_at, decoded.len());
    let prior = read_models::load_prior(&mut transaction, "", &batch::needs(&decoded)).await?;
    let writes = batch::fold(&decoded, &prior)?;
    read_models::write(&mut transaction, "", &writes).await?;
    failpoints.check_after_apply()?;
    advance_checkpoint(&mut transaction, new_checkpoint, &chain_log_over(log_hash, &decoded)).await?;
    transaction.commit().await.context("commit a batch")?;
    Ok(BatchOutcome::Applied { checkpoint: new_checkpoint, events: count, last_recorded_at })
}

/// Locks the checkpoint row (every writer's fence) and reads it: the position and the log hash up to it.
pub async fn lock_checkpoint(connection: &mut sqlx::PgConnection) -> anyhow::Result<(i64, [u8; 32])> {
    let (checkpoint, log_hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT position, log_hash FROM projection_checkpoints WHERE projection = $1 FOR UPDATE")
            .bind(PROJECTION_NAME)
            .fetch_one(&mut *connection)
            .await
            .context("lock the checkpoint")?;
    let log_hash = log_hash.try_into().map_err(|_| anyhow::anyhow!("the stored log hash is not 32 bytes"))?;
    Ok((checkpoint, log_hash))
}

/// The log hash after `events` (in position order), from `log_hash` before them (docs/audit.md).
pub fn chain_log_over(log_hash: [u8; 32], events: &[events::DecodedEvent]) -> [u8; 32] {
    events.iter().fold(log_hash, |log_hash, event| tally_shared::digest::chain_log(&log_hash, &event.hash))
}

/// Moves the checkpoint with the log hash up to it, and wakes query-service's read-your-writes waiters; all take
/// effect at commit.
pub async fn advance_checkpoint(
    connection: &mut sqlx::PgConnection,
    checkpoint: i64,
    log_hash: &[u8; 32],
) -> anyhow::Result<()> {
    let updated = sqlx::query(
        "UPDATE projection_checkpoints SET position = $2, log_hash = $3, updated_at = now() WHERE projection = $1",
    )
    .bind(PROJECTION_NAME)
    .bind(checkpoint)
    .bind(log_hash.as_slice())
    .execute(&mut *connection)
    .await
    .context("move the checkpoint")?
    .rows_affected();
    anyhow::ensure!(updated == 1, "the checkpoint row of {PROJECTION_NAME} is missing");
    sqlx::query("SELECT pg_notify($1, $2::text)")
        .bind(PROJECTION_ADVANCED_CHANNEL)
        .bind(checkpoint)
        .execute(&mut *connection)
        .await
        .context("notify projection_advanced")?;
    Ok(())
}
