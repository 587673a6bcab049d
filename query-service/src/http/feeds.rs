//! Live feeds (SPEC §9) as Server-Sent Events:
//! - `GET /v1/events/stream?after=N` (scope `audit`): the global log as `GET /v1/events` gives it, one message
//!   per event with `id: <position>` and `event: <type>`;
//! - `GET /v1/transfers/stream?after=N&asset=&wallet_id=` (scope `read`): each transfer as
//!   `GET /v1/transfers/{id}` shows it once it is completely projected, with `id:` the position its command
//!   answered and `event: transfer`; a token bound to an owner sees only transfers touching its wallets.
//!
//! A client resumes with `Last-Event-ID` (or `after`) and gets every event after it exactly once, in position
//! order (which is commit order). One **shared reader** per distinct feed (the log, or transfers under one
//! filter) looks for new items whenever the projector's checkpoint moves (its notifications reach every
//! query-service instance through Postgres) and at least every second, renders each item's message once, and
//! hands the page to every subscriber of that feed through a `broadcast` channel; so a hundred subscribers cost
//! one query per checkpoint move, not a hundred. A subscriber first catches up alone from where it starts,
//! having joined the channel before, so nothing between the two is lost; what it has already is skipped by
//! position. While it catches up, the store is read no faster than the subscriber takes messages. Each
//! subscriber's buffer is bounded: one that falls `FEED_BUFFER_ITEMS` behind the live feed gets `event: reset`
//! with the id of the last message it was sent, and the feed closes; it is never silently skipped. At most
//! `FEED_SUBSCRIBERS_MAX` feeds are open at once (`503 overloaded` beyond). A comment every `FEED_HEARTBEAT_S`
//! (15 s) keeps idle connections alive.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tally_edge::Principal;
use tokio::sync::{broadcast, mpsc};

use crate::event_log;
use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;
use crate::read_models::{self, TransferFilter};

/// Events read per page, by a shared reader or a subscriber catching up.
const FEED_PAGE_EVENTS: i64 = 500;
/// How often a shared reader looks for new events without a notification.
const FEED_POLL: Duration = Duration::from_secs(1);
/// Bytes of waiting messages written to a subscriber at once, about: messages are never split.
const FEED_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Reads in a row a catching-up feed may fail before it closes (a second apart).
const FEED_READ_ATTEMPTS_MAX: u32 = 5;
/// Pages a shared reader's channel keeps for subscribers that are busy; one that misses pages catches up
/// from the store again.
const FEED_SHARED_PAGES: usize = 64;

/// The feeds' limits, how many are open, and their shared readers.
#[derive(Debug, Clone)]
pub struct Feeds {
    subscribers: Arc<AtomicUsize>,
    subscribers_max: usize,
    buffer_items: usize,
    /// How often an idle feed sends a comment.
    heartbeat: Duration,
    readers: Arc<Mutex<HashMap<Source, broadcast::Sender<Page>>>>,
}

impl Feeds {
    pub fn new(subscribers_max: usize, buffer_items: usize, heartbeat: Duration) -> Feeds {
        let subscribers = Arc::new(AtomicUsize::new(0));
        let readers = Arc::new(Mutex::new(HashMap::new()));
        Feeds { subscribers, subscribers_max, buffer_items: buffer_items.max(2), heartbeat, readers }
    }

    /// A place among the subscribers, if one is free; given back when dropped.
    fn join(&self) -> Option<Subscriber> {
        let joined = self.subscribers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < self.subscribers_max).then_some(open + 1)
        });
        joined.ok().map(|_| Subscriber(self.subscribers.clone()))
    }

    /// The pages of `source`'s shared reader from now on, starting that reader if none runs.
    fn listen(&self, state: &AppState, source: &Source) -> broadcast::Receiver<Page> {
        let mut readers = self.readers.lock().expect("the feeds' readers lock is never poisoned");
        if let Some(sender) = readers.get(source) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(FEED_SHARED_PAGES);
        readers.insert(source.clone(), sender.clone());
        // Everything at or before the checkpoint exists already (a subscriber's own catch-up finds it); the
        // reader hands on what comes after.
        let cursor = state.checkpoint.current();
        tokio::spawn(read_shared(state.clone(), source.clone(), cursor, sender));
        receiver
    }

    /// Forgets `source`'s reader if no subscriber listens any more; under the lock `listen` takes, so that no
    /// subscriber joins a reader that is leaving.
    fn leave_if_unheard(&self, source: &Source, sender: &broadcast::Sender<Page>) -> bool {
        let mut readers = self.readers.lock().expect("the feeds' readers lock is never poisoned");
        if sender.receiver_count() > 0 {
            return false;
        }
        readers.remove(source);
        true
    }
}

