//! `POST /v1/wallets` and the wallet-scoped commands: topup, bonus, spend, withdrawal, cash-in,
//! freeze, unfreeze, close.

use axum::extract::{FromRequest, Path, State};
use axum::response::Response;
use tally_shared::api::{self, MoveRequest, OpenWalletRequest, ProblemCode, StatusRequest};
use tally_shared::asset::AssetCode;
use tally_shared::ledger::{Command, StatusCommand};
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::{WalletId, OWNER_ID_LENGTH_MAX};
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
use super::{metadata, non_negative, optional_text, path_id, positive, run, AppState};

pub async fn open(State(state): State<AppState>, input: CommandInput<OpenWalletRequest>) -> Result<Response, ApiError> {
    let request = &input.body;
    api::check_text("owner_id", &request.owner_id, OWNER_ID_LENGTH_MAX).map_err(|error| ApiError::from(&error))?;
    let asset = AssetCode::parse(&request.asset)
        .map_err(|_| ApiError::validation("asset", "must match ^[A-Z][A-Z0-9_]{0,15}$"))?;
    let command = Command::OpenWallet {
        wallet_id: WalletId(Uuid::now_v7()),
        owner_id: request.owner_id.clone(),
        asset,
        overdraft_limit: request.overdraft_limit.map(|limit| non_negative("overdraft_limit", limit)).transpose()?,
        metadata: metadata(&request.metadata)?,
    };
    run(&state, input, command).await
}

/// `POST /v1/wallets/{id}/{action}`: one route, so that an unknown action is a clean 404 problem.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let kind = match action.as_str() {
        "topup" => Some(TransferKind::Topup),
        "bonus" => Some(TransferKind::Bonus),
        "spend" => Some(TransferKind::Spend),
        "withdrawal" => Some(TransferKind::Withdrawal),
        "cash-in" => Some(TransferKind::CashIn),
        _ => None,
    };
    let change = match action.as_str() {
        "freeze" => Some(StatusCommand::Freeze),
        "unfreeze" => Some(StatusCommand::Unfreeze),
        "close" => Some(StatusCommand::Close),
        _ => None,
    };
    if kind.is_none() && change.is_none() {
        return Err(ApiError::new(ProblemCode::NotFound, format!("wallets have no action {action:?}")));
    }
    let wallet_id = WalletId(path_id("wallet_id", &id)?);
    if let Some(kind) = kind {
        let input = <CommandInput<MoveRequest> as FromRequest<()>>::from_request(request, &()).await?;
        let body = &input.body;
        let command = Command::Move {
            transfer_id: TransferId(Uuid::now_v7()),
            kind,
            wallet_id,
            amount: positive("amount", body.amount)?,
            reference: optional_text("reference", &body.reference, api::REFERENCE_LENGTH_MAX)?,
            metadata: metadata(&body.metadata)?,
        };
        return run(&state, input, command).await;
    }
    let input = <CommandInput<StatusRequest> as FromRequest<()>>::from_request(request, &()).await?;
    let reason = optional_text("reason", &input.body.reason, api::REASON_LENGTH_MAX)?;
    let change = change.expect("checked above");
    run(&state, input, Command::ChangeStatus { wallet_id, change, reason }).await
}
