//! The auditor's routes (SPEC §10): `GET /v1/export?after=&until=` (the global log as NDJSON, streamed with
//! bounded memory), `GET /v1/digests?after=`, `GET /v1/digests/latest` and `GET /v1/digests/key`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tally_shared::digest::DigestView;

use crate::event_log;
use crate::http::error::ApiError;
use crate::http::params::QueryParams;
use crate::http::AppState;

/// Events read per page of an export: its memory is a few pages, whatever the log's length.
pub const EXPORT_PAGE_EVENTS: i64 = 1_000;
/// Pages read ahead of the client at most.
const EXPORT_PAGES_AHEAD: usize = 2;
/// Digests answered per page at most.
pub const DIGESTS_PAGE_MAX: i64 = 1_000;

/// The global log after `after` (default 0) up to `until` (default: the head when the export starts), one event
/// per line in the shape of `GET /v1/events`, in position order; resume with the last position received.
pub async fn export(State(state): State<AppState>, query: QueryParams) -> Result<Response, ApiError> {
    let query = query.allow(&["after", "until"])?;
    let after = query.integer("after", 0)?.unwrap_or(0);
    let until = match query.integer("until", 0)? {
        Some(until) => until,
        None => state.read(async |connection| event_log::head(connection).await).await?,
    };
    let (lines, received) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_PAGES_AHEAD);
    let reader = state.clone();
    tokio::spawn(async move {
        let mut after = after;
        while after < until {
            let page = reader
                .read(async |connection| event_log::events_between(connection, after, until, EXPORT_PAGE_EVENTS).await)
                .await;
            let chunk = match page {
                Ok(events) if events.is_empty() => return,
                Ok(events) => {
                    after = events.last().map_or(until, |last| last.position);
                    let mut chunk = Vec::with_capacity(events.len() * 512);
                    for event in &events {
                        serde_json::to_writer(&mut chunk, event).expect("events serialize");
                        chunk.push(b'\n');
                    }
                    Ok(Bytes::from(chunk))
                }
                Err(error) => {
                    // The client sees the stream end early and resumes from its last line; the cause is logged.
                    tracing::error!(error = format!("{error:#}"), after, "export stopped");
                    Err(std::io::Error::other("the export stopped; resume after the last line received"))
                }
            };
            let failed = chunk.is_err();
            if lines.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    });
    let body = Body::from_stream(stream);
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestPage {
    pub items: Vec<DigestView>,
    /// The `after` of the next request: the last position returned, or `after` itself when nothing is new.
    pub next_after: i64,
}

/// Digests after position `after`, oldest first.
pub async fn digests(State(state): State<AppState>, query: QueryParams) -> Result<Json<DigestPage>, ApiError> {
    let query = query.allow(&["after", "limit"])?;
    let after = query.integer("after", 0)?.unwrap_or(0);
    let limit = query.limit()?.min(DIGESTS_PAGE_MAX);
    let items = state.read(async |connection| event_log::digests_after(connection, after, limit).await).await?;
    let next_after = items.last().map_or(after, |last| last.position);
    Ok(Json(DigestPage { items, next_after }))
}

pub async fn latest(State(state): State<AppState>, query: QueryParams) -> Result<Json<DigestView>, ApiError> {
    query.allow(&[])?;
    let latest = state.read(async |connection| event_log::latest_digest(connection).await).await?;
    latest.map(Json).ok_or(ApiError::NoDigest)
}

/// The key that verifies the digests, as the latest digest names it. An auditor pins it out of band (the
/// projector's operator hands it over): a key read from the system under audit proves nothing on its own.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestKey {
    /// Always `ed25519`.
    pub algorithm: String,
    /// 32 bytes, lowercase hex.
    pub public_key: String,
}

pub async fn key(State(state): State<AppState>, query: QueryParams) -> Result<Json<DigestKey>, ApiError> {
    query.allow(&[])?;
    let latest = state.read(async |connection| event_log::latest_digest(connection).await).await?;
    let latest = latest.ok_or(ApiError::NoDigest)?;
    Ok(Json(DigestKey { algorithm: "ed25519".to_owned(), public_key: latest.public_key }))
}
