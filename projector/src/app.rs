//! `projector run`: leadership, the catch-up loop, notifications, health and metrics, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tally_edge::servers::{Role, Servers};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::catch_up::{self, BatchOutcome, Failpoints, InjectedCrash};
use crate::config::Config;
use crate::leader::{self, LeaderLock};
use crate::metrics::{Metrics, WakeCause};
use crate::{events, http, notifications, schema};

/// Longest a statement of the projector may run; a batch is a handful of bulk statements.
const STATEMENT_TIMEOUT: &str = "60s";
/// Longest a transaction may sit idle; the projector never leaves one open between statements.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";
/// How often histogram samples are drained into buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often the lag gauges are refreshed and the leadership lock's session is checked, at most. Both cost
/// round trips, and waking for every appended batch made them a large share of the projector's work; the
/// catch-up itself is fenced by its checkpoint and never relies on the check.
const UPKEEP_INTERVAL: Duration = Duration::from_millis(250);

/// The servers of `url` (one URL, or a comma-separated list of a primary and its replicas), each with the
/// timeouts every projector connection carries. The projector writes, so it uses only the primary.
fn servers(url: &str) -> anyhow::Result<Servers> {
    Servers::parse(url, Role::Primary, |options| {
        options
            .options([
                ("statement_timeout", STATEMENT_TIMEOUT),
                ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT),
            ])
            .application_name("tally-projector")
    })
    .context("parse DATABASE_URL")
}

/// Connection options of the primary of `url`, once one answers (for `rebuild` and `verify`).
pub async fn primary_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let servers = servers(url)?;
    servers.find(tally_edge::servers::PRIMARY_WAIT).await?;
    Ok(servers.current())
}

/// A pool for `config`; connects lazily, so that the projector starts while Postgres is still coming up, and
/// follows the primary of `DATABASE_URL`'s list in the background (`tally_edge::servers`).
pub fn pool(config: &Config) -> anyhow::Result<PgPool> {
    Ok(servers(&config.database_url)?.followed_pool(
        PgPoolOptions::new().max_connections(config.database_connections_max).acquire_timeout(Duration::from_secs(5)),
    ))
}

/// A projector ready to run: its listener is bound and its NATS client connects in the background.
#[derive(Debug)]
pub struct App {
    config: Config,
    pool: PgPool,
    listener: TcpListener,
    nats: async_nats::Client,
    metrics: Metrics,
    failpoints: Arc<Failpoints>,
}

impl App {
    pub async fn build(config: Config, pool: PgPool) -> anyhow::Result<App> {
        let listener =
            TcpListener::bind(config.listen_addr).await.with_context(|| format!("bind {}", config.listen_addr))?;
        let metrics = Metrics::new();
        let nats = notifications::connect(&config.nats_url, metrics.clone()).await?;
        Ok(App { config, pool, listener, nats, metrics, failpoints: Arc::new(Failpoints::default()) })
    }

    /// The address of the health and metrics endpoints (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Test hooks that simulate crashes.
    pub fn failpoints(&self) -> Arc<Failpoints> {
        self.failpoints.clone()
    }

    /// Runs until `shutdown` resolves (then finishes the batch in flight, releases leadership and returns `Ok`)
    /// or until a failpoint simulates a crash (`Err`).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_sender, stop) = watch::channel(false);
        let stop_sender = Arc::new(stop_sender);
        let on_shutdown = stop_sender.clone();
        let shutdown_task = tokio::spawn(async move {
            shutdown.await;
            on_shutdown.send_replace(true);
        });
        let (leading_sender, leading) = watch::channel(false);
        let wake = Arc::new(Notify::new());

