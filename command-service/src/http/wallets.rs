//! `POST /v1/wallets` and the wallet-scoped commands: topup, bonus, spend, withdrawal, cash-in,
//! freeze, unfreeze, close.

use axum::extract::{Path, State};
use axum::response::Response;
use tally_edge::Principal;
use tally_shared::api::{self, MoveRequest, OpenWalletRequest, StatusRequest, TransferView, WalletView};
use tally_shared::asset::AssetCode;
use tally_shared::ledger::{Command, StatusCommand};
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::{WalletId, OWNER_ID_LENGTH_MAX};
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
use super::{command_request, metadata, non_negative, optional_text, path_id, positive, run, AppState, CommandRequest};
#[allow(unused_imports)] // named by the OpenAPI attributes only
use super::{CommandHeaders, WalletCommandHeaders};

/// Opens a user wallet of `owner_id` for `asset`; one per owner and asset.
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", params(CommandHeaders), request_body = OpenWalletRequest,
    responses((status = 201, description = "The wallet, with the position of its event", body = WalletView,
        links(("Topup" = (operation_id = "topup", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Bonus" = (operation_id = "bonus", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Spend" = (operation_id = "spend", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Withdrawal" = (operation_id = "withdrawal", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Cash-in" = (operation_id = "cash_in", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Freeze" = (operation_id = "freeze", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Unfreeze" = (operation_id = "unfreeze", parameters(("wallet_id" = "$response.body#/wallet_id")))),
            ("Close" = (operation_id = "close", parameters(("wallet_id" = "$response.body#/wallet_id"))))))))]
pub async fn open(
    State(state): State<AppState>,
    principal: Principal,
    input: CommandInput<OpenWalletRequest>,
) -> Result<Response, ApiError> {
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
    run(&state, command_request(principal, input, command)).await
}

/// One documented, guarded route per action (topup and bonus create money and need the `issue` scope).
macro_rules! money_route {
    ($name:ident, $kind:expr, $path:literal, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "wallets",
            params(("wallet_id" = Uuid, Path, description = "The user wallet"), WalletCommandHeaders),
            request_body = MoveRequest,
            responses((status = 201, description = "The transfer, with balances after it and its position", body = TransferView,
                links(("Reverse" = (operation_id = "reverse", parameters(("transfer_id" = "$response.body#/transfer_id"))))))))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            Path(wallet_id): Path<String>,
            input: CommandInput<MoveRequest>,
        ) -> Result<Response, ApiError> {
            run(&state, move_money(principal, &wallet_id, $kind, input)?).await
        }
    };
}

money_route!(
    topup,
    TransferKind::Topup,
    "/v1/wallets/{wallet_id}/topup",
    "Treasury → wallet: money issued to the wallet."
);
money_route!(bonus, TransferKind::Bonus, "/v1/wallets/{wallet_id}/bonus", "Treasury → wallet, recorded as a bonus.");
money_route!(spend, TransferKind::Spend, "/v1/wallets/{wallet_id}/spend", "Wallet → revenue.");
money_route!(
    withdrawal,
    TransferKind::Withdrawal,
    "/v1/wallets/{wallet_id}/withdrawal",
    "Wallet → treasury: money leaving the ledger."
);
money_route!(
    cash_in,
    TransferKind::CashIn,
    "/v1/wallets/{wallet_id}/cash-in",
    "Treasury → wallet, then the asset's cash-in fee wallet → fees."
);

fn move_money(
    principal: Principal,
    wallet_id: &str,
    kind: TransferKind,
    input: CommandInput<MoveRequest>,
) -> Result<CommandRequest, ApiError> {
    let wallet_id = WalletId(path_id("wallet_id", wallet_id)?);
    let body = &input.body;
    let command = Command::Move {
        transfer_id: TransferId(Uuid::now_v7()),
        kind,
        wallet_id,
        amount: positive("amount", body.amount)?,
        reference: optional_text("reference", &body.reference, api::REFERENCE_LENGTH_MAX)?,
        metadata: metadata(&body.metadata)?,
    };
    Ok(command_request(principal, input, command))
}

macro_rules! status_route {
    ($name:ident, $change:expr, $path:literal, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "wallets",
                            params(("wallet_id" = Uuid, Path, description = "The user wallet"), WalletCommandHeaders),
                            request_body(content = Option<StatusRequest>, description = "May be empty"),
                            responses((status = 200, description = "The wallet in its new status", body = WalletView)))]
        pub async fn $name(
            State(state): State<AppState>,
            principal: Principal,
            Path(wallet_id): Path<String>,
            input: CommandInput<StatusRequest>,
        ) -> Result<Response, ApiError> {
            run(&state, change_status(principal, &wallet_id, $change, input)?).await
        }
    };
}

status_route!(
    freeze,
    StatusCommand::Freeze,
    "/v1/wallets/{wallet_id}/freeze",
    "No debits and no credits until unfrozen."
);
status_route!(unfreeze, StatusCommand::Unfreeze, "/v1/wallets/{wallet_id}/unfreeze", "Back to active.");
status_route!(
    close,
    StatusCommand::Close,
    "/v1/wallets/{wallet_id}/close",
    "Closed for good; only with a zero balance."
);

fn change_status(
    principal: Principal,
    wallet_id: &str,
    change: StatusCommand,
    input: CommandInput<StatusRequest>,
) -> Result<CommandRequest, ApiError> {
    let wallet_id = WalletId(path_id("wallet_id", wallet_id)?);
    let reason = optional_text("reason", &input.body.reason, api::REASON_LENGTH_MAX)?;
    Ok(command_request(principal, input, Command::ChangeStatus { wallet_id, change, reason }))
}
