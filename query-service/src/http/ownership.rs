//! What a token bound to one owner may read: that owner's wallets (and their history, balances and holds), the
//! list of that owner's wallets, the transfers touching one of them, the holds on them, and their streams. Anything else answers `404`
//! exactly as if it did not exist; the global log, which spans every owner, answers `403 forbidden`.
//!
//! Ownership comes from `wallet_owners` (user wallets, written with the events that open them) and each transfer's
//! first event (read through the upcaster): the truth, not a projection that may lag behind. Unbound tokens pass
//! untouched.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use sqlx::PgConnection;
use tally_edge::Principal;
use tally_shared::api::ProblemCode;
use tally_shared::envelope::{Event, StreamId};
use tally_shared::hold::{HoldEvent, HoldId};
use tally_shared::transfer::{TransferEvent, TransferId};
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::params;
use crate::http::AppState;

/// Bytes of a by-reference answer filtered at most (it holds at most `TRANSFERS_BY_REFERENCE_MAX` transfers).
const FILTERED_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Runs after the edge's guard, so the principal is known; before the read-your-writes wait, so a refused
/// request never waits.
pub async fn restrict(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(owner) = request.extensions().get::<Principal>().and_then(|principal| principal.owner_id.clone()) else {
        return next.run(request).await;
    };
    let Some(route) = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let segments = match request.extract_parts::<Path<HashMap<String, String>>>().await {
        Ok(Path(segments)) => segments,
        Err(_) => HashMap::new(),
    };
    let refusal = match state.read(async |connection| check(connection, &owner, &route, &segments).await).await {
        Ok(refusal) => refusal,
        Err(error) => Some(ApiError::from(error).into_response()),
    };
    if let Some(refusal) = refusal {
        return refusal;
    }
    let response = next.run(request).await;
    if (route == "/v1/transfers" || route == "/v1/holds") && response.status() == StatusCode::OK {
        return state
            .read(async |connection| only_owned_items(connection, &owner, response).await)
            .await
            .unwrap_or_else(|error| ApiError::from(error).into_response());
    }
    response
}

/// The refusal of `route` for `owner`, if any. Segments that do not parse are left to the handler's 422.
async fn check(
    connection: &mut PgConnection,
    owner: &str,
    route: &str,
    segments: &HashMap<String, String>,
) -> anyhow::Result<Option<Response>> {
    let segment = |name: &str| segments.get(name).map(String::as_str).unwrap_or_default();
    match route {
        "/v1/wallets/{wallet_id}" | "/v1/wallets/{wallet_id}/history" | "/v1/wallets/{wallet_id}/balance" => {
            let Ok(wallet_id) = params::wallet_id(segment("wallet_id")) else { return Ok(None) };
            Ok((!owns_wallet(connection, owner, wallet_id).await?)
                .then(|| ApiError::WalletNotFound { wallet_id }.into_response()))
        }
        "/v1/wallets/{wallet_id}/holds" => {
            let Ok(wallet_id) = params::wallet_id(segment("wallet_id")) else { return Ok(None) };
            Ok((!owns_wallet(connection, owner, wallet_id).await?)
                .then(|| ApiError::WalletNotFound { wallet_id }.into_response()))
        }
        "/v1/holds/{hold_id}" => {
            let Ok(hold_id) = params::hold_id(segment("hold_id")) else { return Ok(None) };
            Ok((!owns_hold(connection, owner, hold_id).await?)
                .then(|| ApiError::HoldNotFound { hold_id }.into_response()))
        }
        "/v1/owners/{owner_id}/wallets" => Ok((segment("owner_id") != owner)
            .then(|| tally_edge::problem::refuse(ProblemCode::NotFound, "owner not found", None))),
        "/v1/transfers/{transfer_id}" => {
            let Ok(transfer_id) = params::transfer_id(segment("transfer_id")) else { return Ok(None) };
            Ok((!touches_owned_wallet(connection, owner, transfer_id).await?)
                .then(|| ApiError::TransferNotFound { transfer_id }.into_response()))
        }
        "/v1/streams/{stream_id}/events" => match params::stream_id(segment("stream_id")) {
            Ok(StreamId::Wallet(wallet_id)) => Ok((!owns_wallet(connection, owner, wallet_id.0).await?)
                .then(|| ApiError::WalletNotFound { wallet_id: wallet_id.0 }.into_response())),
            Ok(StreamId::Transfer(transfer_id)) => Ok((!touches_owned_wallet(connection, owner, transfer_id.0)
                .await?)
                .then(|| ApiError::TransferNotFound { transfer_id: transfer_id.0 }.into_response())),
            Ok(StreamId::Hold(hold_id)) => Ok((!owns_hold(connection, owner, hold_id.0).await?)
                .then(|| ApiError::HoldNotFound { hold_id: hold_id.0 }.into_response())),
            // An asset's stream is its definition: the same for every owner.
            Ok(StreamId::Asset(_)) | Err(_) => Ok(None),
        },
        "/v1/events" | "/v1/export" | "/v1/events/stream" => Ok(Some(tally_edge::problem::refuse(
            ProblemCode::Forbidden,
            "the global log spans every owner: a token bound to an owner cannot read it",
            None,
        ))),
        _ => Ok(None),
    }
}

