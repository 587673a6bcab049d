//! The OpenAPI 3.1 document of query-service: each route's parameters and answer, here; its security and
//! problem codes come from the route table (`tally_edge::openapi::complete`). The coverage test checks the
//! document against the table both ways, so a route cannot be added to one and forgotten in the other.

// The functions below only carry `#[utoipa::path]`: the handlers live in their resource files.
#![allow(dead_code)]

use tally_shared::api::{AssetView, HistoryEntryView, HoldView, TransferView, WalletView};
use tally_shared::envelope::StoredEvent;

use super::assets::AssetList;
use super::audit::{DigestKey, DigestPage};
use super::balance::BalanceAtView;
use super::events::EventPage;
use super::holds::HoldList;
use super::projections::ProjectionList;
use super::streams::StreamPage;
use super::transfers::TransferList;
use super::verifications::VerificationList;
use super::wallets::WalletList;
use crate::read_models::ProjectionView;
use utoipa::{OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally query-service",
        description = "Reads of Tally, an event-sourced wallet ledger: balances, histories, transfers, and the event \
                       log for auditors. Every answer carries `X-Projection-Position`; `min_position` (or \
                       `X-Min-Position`) waits until the projection has reached a command's position. Errors are \
                       `application/problem+json` with a stable `code`."
    ),
    paths(
        assets_list,
        asset_one,
        wallet_one,
        wallet_history,
        wallet_balance,
        owner_wallets,
        transfers_by_reference,
        transfer_one,
        wallet_holds,
        holds_by_reference,
        hold_one,
        stream_events,
        global_log,
        export,
        events_stream,
        transfers_stream,
        digests,
        digest_latest,
        digest_key,
        projections,
        verifications,
        dashboard_page,
        dashboard_script,
        dashboard_style,
        health_live,
        health_ready,
        metrics,
    ),
    components(schemas(
        AssetList,
        WalletList,
        HistoryPage,
        BalanceAtView,
        TransferList,
        HoldList,
        HoldsPage,
        FeedMessage,
        StoredEvent,
        StreamPage,
        EventPage,
        DigestPage,
        DigestKey,
        ProjectionView,
        ProjectionList,
        VerificationList
    )),
    tags(
        (name = "assets", description = "Assets with their totals"),
        (name = "wallets", description = "Wallets, their histories and balances"),
        (name = "transfers", description = "Transfers with their legs and reversals"),
        (name = "holds", description = "Holds: what is reserved on a wallet, captured, voided or expired"),
        (name = "audit", description = "The event log itself: streams, the global log"),
        (name = "operations", description = "Health, metrics and projection progress"),
        (name = "dashboard", description = "The dashboard page and its assets, compiled into the binary"),
    )
)]
pub struct ApiDoc;

/// Newest first; `next_cursor` fetches the next page.
#[derive(ToSchema)]
struct HistoryPage {
    items: Vec<HistoryEntryView>,
    next_cursor: Option<String>,
}

/// Newest first; `next_cursor` fetches the next page.
#[derive(ToSchema)]
struct HoldsPage {
    items: Vec<HoldView>,
    next_cursor: Option<String>,
}

/// One message of a live feed, as Server-Sent Events carry it (comments, the heartbeats, carry none).
#[derive(ToSchema)]
struct FeedMessage {
    /// The position: what `Last-Event-ID` resumes after.
    id: String,
    /// The event's type (`/v1/events/stream`), `transfer` (`/v1/transfers/stream`), or `reset` before the feed
    /// closes a subscriber that fell too far behind.
    event: String,
    /// JSON text: the `/v1/events` item, or the transfer as `GET /v1/transfers/{id}` shows it; for `reset`, the
    /// id of the last message sent.
    data: String,
}

/// Parameters of every read: the read-your-writes wait.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Consistency {
    /// Wait (bounded, 2 s by default) until the projection has reached this position, e.g. a command's `position`;
    /// otherwise `503 projection_behind`. Also as the `X-Min-Position` header.
    #[param(minimum = 0)]
    min_position: Option<i64>,
}

