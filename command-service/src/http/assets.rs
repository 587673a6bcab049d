//! `POST /v1/assets`: define an asset and open its system wallets.

use axum::extract::State;
use axum::response::Response;
use tally_edge::Principal;
use tally_shared::api::{AssetDefinedView, DefineAssetRequest};
use tally_shared::asset::{AssetCode, DefineAsset, FeePolicy, SystemWallets};
use tally_shared::ledger::Command;
use tally_shared::money::Scale;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use super::error::ApiError;
use super::input::CommandInput;
#[allow(unused_imports)] // named by the OpenAPI attributes only
use super::CommandHeaders;
use super::{command_request, run, AppState};

/// Defines an asset (code, scale, optional cash-in fee) and opens its treasury, revenue and fees wallets.
#[utoipa::path(post, path = "/v1/assets", tag = "assets", params(CommandHeaders), request_body = DefineAssetRequest,
    responses((status = 201, description = "The asset, its system wallets and the position of its events", body = AssetDefinedView)))]
pub async fn define(
    State(state): State<AppState>,
    principal: Principal,
    input: CommandInput<DefineAssetRequest>,
) -> Result<Response, ApiError> {
    let request = &input.body;
    let code = AssetCode::parse(&request.code)
        .map_err(|_| ApiError::validation("code", "must match ^[A-Z][A-Z0-9_]{0,15}$"))?;
    let scale = Scale::new(request.scale).map_err(|error| ApiError::validation("scale", error.to_string()))?;
    let cash_in_fee = request.cash_in_fee.as_ref().map(|fee| FeePolicy {
        percent: fee.percent.0,
        fixed: fee.fixed.0,
        min: fee.min.map(|min| min.0),
        max: fee.max.map(|max| max.0),
    });
    let system_wallets = SystemWallets {
        treasury: WalletId(Uuid::now_v7()),
        revenue: WalletId(Uuid::now_v7()),
        fees: WalletId(Uuid::now_v7()),
    };
    let command = Command::DefineAsset(DefineAsset { code, scale, cash_in_fee, system_wallets });
    run(&state, command_request(principal, input, command)).await
}