        let http_state = http::HttpState {
            pool: self.pool.clone(),
            nats: self.nats.clone(),
            leading: leading.clone(),
            metrics: self.metrics.clone(),
        };
        let mut http_stop = stop.clone();
        let server = tally_edge::serve(
            self.listener,
            http::router(http_state),
            tally_edge::ServeLimits::default(),
            async move {
                http_stop.wait_for(|stopped| *stopped).await.ok();
            },
        );
        let server_task = tokio::spawn(server);
        let notifications_task = tokio::spawn(notifications::listen(
            self.nats.clone(),
            self.config.nats_subject_prefix.clone(),
            usize::from(self.config.nats_stream_replicas),
            wake.clone(),
            leading.clone(),
            stop.clone(),
            self.metrics.clone(),
        ));
        let upkeep_metrics = self.metrics.clone();
        let mut upkeep_stop = stop.clone();
        let upkeep_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(METRICS_UPKEEP_INTERVAL) => upkeep_metrics.run_upkeep(),
                    _ = upkeep_stop.wait_for(|stopped| *stopped) => return,
                }
            }
        });

        let signer = match &self.config.digest_signing_key_file {
            Some(path) => {
                let signer = crate::digests::Signer::from_file(path)?;
                tracing::info!(public_key = hex::encode(signer.public_key()), "digests are signed with this key");
                Some(signer)
            }
            None => {
                tracing::warn!("DIGEST_SIGNING_KEY_FILE is not set: the log hash is kept, but no digest is signed");
                None
            }
        };
        let projection = Projection {
            digests_subject: format!("{}.digests", self.config.nats_subject_prefix),
            progress: notifications::publish_progress(
                self.nats.clone(),
                tally_shared::notification::projected_subject(&self.config.nats_subject_prefix),
            ),
            signer,
            nats: self.nats.clone(),
            config: self.config,
            pool: self.pool,
            metrics: self.metrics,
            failpoints: self.failpoints,
            wake,
            leading: leading_sender,
            stop: stop.clone(),
        };
        let result = projection.run().await;
        stop_sender.send_replace(true);
        shutdown_task.abort();
        for task in [notifications_task, upkeep_task] {
            task.await.ok();
        }
        server_task.await.context("join the HTTP server")?;
        tracing::info!("projector stopped");
        result
    }
}

struct Projection {
    signer: Option<crate::digests::Signer>,
    nats: async_nats::Client,
    digests_subject: String,
    /// Each committed checkpoint, published for query-services on a replica (`notifications::publish_progress`).
    progress: watch::Sender<i64>,
    config: Config,
    pool: PgPool,
    metrics: Metrics,
    failpoints: Arc<Failpoints>,
    wake: Arc<Notify>,
    leading: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
}

impl Projection {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `duration`, or less if asked to stop.
    async fn pause(&self, duration: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    }

