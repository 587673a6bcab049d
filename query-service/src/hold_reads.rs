//! SQL over `rm_holds` (SPEC §8), turned into [`HoldView`]s with their wallet as it stands now.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use tally_shared::api::{HoldView, HoldWalletView};
use tally_shared::hold::HoldId;
use tally_shared::transfer::TransferId;
use tally_shared::wallet::WalletId;
use uuid::Uuid;

use crate::read_models::scale;

/// Holds answered for one reference at most, oldest first.
pub const HOLDS_BY_REFERENCE_MAX: i64 = 1_000;

const HOLD_SELECT: &str = "
    SELECT h.hold_id, h.wallet_id, h.asset, h.amount, h.captured, h.released, h.status, h.expires_at, h.reference,
           h.metadata, h.captures, h.created_at, h.resolved_at, h.placed_position, h.position,
           w.balance, w.held, w.version AS wallet_version, a.scale
    FROM rm_holds h JOIN rm_wallets w ON w.wallet_id = h.wallet_id JOIN rm_assets a ON a.code = h.asset";

#[derive(sqlx::FromRow)]
struct HoldRow {
    hold_id: Uuid,
    wallet_id: Uuid,
    asset: String,
    amount: Decimal,
    captured: Decimal,
    released: Decimal,
    status: String,
    expires_at: DateTime<Utc>,
    reference: Option<String>,
    metadata: Option<serde_json::Value>,
    captures: serde_json::Value,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    placed_position: i64,
    position: i64,
    balance: Decimal,
    held: Decimal,
    wallet_version: i64,
    scale: i32,
}

impl HoldRow {
    fn into_view(self) -> anyhow::Result<HoldView> {
        let scale = scale(self.scale)?;
        let captures: Vec<TransferId> =
            serde_json::from_value(self.captures).with_context(|| format!("captures of hold {}", self.hold_id))?;
        Ok(HoldView {
            hold_id: HoldId(self.hold_id),
            wallet_id: WalletId(self.wallet_id),
            asset: self.asset,
            amount: scale.format(self.amount),
            captured: scale.format(self.captured),
            released: scale.format(self.released),
            remaining: scale.format(self.amount - self.captured - self.released),
            status: self.status,
            expires_at: self.expires_at,
            reference: self.reference,
            metadata: self.metadata.unwrap_or(serde_json::Value::Null),
            captures,
            created_at: self.created_at,
            resolved_at: self.resolved_at,
            wallet: HoldWalletView {
                balance: scale.format(self.balance),
                held: scale.format(self.held),
                available: scale.format(self.balance - self.held),
                version: self.wallet_version,
            },
            position: Some(self.position),
        })
    }
}

pub async fn hold(connection: &mut PgConnection, hold_id: Uuid) -> anyhow::Result<Option<HoldView>> {
    let row: Option<HoldRow> = sqlx::query_as(&format!("{HOLD_SELECT} WHERE h.hold_id = $1"))
        .bind(hold_id)
        .fetch_optional(&mut *connection)
        .await
        .context("read a hold")?;
    row.map(HoldRow::into_view).transpose()
}

/// A page of a wallet's holds, newest first, placed before `before_position`, of one status or any; `None` if
/// the wallet does not exist. Each with the position that placed it, the key of the next page.
pub async fn wallet_holds(
    connection: &mut PgConnection,
    wallet_id: Uuid,
    status: Option<&str>,
    before_position: i64,
    limit: i64,
) -> anyhow::Result<Option<Vec<(HoldView, i64)>>> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rm_wallets WHERE wallet_id = $1)")
        .bind(wallet_id)
        .fetch_one(&mut *connection)
        .await
        .context("look up a wallet")?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<HoldRow> = sqlx::query_as(&format!(
        "{HOLD_SELECT} WHERE h.wallet_id = $1 AND h.placed_position < $2 AND ($3::text IS NULL OR h.status = $3)
         ORDER BY h.placed_position DESC LIMIT $4"
    ))
    .bind(wallet_id)
    .bind(before_position)
    .bind(status)
    .bind(limit)
    .fetch_all(&mut *connection)
    .await
    .context("read a wallet's holds")?;
    let holds = rows
        .into_iter()
        .map(|row| {
            let placed_position = row.placed_position;
            row.into_view().map(|view| (view, placed_position))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(holds))
}

/// The holds that carry `reference`, oldest first.
pub async fn holds_by_reference(connection: &mut PgConnection, reference: &str) -> anyhow::Result<Vec<HoldView>> {
    let rows: Vec<HoldRow> =
        sqlx::query_as(&format!("{HOLD_SELECT} WHERE h.reference = $1 ORDER BY h.placed_position LIMIT $2"))
            .bind(reference)
            .bind(HOLDS_BY_REFERENCE_MAX)
            .fetch_all(&mut *connection)
            .await
            .context("read holds by reference")?;
    rows.into_iter().map(HoldRow::into_view).collect()
}
