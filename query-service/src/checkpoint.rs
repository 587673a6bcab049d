//! The read models' checkpoint as this process knows it, and the wait of read-your-writes.
//!
//! Three tasks feed one `tokio::sync::watch`, which requests read and wait on:
//! - one LISTENs on `projection_advanced` (the projector notifies in each batch's transaction, so a
//!   notification arrives only once its batch is visible). A replica delivers no `LISTEN/NOTIFY`, so there it
//!   stands aside;
//! - one follows the projector's NATS progress notifications ([`Projected`]). One says that the *primary* has
//!   reached a position, which a replica may not have replayed yet: it never raises the checkpoint itself, but
//!   has it re-read every [`CATCH_UP_POLL`] until the server shows that position (SPEC §11). So a read never
//!   believes a replica further than it is, and read-your-writes on a replica waits for replay, not for a poll;
//! - one re-reads the checkpoint every `CHECKPOINT_POLL_MS`, in case notifications were lost.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::PgPool;
use tally_shared::notification::Projected;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::read_models;

/// The channel the projector `pg_notify`s with its new checkpoint as payload.
pub use tally_shared::notification::PROJECTION_ADVANCED_CHANNEL as NOTIFICATION_CHANNEL;

/// Pause before listening again after the listener failed.
const LISTEN_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How often the listener looks again whether a replica it stood aside for has been promoted.
const REPLICA_RECHECK_INTERVAL: Duration = Duration::from_secs(5);

/// How often a replica's checkpoint is re-read while it is behind what the projector has announced.
pub const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// Pause before subscribing to progress notifications again after the subscription ended.
const SUBSCRIBE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The checkpoint of the `read_models` projection, kept current in the background.
#[derive(Clone)]
pub struct Checkpoint {
    sender: Arc<watch::Sender<i64>>,
    /// The newest checkpoint the projector has announced on NATS (0 until one arrives): where the primary is.
    announced: Arc<AtomicI64>,
    /// Requests waiting in [`Checkpoint::wait_for`] right now.
    waiting: Arc<AtomicUsize>,
    /// The server the known checkpoint was read from (the pool's options at the read). After the pool moves to
    /// another server (`tally_edge::servers`), what was known says nothing of the new one.
    source: Arc<std::sync::Mutex<Arc<PgConnectOptions>>>,
    pool: PgPool,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Checkpoint").field("position", &self.current()).finish()
    }
}

impl Checkpoint {
    /// The latest checkpoint known. Never above the committed one, so it is a safe lower bound of what a
    /// read that starts now sees.
    pub fn current(&self) -> i64 {
        if !self.reads_where_known() {
            // Moved to another server: nothing is known of it until it is read (`wait_for` reads it).
            return 0;
        }
        *self.sender.borrow()
    }

    /// Whether the pool still reads from the server the known checkpoint came from.
    fn reads_where_known(&self) -> bool {
        let source = self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::ptr_eq(&source, &self.pool.connect_options())
    }

    /// A receiver that is told of every new checkpoint (the feeds wait on it for new events).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }

    /// The newest checkpoint the projector has announced on NATS (0 until one arrives).
    pub fn announced(&self) -> i64 {
        self.announced.load(Ordering::Relaxed)
    }

    /// How many positions the announced checkpoint is ahead of the one this server shows: a replica's lag in
    /// positions (0 on the primary, or while no announcement has arrived).
    pub fn behind(&self) -> i64 {
        (self.announced.load(Ordering::Relaxed) - self.current()).max(0)
    }

    /// Requests waiting for the projection right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits, at most `wait`, until the checkpoint reaches `position`: `Ok(checkpoint)` once it has,
    /// `Err(checkpoint)` with the checkpoint reached when the wait runs out.
    pub async fn wait_for(&self, position: i64, wait: Duration) -> Result<i64, i64> {
        let known = self.current();
        if known >= position {
            return Ok(known);
        }
        let _waiting = Waiting::start(&self.waiting);
        // The watch may trail a batch whose notification is still on its way: one fresh read settles it.
        self.refresh().await;
        let mut receiver = self.sender.subscribe();
        let reached = match tokio::time::timeout(wait, receiver.wait_for(|known| *known >= position)).await {
            Ok(Ok(reached)) => Ok(*reached),
            Ok(Err(_)) | Err(_) => Err(self.current()),
        };
        reached
    }

    /// Raises the known checkpoint to `position`. Notifications may arrive out of order: never lower it here.
    fn advance(&self, position: i64) {
        let raised = self.sender.send_if_modified(|known| {
            let raise = position > *known;
            if raise {
                *known = position;
            }
            raise
        });
        if raised {
            metrics::gauge!("tally_query_projection_position").set(position as f64);
        }
    }

    /// Reads the checkpoint from Postgres. What Postgres says wins, even lower (a `projector rebuild` restarts from 0).
    async fn refresh(&self) {
        // Taken before the read: should the pool move meanwhile, the value is credited to the old server, and
        // read again.
        let server = self.pool.connect_options();
        let read = async {
            let mut connection = self.pool.acquire().await.context("acquire a connection")?;
            read_models::checkpoint(&mut connection).await
        };
        match read.await {
            Ok(position) => {
                *self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = server;
                self.sender.send_if_modified(|known| {
                    let changed = *known != position;
                    *known = position;
                    changed
                });
                metrics::gauge!("tally_query_projection_position").set(position as f64);
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "re-reading the projection checkpoint failed"),
        }
    }
}

