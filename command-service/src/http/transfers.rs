//! `POST /v1/transfers` (wallet to wallet) and `POST /v1/transfers/{transfer_id}/reversal`.

use axum::extract::{Path, State};
use axum::response::Response;
use tally_edge::Principal;
use tally_shared::api::{self, ReversalRequest, TransferRequest, TransferView};
use tally_shared::ledger::Command;
use tally_shared::transfer::TransferId;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
use super::{command_request, metadata, non_negative, optional_text, path_id, positive, run, AppState};
#[allow(unused_imports)] // named by the OpenAPI attributes only
use super::{CommandHeaders, WalletCommandHeaders};

/// Moves `amount` from one user wallet to another of the same asset, with an optional fee to the fees wallet.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", params(WalletCommandHeaders),
    request_body = TransferRequest,
    responses((status = 201, description = "The transfer, with balances after it and its position", body = TransferView,
        links(("Reverse" = (operation_id = "reverse", parameters(("transfer_id" = "$response.body#/transfer_id"))))))))]
pub async fn transfer(
    State(state): State<AppState>,
    principal: Principal,
    input: CommandInput<TransferRequest>,
) -> Result<Response, ApiError> {
    let request = &input.body;
    let command = Command::Transfer {
        transfer_id: TransferId(Uuid::now_v7()),
        from_wallet_id: WalletId(request.from_wallet_id),
        to_wallet_id: WalletId(request.to_wallet_id),
        amount: positive("amount", request.amount)?,
        fee: request.fee.map(|fee| non_negative("fee", fee)).transpose()?,
        reference: optional_text("reference", &request.reference, api::REFERENCE_LENGTH_MAX)?,
        metadata: metadata(&request.metadata)?,
    };
    run(&state, command_request(principal, input, command)).await
}

/// Takes back `amount` (by default what remains) of an earlier transfer, fee included pro rata.
#[utoipa::path(post, path = "/v1/transfers/{transfer_id}/reversal", tag = "transfers",
    params(("transfer_id" = Uuid, Path, description = "The transfer to reverse"), CommandHeaders),
    request_body(content = Option<ReversalRequest>, description = "May be empty: reverses what remains"),
    responses((status = 201, description = "The reversal, with balances after it and its position", body = TransferView)))]
pub async fn reverse(
    State(state): State<AppState>,
    principal: Principal,
    Path(transfer_id): Path<String>,
    input: CommandInput<ReversalRequest>,
) -> Result<Response, ApiError> {
    let transfer_id = TransferId(path_id("transfer_id", &transfer_id)?);
    let command = Command::Reverse {
        reversal_id: TransferId(Uuid::now_v7()),
        transfer_id,
        amount: input.body.amount.map(|amount| positive("amount", amount)).transpose()?,
        reason: optional_text("reason", &input.body.reason, api::REASON_LENGTH_MAX)?,
    };
    run(&state, command_request(principal, input, command)).await
}
