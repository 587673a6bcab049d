//! query-service: Tally's read side. Serves the read models the projector writes, and the event log itself
//! to auditors, over HTTP; it connects read-only and never writes.
//!
//! - [`config`]: the one clap `Config`.
//! - [`telemetry`]: tracing subscriber (text or JSON logs).
//! - [`database`]: read-only connections and the wait for the schema.
//! - [`checkpoint`]: the projection checkpoint, followed by LISTEN/NOTIFY, and the read-your-writes wait.
//! - [`read_models`]: SQL over the read models (`rm_*`), turned into wire views.
//! - [`event_log`]: SQL over `events`: streams, the global log, balances at a moment.
//! - [`cursor`]: opaque, checksummed history cursors.
//! - [`http`]: router, middleware, `ApiError`, one file per resource.

pub mod checkpoint;
pub mod config;
pub mod connections;
pub mod cursor;
pub mod database;
pub mod event_log;
pub mod hold_reads;
pub mod http;
pub mod read_models;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use crate::config::Config;
use crate::http::{AppState, Shared};

/// A query-service bound to its port, ready to serve.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    pool: PgPool,
    listener_pool: PgPool,
    tasks: JoinSet<()>,
    config: Config,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("App").field("listen_addr", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl App {
    /// Waits for the schema, starts following the projection checkpoint and binds `config.listen_addr`.
    /// `pool` must be read-only (see [`database::read_only_pool`]); this is checked.
    pub async fn build(config: Config, pool: PgPool) -> anyhow::Result<App> {
        database::wait_for_schema(&pool, config.schema_wait()).await?;
        database::ensure_read_only(&pool).await?;
        // The listener holds its connection for good: give it its own, so requests can never starve it.
        let listener_pool =
            PgPoolOptions::new().max_connections(1).connect_lazy_with(pool.connect_options().as_ref().clone());
        let mut tasks = JoinSet::new();
        let nats = async_nats::ConnectOptions::new()
            .name("tally-query-service")
            .retry_on_initial_connect()
            .connect(tally_edge::servers::nats_servers(&config.nats_url)?)
            .await
            .context("connect to NATS")?;
        let checkpoint = checkpoint::follow(
            pool.clone(),
            listener_pool.clone(),
            nats.clone(),
            tally_shared::notification::projected_subject(&config.nats_subject_prefix),
            config.checkpoint_poll(),
            &mut tasks,
        )
        .await;
        let authenticator = tally_edge::Authenticator::from_file(config.edge.auth_tokens_file.as_deref())?;
        // The recorder shared with command-service, so that both can run in one process (the end-to-end tests).
        let metrics = tally_edge::observe::recorder();
        tasks.spawn(upkeep(metrics.clone()));
        let connections = connections::Connections::new(
            pool.clone(),
            config.database_pool_size as usize,
            config.database_acquire_timeout(),
        );
        let state = AppState::new(Shared {
            pool: pool.clone(),
            connections,
            checkpoint,
            nats,
            min_position_wait: config.min_position_wait(),
            metrics,
            feeds: http::feeds::Feeds::new(
                config.feed_subscribers_max as usize,
                config.feed_buffer_items as usize,
                std::time::Duration::from_secs(config.feed_heartbeat_s),
            ),
        });
        let listener =
            TcpListener::bind(config.listen_addr).await.with_context(|| format!("bind {}", config.listen_addr))?;
        let router = http::router(state, authenticator, &config.edge);
        Ok(App { listener, router, pool, listener_pool, tasks, config })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for at most
    /// `SHUTDOWN_GRACE_SECS`, stops the background tasks and closes the pools.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App { listener, router, pool, listener_pool, mut tasks, config } = self;
        let (stopping, mut stopping_seen) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping.send(true);
        };
        let server = tally_edge::serve(listener, router, tally_edge::ServeLimits::from(&config.edge), signal);
        let grace = async move {
            let _ = stopping_seen.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(config.shutdown_grace()).await;
        };
        tokio::select! {
            () = server => {}
            () = grace => tracing::warn!("shutdown grace elapsed: dropping the requests still in flight"),
        }
        tasks.shutdown().await;
        listener_pool.close().await;
        pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Histograms keep their samples until upkeep folds them; `/metrics` also does it, this bounds memory without scrapes.
async fn upkeep(metrics: metrics_exporter_prometheus::PrometheusHandle) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        interval.tick().await;
        metrics.run_upkeep();
    }
}
