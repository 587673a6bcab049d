//! The HTTP API of SPEC §5 (command-service): the route table (who may call what), the OpenAPI document,
//! shared state and how outcomes become responses. The edge (tokens, limits, request ids, HTTP metrics) is
//! `tally_edge`'s, shared with query-service.

mod assets;
pub mod error;
mod health;
mod holds;
mod input;
mod transfers;
mod wallets;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use sqlx::PgPool;
use tally_edge::{Access, Authenticator, EdgeConfig, Principal, RouteSpec, Routes, Scope};
use tally_shared::api::ProblemCode::{self, *};
use tally_shared::ledger::{Command, DomainError};
use tally_shared::money::{AmountError, WireDecimal};
use utoipa::OpenApi;

use crate::execute::{CommandRequest, Executor, Reply};
use error::{json_response, ApiError};
use input::CommandInput;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub executor: Executor,
    pub pool: PgPool,
    pub nats: Option<async_nats::Client>,
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

/// What any command can answer, whatever it does: bad requests, idempotency, and a store that is busy or gone.
macro_rules! command_problems {
    ($($code:ident),* $(,)?) => {
        &[MalformedJson, IdempotencyKeyMissing, IdempotencyKeyInvalid, UnsupportedMediaType, ValidationFailed,
          IdempotencyKeyInFlight, IdempotencyKeyReused, ConcurrencyConflict, Unavailable, $($code),*]
    };
}
const DEFINE_ASSET: &[ProblemCode] = command_problems!(InvalidAmount, AssetExists);
const OPEN_WALLET: &[ProblemCode] = command_problems!(InvalidAmount, AssetNotFound, WalletNotFound, WalletExists);
const MOVE_MONEY: &[ProblemCode] = command_problems!(
    InvalidAmount,
    WalletNotFound,
    AssetNotFound,
    VersionMismatch,
    InsufficientFunds,
    WalletFrozen,
    WalletClosed
);
const TRANSFER: &[ProblemCode] = command_problems!(
    InvalidAmount,
    WalletNotFound,
    AssetMismatch,
    SameWallet,
    VersionMismatch,
    InsufficientFunds,
    WalletFrozen,
    WalletClosed
);
const REVERSAL: &[ProblemCode] = command_problems!(
    InvalidAmount,
    TransferNotFound,
    ReversalExceedsTransfer,
    InsufficientFunds,
    WalletFrozen,
    WalletClosed
);
const CHANGE_STATUS: &[ProblemCode] =
    command_problems!(WalletNotFound, VersionMismatch, WalletClosed, WalletNotEmpty, WalletHasActiveHolds);
const PLACE_HOLD: &[ProblemCode] =
    command_problems!(InvalidAmount, WalletNotFound, VersionMismatch, InsufficientFunds, WalletFrozen, WalletClosed);
const CAPTURE_HOLD: &[ProblemCode] = command_problems!(
    InvalidAmount,
    HoldNotFound,
    HoldNotActive,
    HoldExpired,
    HoldExceeded,
    WalletNotFound,
    AssetMismatch,
    SameWallet,
    WalletFrozen,
    WalletClosed
);
const VOID_HOLD: &[ProblemCode] = command_problems!(HoldNotFound, HoldNotActive, HoldExpired);

/// The route table: every route, who may call it and what it can answer. It alone builds the router; the
/// OpenAPI document is completed from it and checked against it (`tests/operability.rs`).
pub fn routes(authenticator: Authenticator) -> Routes<AppState> {
    let commands = Access::Scope(Scope::Commands);
    let issue = Access::Scope(Scope::Issue);
    let post = |path, access, problems| RouteSpec::new(Method::POST, path, access, problems);
    let get = |path, problems| RouteSpec::new(Method::GET, path, Access::Open, problems);
    Routes::new(authenticator)
        .route(post("/v1/assets", issue, DEFINE_ASSET), assets::define)
        .route(post("/v1/wallets", commands, OPEN_WALLET), wallets::open)
        .route(post("/v1/wallets/{wallet_id}/topup", issue, MOVE_MONEY), wallets::topup)
        .route(post("/v1/wallets/{wallet_id}/bonus", issue, MOVE_MONEY), wallets::bonus)
        .route(post("/v1/wallets/{wallet_id}/spend", commands, MOVE_MONEY), wallets::spend)
        .route(post("/v1/wallets/{wallet_id}/withdrawal", commands, MOVE_MONEY), wallets::withdrawal)
        .route(post("/v1/wallets/{wallet_id}/cash-in", commands, MOVE_MONEY), wallets::cash_in)
        .route(post("/v1/wallets/{wallet_id}/freeze", commands, CHANGE_STATUS), wallets::freeze)
        .route(post("/v1/wallets/{wallet_id}/unfreeze", commands, CHANGE_STATUS), wallets::unfreeze)
        .route(post("/v1/wallets/{wallet_id}/close", commands, CHANGE_STATUS), wallets::close)
        .route(post("/v1/transfers", commands, TRANSFER), transfers::transfer)
        .route(post("/v1/transfers/{transfer_id}/reversal", commands, REVERSAL), transfers::reverse)
        .route(post("/v1/wallets/{wallet_id}/holds", commands, PLACE_HOLD), holds::place)
        .route(post("/v1/holds/{hold_id}/capture", commands, CAPTURE_HOLD), holds::capture)
        .route(post("/v1/holds/{hold_id}/void", commands, VOID_HOLD), holds::void)
        .route(get("/health/live", &[]), health::live)
        .route(get("/health/ready", &[]), health::ready)
        .route(get("/metrics", &[]), health::metrics)
        .with_docs(ApiDoc::openapi())
}

