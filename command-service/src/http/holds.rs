//! Holds (SPEC §8): `POST /v1/wallets/{wallet_id}/holds`, `POST /v1/holds/{hold_id}/capture` and
//! `POST /v1/holds/{hold_id}/void`. Each command carries the time it is decided at; the planner stamps it
//! with its batch's time, which its events record.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use tally_edge::Principal;
use tally_shared::api::{self, CaptureHoldRequest, HoldView, PlaceHoldRequest, StatusRequest, TransferView};
use tally_shared::error::{DomainError, Rule};
use tally_shared::hold::{Expiry, HoldId, HOLD_EXPIRES_IN_S_DEFAULT};
use tally_shared::ledger::Command;
use tally_shared::transfer::TransferId;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
use super::{command_request, metadata, optional_text, path_id, positive, respond, AppState, CommandRequest};
#[allow(unused_imports)] // named by the OpenAPI attributes only
use super::{CommandHeaders, WalletCommandHeaders};

/// Reserves `amount` of a user wallet until it is captured, voided or expires (default: in 3,600 s).
#[utoipa::path(post, path = "/v1/wallets/{wallet_id}/holds", tag = "holds",
    params(("wallet_id" = Uuid, Path, description = "The user wallet"), WalletCommandHeaders),
    request_body = PlaceHoldRequest,
    responses((status = 201, description = "The hold, with its wallet after it and its position", body = HoldView,
        links(("Capture" = (operation_id = "capture", parameters(("hold_id" = "$response.body#/hold_id")))),
            ("Void" = (operation_id = "void", parameters(("hold_id" = "$response.body#/hold_id"))))))))]
pub async fn place(
    State(state): State<AppState>,
    principal: Principal,
    Path(wallet_id): Path<String>,
    input: CommandInput<PlaceHoldRequest>,
) -> Result<Response, ApiError> {
    let wallet_id = WalletId(path_id("wallet_id", &wallet_id)?);
    let request = &input.body;
    let expiry = match (request.expires_in_s, request.expires_at) {
        (Some(_), Some(_)) => return Err(ApiError::from(&DomainError::invalid("expires_at", Rule::ExpiryTwice))),
        (Some(seconds), None) => Expiry::In(i64::from(seconds)),
        (None, Some(expires_at)) => Expiry::At(expires_at),
        (None, None) => Expiry::In(HOLD_EXPIRES_IN_S_DEFAULT),
    };
    // Out of the window now is out of it when decided (a moment later): refused here, before anything is read,
    // like any malformed request. The Decider checks again at the command's own time.
    expiry.resolve(Utc::now()).map_err(|error| ApiError::from(&error))?;
    let command = Command::PlaceHold {
        hold_id: HoldId(Uuid::now_v7()),
        wallet_id,
        amount: positive("amount", request.amount)?,
        expiry,
        reference: optional_text("reference", &request.reference, api::REFERENCE_LENGTH_MAX)?,
        metadata: metadata(&request.metadata)?,
        at: Utc::now(),
    };
    run_counted(&state, command_request(principal, input, command), "placed").await
}

/// Moves `amount` (default: what remains) of a hold to the asset's revenue wallet (a `spend`) or to a user
/// wallet of the same asset (a `transfer`); unless `final` is `false`, releases what remains after it.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/capture", tag = "holds",
    params(("hold_id" = Uuid, Path, description = "The hold"), CommandHeaders),
    request_body(content = Option<CaptureHoldRequest>, description = "May be empty: captures what remains"),
    responses((status = 201, description = "The transfer, with balances after it, the hold after it and its position",
        body = TransferView,
        links(("Reverse" = (operation_id = "reverse", parameters(("transfer_id" = "$response.body#/transfer_id"))))))))]
pub async fn capture(
    State(state): State<AppState>,
    principal: Principal,
    Path(hold_id): Path<String>,
    input: CommandInput<CaptureHoldRequest>,
) -> Result<Response, ApiError> {
    let hold_id = HoldId(path_id("hold_id", &hold_id)?);
    let request = &input.body;
    let command = Command::CaptureHold {
        hold_id,
        transfer_id: TransferId(Uuid::now_v7()),
        amount: request.amount.map(|amount| positive("amount", amount)).transpose()?,
        to_wallet_id: request.to_wallet_id.map(WalletId),
        is_final: request.is_final.unwrap_or(true),
        reference: optional_text("reference", &request.reference, api::REFERENCE_LENGTH_MAX)?,
        metadata: metadata(&request.metadata)?,
        at: Utc::now(),
    };
    run_counted(&state, command_request(principal, input, command), "captured").await
}

/// Releases what remains of a hold.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/void", tag = "holds",
    params(("hold_id" = Uuid, Path, description = "The hold"), CommandHeaders),
    request_body(content = Option<StatusRequest>, description = "May be empty"),
    responses((status = 201, description = "The hold, with its wallet after it and its position", body = HoldView)))]
pub async fn void(
    State(state): State<AppState>,
    principal: Principal,
    Path(hold_id): Path<String>,
    input: CommandInput<StatusRequest>,
) -> Result<Response, ApiError> {
    let hold_id = HoldId(path_id("hold_id", &hold_id)?);
    let reason = optional_text("reason", &input.body.reason, api::REASON_LENGTH_MAX)?;
    let command = Command::VoidHold { hold_id, reason, at: Utc::now() };
    run_counted(&state, command_request(principal, input, command), "voided").await
}

/// Runs a hold command and counts it in `tally_holds_total{outcome}` if it took effect now (not a replay).
async fn run_counted(state: &AppState, request: CommandRequest, outcome: &'static str) -> Result<Response, ApiError> {
    let reply = state.executor.execute(request).await?;
    if reply.answer.status == 201 && !reply.replayed {
        metrics::counter!("tally_holds_total", "outcome" => outcome).increment(1);
    }
    Ok(respond(reply))
}
