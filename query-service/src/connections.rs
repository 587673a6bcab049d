//! Lends the read pool's connections to requests and takes them back without a round trip.
//!
//! sqlx pings every connection it takes back into its pool (to catch one left mid-query by a cancelled
//! request), and no option turns that off: a second round trip for every read, about a sixth of
//! query-service's CPU under the bench's read load. Here a request holds a [`Lease`]; when it says the
//! connection is [`Lease::done`] (its queries finished), the connection goes back to a stack of idle ones
//! at once. A lease dropped any other way (an error, a cancelled request) hands its connection back to
//! sqlx, which checks it as before.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a connection may sit idle and still be lent without a ping first (Postgres may have restarted).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

pub struct Connections {
    pool: PgPool,
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// Leases at once: the pool's size less the connections kept for everything else (health, ownership).
    leases: Semaphore,
    acquire_timeout: Duration,
}

/// A connection lent to one request.
pub struct Lease<'a> {
    connection: Option<PoolConnection<Postgres>>,
    home: &'a Connections,
    done: bool,
    _permit: SemaphorePermit<'a>,
}

impl Connections {
    /// Lends connections of `pool`, at most `leases_max` at once, waiting at most `acquire_timeout` for one.
    pub fn new(pool: PgPool, leases_max: usize, acquire_timeout: Duration) -> Connections {
        Connections { pool, idle: Mutex::new(Vec::new()), leases: Semaphore::new(leases_max.max(1)), acquire_timeout }
    }

    /// A connection: an idle one if there is one (pinged first if it sat idle long), else one from the pool.
    pub async fn lease(&self) -> Result<Lease<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.leases.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let connection = match idle {
            Some((mut connection, since)) if since.elapsed() >= PING_IDLE_AFTER => match connection.ping().await {
                Ok(()) => connection,
                // Gone (Postgres restarted?): let sqlx close it, and take a fresh one.
                Err(_) => self.pool.acquire().await?,
            },
            Some((connection, _)) => connection,
            None => self.pool.acquire().await?,
        };
        Ok(Lease { connection: Some(connection), home: self, done: false, _permit: permit })
    }
}

impl Lease<'_> {
    /// The request's queries finished: the connection can be lent again as it is.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (true, Some(connection)) = (self.done, self.connection.take()) {
            self.home.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((connection, Instant::now()));
        }
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_deref().expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection.as_deref_mut().expect("a lease holds its connection until dropped")
    }
}