    /// Stands by until leadership is free, leads until stopped or failed, and starts over.
    async fn run(&self) -> anyhow::Result<()> {
        if !schema::wait_until_ready(&self.pool, self.config.standby_retry(), self.stop.clone()).await? {
            return Ok(());
        }
        let mut announced_standby = false;
        let mut candidate = leader::Candidate::default();
        while !self.stopped() {
            // The pool's options of the moment: after a failover they name the new primary.
            let lock_options = (*self.pool.connect_options()).clone();
            match candidate.try_acquire(&lock_options).await {
                Ok(Some(lock)) => {
                    tracing::info!("leadership acquired; applying the projection");
                    announced_standby = false;
                    self.leading.send_replace(true);
                    self.metrics.leader.set(1.0);
                    let result = self.lead(lock).await;
                    self.leading.send_replace(false);
                    self.metrics.leader.set(0.0);
                    match result {
                        Ok(()) => {}
                        Err(error) if error.is::<InjectedCrash>() => return Err(error),
                        Err(error) => {
                            tracing::error!(error = format!("{error:#}"), "projection failed; leadership released");
                            self.pause(self.config.standby_retry()).await;
                        }
                    }
                }
                Ok(None) => {
                    if !announced_standby {
                        tracing::info!("another projector holds leadership; standing by");
                        announced_standby = true;
                    }
                    if let Ok(checkpoint) = schema::checkpoint(&self.pool).await {
                        self.refresh_lag(checkpoint).await.ok();
                    }
                    self.pause(self.config.standby_retry()).await;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "cannot reach Postgres for leadership; retrying");
                    self.pause(self.config.standby_retry()).await;
                }
            }
        }
        Ok(())
    }

    /// Applies batches until caught up, then waits for a notification or the poll interval, while the lock holds.
    async fn lead(&self, mut lock: LeaderLock) -> anyhow::Result<()> {
        let result = self.lead_holding(&mut lock).await;
        match &result {
            // A crash must look like one: the lock goes with the dropped session, not with a tidy release.
            Err(error) if error.is::<InjectedCrash>() => drop(lock),
            _ => lock.release().await,
        }
        result
    }

    async fn lead_holding(&self, lock: &mut LeaderLock) -> anyhow::Result<()> {
        let mut checkpoint = schema::checkpoint(&self.pool).await?;
        self.metrics.checkpoint.set(checkpoint as f64);
        let mut stop = self.stop.clone();
        let mut last_upkeep: Option<Instant> = None;
        let mut last_digest: Option<Instant> = None;
        loop {
            while !self.stopped() {
                let outcome =
                    catch_up::apply_next_batch(&self.pool, checkpoint, self.config.batch_size_max, &self.failpoints)
                        .await
                        .inspect_err(|_| self.metrics.batch_errors.increment(1))?;
                match outcome {
                    BatchOutcome::Applied { checkpoint: applied, events, last_recorded_at } => {
                        checkpoint = applied;
                        self.metrics.checkpoint.set(applied as f64);
                        self.metrics.batch_size.record(events as f64);
                        self.metrics.events_applied.increment(events as u64);
                        let delay = (chrono::Utc::now() - last_recorded_at).num_microseconds().unwrap_or(i64::MAX);
                        self.metrics.delay_seconds.record(delay as f64 / 1e6);
                        tracing::debug!(checkpoint, events, "batch applied");
                        self.progress.send_replace(applied);
                    }
                    BatchOutcome::CaughtUp => break,
                    BatchOutcome::Fenced { checkpoint: found } => {
                        self.metrics.fenced.increment(1);
                        lock.check().await?;
                        tracing::warn!(
                            expected = checkpoint,
                            found,
                            "checkpoint moved by someone else; continuing from it"
                        );
                        checkpoint = found;
                    }
                }
            }
            if self.stopped() {
                return Ok(());
            }
            if last_upkeep.is_none_or(|at| at.elapsed() >= UPKEEP_INTERVAL) {
                self.refresh_lag(checkpoint).await?;
                lock.check().await?;
                last_upkeep = Some(Instant::now());
            }
            if let Some(signer) = &self.signer {
                if last_digest.is_none_or(|at| at.elapsed() >= self.config.digest_interval()) {
                    crate::digests::record_if_advanced(&self.pool, signer, &self.nats, &self.digests_subject).await?;
                    last_digest = Some(Instant::now());
                }
            }
            let cause = tokio::select! {
                _ = self.wake.notified() => WakeCause::Notification,
                _ = tokio::time::sleep(self.config.poll_interval()) => WakeCause::Poll,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            self.metrics.woke(cause);
        }
    }

    /// Updates head and lag gauges for `checkpoint`.
    async fn refresh_lag(&self, checkpoint: i64) -> anyhow::Result<()> {
        let mut connection = self.pool.acquire().await.context("acquire a connection for lag")?;
        let head = events::head(&mut connection).await?;
        let oldest_pending: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT recorded_at FROM events WHERE position > $1 ORDER BY position LIMIT 1")
                .bind(checkpoint)
                .fetch_optional(&mut *connection)
                .await
                .context("read the oldest pending event")?;
        let lag_ms =
            oldest_pending.map_or(0, |recorded_at| (chrono::Utc::now() - recorded_at).num_milliseconds().max(0));
        self.metrics.checkpoint.set(checkpoint as f64);
        self.metrics.head.set(head as f64);
        self.metrics.lag_events.set((head - checkpoint).max(0) as f64);
        self.metrics.lag_ms.set(lag_ms as f64);
        Ok(())
    }
}
