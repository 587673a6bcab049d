//! `POST /v1/transfers` (wallet to wallet) and `POST /v1/transfers/{id}/reversal`.

use axum::extract::{Path, State};
use axum::response::Response;
use tally_shared::api::{self, ReversalRequest, TransferRequest};
use tally_shared::ledger::Command;
use tally_shared::transfer::TransferId;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
use super::{metadata, non_negative, optional_text, path_id, positive, run, AppState};

pub async fn transfer(
    State(state): State<AppState>,
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
    run(&state, input, command).await
}

pub async fn reverse(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput<ReversalRequest>,
) -> Result<Response, ApiError> {
    let transfer_id = TransferId(path_id("transfer_id", &id)?);
    let command = Command::Reverse {
        reversal_id: TransferId(Uuid::now_v7()),
        transfer_id,
        amount: input.body.amount.map(|amount| positive("amount", amount)).transpose()?,
        reason: optional_text("reason", &input.body.reason, api::REASON_LENGTH_MAX)?,
    };
    run(&state, input, command).await
}
