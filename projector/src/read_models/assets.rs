//! `rm_assets` (definition and totals) and `rm_asset_volumes` (principal and count per kind).

use sqlx::PgConnection;
use uuid::Uuid;

use super::expect_rows;
use crate::batch::Writes;

pub(super) async fn write(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    if !writes.new_assets.is_empty() {
        let assets = &writes.new_assets;
        let cash_in_fees: Vec<Option<String>> =
            assets.iter().map(|asset| asset.cash_in_fee.as_ref().map(|fee| fee.to_string())).collect();
        sqlx::query(&format!(
            "INSERT INTO {schema}rm_assets (code, scale, cash_in_fee, treasury_wallet_id, revenue_wallet_id,
                 fees_wallet_id, supply, user_balance_total, wallet_count, defined_at, position, held_total,
                 active_hold_count)
             SELECT code, scale, cash_in_fee::jsonb, treasury, revenue, fees, supply, user_total, wallets, defined_at,
                 position, held_total, active_holds
             FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[]::numeric[],
                 $8::text[]::numeric[], $9::int8[], $10::timestamptz[], $11::int8[], $12::text[]::numeric[], $13::int8[])
                 AS u(code, scale, cash_in_fee, treasury, revenue, fees, supply, user_total, wallets, defined_at,
                 position, held_total, active_holds)"
        ))
        .bind(assets.iter().map(|asset| asset.code.as_str()).collect::<Vec<_>>())
        .bind(assets.iter().map(|asset| asset.scale).collect::<Vec<_>>())
        .bind(cash_in_fees)
        .bind(assets.iter().map(|asset| asset.treasury_wallet_id).collect::<Vec<Uuid>>())
        .bind(assets.iter().map(|asset| asset.revenue_wallet_id).collect::<Vec<Uuid>>())
        .bind(assets.iter().map(|asset| asset.fees_wallet_id).collect::<Vec<Uuid>>())
        .bind(assets.iter().map(|asset| asset.supply.to_string()).collect::<Vec<String>>())
        .bind(assets.iter().map(|asset| asset.user_balance_total.to_string()).collect::<Vec<String>>())
        .bind(assets.iter().map(|asset| asset.wallet_count).collect::<Vec<i64>>())
        .bind(assets.iter().map(|asset| asset.defined_at).collect::<Vec<_>>())
        .bind(assets.iter().map(|asset| asset.position).collect::<Vec<i64>>())
        .bind(assets.iter().map(|asset| asset.held_total.to_string()).collect::<Vec<String>>())
        .bind(assets.iter().map(|asset| asset.active_hold_count).collect::<Vec<i64>>())
        .execute(&mut *connection)
        .await?;
    }
    if !writes.asset_updates.is_empty() {
        let updates = &writes.asset_updates;
        let affected = sqlx::query(&format!(
            "UPDATE {schema}rm_assets AS a
             SET supply = COALESCE(u.supply, a.supply),
                 user_balance_total = a.user_balance_total + u.user_delta,
                 wallet_count = a.wallet_count + u.count_delta,
                 position = GREATEST(a.position, u.position),
                 held_total = a.held_total + u.held_delta,
                 active_hold_count = a.active_hold_count + u.hold_count_delta
             FROM UNNEST($1::text[], $2::text[]::numeric[], $3::text[]::numeric[], $4::int8[], $5::int8[],
                 $6::text[]::numeric[], $7::int8[])
                 AS u(code, supply, user_delta, count_delta, position, held_delta, hold_count_delta)
             WHERE a.code = u.code"
        ))
        .bind(updates.iter().map(|update| update.code.as_str()).collect::<Vec<_>>())
        .bind(
            updates.iter().map(|update| update.supply.map(|value| value.to_string())).collect::<Vec<Option<String>>>(),
        )
        .bind(updates.iter().map(|update| update.user_balance_delta.to_string()).collect::<Vec<String>>())
        .bind(updates.iter().map(|update| update.wallet_count_delta).collect::<Vec<i64>>())
        .bind(updates.iter().map(|update| update.position).collect::<Vec<i64>>())
        .bind(updates.iter().map(|update| update.held_delta.to_string()).collect::<Vec<String>>())
        .bind(updates.iter().map(|update| update.active_hold_delta).collect::<Vec<i64>>())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        expect_rows("update asset totals", updates.len(), affected)?;
    }
    if !writes.volumes.is_empty() {
        let volumes = &writes.volumes;
        sqlx::query(&format!(
            "INSERT INTO {schema}rm_asset_volumes AS v (asset, kind, volume, transfer_count)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]::numeric[], $4::int8[])
             ON CONFLICT (asset, kind) DO UPDATE
             SET volume = v.volume + EXCLUDED.volume, transfer_count = v.transfer_count + EXCLUDED.transfer_count"
        ))
        .bind(volumes.iter().map(|volume| volume.asset.as_str()).collect::<Vec<_>>())
        .bind(volumes.iter().map(|volume| volume.kind).collect::<Vec<_>>())
        .bind(volumes.iter().map(|volume| volume.volume.to_string()).collect::<Vec<String>>())
        .bind(volumes.iter().map(|volume| volume.transfer_count).collect::<Vec<i64>>())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}