#[utoipa::path(get, path = "/v1/assets", tag = "assets", params(Consistency),
    responses((status = 200, description = "Every asset", body = AssetList)))]
fn assets_list() {}

#[utoipa::path(get, path = "/v1/assets/{code}", tag = "assets",
    params(("code" = String, Path, description = "Asset code", example = "NGN", pattern = r"^[A-Z][A-Z0-9_]{0,15}$"),
           Consistency),
    responses((status = 200, description = "The asset and its totals", body = AssetView)))]
fn asset_one() {}

#[utoipa::path(get, path = "/v1/wallets/{wallet_id}", tag = "wallets",
    params(("wallet_id" = Uuid, Path), Consistency),
    responses((status = 200, description = "The wallet", body = WalletView)))]
fn wallet_one() {}

#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/history", tag = "wallets",
    params(("wallet_id" = Uuid, Path),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
           Consistency),
    responses((status = 200, description = "A page of the wallet's legs, newest first", body = HistoryPage)))]
fn wallet_history() {}

#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/balance", tag = "audit",
    params(("wallet_id" = Uuid, Path),
           ("as_of" = Option<DateTime<Utc>>, Query, description = "RFC 3339 instant; exclusive with at_position"),
           ("at_position" = Option<i64>, Query, minimum = 0, description = "Global position; exclusive with as_of"),
           Consistency),
    responses((status = 200, description = "The balance at that moment, from the wallet's events", body = BalanceAtView)))]
fn wallet_balance() {}

#[utoipa::path(get, path = "/v1/owners/{owner_id}/wallets", tag = "wallets",
    params(("owner_id" = String, Path, min_length = 1, max_length = 128), Consistency),
    responses((status = 200, description = "Every wallet of the owner (none: an empty list)", body = WalletList)))]
fn owner_wallets() {}

#[utoipa::path(get, path = "/v1/transfers", tag = "transfers",
    params(("reference" = String, Query, min_length = 1, max_length = 128, description = "The client's reference"), Consistency),
    responses((status = 200, description = "The transfers carrying this reference, oldest first", body = TransferList)))]
fn transfers_by_reference() {}

#[utoipa::path(get, path = "/v1/transfers/{transfer_id}", tag = "transfers",
    params(("transfer_id" = Uuid, Path), Consistency),
    responses((status = 200, description = "The transfer with its legs and reversals", body = TransferView)))]
fn transfer_one() {}

#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/holds", tag = "holds",
    params(("wallet_id" = Uuid, Path),
           ("status" = Option<String>, Query, description = "`active`, `captured`, `voided` or `expired`; any by default"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
           Consistency),
    responses((status = 200, description = "A page of the wallet's holds, newest first", body = HoldsPage)))]
fn wallet_holds() {}

#[utoipa::path(get, path = "/v1/holds", tag = "holds",
    params(("reference" = String, Query, min_length = 1, max_length = 128, description = "The client's reference"), Consistency),
    responses((status = 200, description = "The holds carrying this reference, oldest first", body = HoldList)))]
fn holds_by_reference() {}

#[utoipa::path(get, path = "/v1/holds/{hold_id}", tag = "holds",
    params(("hold_id" = Uuid, Path), Consistency),
    responses((status = 200, description = "The hold, with its wallet as it stands now", body = HoldView)))]
fn hold_one() {}

#[utoipa::path(get, path = "/v1/streams/{stream_id}/events", tag = "audit",
    params(("stream_id" = String, Path, description = "`wallet-{uuid}`, `transfer-{uuid}`, `hold-{uuid}` or `asset-{CODE}`"),
           ("from_version" = Option<i64>, Query, minimum = 1, description = "First version, 1 by default"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"),
           Consistency),
    responses((status = 200, description = "The stream's raw events in version order", body = StreamPage)))]
fn stream_events() {}

#[utoipa::path(get, path = "/v1/events", tag = "audit",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Position to read after, 0 by default"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"),
           Consistency),
    responses((status = 200, description = "The global log in commit order", body = EventPage)))]
fn global_log() {}

