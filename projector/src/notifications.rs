//! The JetStream consumer of "events appended" notifications. A notification only wakes the catch-up loop
//! early: the loop reads the truth from Postgres, so a lost, duplicated or reordered one changes nothing but
//! latency, and the projector works (by polling) while NATS is unreachable.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tally_shared::notification::{Appended, Projected};
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;

/// Pause before setting the consumer up again after an error; polling covers the gap.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Connects in the background: the call returns at once, and the client keeps reconnecting on its own.
pub async fn connect(url: &str, metrics: Metrics) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let metrics = metrics.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("NATS connected");
                        metrics.nats_connected.set(1.0);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; polling continues");
                        metrics.nats_connected.set(0.0);
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        })
        .connect(tally_edge::servers::nats_servers(url)?)
        .await
        .with_context(|| format!("connect to NATS at {url}"))
}

/// How long one progress publish may take; a slower one is dropped, and the next checkpoint supersedes it.
const PROGRESS_PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts the task that publishes the read models' committed checkpoint on `subject` (for query-services on a
/// replica) and answers where to record it. Recording never waits: the task publishes whatever is newest when it
/// gets to it, so a slow or absent NATS coalesces checkpoints instead of holding up the catch-up loop. It ends
/// when the sender is dropped.
pub fn publish_progress(client: async_nats::Client, subject: String) -> watch::Sender<i64> {
    let (checkpoint, mut checkpoints) = watch::channel(0);
    tokio::spawn(async move {
        while checkpoints.changed().await.is_ok() {
            let position = *checkpoints.borrow_and_update();
            let payload = serde_json::to_vec(&Projected { position }).expect("notifications serialize");
            let published =
                tokio::time::timeout(PROGRESS_PUBLISH_TIMEOUT, client.publish(subject.clone(), payload.into()));
            if !matches!(published.await, Ok(Ok(()))) {
                metrics::counter!("tally_projector_progress_publish_failures_total").increment(1);
                tracing::debug!(position, "progress not published; query-services poll");
            }
        }
    });
    checkpoint
}

/// The durable consumer's name under a subject prefix (names may not contain `.`, `*`, `>` or spaces).
pub fn consumer_name(prefix: &str) -> String {
    format!("projector_{}", prefix.replace(['.', '*', '>', ' '], "_"))
}

/// Wakes `wake` on every notification while `leading` is true, until `stop` is true.
///
/// Only the leader consumes: instances share one durable consumer, and a standby pulling from it would take
/// notifications away from the leader.
pub async fn listen(
    client: async_nats::Client,
    prefix: String,
    replicas: usize,
    wake: Arc<Notify>,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    metrics: Metrics,
) {
    loop {
        tokio::select! {
            result = leading.wait_for(|leading| *leading) => if result.is_err() { return },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let consumed = tokio::select! {
            result = consume(&client, &prefix, replicas, &wake, &metrics) => result,
            _ = leading.wait_for(|leading| !*leading) => Ok(()),
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        if let Err(error) = consumed {
            tracing::debug!(error = format!("{error:#}"), "NATS notifications unavailable; polling continues");
            tokio::select! {
                _ = tokio::time::sleep(RETRY_DELAY) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

async fn consume(
    client: &async_nats::Client,
    prefix: &str,
    replicas: usize,
    wake: &Notify,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let context = jetstream::new(client.clone());
    // Same settings as the publisher's, so that whichever starts first creates the same stream.
    let stream = context
        .get_or_create_stream(tally_edge::servers::notification_stream(prefix, replicas))
        .await
        .context("get or create the notification stream")?;
    let name = consumer_name(prefix);
    // A durable pull consumer, from new messages on, without acknowledgements: a notification is a hint, so
    // redelivery would buy nothing (a missed one costs at most one poll interval), while acks would cost a round
    // trip each. Durable, so that the consumer survives restarts and takeovers instead of piling up.
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            },
        )
        .await
        .context("get or create the durable consumer")?;
    let mut messages = consumer.messages().await.context("pull notifications")?;
    tracing::info!(consumer = %name, "consuming notifications");
    while let Some(message) = messages.next().await {
        let message = message.context("receive a notification")?;
        metrics.notifications.increment(1);
        match serde_json::from_slice::<Appended>(&message.payload) {
            Ok(appended) => tracing::trace!(position = appended.position, "notified"),
            Err(error) => tracing::debug!(%error, "unreadable notification (waking anyway)"),
        }
        wake.notify_one();
    }
    anyhow::bail!("the notification stream ended")
}
