//! `rm_wallets`: one row per wallet with its balance, status, version and last position.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::Context;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::expect_rows;
use crate::batch::{PriorWallet, Writes};

pub(super) async fn load(
    connection: &mut PgConnection,
    schema: &str,
    wallet_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, PriorWallet>> {
    if wallet_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String, String, String, String, String)> = sqlx::query_as(&format!(
        "SELECT wallet_id, asset, kind, status, balance::text, held::text FROM {schema}rm_wallets
         WHERE wallet_id = ANY($1)"
    ))
    .bind(wallet_ids)
    .fetch_all(connection)
    .await
    .context("load the wallets a batch touches")?;
    rows.into_iter()
        .map(|(wallet_id, asset, kind, status, balance, held)| {
            let balance = Decimal::from_str(&balance).with_context(|| format!("balance of wallet {wallet_id}"))?;
            let held = Decimal::from_str(&held).with_context(|| format!("held of wallet {wallet_id}"))?;
            Ok((wallet_id, PriorWallet { asset, kind, status, balance, held }))
        })
        .collect()
}

pub(super) async fn write(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    if !writes.new_wallets.is_empty() {
        let wallets = &writes.new_wallets;
        let metadata: Vec<Option<String>> =
            wallets.iter().map(|wallet| wallet.metadata.as_ref().map(|value| value.to_string())).collect();
        sqlx::query(&format!(
            "INSERT INTO {schema}rm_wallets (wallet_id, owner_id, asset, kind, status, balance, overdraft_limit,
                 version, position, metadata, opened_at, updated_at, held)
             SELECT wallet_id, owner_id, asset, kind, status, balance, overdraft_limit, version, position,
                 metadata::jsonb, opened_at, updated_at, held
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]::numeric[], $7::text[]::numeric[],
                 $8::int8[], $9::int8[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[]::numeric[])
                 AS u(wallet_id, owner_id, asset, kind, status, balance, overdraft_limit, version, position, metadata,
                 opened_at, updated_at, held)"
        ))
        .bind(wallets.iter().map(|wallet| wallet.wallet_id).collect::<Vec<Uuid>>())
        .bind(wallets.iter().map(|wallet| wallet.owner_id.as_str()).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.asset.as_str()).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.kind.as_str()).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.status.as_str()).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.balance.to_string()).collect::<Vec<String>>())
        .bind(wallets.iter().map(|wallet| wallet.overdraft_limit.map(|value| value.to_string())).collect::<Vec<Option<String>>>())
        .bind(wallets.iter().map(|wallet| wallet.version).collect::<Vec<i64>>())
        .bind(wallets.iter().map(|wallet| wallet.position).collect::<Vec<i64>>())
        .bind(metadata)
        .bind(wallets.iter().map(|wallet| wallet.opened_at).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.updated_at).collect::<Vec<_>>())
        .bind(wallets.iter().map(|wallet| wallet.held.to_string()).collect::<Vec<String>>())
        .execute(&mut *connection)
        .await?;
    }
    if !writes.wallet_updates.is_empty() {
        let updates = &writes.wallet_updates;
        // `w.version < u.version`: a batch applied twice would touch no row and fail the count below.
        let affected = sqlx::query(&format!(
            "UPDATE {schema}rm_wallets AS w
             SET status = u.status, balance = u.balance, version = u.version, position = u.position,
                 updated_at = u.updated_at, held = u.held
             FROM UNNEST($1::uuid[], $2::text[], $3::text[]::numeric[], $4::int8[], $5::int8[], $6::timestamptz[],
                 $7::text[]::numeric[])
                 AS u(wallet_id, status, balance, version, position, updated_at, held)
             WHERE w.wallet_id = u.wallet_id AND w.version < u.version"
        ))
        .bind(updates.iter().map(|update| update.wallet_id).collect::<Vec<Uuid>>())
        .bind(updates.iter().map(|update| update.status.as_str()).collect::<Vec<_>>())
        .bind(updates.iter().map(|update| update.balance.to_string()).collect::<Vec<String>>())
        .bind(updates.iter().map(|update| update.version).collect::<Vec<i64>>())
        .bind(updates.iter().map(|update| update.position).collect::<Vec<i64>>())
        .bind(updates.iter().map(|update| update.updated_at).collect::<Vec<_>>())
        .bind(updates.iter().map(|update| update.held.to_string()).collect::<Vec<String>>())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        expect_rows("update wallets", updates.len(), affected)?;
    }
    Ok(())
}
