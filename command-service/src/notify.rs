//! "Events appended" notifications to NATS JetStream, sent after commit and never in a command's way.
//!
//! The appender only records the newest head position in a `watch` channel; a background task publishes
//! whatever is newest when it gets to it, so a slow or absent NATS coalesces notifications instead of
//! queueing them, and a failed publish is counted, logged and superseded by the next one.

use std::time::Duration;

use async_nats::jetstream;
use tally_shared::notification::{self, Appended};
use tokio::sync::watch;

/// Hands head positions to the publishing task. Cloning is cheap.
#[derive(Clone)]
pub struct Notifier {
    head: watch::Sender<i64>,
}

impl Notifier {
    /// A notifier that publishes nowhere (for tests that do not need NATS).
    pub fn disabled() -> Notifier {
        let (head, _) = watch::channel(0);
        Notifier { head }
    }

    /// Starts the publishing task on `client` (see [`connect`]); it ends when every `Notifier` clone is dropped.
    pub fn start(
        client: Option<async_nats::Client>,
        prefix: &str,
        replicas: u16,
        publish_timeout: Duration,
    ) -> Notifier {
        let (head, positions) = watch::channel(0);
        let stream = tally_edge::servers::notification_stream(prefix, usize::from(replicas));
        tokio::spawn(publish(client, prefix.to_owned(), stream, publish_timeout, positions));
        Notifier { head }
    }

    /// Records that the log has grown to `position`; returns at once.
    pub fn notify(&self, position: i64) {
        self.head.send_if_modified(|head| {
            let newer = position > *head;
            if newer {
                *head = position;
            }
            newer
        });
    }
}

/// Connects to NATS (a comma-separated list of servers), retrying in the background, so that start-up never
/// waits for it; `None` only if the list itself is unusable.
pub async fn connect(nats_url: &str) -> Option<async_nats::Client> {
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .name("tally-command-service");
    let connected = match tally_edge::servers::nats_servers(nats_url) {
        Ok(servers) => options.connect(servers).await.map_err(anyhow::Error::from),
        Err(error) => Err(error),
    };
    match connected {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                nats_url,
                "cannot use NATS; notifications are off, projections rely on polling"
            );
            None
        }
    }
}

async fn publish(
    client: Option<async_nats::Client>,
    prefix: String,
    stream: jetstream::stream::Config,
    publish_timeout: Duration,
    mut positions: watch::Receiver<i64>,
) {
    let Some(client) = client else {
        while positions.changed().await.is_ok() {}
        return;
    };
    let context = jetstream::new(client);
    let subject = notification::appended_subject(&prefix);
    let mut stream_ready = false;
    while positions.changed().await.is_ok() {
        let position = *positions.borrow_and_update();
        if !stream_ready {
            match tokio::time::timeout(publish_timeout, context.get_or_create_stream(stream.clone())).await {
                Ok(Ok(_)) => stream_ready = true,
                Ok(Err(error)) => tracing::warn!(%error, "cannot create the notification stream yet"),
                Err(_) => tracing::warn!("creating the notification stream timed out"),
            }
        }
        let payload = serde_json::to_vec(&Appended { position }).expect("notifications serialize");
        let message =
            jetstream::context::Publish::build().payload(payload.into()).message_id(notification::message_id(position));
        let sent = tokio::time::timeout(publish_timeout, async {
            context.send_publish(subject.clone(), message).await?.await?;
            Ok::<(), async_nats::Error>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => metrics::counter!("tally_notifications_published_total").increment(1),
            Ok(Err(error)) => {
                metrics::counter!("tally_publish_failures_total").increment(1);
                tracing::warn!(%error, position, "notification not published; the projector's poll will catch up");
            }
            Err(_) => {
                metrics::counter!("tally_publish_failures_total").increment(1);
                tracing::warn!(position, "notification publish timed out; the projector's poll will catch up");
            }
        }
    }
}
