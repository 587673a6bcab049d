//! Read-only Postgres connections, the wait for the schema that command-service migrates, and what a database
//! error means for a reader (the only place that knows a SQLSTATE).

use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tally_edge::servers::{Role, Servers};
use tally_shared::notification::READ_MODEL_TABLES;
use tokio::time::Instant;

use crate::config::Config;

/// Relations query-service reads besides the read models: start-up waits until these and every one of
/// [`READ_MODEL_TABLES`] exist.
const RELATIONS_READ: [&str; 5] = ["events", "projection_checkpoints", "wallet_owners", "digests", "verifications"];

/// Pause between two looks for the schema.
const SCHEMA_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One log line per this many looks, so that a long wait does not flood the log.
const ATTEMPTS_PER_LOG_LINE: u64 = 10;

/// An idle transaction is a bug here (every read is one statement); end it rather than hold back vacuum.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// `base` with the session settings every query-service connection has from its first statement:
/// read-only by default (a bug in query-service can never change data), bounded statements, a name in
/// `pg_stat_activity`.
pub fn read_only_options(base: PgConnectOptions, config: &Config) -> PgConnectOptions {
    base.application_name("tally-query-service").options([
        ("default_transaction_read_only", "on".to_owned()),
        ("statement_timeout", config.statement_timeout_ms.to_string()),
        ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT_MS.to_string()),
    ])
}

/// The pool that serves requests, through [`crate::connections::Connections`], and the checkpoint follower. Lazy:
/// connections open on first use, so start-up survives a Postgres that is still booting, and the schema wait
/// retries. Requests lease connections and return them without a ping; the pool itself keeps sqlx's ping before
/// every acquire, since it is acquired from only when the lender has no idle connection, by the checkpoint
/// follower and by health checks.
pub fn read_only_pool(base: PgConnectOptions, config: &Config) -> PgPool {
    pool_options(config).connect_lazy_with(read_only_options(base, config))
}

fn pool_options(config: &Config) -> PgPoolOptions {
    PgPoolOptions::new()
        // One more than requests lease, for the checkpoint follower and health checks.
        .max_connections(config.database_pool_size + 1)
        .acquire_timeout(config.database_acquire_timeout())
}

/// The pool of `config.database_url`: one URL, or a comma-separated list (a replica first, then the primary, say).
/// query-service reads from the first server of the list that answers, replica or primary, and moves on when it
/// stops answering (`tally_edge::servers`; the task that moves it runs from here on).
pub fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let servers = Servers::parse(&config.database_url, Role::Any, |base| read_only_options(base, config))
        .context("parse DATABASE_URL")?;
    Ok(servers.followed_pool(pool_options(config)))
}

/// What the server a pool reads from says of itself: a primary, or a replica and how far behind it is.
#[derive(Debug, Clone, Copy)]
pub struct ServerRole {
    pub in_recovery: bool,
    /// WAL received but not yet replayed, in bytes (a replica only).
    pub replay_lag_bytes: Option<i64>,
    /// Time since the last transaction replayed was committed on the primary, in milliseconds (a replica
    /// only; it also grows while the primary commits nothing).
    pub last_replay_age_ms: Option<i64>,
}

/// Asks the server `pool` reads from what it is, in one statement.
pub async fn server_role(pool: &PgPool) -> Result<ServerRole, sqlx::Error> {
    let (in_recovery, replay_lag_bytes, last_replay_age_ms) = sqlx::query_as(
        "SELECT pg_is_in_recovery(),
                CASE WHEN pg_is_in_recovery()
                     THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint END,
                CASE WHEN pg_is_in_recovery()
                     THEN (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint END",
    )
    .fetch_one(pool)
    .await?;
    Ok(ServerRole { in_recovery, replay_lag_bytes, last_replay_age_ms })
}

/// Fails unless connections of `pool` are read-only: the promise that query-service cannot write.
pub async fn ensure_read_only(pool: &PgPool) -> anyhow::Result<()> {
    let read_only: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(pool)
        .await
        .context("read transaction_read_only")?;
    if read_only != "on" {
        bail!("query-service connections must be read-only (default_transaction_read_only = on)");
    }
    Ok(())
}

/// Waits until every relation of [`RELATIONS_READ`] and [`READ_MODEL_TABLES`] exists (command-service applies the migrations), for at most `wait`.
pub async fn wait_for_schema(pool: &PgPool, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut attempt: u64 = 0;
    loop {
        let missing = missing_relations(pool).await;
        let say = attempt.is_multiple_of(ATTEMPTS_PER_LOG_LINE);
        match &missing {
            Ok(missing) if missing.is_empty() => return Ok(()),
            Ok(missing) if say => tracing::info!(?missing, "waiting for the schema"),
            Err(error) if say => tracing::warn!(error = format!("{error:#}"), "waiting for Postgres"),
            _ => {}
        }
        if Instant::now() >= deadline {
            return match missing {
                Ok(missing) => Err(anyhow::anyhow!("schema still lacks {missing:?} after {wait:?}")),
                Err(error) => Err(error.context(format!("Postgres still unreachable after {wait:?}"))),
            };
        }
        attempt += 1;
        tokio::time::sleep(SCHEMA_POLL_INTERVAL).await;
    }
}

async fn missing_relations(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = RELATIONS_READ.iter().chain(&READ_MODEL_TABLES).map(|name| (*name).to_owned()).collect();
    sqlx::query_scalar("SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NULL")
        .bind(&names)
        .fetch_all(pool)
        .await
        .context("look for the schema")
}

/// SQLSTATE of a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// What a failed read means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The database is out of reach or the pool is exhausted: the client may retry shortly.
    Unavailable,
    /// The statement ran past `statement_timeout`.
    Timeout,
    /// Anything else: a bug or corrupt data.
    Other,
}

/// Classifies the first database error in `error`'s chain.
pub fn trouble(error: &anyhow::Error) -> Trouble {
    match error.chain().find_map(|source| source.downcast_ref::<sqlx::Error>()) {
        Some(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)) => {
            Trouble::Unavailable
        }
        Some(sqlx::Error::Database(database)) if database.code().as_deref() == Some(QUERY_CANCELED) => Trouble::Timeout,
        _ => Trouble::Other,
    }
}
