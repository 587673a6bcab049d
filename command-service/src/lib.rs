//! command-service: takes money commands over HTTP, decides them with `tally_shared`'s pure Decider,
//! and appends their events to the Postgres event store in batches (group commit).
//!
//! - [`answer`]: what a command answers, sent, stored under its key and replayed.
//! - [`config`]: the one clap `Config`.
//! - [`http`]: router, extractor, handlers; `http::error` is the only place that knows HTTP statuses.
//! - [`execute`]: load → plan → write → notify, batching concurrent commands into one statement; its
//!   [`execute::plan`] is the pure batch planner.
//! - [`event_store`]: the SQL of snapshots, appends, idempotency records and owner uniqueness; the only place
//!   that knows constraint names and SQLSTATEs.
//! - [`expirer`]: releases holds whose `expires_at` has passed, one active instance per database.
//! - [`notify`]: "events appended" notifications to NATS JetStream, never in a command's way.
//! - [`telemetry`]: logs (metrics go through `tally_edge::observe`).

pub mod answer;
pub mod config;
pub mod event_store;
pub mod execute;
pub mod expirer;
pub mod http;
pub mod notify;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
pub use config::Config;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tally_edge::servers::{Role, Servers};
use tokio::net::TcpListener;

use crate::execute::{Executor, ExecutorLimits};
use crate::notify::Notifier;

/// How often expired idempotency records are deleted, and how many at most each time.
const KEY_EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
const KEY_EXPIRY_BATCH_SIZE_MAX: i64 = 10_000;

/// Opens the pool with the session settings every connection must have: a statement timeout and an
/// idle-in-transaction timeout, so that no stuck request can hold locks indefinitely. `DATABASE_URL` may list
/// several servers: the pool points at the one not in recovery, and a background task moves it when that one
/// fails and another is promoted (`tally_edge::servers`).
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let servers = Servers::parse(&config.database_url, Role::Primary, |options| {
        options.application_name("tally-command-service").options([
            ("statement_timeout", format!("{}ms", config.statement_timeout_ms)),
            ("idle_in_transaction_session_timeout", format!("{}ms", config.idle_in_transaction_timeout_ms)),
        ])
    })
    .context("parse DATABASE_URL")?;
    servers.find(tally_edge::servers::PRIMARY_WAIT).await?;
    Ok(servers.followed_pool(
        PgPoolOptions::new()
            .max_connections(config.database_connections_max)
            .acquire_timeout(Duration::from_secs(5))
            // No ping before each batch's transaction: a dead connection fails the batch's first statement
            // with an IO error, which the appender retries like any transient failure.
            .test_before_acquire(false),
    ))
}

/// A built service, bound to its address, not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    serve_limits: tally_edge::ServeLimits,
    appender: tokio::task::JoinHandle<()>,
    expirer: AbortOnDrop,
    stop_expirer: tokio::sync::watch::Sender<bool>,
}

/// A task that dies with its owner: if the service's future is dropped (its task aborted), the expirer goes
/// too, and with it the connection that holds its lock, so that another instance takes over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl App {
    /// Applies pending migrations (sqlx serialises concurrent starters), starts the appender and the
    /// notifier, and binds the listener.
    pub async fn build(config: Config, pool: PgPool) -> anyhow::Result<App> {
        sqlx::migrate!("../migrations").run(&pool).await.context("apply migrations")?;
        let nats = notify::connect(&config.nats_url).await;
        let notifier = Notifier::start(
            nats.clone(),
            &config.nats_subject_prefix,
            config.nats_stream_replicas,
            Duration::from_millis(config.publish_timeout_ms),
        );
        let limits = ExecutorLimits {
            appenders: usize::from(config.appenders),
            batch_size_max: config.batch_size_max,
            queue_depth_max: config.queue_depth_max,
            append_retries_max: config.append_retries_max,
            idempotency_wait: config.idempotency_wait(),
        };
        let authenticator = tally_edge::Authenticator::from_file(config.edge.auth_tokens_file.as_deref())?;
        let (executor, appender) = Executor::start(pool.clone(), notifier, limits);
        tokio::spawn(expire_keys(pool.clone(), config.idempotency_retention_hours));
        let (stop_expirer, stopped) = tokio::sync::watch::channel(false);
        let expirer_limits = expirer::ExpirerLimits {
            poll_interval: Duration::from_millis(config.expirer_poll_ms),
            batch_size_max: config.expirer_batch_size_max,
        };
        let expirer = AbortOnDrop(tokio::spawn(expirer::run(pool.clone(), executor.clone(), expirer_limits, stopped)));
        // The recorder shared with query-service, so that both can run in one process (the end-to-end tests).
        let state = http::AppState { executor, pool, nats, prometheus: tally_edge::observe::recorder() };
        let router = http::router(state, authenticator, &config.edge);
        let listener = listen(config.listen_addr).with_context(|| format!("listen on {}", config.listen_addr))?;
        let serve_limits = tally_edge::ServeLimits::from(&config.edge);
        Ok(App { listener, router, serve_limits, appender, expirer, stop_expirer })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests, stops the expirer (which releases
    /// its lead), lets the appender drain its queue and commit, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), "command-service listening");
        tally_edge::serve(self.listener, self.router, self.serve_limits, shutdown).await;
        self.stop_expirer.send_replace(true);
        let mut expirer = self.expirer;
        (&mut expirer.0).await.context("expirer task")?;
        self.appender.await.context("appender task")?;
        tracing::info!("command-service stopped");
        Ok(())
    }
}

/// Connections waiting to be accepted at most: bursts of thousands of clients connect at once.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn expire_keys(pool: PgPool, retention_hours: u64) {
    let retention = chrono::Duration::hours(i64::try_from(retention_hours).unwrap_or(i64::MAX / 3_600_000));
    let mut interval = tokio::time::interval(KEY_EXPIRY_INTERVAL);
    loop {
        interval.tick().await;
        match event_store::expire_keys(&pool, chrono::Utc::now() - retention, KEY_EXPIRY_BATCH_SIZE_MAX).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired idempotency keys"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not expire idempotency keys"),
        }
    }
}