#[utoipa::path(get, path = "/v1/export", tag = "audit",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Position to export after, 0 by default; resume with the last line's"),
           ("until" = Option<i64>, Query, minimum = 0, description = "Last position to export; the head when the export starts by default"),
           Consistency),
    responses((status = 200, description = "The global log in commit order, one event per line (the shape of `/v1/events` items), streamed",
        content_type = "application/x-ndjson", body = StoredEvent)))]
fn export() {}

#[utoipa::path(get, path = "/v1/events/stream", tag = "audit",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Position to follow after, 0 by default; `Last-Event-ID` overrides it"),
           ("Last-Event-ID" = Option<String>, Header, description = "The id of the last message received: resume after it"),
           Consistency),
    responses((status = 200, description = "Server-Sent Events: one message per event (`id: <position>`, `event: <type>`, data in the shape of `/v1/events` items), a comment every 15 s, and `event: reset` (data: the last id sent) before closing a subscriber that fell too far behind",
        content_type = "text/event-stream", body = FeedMessage)))]
fn events_stream() {}

#[utoipa::path(get, path = "/v1/transfers/stream", tag = "transfers",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Position to follow after, 0 by default; `Last-Event-ID` overrides it"),
           ("asset" = Option<String>, Query, pattern = r"^[A-Z][A-Z0-9_]{0,15}$", description = "Only this asset's transfers"),
           ("wallet_id" = Option<Uuid>, Query, description = "Only transfers with a leg on this wallet"),
           ("Last-Event-ID" = Option<String>, Header, description = "The id of the last message received: resume after it"),
           Consistency),
    responses((status = 200, description = "Server-Sent Events: each transfer as `GET /v1/transfers/{id}` shows it once completely projected (`id:` the position its command answered, `event: transfer`), a comment every 15 s, and `event: reset` before closing a subscriber that fell too far behind. A token bound to an owner sees only its wallets' transfers",
        content_type = "text/event-stream", body = FeedMessage)))]
fn transfers_stream() {}

#[utoipa::path(get, path = "/v1/digests", tag = "audit",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Position to read after, 0 by default"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"),
           Consistency),
    responses((status = 200, description = "Signed digests of the log hash, oldest first (docs/audit.md)", body = DigestPage)))]
fn digests() {}

#[utoipa::path(get, path = "/v1/digests/latest", tag = "audit", params(Consistency),
    responses((status = 200, description = "The digest of the highest position", body = tally_shared::digest::DigestView)))]
fn digest_latest() {}

#[utoipa::path(get, path = "/v1/digests/key", tag = "audit", params(Consistency),
    responses((status = 200, description = "The Ed25519 key that verifies the digests, as the latest names it; pin it out of band", body = DigestKey)))]
fn digest_key() {}

#[utoipa::path(get, path = "/v1/projections", tag = "operations", params(Consistency),
    responses((status = 200, description = "Each projection's checkpoint, the head and the lag", body = ProjectionList)))]
fn projections() {}

#[utoipa::path(get, path = "/v1/verifications", tag = "operations",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, 50 by default"), Consistency),
    responses((status = 200, description = "The outcomes of `projector verify` runs, newest first", body = VerificationList)))]
fn verifications() {}

#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"live\"}`", body = Value)))]
fn health_live() {}

#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, description = "`status`, `postgres`, `postgres_server`, `postgres_role` (`primary` or `replica`), `replica` (on a replica: `replay_lag_bytes`, `last_replay_age_ms`, `positions_behind`), `nats`, `projection_position`, `projection_announced` (the newest checkpoint the projector announced on NATS), `read_your_writes_waiting`", body = Value)))]
fn health_ready() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
fn metrics() {}

#[utoipa::path(get, path = "/dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard page: it asks for a token and reads this API with it",
        content_type = "text/html", body = String)))]
fn dashboard_page() {}

#[utoipa::path(get, path = "/dashboard/dashboard.js", tag = "dashboard",
    responses((status = 200, description = "The dashboard's script", content_type = "text/javascript", body = String)))]
fn dashboard_script() {}

#[utoipa::path(get, path = "/dashboard/dashboard.css", tag = "dashboard",
    responses((status = 200, description = "The dashboard's style sheet", content_type = "text/css", body = String)))]
fn dashboard_style() {}
