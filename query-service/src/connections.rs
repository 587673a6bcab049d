//! Lends the read pool's connections to requests and takes them back without a round trip.
//!
//! sqlx pings every connection it takes back into its pool (to catch one left mid-query by a cancelled
//! request), and no option turns that off: a second round trip for every read, about a sixth of
//! query-service's CPU under the bench's read load. Here a request holds a [`Lease`]; when it says the
//! connection is [`Lease::done`] (its queries finished), the connection goes back to a stack of idle ones
//! at once. A lease dropped any other way (an error, a cancelled request) hands its connection back to
//! sqlx, which checks it as before.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a connection may sit idle and still be lent without a ping first (Postgres may have restarted).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

pub struct Connections {
    pool: PgPool,
    /// Idle connections, each with when it was given back and the pool's options when it was taken from the
    /// pool: one taken before the pool moved to another server (`tally_edge::servers`) is not lent again.
    idle: Mutex<Vec<Idle>>,
    /// Leases at once: the pool's size less the connections kept for everything else (health, ownership).
    leases: Semaphore,
    acquire_timeout: Duration,
}

struct Idle {
    connection: PoolConnection<Postgres>,
    since: Instant,
    server: Arc<PgConnectOptions>,
}

/// A connection lent to one request.
pub struct Lease<'a> {
    connection: Option<PoolConnection<Postgres>>,
    /// The pool's options when the connection was taken from it: the server it is connected to.
    server: Arc<PgConnectOptions>,
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
        let current = self.pool.connect_options();
        let (connection, server) = match idle {
            // Made for a server the pool no longer reads from: closed (by sqlx), never lent.
            Some(idle) if !Arc::ptr_eq(&idle.server, &current) => {
                drop(idle);
                (self.pool.acquire().await?, current)
            }
            Some(Idle { mut connection, since, server }) if since.elapsed() >= PING_IDLE_AFTER => {
                match connection.ping().await {
                    Ok(()) => (connection, server),
                    // Gone (Postgres restarted?): let sqlx close it, and take a fresh one.
                    Err(_) => (self.pool.acquire().await?, current),
                }
            }
            Some(Idle { connection, server, .. }) => (connection, server),
            None => (self.pool.acquire().await?, current),
        };
        Ok(Lease { connection: Some(connection), server, home: self, done: false, _permit: permit })
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
            let idle = Idle { connection, since: Instant::now(), server: self.server.clone() };
            self.home.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(idle);
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