/// What the handlers document; [`tally_edge::openapi::complete`] adds security and problems from the table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tally command-service",
        description = "Money commands of Tally, an event-sourced wallet ledger. Every POST needs an \
                       `Idempotency-Key`; errors are `application/problem+json` with a stable `code`."
    ),
    paths(
        assets::define,
        wallets::open,
        wallets::topup,
        wallets::bonus,
        wallets::spend,
        wallets::withdrawal,
        wallets::cash_in,
        wallets::freeze,
        wallets::unfreeze,
        wallets::close,
        transfers::transfer,
        transfers::reverse,
        holds::place,
        holds::capture,
        holds::void,
        health::live,
        health::ready,
        health::metrics,
    ),
    tags(
        (name = "assets", description = "Assets and their system wallets"),
        (name = "wallets", description = "Opening wallets, moving money in and out of them, and their status"),
        (name = "transfers", description = "Wallet-to-wallet transfers and reversals"),
        (name = "holds", description = "Holds: reserve part of a wallet, then capture, void or let expire"),
        (name = "operations", description = "Health and metrics, open to all"),
    )
)]
pub struct ApiDoc;

/// Headers of every command.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct CommandHeaders {
    /// 1 to 255 visible ASCII characters, unique per request of one token: a retry with the same key and the
    /// same request replays the first answer (`Idempotent-Replayed: true`).
    #[param(rename = "Idempotency-Key", pattern = r"^[!-~]{1,255}$", min_length = 1, max_length = 255)]
    idempotency_key: String,
    /// Echoed in the answer and stored in the events' metadata; made (UUID v7) when absent.
    #[param(rename = "X-Request-Id", nullable = false)]
    request_id: Option<String>,
}

/// Headers of a command on one wallet.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct WalletCommandHeaders {
    /// 1 to 255 visible ASCII characters, unique per request of one token: a retry with the same key and the
    /// same request replays the first answer (`Idempotent-Replayed: true`).
    #[param(rename = "Idempotency-Key", pattern = r"^[!-~]{1,255}$", min_length = 1, max_length = 255)]
    idempotency_key: String,
    /// `"<version>"`: only if the wallet is at this version, otherwise `412 version_mismatch`.
    #[param(rename = "If-Match", example = "\"3\"", pattern = r#"^("[0-9]{1,18}"|[0-9]{1,18})$"#, nullable = false)]
    if_match: Option<String>,
    /// Echoed in the answer and stored in the events' metadata; made (UUID v7) when absent.
    #[param(rename = "X-Request-Id", nullable = false)]
    request_id: Option<String>,
}

/// The service's router: the route table, its docs, the fallbacks, all inside the edge.
pub fn router(state: AppState, authenticator: Authenticator, edge: &EdgeConfig) -> Router {
    let (router, guard) = routes(authenticator).into_parts();
    let router = router.fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state);
    tally_edge::wrap(router, guard, edge)
}

async fn not_found() -> ApiError {
    ApiError::new(ProblemCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ProblemCode::MethodNotAllowed, "this route does not take that method")
}

/// The command of `principal` (whose name scopes the idempotency key, and whose owner, if any, bounds the
/// wallets it may touch), ready for the executor.
fn command_request<T>(principal: Principal, input: CommandInput<T>, command: Command) -> CommandRequest {
    CommandRequest {
        principal: principal.name,
        owner: principal.owner_id,
        idempotency_key: input.idempotency_key,
        fingerprint: input.fingerprint,
        command,
        expected_version: input.expected_version,
        request_id: input.request_id,
    }
}

/// Runs a command and answers with its (possibly replayed) outcome. Handlers build the request in plain
/// functions before this, their only await: a request waiting for its batch then holds this future and
/// little else, where nested async functions would each hold their own copy of the input (10,000 spends
/// waiting at once on one hot wallet hold 10,000 of them).
async fn run(state: &AppState, request: CommandRequest) -> Result<Response, ApiError> {
    let reply = state.executor.execute(request).await?;
    Ok(respond(reply))
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &reply.answer.body);
    if reply.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Shared by handlers: optional text fields within their limits.
fn optional_text(field: &str, text: &Option<String>, length_max: usize) -> Result<Option<String>, ApiError> {
    match text {
        Some(text) => tally_shared::api::check_text(field, text, length_max)
            .map(|()| Some(text.clone()))
            .map_err(|error| ApiError::from(&error)),
        None => Ok(None),
    }
}

fn metadata(value: &Option<serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    tally_shared::api::check_metadata(value).map_err(|error| ApiError::from(&error))
}

/// An amount must be above zero whatever the wallet: refused here, before anything is stored, so the
/// client can fix the body and retry under the same key. Scale is checked by the domain, which knows the asset.
fn positive(field: &str, amount: WireDecimal) -> Result<rust_decimal::Decimal, ApiError> {
    if amount.0 <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::from(&DomainError::InvalidAmount {
            field: field.to_owned(),
            reason: AmountError::NotPositive,
        }));
    }
    Ok(amount.0)
}

/// A fee or a limit may be zero, never negative.
fn non_negative(field: &str, amount: WireDecimal) -> Result<rust_decimal::Decimal, ApiError> {
    if amount.0 < rust_decimal::Decimal::ZERO {
        return Err(ApiError::from(&DomainError::InvalidAmount {
            field: field.to_owned(),
            reason: AmountError::Negative,
        }));
    }
    Ok(amount.0)
}

fn path_id(field: &str, text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::validation(field, "must be a UUID"))
}
