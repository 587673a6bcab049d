//! Bulk writes of the read models: each batch's [`Writes`] in a handful of `UNNEST` statements.
//!
//! Every statement names its tables under a schema prefix: empty for the live read models, the staging
//! schema's name and a dot while `rebuild` builds fresh tables.
//!
//! Numerics travel as text (`$n::text[]::numeric[]`) in both directions: sqlx's binary `numeric` codec drops
//! the scale of a zero (`0.00` becomes `0`), and amounts must keep their asset's scale byte for byte.

mod assets;
mod holds;
mod transfers;
mod wallet_history;
mod wallets;

use anyhow::Context;
use sqlx::PgConnection;

use crate::batch::{Needs, Prior, Writes};

/// Loads what a batch needs to know from before it.
pub async fn load_prior(connection: &mut PgConnection, schema: &str, needs: &Needs) -> anyhow::Result<Prior> {
    Ok(Prior {
        wallets: wallets::load(connection, schema, &needs.wallet_ids).await?,
        transfers: transfers::load(connection, schema, &needs.transfer_ids).await?,
        holds: holds::load(connection, schema, &needs.hold_ids).await?,
    })
}

/// Writes one batch. The caller owns the transaction (and the checkpoint written in it).
pub async fn write(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    write_history(connection, schema, writes).await?;
    write_all_but_history(connection, schema, writes).await
}

/// Writes `rm_wallet_history`, the largest model: `rebuild` writes it on a connection of its own, in parallel.
pub async fn write_history(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    wallet_history::write(connection, schema, writes).await.context("write rm_wallet_history")
}

/// [`write_history`] through `COPY`, for bulk loads into tables nobody reads yet.
pub async fn copy_history(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    wallet_history::copy(connection, schema, writes).await.context("copy rm_wallet_history")
}

/// Writes every read model but `rm_wallet_history`.
pub async fn write_all_but_history(connection: &mut PgConnection, schema: &str, writes: &Writes) -> anyhow::Result<()> {
    assets::write(connection, schema, writes).await.context("write rm_assets and rm_asset_volumes")?;
    wallets::write(connection, schema, writes).await.context("write rm_wallets")?;
    transfers::write(connection, schema, writes).await.context("write rm_transfers and rm_transfer_reversals")?;
    holds::write(connection, schema, writes).await.context("write rm_holds")?;
    Ok(())
}

/// Fails unless a bulk statement touched exactly the rows it was given: a missing row means the read model
/// and the log disagree, which must stop the projector rather than be papered over.
fn expect_rows(what: &str, expected: usize, affected: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        affected == expected as u64,
        "{what}: {affected} rows affected, {expected} expected (read model out of step with the log)"
    );
    Ok(())
}