/// One open feed, counted while it lives.
struct Subscriber(Arc<AtomicUsize>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a feed starts: `Last-Event-ID` (a reconnecting `EventSource` sends it) over `after`, 0 by default.
fn start(headers: &HeaderMap, query: &QueryParams) -> Result<i64, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().map_err(|_| ApiError::validation("Last-Event-ID", "must be a position"))?;
        return text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|position| *position >= 0)
            .ok_or_else(|| ApiError::validation("Last-Event-ID", "must be a position"));
    }
    Ok(query.integer("after", 0)?.unwrap_or(0))
}

pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let query = query.allow(&["after"])?;
    let after = start(&headers, &query)?;
    open(state, after, Source::Events)
}

pub async fn transfers(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let query = query.allow(&["after", "asset", "wallet_id"])?;
    let after = start(&headers, &query)?;
    let asset = query.text("asset").map(str::to_owned);
    if asset.as_deref().is_some_and(|code| tally_shared::ids::AssetCode::parse(code).is_err()) {
        return Err(ApiError::validation("asset", "must match ^[A-Z][A-Z0-9_]{0,15}$"));
    }
    let wallet_id = query.text("wallet_id").map(crate::http::params::wallet_id).transpose()?;
    open(state, after, Source::Transfers(TransferFilter { asset, wallet_id, owner_id: principal.owner_id }))
}

/// What a feed follows; one shared reader serves all feeds that follow the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Events,
    Transfers(TransferFilter),
}

/// One message of a feed: its id (a position) and the message as Server-Sent Events carry it.
#[derive(Debug, Clone)]
pub struct Item {
    pub position: i64,
    pub message: Bytes,
}

impl Item {
    /// `data` is JSON text, which has no line break of its own.
    pub fn new(position: i64, event: &str, data: &str) -> Item {
        let message = format!("id: {position}\nevent: {event}\ndata: {data}\n\n");
        Item { position, message: Bytes::from(message) }
    }
}

/// A page of a shared reader, in position order, shared by its subscribers.
type Page = Arc<Vec<Item>>;

/// What an idle feed sends every `FEED_HEARTBEAT_S`: a comment, which clients ignore.
const HEARTBEAT: &[u8] = b":\n\n";

impl Source {
    /// The next page of items after `after`.
    async fn page(&self, state: &AppState, after: i64) -> anyhow::Result<Vec<Item>> {
        match self {
            Source::Events => {
                let events = state
                    .read(async |connection| event_log::events_after(connection, after, FEED_PAGE_EVENTS).await)
                    .await?;
                Ok(events
                    .iter()
                    .map(|event| {
                        let data = serde_json::to_string(event).expect("events serialize");
                        Item::new(event.position, &event.event_type, &data)
                    })
                    .collect())
            }
            Source::Transfers(filter) => {
                let checkpoint = state.checkpoint.current();
                let transfers = state
                    .read(async |connection| {
                        read_models::transfers_projected_after(connection, after, checkpoint, FEED_PAGE_EVENTS, filter)
                            .await
                    })
                    .await?;
                Ok(transfers
                    .iter()
                    .map(|transfer| {
                        let data = serde_json::to_string(transfer).expect("transfers serialize");
                        Item::new(transfer.position, "transfer", &data)
                    })
                    .collect())
            }
        }
    }
}

