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

/// SPEC §9 under load: 1,000 commands while 10 subscribers listen; each gets every transfer exactly once, in
/// position order, and one of them that disconnects midway and resumes with `Last-Event-ID` misses nothing
/// and repeats nothing.
#[sqlx::test(migrations = "../migrations")]
async fn ten_subscribers_get_each_of_a_thousand_transfers_once_in_order_and_one_resumes_midway(pool: PgPool) {
    const COMMANDS: usize = 1_000;
    const SENDERS: usize = 20;
    const SUBSCRIBERS: usize = 10;
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = service.commands.clone();
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = std::sync::Arc::new(TestApp::spawn(pool.clone()).await);
    commands.define_asset("GOLD", 2).await;
    let mut wallets = Vec::new();
    for index in 0..SENDERS {
        let opened = commands.open_wallet(&format!("owner-{index}"), "GOLD").await;
        wallets.push(opened.body["wallet_id"].as_str().unwrap().to_owned());
    }

    let mut listeners = Vec::new();
    for subscriber in 0..SUBSCRIBERS {
        let mut feed = Feed::open(&queries, "/v1/transfers/stream", None).await;
        let queries = queries.clone();
        listeners.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(COMMANDS);
            while ids.len() < COMMANDS {
                ids.push(feed.next().await.id.parse::<i64>().unwrap());
                // The first subscriber hangs up after 300 and comes back where it left off.
                if subscriber == 0 && ids.len() == 300 {
                    drop(feed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    feed = Feed::open(&queries, "/v1/transfers/stream", Some(&ids[299].to_string())).await;
                }
            }
            ids
        }));
    }
    let senders = wallets.into_iter().map(|wallet| {
        let commands = commands.clone();
        tokio::spawn(async move {
            let mut positions = Vec::new();
            for _ in 0..COMMANDS / SENDERS {
                positions.push(commands.money(&wallet, "topup", "1.00").await.position());
            }
            positions
        })
    });
    let mut answered: Vec<i64> =
        futures::future::join_all(senders).await.into_iter().flat_map(Result::unwrap).collect();
    answered.sort_unstable();

    for (subscriber, listener) in listeners.into_iter().enumerate() {
        let ids = listener.await.unwrap();
        assert_eq!(ids, answered, "subscriber {subscriber}: every transfer once, in position order");
    }
    queries.get("/v1/projections").await.ok();
    std::sync::Arc::try_unwrap(queries).ok().unwrap().stop().await;
    projector.stop().await;
    service.stop().await;
}

/// Appends `count` events of about a kilobyte each at once (no projector runs in the tests that use it).
async fn bulk_events(pool: &PgPool, count: i64) {
    sqlx::query(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($2))
         INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
         SELECT 'wallet-' || gen_random_uuid(), 1, gen_random_uuid(), 'WalletOpened',
                jsonb_build_object('padding', repeat('x', 1000), 'index', i), '{}', now(), decode(repeat('00', 32), 'hex')
         FROM lock, generate_series(1, $1) AS i",
    )
    .bind(count)
    .bind(command_service::event_store::APPEND_LOCK_KEY)
    .execute(pool)
    .await
    .unwrap();
}

/// A live subscriber that stops reading fills its bounded buffer and gets `event: reset` with the last id it
/// was sent, then the feed closes; the one beside it, reading, gets everything and no reset; resuming after the
/// reset's id goes on with the very next event, and catches up at its own pace.
#[sqlx::test(migrations = "../migrations")]
async fn a_slow_subscriber_is_reset_and_the_others_are_not_held_back(pool: PgPool) {
    const BURSTS: i64 = 20;
    const BURST_EVENTS: i64 = 500;
    let queries = TestApp::spawn_with(pool.clone(), &["--feed-buffer-items", "2000"]).await;

    // The slow one: a socket with a small receive buffer that reads nothing for now.
    let address: std::net::SocketAddr = queries.base_url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /v1/events/stream HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    slow.write_all(request.as_bytes()).await.unwrap();
    let mut fast = Feed::open(&queries, "/v1/events/stream", None).await;

    // Live bursts: the fast one reads each as it comes, the slow one reads nothing.
    let mut last = 0;
    for _ in 0..BURSTS {
        bulk_events(&pool, BURST_EVENTS).await;
        for _ in 0..BURST_EVENTS {
            let message = fast.next().await;
            assert_ne!(message.event, "reset", "the reading subscriber is never reset");
            let id: i64 = message.id.parse().unwrap();
            assert!(id > last, "in order");
            last = id;
        }
    }

    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut received))
        .await
        .expect("the slow subscriber's feed closes")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    let reset_at = text.rfind("event: reset").expect("a reset before the feed closed");
    let reset: i64 =
        text[..reset_at].lines().rev().find_map(|line| line.strip_prefix("id: ")).unwrap().trim().parse().unwrap();
    let ids: Vec<i64> =
        text[..reset_at].lines().filter_map(|line| line.strip_prefix("id: ")?.trim().parse().ok()).collect();
    let total = BURSTS * BURST_EVENTS;
    assert!(ids.len() > 1 && (ids.len() as i64) < total, "the slow one fell behind: {} of {total}", ids.len());
    assert_eq!(ids[ids.len() - 2], reset, "the reset names the last event it was sent");
    assert!(ids[..ids.len() - 1].windows(2).all(|pair| pair[0] < pair[1]), "what it got came in order");

    let rest: Vec<i64> = sqlx::query_scalar("SELECT position FROM events WHERE position > $1 ORDER BY position")
        .bind(reset)
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut resumed = Feed::open(&queries, "/v1/events/stream", Some(&reset.to_string())).await;
    for position in rest {
        assert_eq!(resumed.next().await.id, position.to_string(), "resumed with the very next event, and on");
    }
    drop((fast, resumed));
    queries.stop().await;
}

