//! Leadership: a session-level advisory lock held on a dedicated connection. Whoever holds it applies the
//! projection; the others stand by and retry. If the holder dies, Postgres ends its session and frees the lock.

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::PROJECTOR_LOCK_KEY;

/// The held lock. Dropping it closes the connection, which releases the lock.
#[derive(Debug)]
pub struct LeaderLock {
    connection: PgConnection,
}

/// A connection that asks for the lock, reused between attempts so that a standby does not reconnect every time.
#[derive(Debug, Default)]
pub struct Candidate {
    connection: Option<PgConnection>,
}

impl Candidate {
    /// Takes the lock if nobody holds it (`pg_try_advisory_lock` never waits). On success the candidate's
    /// connection becomes the lock's; the next attempt connects anew.
    pub async fn try_acquire(&mut self, options: &PgConnectOptions) -> anyhow::Result<Option<LeaderLock>> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => options.connect().await.context("connect for the leadership lock")?,
        };
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PROJECTOR_LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .context("try the leadership lock")?;
        if !acquired {
            self.connection = Some(connection);
            return Ok(None);
        }
        Ok(Some(LeaderLock { connection }))
    }
}

/// Takes the lock if nobody holds it, on a connection of its own.
pub async fn try_acquire(options: &PgConnectOptions) -> anyhow::Result<Option<LeaderLock>> {
    Candidate::default().try_acquire(options).await
}

impl LeaderLock {
    /// Fails if the lock's session is gone (connection broken or terminated): leadership is then lost, and
    /// another instance may already hold the lock. A live session still holds it: nothing else unlocks it.
    pub async fn check(&mut self) -> anyhow::Result<()> {
        self.connection.ping().await.context("the leadership lock's session is gone")
    }

    /// Releases the lock now, so that a standby takes over without waiting for the session to end.
    pub async fn release(mut self) {
        let released =
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(PROJECTOR_LOCK_KEY).execute(&mut self.connection).await;
        if let Err(error) = released {
            tracing::warn!(error = format!("{error:#}"), "release the leadership lock (closing its session instead)");
        }
        self.connection.close().await.ok();
    }
}
