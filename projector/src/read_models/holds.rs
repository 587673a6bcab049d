//! `rm_holds`: one row per hold, as its stream's events left it.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use tally_shared::hold::HoldStatus;
use uuid::Uuid;

use super::expect_rows;
use crate::batch::{HoldRow, Writes};

/// An `rm_holds` row as read, numerics as text.
type Row = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<serde_json::Value>,
    serde_json::Value,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    i64,
    i64,
    i64,
);

pub(super) async fn load(
    connection: &mut PgConnection,
    schema: &str,
    hold_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, HoldRow>> {
    if hold_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT hold_id, wallet_id, asset, amount::text, captured::text, released::text, status, expires_at,
             reference, metadata, captures, created_at, resolved_at, version, placed_position, position
         FROM {schema}rm_holds WHERE hold_id = ANY($1)"
    ))
    .bind(hold_ids)
    .fetch_all(connection)
    .await
    .context("load the holds a batch settles")?;
    rows.into_iter().map(|row| Ok((row.0, hold_row(row)?))).collect()
}

fn hold_row(row: Row) -> anyhow::Result<HoldRow> {
    let (hold_id, wallet_id, asset, amount, captured, released, status, expires_at, reference, metadata, captures) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10);
    let number = |text: &str| Decimal::from_str(text).with_context(|| format!("an amount of hold {hold_id}"));
    Ok(HoldRow {
        hold_id,
        wallet_id,
        asset,
        amount: number(&amount)?,
        captured: number(&captured)?,
        released: number(&released)?,
        status: HoldStatus::parse(&status).with_context(|| format!("status {status:?} of hold {hold_id}"))?.as_str(),
        expires_at,
        reference,
        metadata,
        captures: serde_json::from_value(captures).with_context(|| format!("captures of hold {hold_id}"))?,
        created_at: row.11,
        resolved_at: row.12,
        version: row.13,
        placed_position: row.14,
        position: row.15,
    })
}

/// Inserts the holds placed in the batch and replaces those it settled. `h.version < EXCLUDED.version`: a
/// batch applied twice would touch no row and fail the count.
pub(super) async fn write(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    let holds = &writes.holds;
    if holds.is_empty() {
        return Ok(());
    }
    let decimals =
        |field: fn(&HoldRow) -> Decimal| holds.iter().map(|hold| field(hold).to_string()).collect::<Vec<_>>();
    let affected = sqlx::query(&format!(
        "INSERT INTO {schema}rm_holds AS h (hold_id, wallet_id, asset, amount, captured, released, status, expires_at,
             reference, metadata, captures, created_at, resolved_at, version, placed_position, position)
         SELECT hold_id, wallet_id, asset, amount, captured, released, status, expires_at, reference, metadata::jsonb,
             captures::jsonb, created_at, resolved_at, version, placed_position, position
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[]::numeric[], $5::text[]::numeric[],
             $6::text[]::numeric[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
             $12::timestamptz[], $13::timestamptz[], $14::int8[], $15::int8[], $16::int8[])
             AS u(hold_id, wallet_id, asset, amount, captured, released, status, expires_at, reference, metadata,
             captures, created_at, resolved_at, version, placed_position, position)
         ON CONFLICT (hold_id) DO UPDATE
         SET captured = EXCLUDED.captured, released = EXCLUDED.released, status = EXCLUDED.status,
             captures = EXCLUDED.captures, resolved_at = EXCLUDED.resolved_at, version = EXCLUDED.version,
             position = EXCLUDED.position
         WHERE h.version < EXCLUDED.version"
    ))
    .bind(holds.iter().map(|hold| hold.hold_id).collect::<Vec<Uuid>>())
    .bind(holds.iter().map(|hold| hold.wallet_id).collect::<Vec<Uuid>>())
    .bind(holds.iter().map(|hold| hold.asset.as_str()).collect::<Vec<_>>())
    .bind(decimals(|hold| hold.amount))
    .bind(decimals(|hold| hold.captured))
    .bind(decimals(|hold| hold.released))
    .bind(holds.iter().map(|hold| hold.status).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.expires_at).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.reference.as_deref()).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.metadata.as_ref().map(|value| value.to_string())).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| serde_json::json!(hold.captures).to_string()).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.created_at).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.resolved_at).collect::<Vec<_>>())
    .bind(holds.iter().map(|hold| hold.version).collect::<Vec<i64>>())
    .bind(holds.iter().map(|hold| hold.placed_position).collect::<Vec<i64>>())
    .bind(holds.iter().map(|hold| hold.position).collect::<Vec<i64>>())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    expect_rows("write holds", holds.len(), affected)
}