/// Counts one waiting request for as long as it lives, however the wait ends (even by cancellation).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(waiting: &'a AtomicUsize) -> Waiting<'a> {
        let now = waiting.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("tally_query_read_your_writes_waiting").set(now as f64);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("tally_query_read_your_writes_waiting").set(now as f64);
    }
}

/// Starts following the checkpoint: the listener task (on its own connection from `listener_pool`, which it
/// keeps pointed at `pool`'s server), the follower of the projector's progress on `nats` (`subject`), and the
/// fallback re-read (through `pool`), all in `tasks`. The first read is done before this returns.
pub async fn follow(
    pool: PgPool,
    listener_pool: PgPool,
    nats: async_nats::Client,
    subject: String,
    poll: Duration,
    tasks: &mut JoinSet<()>,
) -> Checkpoint {
    let (sender, _) = watch::channel(0);
    let checkpoint = Checkpoint {
        sender: Arc::new(sender),
        announced: Arc::new(AtomicI64::new(0)),
        waiting: Arc::new(AtomicUsize::new(0)),
        source: Arc::new(std::sync::Mutex::new(pool.connect_options())),
        pool,
    };
    checkpoint.refresh().await;
    tasks.spawn(listen(checkpoint.clone(), listener_pool));
    tasks.spawn(follow_announcements(checkpoint.clone(), nats, subject));
    tasks.spawn(poll_slowly(checkpoint.clone(), poll));
    checkpoint
}

async fn follow_announcements(checkpoint: Checkpoint, nats: async_nats::Client, subject: String) {
    loop {
        match nats.subscribe(subject.clone()).await {
            Ok(subscription) => catch_up_with(&checkpoint, subscription).await,
            Err(error) => tracing::warn!(%error, subject, "cannot subscribe to the projector's progress; polling"),
        }
        tokio::time::sleep(SUBSCRIBE_RETRY_INTERVAL).await;
    }
}

/// Records each announced checkpoint and re-reads the server's while it shows less, until the subscription ends.
async fn catch_up_with(checkpoint: &Checkpoint, mut subscription: async_nats::Subscriber) {
    loop {
        let behind = checkpoint.behind() > 0;
        tokio::select! {
            message = subscription.next() => {
                let Some(message) = message else { return };
                match serde_json::from_slice::<Projected>(&message.payload) {
                    Ok(Projected { position }) => {
                        checkpoint.announced.fetch_max(position, Ordering::Relaxed);
                    }
                    Err(error) => tracing::debug!(%error, "not a progress notification; ignored"),
                }
            }
            () = tokio::time::sleep(CATCH_UP_POLL), if behind => checkpoint.refresh().await,
        }
    }
}

async fn poll_slowly(checkpoint: Checkpoint, poll: Duration) {
    let mut interval = tokio::time::interval(poll);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        checkpoint.refresh().await;
    }
}

async fn listen(checkpoint: Checkpoint, listener_pool: PgPool) {
    loop {
        if let Err(error) = listen_until_error(&checkpoint, &listener_pool).await {
            tracing::warn!(error = format!("{error:#}"), "listening for {NOTIFICATION_CHANNEL} failed; retrying");
        }
        tokio::time::sleep(LISTEN_RETRY_INTERVAL).await;
    }
}

async fn listen_until_error(checkpoint: &Checkpoint, listener_pool: &PgPool) -> anyhow::Result<()> {
    // After a move to another server (`tally_edge::servers`), listen there too.
    let server = checkpoint.pool.connect_options();
    listener_pool.set_connect_options((*server).clone());
    let in_recovery: bool =
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&checkpoint.pool).await.context("ask the role")?;
    if in_recovery {
        // A replica: no notifications to listen for; the NATS announcements stand in. Look again later, in
        // case it is promoted.
        tokio::time::sleep(REPLICA_RECHECK_INTERVAL).await;
        return Ok(());
    }
    let mut listener = PgListener::connect_with(listener_pool).await.context("connect the listener")?;
    listener.listen(NOTIFICATION_CHANNEL).await.context("LISTEN")?;
    // Whatever was notified before LISTEN took effect is in this read.
    checkpoint.refresh().await;
    loop {
        match listener.try_recv().await.context("receive a notification")? {
            // A notification from a server the reads no longer go to says nothing of theirs: listen anew.
            Some(_) if !Arc::ptr_eq(&server, &checkpoint.pool.connect_options()) => {
                checkpoint.refresh().await;
                return Ok(());
            }
            Some(notification) => match notification.payload().trim().parse::<i64>() {
                Ok(position) => checkpoint.advance(position),
                Err(_) => checkpoint.refresh().await,
            },
            // The connection was lost; the next `try_recv` reconnects, and notifications sent meanwhile are gone.
            None => {
                tracing::warn!("the {NOTIFICATION_CHANNEL} listener lost its connection; reconnecting");
                checkpoint.refresh().await;
            }
        }
    }
}
