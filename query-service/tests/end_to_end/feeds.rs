//! The global log's live feed, `GET /v1/events/stream` (SPEC §9), against the whole stack: every event once, in
//! order, live as commands commit, resumed with `Last-Event-ID`, and capped.

use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;

use crate::commands::{unique_prefix, CommandService};
use crate::projector::Projector;
use crate::support::TestApp;

/// An open feed, read message by message.
struct Feed {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    pending: String,
}

/// One SSE message: its id, event name and data.
#[derive(Debug)]
struct Message {
    id: String,
    event: String,
}

impl Feed {
    async fn open(queries: &TestApp, path: &str, last_event_id: Option<&str>) -> Feed {
        let mut request = queries.client.get(format!("{}{path}", queries.base_url));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Feed { body: response.bytes_stream().boxed(), pending: String::new() }
    }

    /// The next message (comments skipped), within 10 s.
    async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let frame: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|line| {
                            line.strip_prefix(&format!("{name}: ")).or(line.strip_prefix(&format!("{name}:")))
                        })
                        .map(str::to_owned)
                };
                if let Some(id) = field("id") {
                    return Message { id, event: field("event").unwrap_or_default() };
                }
                continue;
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), self.body.next()).await.expect("a message in 10 s");
            self.pending.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn the_events_feed_delivers_every_event_once_in_order_live_and_resumes(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn_with(pool.clone(), &["--feed-subscribers-max", "2"]).await;
    commands.define_asset("GOLD", 2).await;
    let wallet = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let head = commands.money(&wallet, "topup", "10.00").await.position();
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events ORDER BY position").fetch_all(&pool).await.unwrap();
    assert_eq!(positions.last(), Some(&head));

    let mut feed = Feed::open(&queries, "/v1/events/stream", None).await;
    for position in &positions {
        let message = feed.next().await;
        assert_eq!(message.id, position.to_string(), "every event once, in order");
    }
    // Live: a command committed now arrives next, and nothing else before it.
    let spent = commands.money(&wallet, "spend", "1.00").await;
    let first_new: i64 = sqlx::query_scalar("SELECT min(position) FROM events WHERE position > $1")
        .bind(head)
        .fetch_one(&pool)
        .await
        .unwrap();
    let message = feed.next().await;
    assert_eq!((message.id, message.event.as_str()), (first_new.to_string(), "TransferRecorded"));
    assert!(spent.position() > first_new);

    // Resumed with Last-Event-ID: exactly what follows it.
    let mut resumed = Feed::open(&queries, "/v1/events/stream?after=0", Some(&positions[2].to_string())).await;
    assert_eq!(resumed.next().await.id, positions[3].to_string());

    // Two open already: a third is refused.
    let refused = queries.get("/v1/events/stream").await;
    refused.problem(503, "overloaded");
    drop(feed);
    drop(resumed);
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}

/// Transfers arrive once each, completely projected, at the position their command answered, in order, even
/// when the projector's batches (of 2 events here) cut commands in two; `asset` filters.
#[sqlx::test(migrations = "../migrations")]
async fn the_transfers_feed_delivers_each_transfer_once_when_projected_whole(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn_with(pool.clone(), &prefix, &["--batch-size-max", "2"]).await;
    let queries = TestApp::spawn(pool.clone()).await;
    commands.define_asset("GOLD", 2).await;
    commands.define_asset("GEMS", 0).await;
    let alice = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let bob = commands.open_wallet("bob", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let gems = commands.open_wallet("alice", "GEMS").await.body["wallet_id"].as_str().unwrap().to_owned();
    let mut feed = Feed::open(&queries, "/v1/transfers/stream", None).await;
    let mut gold_only = Feed::open(&queries, "/v1/transfers/stream?asset=GOLD", None).await;
    let mut answered = Vec::new();
    for _ in 0..3 {
        answered.push((commands.money(&alice, "topup", "10.00").await.position(), "GOLD"));
        answered.push((commands.money(&gems, "bonus", "2").await.position(), "GEMS"));
        answered.push((commands.transfer(&alice, &bob, "1.50").await.position(), "GOLD"));
    }
    for (position, _) in &answered {
        let message = feed.next().await;
        assert_eq!((message.id, message.event.as_str()), (position.to_string(), "transfer"), "once each, in order");
    }
    for (position, _) in answered.iter().filter(|(_, asset)| *asset == "GOLD") {
        assert_eq!(gold_only.next().await.id, position.to_string());
    }
    let resumed_after = answered[4].0.to_string();
    let mut resumed = Feed::open(&queries, "/v1/transfers/stream", Some(&resumed_after)).await;
    assert_eq!(resumed.next().await.id, answered[5].0.to_string());
    queries.get("/v1/transfers/stream?asset=gold").await.validation("asset");
    drop((feed, gold_only, resumed));
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}

/// Two query-service instances learn of progress from the projector's notifications, not from each other: a
/// subscriber of each gets the same transfers, at the same ids.
#[sqlx::test(migrations = "../migrations")]
async fn feeds_of_two_instances_agree(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = &service.commands;
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let (one, two) = (TestApp::spawn(pool.clone()).await, TestApp::spawn(pool.clone()).await);
    commands.define_asset("GOLD", 2).await;
    let wallet = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let (mut first, mut second) =
        (Feed::open(&one, "/v1/transfers/stream", None).await, Feed::open(&two, "/v1/transfers/stream", None).await);
    for _ in 0..5 {
        let position = commands.money(&wallet, "topup", "1.00").await.position().to_string();
        assert_eq!(first.next().await.id, position);
        assert_eq!(second.next().await.id, position);
    }
    drop((first, second));
    one.stop().await;
    two.stop().await;
    projector.stop().await;
    service.stop().await;
}

/// An idle feed sends a comment every `FEED_HEARTBEAT_S`, so that proxies keep the connection open.
#[sqlx::test(migrations = "../migrations")]
async fn an_idle_feed_sends_heartbeats(pool: PgPool) {
    let queries = TestApp::spawn_with(pool, &["--feed-heartbeat-s", "1"]).await;
    let response = queries.client.get(format!("{}/v1/events/stream", queries.base_url)).send().await.unwrap();
    let mut body = response.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("a heartbeat within 5 s");
    let text = String::from_utf8_lossy(&chunk.unwrap().unwrap()).into_owned();
    assert!(text.starts_with(':'), "a comment, not a message: {text:?}");
    drop(body);
    queries.stop().await;
}
