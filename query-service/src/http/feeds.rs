//! Live feeds (SPEC §9) as Server-Sent Events:
//! - `GET /v1/events/stream?after=N` (scope `audit`): the global log as `GET /v1/events` gives it, one message
//!   per event with `id: <position>` and `event: <type>`;
//! - `GET /v1/transfers/stream?after=N&asset=&wallet_id=` (scope `read`): each transfer as
//!   `GET /v1/transfers/{id}` shows it once it is completely projected, with `id:` the position its command
//!   answered and `event: transfer`; a token bound to an owner sees only transfers touching its wallets.
//!
//! A client resumes with `Last-Event-ID` (or `after`) and gets every event after it exactly once, in position
//! order (which is commit order). New events are looked for whenever the projector's checkpoint moves (its
//! notifications reach every query-service instance through Postgres) and at least every second. Each feed's
//! buffer is bounded: a subscriber that falls `FEED_BUFFER_ITEMS` behind gets `event: reset` with the id of the
//! last event it was sent, and the feed closes; it is never silently skipped. At most `FEED_SUBSCRIBERS_MAX`
//! feeds are open at once (`503 overloaded` beyond). A comment every `FEED_HEARTBEAT_S` (15 s) keeps idle
//! connections alive.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tally_edge::Principal;
use tokio::sync::mpsc;

use crate::event_log;
use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;
use crate::read_models::{self, TransferFilter};

/// Events read per page while a feed catches up.
const FEED_PAGE_EVENTS: i64 = 500;
/// How often a feed looks for new events without a notification.
const FEED_POLL: Duration = Duration::from_secs(1);

/// The feeds' limits and how many are open.
#[derive(Debug, Clone)]
pub struct Feeds {
    subscribers: Arc<AtomicUsize>,
    subscribers_max: usize,
    buffer_items: usize,
    /// How often an idle feed sends a comment.
    heartbeat: Duration,
}

impl Feeds {
    pub fn new(subscribers_max: usize, buffer_items: usize, heartbeat: Duration) -> Feeds {
        let subscribers = Arc::new(AtomicUsize::new(0));
        Feeds { subscribers, subscribers_max, buffer_items: buffer_items.max(2), heartbeat }
    }

    /// A place among the subscribers, if one is free; given back when dropped.
    fn join(&self) -> Option<Subscriber> {
        let joined = self.subscribers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < self.subscribers_max).then_some(open + 1)
        });
        joined.ok().map(|_| Subscriber(self.subscribers.clone()))
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

/// What a feed follows.
enum Source {
    Events,
    Transfers(TransferFilter),
}

/// One message of a feed: its id (a position), its event name, its data.
pub struct Item {
    pub position: i64,
    pub event: String,
    pub data: String,
}

impl Source {
    /// The next page of items after `after`.
    async fn page(&self, state: &AppState, after: i64) -> anyhow::Result<Vec<Item>> {
        match self {
            Source::Events => {
                let events = state
                    .read(async |connection| event_log::events_after(connection, after, FEED_PAGE_EVENTS).await)
                    .await?;
                Ok(events
                    .into_iter()
                    .map(|event| Item {
                        position: event.position,
                        data: serde_json::to_string(&event).expect("events serialize"),
                        event: event.event_type,
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
                    .into_iter()
                    .map(|transfer| Item {
                        position: transfer.position,
                        data: serde_json::to_string(&transfer).expect("transfers serialize"),
                        event: "transfer".to_owned(),
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
    let (sender, receiver) = mpsc::channel::<Event>(state.feeds.buffer_items);
    tokio::spawn(pump(state, after, source, sender));
    let stream = futures::stream::unfold((receiver, subscriber), |(mut receiver, subscriber)| async move {
        receiver.recv().await.map(|event| (Ok::<Event, Infallible>(event), (receiver, subscriber)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat)).into_response())
}

/// What one page did to a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Every event went into the buffer; the feed is at this position.
    All(i64),
    /// The buffer filled: a `reset` with this position (the last event enqueued) closes the feed.
    Reset(i64),
    /// The subscriber went away.
    Gone,
}

/// Puts `items` after `after` into a feed's buffer, keeping its last slot for a `reset`.
pub fn enqueue(sender: &mpsc::Sender<Event>, after: i64, items: &[Item]) -> Enqueued {
    let mut last = after;
    for item in items {
        if sender.is_closed() {
            return Enqueued::Gone;
        }
        if sender.capacity() <= 1 {
            let reset = Event::default().event("reset").id(last.to_string()).data(last.to_string());
            return match sender.try_send(reset) {
                Ok(()) => Enqueued::Reset(last),
                Err(_) => Enqueued::Gone,
            };
        }
        let event = Event::default().id(item.position.to_string()).event(&item.event).data(&item.data);
        if sender.try_send(event).is_err() {
            return Enqueued::Gone;
        }
        last = item.position;
    }
    Enqueued::All(last)
}

/// Reads the log after `after` into the feed, page by page, then waits for the checkpoint to move (or the
/// poll) and reads again, until the subscriber goes or falls behind.
async fn pump(state: AppState, mut after: i64, source: Source, sender: mpsc::Sender<Event>) {
    let mut checkpoint = state.checkpoint.subscribe();
    loop {
        let page = source.page(&state, after).await;
        let events = match page {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), after, "a feed could not read the log; it closes");
                return;
            }
        };
        match enqueue(&sender, after, &events) {
            Enqueued::All(position) => after = position,
            Enqueued::Reset(_) | Enqueued::Gone => return,
        }
        if events.len() as i64 == FEED_PAGE_EVENTS {
            continue;
        }
        tokio::select! {
            _ = checkpoint.changed() => {}
            _ = tokio::time::sleep(FEED_POLL) => {}
            _ = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(position: i64) -> Item {
        Item { position, event: "AssetDefined".to_owned(), data: "{}".to_owned() }
    }

    #[test]
    fn a_subscriber_that_falls_behind_gets_a_reset_at_the_last_event_it_was_sent() {
        let (sender, mut receiver) = mpsc::channel(4);
        let events: Vec<Item> = (1..=10).map(stored).collect();
        assert_eq!(enqueue(&sender, 0, &events), Enqueued::Reset(3), "three events and the reset fit");
        let mut ids = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            ids.push(format!("{event:?}"));
        }
        assert_eq!(ids.len(), 4);
        assert!(ids[3].contains("reset") && ids[3].contains('3'), "{ids:?}");
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
    fn feeds_are_capped_and_give_their_place_back() {
        let feeds = Feeds::new(1, 10, Duration::from_secs(15));
        let first = feeds.join();
        assert!(first.is_some() && feeds.join().is_none());
        drop(first);
        assert!(feeds.join().is_some());
    }
}
