//! The schema the projector needs: waiting until command-service has migrated it, and the read-model tables.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::PROJECTION_NAME;

pub use tally_shared::notification::READ_MODEL_TABLES;

/// Whether migrations have created every table the projector reads or writes.
pub async fn is_ready(pool: &PgPool) -> anyhow::Result<bool> {
    let present: i64 =
        sqlx::query_scalar("SELECT count(*) FROM unnest($1::text[]) AS t(name) WHERE to_regclass(t.name) IS NOT NULL")
            .bind(
                READ_MODEL_TABLES
                    .iter()
                    .copied()
                    .chain(["events", "streams", "projection_checkpoints"])
                    .collect::<Vec<_>>(),
            )
            .fetch_one(pool)
            .await
            .context("look for the schema")?;
    Ok(present == READ_MODEL_TABLES.len() as i64 + 3)
}

/// Waits until the schema exists (command-service applies migrations; the projector never does), polling every
/// `interval`, then makes sure the checkpoint row exists. Returns early with `Ok(false)` if `stop` resolves first.
pub async fn wait_until_ready(
    pool: &PgPool,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    loop {
        match is_ready(pool).await {
            Ok(true) => break,
            Ok(false) => tracing::info!("waiting for the schema (command-service applies migrations)"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "waiting for Postgres"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok(false),
        }
    }
    ensure_checkpoint(pool).await?;
    Ok(true)
}

/// Creates the checkpoint row at position 0 if it is missing, so that every batch can lock it (its fence).
pub async fn ensure_checkpoint(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(PROJECTION_NAME)
        .execute(pool)
        .await
        .context("create the checkpoint row")?;
    Ok(())
}

/// The checkpoint as committed.
pub async fn checkpoint(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
        .bind(PROJECTION_NAME)
        .fetch_optional(pool)
        .await
        .context("read the checkpoint")
        .map(|position| position.unwrap_or(0))
}