async fn owns_wallet(connection: &mut PgConnection, owner: &str, wallet_id: Uuid) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wallet_owners WHERE wallet_id = $1 AND owner_id = $2)")
        .bind(wallet_id)
        .bind(owner)
        .fetch_one(&mut *connection)
        .await
        .context("look up a wallet's owner")
}

/// Whether a leg of the transfer (as its first event recorded it) debits or credits a wallet of `owner`. The
/// event's data is read in Rust, through the upcaster, never in SQL.
async fn touches_owned_wallet(connection: &mut PgConnection, owner: &str, transfer_id: Uuid) -> anyhow::Result<bool> {
    let stream = StreamId::Transfer(TransferId(transfer_id));
    let Some(first) = first_event(connection, &stream).await? else { return Ok(false) };
    let Event::Transfer(TransferEvent::TransferRecorded(recorded)) = first else {
        anyhow::bail!("{stream} does not start with TransferRecorded");
    };
    let wallets: Vec<Uuid> = recorded.legs.iter().flat_map(|leg| [leg.from_wallet_id.0, leg.to_wallet_id.0]).collect();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wallet_owners WHERE owner_id = $1 AND wallet_id = ANY($2))")
        .bind(owner)
        .bind(&wallets)
        .fetch_one(&mut *connection)
        .await
        .context("look up the owners of a transfer's wallets")
}

/// Whether the hold (as its first event placed it) is on a wallet of `owner`. Read through the upcaster.
async fn owns_hold(connection: &mut PgConnection, owner: &str, hold_id: Uuid) -> anyhow::Result<bool> {
    let stream = StreamId::Hold(HoldId(hold_id));
    let Some(first) = first_event(connection, &stream).await? else { return Ok(false) };
    let Event::Hold(HoldEvent::HoldPlaced(placed)) = first else {
        anyhow::bail!("{stream} does not start with HoldPlaced");
    };
    owns_wallet(connection, owner, placed.wallet_id.0).await
}

/// A stream's first event, read through the upcaster; `None` if the stream does not exist.
async fn first_event(connection: &mut PgConnection, stream: &StreamId) -> anyhow::Result<Option<Event>> {
    let first: Option<(String, String)> =
        sqlx::query_as("SELECT event_type, data::text FROM events WHERE stream_id = $1 AND version = 1")
            .bind(stream.to_string())
            .fetch_optional(&mut *connection)
            .await
            .with_context(|| format!("read the first event of {stream}"))?;
    let Some((event_type, data)) = first else { return Ok(None) };
    Event::from_stored_text(stream, &event_type, &data).with_context(|| format!("read {stream} v1")).map(Some)
}

/// Keeps the items of a `{"items": [transfer or hold, …]}` answer that touch a wallet of `owner`: a transfer's
/// legs, a hold's wallet.
async fn only_owned_items(connection: &mut PgConnection, owner: &str, response: Response) -> anyhow::Result<Response> {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, FILTERED_BODY_BYTES_MAX).await.context("read the transfers answer")?;
    let mut list: serde_json::Value = serde_json::from_slice(&bytes).context("parse the transfers answer")?;
    let items = list["items"].as_array_mut().context("a transfer list has items")?;
    let wallets_of = |item: &serde_json::Value| -> Vec<Uuid> {
        let legs = item["legs"].as_array().map(Vec::as_slice).unwrap_or_default();
        legs.iter()
            .flat_map(|leg| [&leg["from_wallet_id"], &leg["to_wallet_id"]])
            .chain([&item["wallet_id"]])
            .filter_map(|id| id.as_str().and_then(|text| Uuid::parse_str(text).ok()))
            .collect()
    };
    let candidates: Vec<Uuid> = items.iter().flat_map(wallets_of).collect();
    let owned: HashSet<Uuid> =
        sqlx::query_scalar("SELECT wallet_id FROM wallet_owners WHERE owner_id = $1 AND wallet_id = ANY($2)")
            .bind(owner)
            .bind(&candidates)
            .fetch_all(&mut *connection)
            .await
            .context("look up the owners of transfers' wallets")?
            .into_iter()
            .collect();
    items.retain(|transfer| wallets_of(transfer).iter().any(|wallet_id| owned.contains(wallet_id)));
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Body::from(serde_json::to_vec(&list).context("serialize the transfers")?)))
}