/// Starts a feed of `source` after `after`, if a subscriber's place is free.
fn open(state: AppState, after: i64, source: Source) -> Result<Response, ApiError> {
    let subscriber = state.feeds.join().ok_or(ApiError::FeedsFull)?;
    let heartbeat = state.feeds.heartbeat;
    let (sender, receiver) = mpsc::channel::<Bytes>(state.feeds.buffer_items);
    let shared = state.feeds.listen(&state, &source);
    tokio::spawn(pump(state, after, source, shared, sender));
    let stream = futures::stream::unfold((receiver, subscriber), move |(mut receiver, subscriber)| async move {
        let message = match tokio::time::timeout(heartbeat, receiver.recv()).await {
            Ok(Some(message)) => coalesce(message, &mut receiver),
            Ok(None) => return None,
            Err(_idle) => Bytes::from_static(HEARTBEAT),
        };
        Some((Ok::<Bytes, Infallible>(message), (receiver, subscriber)))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer answers (nginx) pass this one on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `first` and the messages already waiting behind it, up to `FEED_CHUNK_BYTES_MAX`, as one piece of the body:
/// a subscriber that is behind gets a page in a few writes, not one write a message.
fn coalesce(first: Bytes, receiver: &mut mpsc::Receiver<Bytes>) -> Bytes {
    let Ok(second) = receiver.try_recv() else { return first };
    let mut chunk = BytesMut::with_capacity(FEED_CHUNK_BYTES_MAX.max(first.len() + second.len()));
    chunk.extend_from_slice(&first);
    chunk.extend_from_slice(&second);
    while chunk.len() < FEED_CHUNK_BYTES_MAX {
        match receiver.try_recv() {
            Ok(next) => chunk.extend_from_slice(&next),
            Err(_) => break,
        }
    }
    chunk.freeze()
}

/// What one page did to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Every event went into the buffer; the feed is at this position.
    All(i64),
    /// The buffer is full: the subscriber is to be reset at this position (the last event enqueued).
    Full(i64),
    /// The subscriber went away.
    Gone,
}

/// Puts the items of `items` after `after` into a feed's buffer, as far as it has room.
pub fn enqueue(sender: &mpsc::Sender<Bytes>, after: i64, items: &[Item]) -> Enqueued {
    let mut last = after;
    for item in items.iter().filter(|item| item.position > after) {
        match sender.try_send(item.message.clone()) {
            Ok(()) => last = item.position,
            Err(mpsc::error::TrySendError::Full(_)) => return Enqueued::Full(last),
            Err(mpsc::error::TrySendError::Closed(_)) => return Enqueued::Gone,
        }
    }
    Enqueued::All(last)
}

/// The message that closes a feed that fell behind: `event: reset`, naming the last id it was sent.
fn reset(last: i64) -> Bytes {
    Item::new(last, "reset", &last.to_string()).message
}

/// Catches a feed up from the store alone, page by page, until a page is short; then hands on the shared
/// reader's pages, which it listened to before it began; and catches up again if it missed some of them. Ends
/// when the subscriber goes, or when a live page does not fit into its buffer: it is then `FEED_BUFFER_ITEMS`
/// behind the ledger, and is reset.
async fn pump(
    state: AppState,
    mut after: i64,
    source: Source,
    mut shared: broadcast::Receiver<Page>,
    sender: mpsc::Sender<Bytes>,
) {
    // The buffer's last slot is kept for the reset from the start, so that a full buffer can always say so.
    let Ok(reset_slot) = sender.clone().reserve_owned().await else { return };
    loop {
        after = match catch_up(&state, after, &source, &sender).await {
            Some(position) => position,
            None => return,
        };
        loop {
            let page = tokio::select! {
                page = shared.recv() => page,
                _ = sender.closed() => return,
            };
            match page {
                Ok(page) => match enqueue(&sender, after, &page) {
                    Enqueued::All(position) => after = position,
                    Enqueued::Full(last) => {
                        reset_slot.send(reset(last));
                        return;
                    }
                    Enqueued::Gone => return,
                },
                // Pages were missed: the store has them.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Reads the store after `after` into the feed until a page is short, at the pace the subscriber takes the
/// messages: the position reached, or `None` when the subscriber went.
async fn catch_up(state: &AppState, mut after: i64, source: &Source, sender: &mpsc::Sender<Bytes>) -> Option<i64> {
    let mut failures = 0;
    loop {
        let items = match source.page(state, after).await {
            Ok(items) => items,
            // A busy moment (no connection free in time) passes: the subscriber waits, its heartbeats go on.
            Err(error) if failures < FEED_READ_ATTEMPTS_MAX => {
                failures += 1;
                tracing::warn!(
                    error = format!("{error:#}"),
                    after,
                    failures,
                    "a feed could not read the log; retrying"
                );
                tokio::time::sleep(FEED_POLL).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), after, "a feed could not read the log; it closes");
                return None;
            }
        };
        failures = 0;
        // The store keeps what the subscriber has not taken yet: read on no faster than it takes messages.
        let start = after;
        for item in items.iter().filter(|item| item.position > start) {
            sender.send(item.message.clone()).await.ok()?;
            after = item.position;
        }
        if (items.len() as i64) < FEED_PAGE_EVENTS {
            return Some(after);
        }
    }
}

/// A shared reader: reads `source` after `cursor` whenever the checkpoint moves (or the poll) and sends each
/// page to the subscribers, until none listens.
async fn read_shared(state: AppState, source: Source, mut cursor: i64, sender: broadcast::Sender<Page>) {
    let mut checkpoint = state.checkpoint.subscribe();
    loop {
        match source.page(&state, cursor).await {
            Ok(items) => {
                let full = items.len() as i64 == FEED_PAGE_EVENTS;
                if let Some(last) = items.last() {
                    cursor = last.position;
                    // No receiver: every subscriber left since; checked below.
                    let _unheard = sender.send(Arc::new(items));
                }
                if full {
                    continue;
                }
            }
            // The subscribers wait; the next round tries again.
            Err(error) => tracing::warn!(error = format!("{error:#}"), cursor, "a feed's shared reader could not read"),
        }
        if state.feeds.leave_if_unheard(&source, &sender) {
            return;
        }
        tokio::select! {
            _ = checkpoint.changed() => {}
            _ = tokio::time::sleep(FEED_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(position: i64) -> Item {
        Item::new(position, "AssetDefined", "{}")
    }

    fn received(receiver: &mut mpsc::Receiver<Bytes>) -> Vec<String> {
        let mut messages = Vec::new();
        while let Ok(message) = receiver.try_recv() {
            messages.push(String::from_utf8(message.to_vec()).unwrap());
        }
        messages
    }

    #[test]
    fn a_message_is_id_event_and_data() {
        assert_eq!(stored(7).message, Bytes::from_static(b"id: 7\nevent: AssetDefined\ndata: {}\n\n"));
    }

    #[test]
    fn a_subscriber_that_falls_behind_gets_a_reset_at_the_last_event_it_was_sent() {
        let (sender, mut receiver) = mpsc::channel(4);
        let reset_slot = sender.clone().try_reserve_owned().unwrap();
        let events: Vec<Item> = (1..=10).map(stored).collect();
        assert_eq!(enqueue(&sender, 0, &events), Enqueued::Full(3), "three events and the reset fit");
        reset_slot.send(reset(3));
        let messages = received(&mut receiver);
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[3], "id: 3\nevent: reset\ndata: 3\n\n");
    }

    /// A catch-up awaits room and may fill every free slot; the kept one still takes the reset.
    #[tokio::test]
    async fn a_buffer_filled_while_catching_up_still_has_room_for_the_reset() {
        let (sender, mut receiver) = mpsc::channel(3);
        let reset_slot = sender.clone().reserve_owned().await.unwrap();
        sender.send(stored(1).message).await.unwrap();
        sender.send(stored(2).message).await.unwrap();
        assert_eq!(enqueue(&sender, 2, &[stored(3)]), Enqueued::Full(2));
        reset_slot.send(reset(2));
        let messages = received(&mut receiver);
        assert_eq!(messages.last().map(String::as_str), Some("id: 2\nevent: reset\ndata: 2\n\n"));
    }

    #[test]
    fn a_page_that_fits_moves_the_feed_to_its_last_event() {
        let (sender, _receiver) = mpsc::channel(100);
        assert_eq!(enqueue(&sender, 0, &[stored(4), stored(9)]), Enqueued::All(9));
        assert_eq!(enqueue(&sender, 9, &[]), Enqueued::All(9));
        drop(_receiver);
        assert_eq!(enqueue(&sender, 9, &[stored(10)]), Enqueued::Gone);
    }

    #[test]
    fn what_a_subscriber_has_already_is_skipped() {
        let (sender, mut receiver) = mpsc::channel(100);
        let page: Vec<Item> = [3, 5, 8, 9].into_iter().map(stored).collect();
        assert_eq!(enqueue(&sender, 5, &page), Enqueued::All(9));
        let ids: Vec<String> =
            received(&mut receiver).iter().map(|message| message.lines().next().unwrap().to_owned()).collect();
        assert_eq!(ids, ["id: 8", "id: 9"]);
    }

    #[test]
    fn waiting_messages_go_out_together_whole_and_in_order() {
        let (sender, mut receiver) = mpsc::channel(1_000);
        assert_eq!(coalesce(stored(1).message, &mut receiver), stored(1).message, "alone, as it is");
        let padding = format!("\"{}\"", "x".repeat(1_000));
        let page: Vec<Item> = (2..=400).map(|position| Item::new(position, "AssetDefined", &padding)).collect();
        assert_eq!(enqueue(&sender, 1, &page), Enqueued::All(400));
        let first = receiver.try_recv().unwrap();
        let chunk = String::from_utf8(coalesce(first, &mut receiver).to_vec()).unwrap();
        let ids: Vec<i64> = chunk.lines().filter_map(|line| line.strip_prefix("id: ")?.parse().ok()).collect();
        assert!(chunk.ends_with("\n\n") && ids.len() < 399, "at most about FEED_CHUNK_BYTES_MAX at once");
        assert_eq!(ids, (2..2 + ids.len() as i64).collect::<Vec<_>>());
        let rest = String::from_utf8(coalesce(receiver.try_recv().unwrap(), &mut receiver).to_vec()).unwrap();
        assert!(rest.starts_with(&format!("id: {}\n", 2 + ids.len())), "the next chunk goes on where it stopped");
    }

    #[test]
    fn feeds_are_capped_and_give_their_place_back() {
        let feeds = Feeds::new(1, 10, Duration::from_secs(15));
        let first = feeds.join();
        assert!(first.is_some() && feeds.join().is_none());
        drop(first);
        assert!(feeds.join().is_some());
    }
}
