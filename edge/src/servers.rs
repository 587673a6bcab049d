//! Lists of servers (SPEC §11): every service takes its Postgres and its NATS servers as comma-separated lists,
//! and this module is the one place that turns a list into connections.
//!
//! - NATS: the client is given every URL and moves between them on its own (it also learns the cluster's other
//!   nodes from the server it reaches).
//! - Postgres: a [`PgPool`] points at one server of the list at a time. [`follow`] checks it every
//!   [`SERVER_CHECK_INTERVAL`]; when it is unreachable or has the wrong role it probes the list in order, every
//!   [`SERVER_PROBE_INTERVAL`] until one answers, and points the pool's new connections there. A writer
//!   ([`Role::Primary`]) takes only a server that is not in recovery, and its pool refuses a connection to one
//!   that is (so promoting a replica, `pg_promote()`, is the failover and nothing can write to a standby). A
//!   reader ([`Role::Any`]) takes the first server of its list that answers, replica or primary.
//!   Connections to a server that died fail, and the pool drops them (sqlx pings a connection as it is returned).

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// How often the server a pool points at is checked while it answers.
pub const SERVER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the list is probed while no server of the right role answers.
pub const SERVER_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one probe of one server may take (connect and one query).
pub const SERVER_PROBE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Servers in one list at most.
pub const SERVERS_MAX: usize = 16;
/// How long a writer's start-up (command-service, `projector rebuild` and `verify`) waits for the primary of its
/// list to answer.
pub const PRIMARY_WAIT: Duration = Duration::from_secs(30);

/// What a service needs of its Postgres server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It writes: only a server not in recovery will do.
    Primary,
    /// It only reads: the first server of the list that answers, a replica as good as the primary.
    Any,
}

/// Splits a comma-separated list of URLs (one or more, each whole: `postgres://a:5432/tally,postgres://b:5433/tally`).
pub fn split_list(list: &str) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = list.split(',').map(str::trim).filter(|url| !url.is_empty()).map(String::from).collect();
    if urls.is_empty() {
        bail!("the list of servers is empty");
    }
    if urls.len() > SERVERS_MAX {
        bail!("{} servers listed; at most {SERVERS_MAX}", urls.len());
    }
    Ok(urls)
}

/// The NATS servers of a comma-separated list, for `async_nats::ConnectOptions::connect`.
pub fn nats_servers(list: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    split_list(list)?
        .iter()
        .map(|url| async_nats::ServerAddr::from_str(url).with_context(|| format!("parse the NATS URL {url}")))
        .collect()
}

/// How long JetStream keeps an "events appended" notification; they are only useful while fresh.
const NOTIFICATIONS_AGE_MAX: Duration = Duration::from_secs(3_600);
/// Notifications JetStream keeps at most: bounds the servers' memory.
const NOTIFICATIONS_KEPT_MAX: i64 = 100_000;
/// Window in which JetStream drops a notification whose `Nats-Msg-Id` it has seen.
const NOTIFICATIONS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Copies of the notification stream at most (a JetStream cluster keeps up to 5).
pub const NOTIFICATION_REPLICAS_MAX: usize = 5;

/// The JetStream stream of "events appended" notifications under `prefix`, kept in memory on `replicas` nodes
/// (3 in a 3-node cluster, so that losing one node loses no notification stream). command-service and the
/// projector both create it with these settings, so whichever starts first creates the same stream.
pub fn notification_stream(prefix: &str, replicas: usize) -> async_nats::jetstream::stream::Config {
    async_nats::jetstream::stream::Config {
        name: tally_shared::notification::stream_name(prefix),
        subjects: vec![tally_shared::notification::appended_subject(prefix)],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        max_age: NOTIFICATIONS_AGE_MAX,
        max_messages: NOTIFICATIONS_KEPT_MAX,
        duplicate_window: NOTIFICATIONS_DUPLICATE_WINDOW,
        num_replicas: replicas.clamp(1, NOTIFICATION_REPLICAS_MAX),
        ..Default::default()
    }
}

/// The Postgres servers of a service, each with the session settings the service's connections carry.
#[derive(Debug, Clone)]
pub struct Servers {
    role: Role,
    candidates: Arc<[PgConnectOptions]>,
    /// Index in `candidates` of the server the pools point at.
    current: Arc<AtomicUsize>,
    /// When the pools were last pointed at a server: a connection made before it may be to the old one, and
    /// is closed rather than used (see [`Servers::pool`]).
    pointed: Arc<std::sync::Mutex<std::time::Instant>>,
}

