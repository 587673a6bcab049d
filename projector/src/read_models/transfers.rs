//! `rm_transfers` (legs, balances after, reference, idempotency key, amount reversed) and `rm_transfer_reversals`.

use std::collections::HashMap;

use anyhow::Context;
use sqlx::PgConnection;
use uuid::Uuid;

use super::expect_rows;
use crate::batch::{BalanceEntry, PriorTransfer, Writes};

pub(super) async fn load(
    connection: &mut PgConnection,
    schema: &str,
    transfer_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, PriorTransfer>> {
    if transfer_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, Option<String>, serde_json::Value)> = sqlx::query_as(&format!(
        "SELECT transfer_id, reference, balances FROM {schema}rm_transfers WHERE transfer_id = ANY($1)"
    ))
    .bind(transfer_ids)
    .fetch_all(connection)
    .await
    .context("load the transfers a batch posts legs of")?;
    rows.into_iter()
        .map(|(transfer_id, reference, balances)| {
            let balances: Vec<BalanceEntry> =
                serde_json::from_value(balances).with_context(|| format!("rm_transfers.balances of {transfer_id}"))?;
            Ok((transfer_id, PriorTransfer { reference, balances }))
        })
        .collect()
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("read-model rows serialize")
}

pub(super) async fn write(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    if !writes.new_transfers.is_empty() {
        let transfers = &writes.new_transfers;
        sqlx::query(&format!(
            "INSERT INTO {schema}rm_transfers (transfer_id, kind, asset, amount, fee, legs, balances, reference,
                 metadata, reverses, reason, idempotency_key, reversed_amount, position, recorded_at, hold_id)
             SELECT transfer_id, kind, asset, amount, fee, legs::jsonb, balances::jsonb, reference, metadata::jsonb,
                 reverses, reason, idempotency_key, reversed_amount, position, recorded_at, hold_id
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]::numeric[], $5::text[]::numeric[], $6::text[], $7::text[],
                 $8::text[], $9::text[], $10::uuid[], $11::text[], $12::text[], $13::text[]::numeric[], $14::int8[],
                 $15::timestamptz[], $16::uuid[])
                 AS u(transfer_id, kind, asset, amount, fee, legs, balances, reference, metadata, reverses, reason,
                 idempotency_key, reversed_amount, position, recorded_at, hold_id)"
        ))
        .bind(transfers.iter().map(|transfer| transfer.transfer_id).collect::<Vec<Uuid>>())
        .bind(transfers.iter().map(|transfer| transfer.kind).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.asset.as_str()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.amount.to_string()).collect::<Vec<String>>())
        .bind(transfers.iter().map(|transfer| transfer.fee.to_string()).collect::<Vec<String>>())
        .bind(transfers.iter().map(|transfer| json_text(&transfer.legs)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| json_text(&transfer.balances)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.reference.as_deref()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.metadata.as_ref().map(json_text)).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.reverses).collect::<Vec<Option<Uuid>>>())
        .bind(transfers.iter().map(|transfer| transfer.reason.as_deref()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.idempotency_key.as_deref()).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.reversed_amount.to_string()).collect::<Vec<String>>())
        .bind(transfers.iter().map(|transfer| transfer.position).collect::<Vec<i64>>())
        .bind(transfers.iter().map(|transfer| transfer.recorded_at).collect::<Vec<_>>())
        .bind(transfers.iter().map(|transfer| transfer.hold_id).collect::<Vec<Option<Uuid>>>())
        .execute(&mut *connection)
        .await?;
    }
    if !writes.transfer_updates.is_empty() {
        let updates = &writes.transfer_updates;
        let affected = sqlx::query(&format!(
            "UPDATE {schema}rm_transfers AS t SET balances = u.balances::jsonb, position = u.position
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) AS u(transfer_id, balances, position)
             WHERE t.transfer_id = u.transfer_id AND t.position < u.position"
        ))
        .bind(updates.iter().map(|update| update.transfer_id).collect::<Vec<Uuid>>())
        .bind(updates.iter().map(|update| json_text(&update.balances)).collect::<Vec<_>>())
        .bind(updates.iter().map(|update| update.position).collect::<Vec<i64>>())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        expect_rows("update transfer balances", updates.len(), affected)?;
    }
    if !writes.reversed_deltas.is_empty() {
        let deltas = &writes.reversed_deltas;
        let affected = sqlx::query(&format!(
            "UPDATE {schema}rm_transfers AS t SET reversed_amount = t.reversed_amount + u.delta
             FROM UNNEST($1::uuid[], $2::text[]::numeric[]) AS u(transfer_id, delta)
             WHERE t.transfer_id = u.transfer_id"
        ))
        .bind(deltas.iter().map(|(transfer_id, _)| *transfer_id).collect::<Vec<Uuid>>())
        .bind(deltas.iter().map(|(_, delta)| delta.to_string()).collect::<Vec<String>>())
        .execute(&mut *connection)
        .await?
        .rows_affected();
        expect_rows("update amounts reversed", deltas.len(), affected)?;
    }
    if !writes.reversals.is_empty() {
        let reversals = &writes.reversals;
        sqlx::query(&format!(
            "INSERT INTO {schema}rm_transfer_reversals (transfer_id, reversal_id, amount, fee, position, recorded_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]::numeric[], $4::text[]::numeric[], $5::int8[],
                 $6::timestamptz[])"
        ))
        .bind(reversals.iter().map(|reversal| reversal.transfer_id).collect::<Vec<Uuid>>())
        .bind(reversals.iter().map(|reversal| reversal.reversal_id).collect::<Vec<Uuid>>())
        .bind(reversals.iter().map(|reversal| reversal.amount.to_string()).collect::<Vec<String>>())
        .bind(reversals.iter().map(|reversal| reversal.fee.to_string()).collect::<Vec<String>>())
        .bind(reversals.iter().map(|reversal| reversal.position).collect::<Vec<i64>>())
        .bind(reversals.iter().map(|reversal| reversal.recorded_at).collect::<Vec<_>>())
        .execute(connection)
        .await?;
    }
    Ok(())
}