/// The gap case: an append holds the append lock (its positions taken, not committed) while later commands
/// queue behind it; no feed shows anything past it meanwhile, and once it commits, its event and then the
/// commands arrive in position order. An append rolled back leaves a hole that stalls nothing.
#[sqlx::test(migrations = "../migrations")]
async fn an_append_committing_late_is_delivered_in_order_and_a_hole_stalls_nothing(pool: PgPool) {
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let commands = service.commands.clone();
    let projector = Projector::spawn(pool.clone(), &prefix).await;
    let queries = TestApp::spawn(pool.clone()).await;
    commands.define_asset("GOLD", 2).await;
    let wallet = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let head = commands.money(&wallet, "topup", "5.00").await.position();
    let mut events = Feed::open(&queries, &format!("/v1/events/stream?after={head}"), None).await;
    let mut transfers = Feed::open(&queries, &format!("/v1/transfers/stream?after={head}"), None).await;

    // An earlier append: a wallet opened, under the append lock, not yet committed.
    let mut late = pool.begin().await.unwrap();
    let late_wallet = uuid::Uuid::now_v7();
    let (event_type, data) = crate::support::wallet_opened(late_wallet, "late", "GOLD", 2).to_stored();
    let late_position: i64 = sqlx::query_scalar(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($4))
         INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
         SELECT 'wallet-' || $1::text, 1, gen_random_uuid(), $2, $3, '{}', now(), decode(repeat('00', 32), 'hex')
         FROM lock RETURNING position",
    )
    .bind(late_wallet)
    .bind(event_type)
    .bind(data)
    .bind(command_service::event_store::APPEND_LOCK_KEY)
    .fetch_one(&mut *late)
    .await
    .unwrap();
    // Later commands queue behind it.
    let queued = tokio::spawn({
        let (commands, wallet) = (commands.clone(), wallet.clone());
        async move {
            let mut positions = Vec::new();
            for _ in 0..3 {
                positions.push(commands.money(&wallet, "topup", "1.00").await.position());
            }
            positions
        }
    });
    let quiet = tokio::time::timeout(Duration::from_millis(1_500), events.next()).await;
    assert!(quiet.is_err(), "nothing is delivered past an append still open: {quiet:?}");
    late.commit().await.unwrap();
    let positions = queued.await.unwrap();
    assert!(positions[0] > late_position);
    assert_eq!(events.next().await.id, late_position.to_string(), "the earlier position first");
    let mut seen = Vec::new();
    while seen.len() < 9 {
        seen.push(events.next().await.id.parse::<i64>().unwrap());
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]) && seen[8] == positions[2], "{seen:?} {positions:?}");
    for position in &positions {
        assert_eq!(transfers.next().await.id, position.to_string());
    }

    // A rolled-back append: its positions stay a hole, and what follows is delivered.
    let mut doomed = pool.begin().await.unwrap();
    sqlx::query(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($2))
         INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
         SELECT 'wallet-' || $1::text, 1, gen_random_uuid(), 'WalletOpened', '{}', '{}', now(), decode(repeat('00', 32), 'hex')
         FROM lock",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(command_service::event_store::APPEND_LOCK_KEY)
    .execute(&mut *doomed)
    .await
    .unwrap();
    doomed.rollback().await.unwrap();
    let after_hole = commands.money(&wallet, "topup", "1.00").await.position();
    assert_eq!(transfers.next().await.id, after_hole.to_string(), "the hole stalls nothing");
    drop((events, transfers));
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}