impl Servers {
    /// Parses `list` and gives every server's options `settings`.
    pub fn parse(
        list: &str,
        role: Role,
        settings: impl Fn(PgConnectOptions) -> PgConnectOptions,
    ) -> anyhow::Result<Servers> {
        let candidates = split_list(list)?
            .iter()
            .map(|url| {
                PgConnectOptions::from_str(url).map(&settings).with_context(|| format!("parse the Postgres URL {url}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Servers {
            role,
            candidates: candidates.into(),
            current: Arc::new(AtomicUsize::new(0)),
            pointed: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    /// The options of the server the pools point at now.
    pub fn current(&self) -> PgConnectOptions {
        self.candidates[self.current.load(Ordering::Relaxed)].clone()
    }

    /// `host:port` of the server the pools point at now, for health and logs.
    pub fn current_name(&self) -> String {
        server_name(&self.current())
    }

    /// A lazy pool on the current server; for a writer, one that refuses connections to a server in recovery.
    /// A connection made before the pool was last moved is closed when it is next acquired, never used: after a
    /// move, every statement runs on the new server (a reader never mixes a checkpoint read on one server with
    /// rows read on another, and a writer never waits on a socket to a server that is gone).
    pub fn pool(&self, options: PgPoolOptions) -> PgPool {
        let pointed = self.pointed.clone();
        let options = options.before_acquire(move |_, meta| {
            let since_move = pointed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
            Box::pin(async move { Ok(meta.age < since_move) })
        });
        let options = match self.role {
            Role::Any => options,
            Role::Primary => options.after_connect(|connection, _| {
                Box::pin(async move {
                    if in_recovery(connection).await? {
                        return Err(sqlx::Error::Protocol(
                            "the server is in recovery (a standby); writers move on".into(),
                        ));
                    }
                    Ok(())
                })
            }),
        };
        options.connect_lazy_with(self.current())
    }

    /// [`Servers::pool`], kept pointed at a server of the right role by a [`follow`] task from now on.
    pub fn followed_pool(self, options: PgPoolOptions) -> PgPool {
        let pool = self.pool(options);
        tokio::spawn(follow(self, pool.clone()));
        pool
    }

    /// Waits, at most `wait`, until a server of the right role answers, and points at it. Start-up calls it
    /// so that the first connections already go to the right server.
    pub async fn find(&self, wait: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.probe_all().await.is_some() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no Postgres server of the list answered as {:?} within {wait:?}", self.role);
            }
            tokio::time::sleep(SERVER_PROBE_INTERVAL).await;
        }
    }

    /// Probes the list in order from the current server; points at the first that fits, and says which.
    async fn probe_all(&self) -> Option<usize> {
        let start = self.current.load(Ordering::Relaxed);
        let count = self.candidates.len();
        for offset in 0..count {
            let index = (start + offset) % count;
            match probe(&self.candidates[index], self.role).await {
                Ok(()) => {
                    if self.current.swap(index, Ordering::Relaxed) != index {
                        tracing::warn!(server = server_name(&self.candidates[index]), role = ?self.role, "Postgres: moved to another server");
                        metrics::counter!("tally_postgres_server_moves_total").increment(1);
                    }
                    return Some(index);
                }
                Err(error) => {
                    tracing::debug!(
                        server = server_name(&self.candidates[index]),
                        error = format!("{error:#}"),
                        "probe failed"
                    )
                }
            }
        }
        None
    }
}

/// Keeps `pool` pointed at a server of `servers`' role, for as long as the task runs: checks the current one
/// every [`SERVER_CHECK_INTERVAL`] and probes the list when it does not answer as it should.
pub async fn follow(servers: Servers, pool: PgPool) {
    // The pool was made pointing at the current server.
    let mut pointed_at = servers.current.load(Ordering::Relaxed);
    let mut probing = false;
    loop {
        let current = servers.current.load(Ordering::Relaxed);
        let healthy = probe(&servers.candidates[current], servers.role).await.is_ok();
        let found = if healthy { Some(current) } else { servers.probe_all().await };
        match found {
            Some(index) => {
                if index != pointed_at {
                    *servers.pointed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        std::time::Instant::now();
                    pool.set_connect_options(servers.candidates[index].clone());
                    pointed_at = index;
                }
                probing = false;
                metrics::gauge!("tally_postgres_server_ok").set(1.0);
                tokio::time::sleep(SERVER_CHECK_INTERVAL).await;
            }
            None => {
                if !probing {
                    tracing::warn!(role = ?servers.role, "Postgres: no server of the list answers as needed; probing");
                    probing = true;
                }
                metrics::gauge!("tally_postgres_server_ok").set(0.0);
                tokio::time::sleep(SERVER_PROBE_INTERVAL).await;
            }
        }
    }
}

/// Connects to one server and checks its role, within [`SERVER_PROBE_TIMEOUT`].
async fn probe(options: &PgConnectOptions, role: Role) -> anyhow::Result<()> {
    let check = async {
        let mut connection = options.connect().await.context("connect")?;
        let recovering = in_recovery(&mut connection).await.context("ask pg_is_in_recovery()")?;
        connection.close().await.ok();
        if role == Role::Primary && recovering {
            bail!("in recovery");
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(SERVER_PROBE_TIMEOUT, check).await.context("probe timed out")?
}

async fn in_recovery(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(connection).await
}

/// `host:port` of a server, for health and logs.
pub fn server_name(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_on_commas_and_trimmed() {
        let urls = split_list(" postgres://a:1/t, postgres://b:2/t ,").expect("two URLs");
        assert_eq!(urls, ["postgres://a:1/t", "postgres://b:2/t"]);
        assert!(split_list(" , ").is_err());
        assert!(split_list(&vec!["postgres://a/t"; SERVERS_MAX + 1].join(",")).is_err());
    }

    #[test]
    fn every_server_gets_the_settings() {
        let servers = Servers::parse("postgres://a:1/t,postgres://b:2/t", Role::Primary, |options| {
            options.application_name("tally-test")
        })
        .expect("parsed");
        assert_eq!(servers.current_name(), "a:1");
        assert!(servers.candidates.iter().all(|options| options.get_application_name() == Some("tally-test")));
        assert_eq!(nats_servers("nats://a:4222,nats://b:4223").expect("parsed").len(), 2);
    }
}
