//! The expirer (SPEC §8): releases every active hold whose `expires_at` has passed, through the normal append
//! path, so that optimistic concurrency settles a race with a capture or a void (exactly one wins).
//!
//! At most one instance is active per database: the one holding the session-level advisory lock
//! [`EXPIRER_LOCK_KEY`] on a connection of its own. The others try again every [`LEADER_RETRY`]; when the
//! leader dies its connection closes, the lock goes with it, and another instance takes over. Two leaders at
//! once (a partition) would still release each hold once: an expiry of a resolved hold decides nothing.
//!
//! Due holds come from `holds_due`, written in the append transactions that place and resolve them: no stream
//! is scanned.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};
use tally_shared::hold::HoldId;
use tally_shared::ledger::Command;
use tokio::sync::watch;

use crate::event_store;
use crate::execute::{CommandRequest, Executor, Reply};

/// Key of the session-level advisory lock the active expirer holds.
pub const EXPIRER_LOCK_KEY: i64 = 0x7461_6c6c_7902;
/// How often a standby tries to become the active expirer.
const LEADER_RETRY: Duration = Duration::from_secs(1);
/// How often the active expirer counts the active holds for `tally_holds_active`.
const ACTIVE_COUNT_INTERVAL: Duration = Duration::from_secs(1);
/// The principal expiries are recorded under.
pub const EXPIRER_PRINCIPAL: &str = "tally:expirer";

#[derive(Debug, Clone, Copy)]
pub struct ExpirerLimits {
    /// How long the active expirer sleeps at most between two looks for due holds.
    pub poll_interval: Duration,
    /// Holds released per round at most (each a command of its own, batched by the appenders).
    pub batch_size_max: i64,
}

/// Runs until `stop` turns true: stands by, leads when it can, releases due holds while it leads.
pub async fn run(pool: PgPool, executor: Executor, limits: ExpirerLimits, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match lead(&pool).await {
            Ok(Some(lock)) => {
                tracing::info!("this instance is the active expirer");
                metrics::gauge!("tally_expirer_active").set(1.0);
                if let Err(error) = expire_while_leading(&pool, &executor, limits, lock, &mut stop).await {
                    tracing::warn!(error = format!("{error:#}"), "the expirer lost its lead");
                }
                metrics::gauge!("tally_expirer_active").set(0.0);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(error = format!("{error:#}"), "the expirer could not try to lead"),
        }
        tokio::select! {
            _ = tokio::time::sleep(LEADER_RETRY) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }
}

/// A connection holding the expirer's lock, if no other instance holds it.
async fn lead(pool: &PgPool) -> anyhow::Result<Option<PgConnection>> {
    let mut connection = pool.acquire().await?.detach();
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(EXPIRER_LOCK_KEY).fetch_one(&mut connection).await?;
    Ok(locked.then_some(connection))
}

/// Releases due holds, round after round, while the lock's connection is alive and `stop` is false.
async fn expire_while_leading(
    pool: &PgPool,
    executor: &Executor,
    limits: ExpirerLimits,
    mut lock: PgConnection,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut counted = tokio::time::Instant::now() - ACTIVE_COUNT_INTERVAL;
    while !*stop.borrow() {
        if counted.elapsed() >= ACTIVE_COUNT_INTERVAL {
            metrics::gauge!("tally_holds_active").set(event_store::active_holds(pool).await? as f64);
            counted = tokio::time::Instant::now();
        }
        // The lock lives as long as its connection: a dead connection means another instance may lead now.
        lock.ping().await?;
        let now = Utc::now();
        let due = event_store::due_holds(pool, now, limits.batch_size_max).await?;
        let released = futures::future::join_all(due.iter().map(|hold_id| expire(executor, HoldId(*hold_id), now)));
        for (hold_id, outcome) in due.iter().zip(released.await) {
            match outcome {
                Ok(reply) => record_release(&reply, now),
                Err(error) => tracing::warn!(%hold_id, %error, "could not expire a hold; trying again next round"),
            }
        }
        if due.len() as i64 >= limits.batch_size_max {
            continue;
        }
        let pause = match event_store::next_due(pool).await? {
            Some(next) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(limits.poll_interval),
            None => limits.poll_interval,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }
    lock.close().await?;
    Ok(())
}

/// Releases one hold as of `now`. Each attempt has a key of its own: one that decided nothing (the hold was
/// resolved meanwhile) must not stand in the way of the next.
async fn expire(
    executor: &Executor,
    hold_id: HoldId,
    now: DateTime<Utc>,
) -> Result<Reply, crate::execute::ExecuteError> {
    let idempotency_key = format!("expire:{hold_id}:{}", now.timestamp_micros());
    let fingerprint: [u8; 32] = Sha256::digest(idempotency_key.as_bytes()).into();
    executor
        .execute(CommandRequest {
            principal: EXPIRER_PRINCIPAL.to_owned(),
            owner: None,
            idempotency_key,
            fingerprint,
            command: Command::ExpireHold { hold_id, at: now },
            expected_version: None,
            request_id: None,
        })
        .await
}

/// Counts a release made by the attempt of `now` (not one another instance made before) and how long after
/// its `expires_at` it was recorded.
fn record_release(reply: &Reply, now: DateTime<Utc>) {
    let body = &reply.answer.body;
    if body.get("status").and_then(|status| status.as_str()) != Some("expired") {
        return;
    }
    let time = |field: &str| body.get(field).and_then(|value| value.as_str()).and_then(|text| text.parse().ok());
    let (Some(expires_at), Some(resolved_at)) = (time("expires_at"), time("resolved_at")) else { return };
    let (expires_at, resolved_at): (DateTime<Utc>, DateTime<Utc>) = (expires_at, resolved_at);
    if resolved_at < now {
        return;
    }
    let delay = (resolved_at - expires_at).to_std().unwrap_or(Duration::ZERO);
    metrics::counter!("tally_holds_total", "outcome" => "expired").increment(1);
    metrics::histogram!("tally_hold_expiry_delay_seconds").record(delay.as_secs_f64());
}
