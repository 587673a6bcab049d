//! The machine's own limit, measured with `pgbench` on the same Postgres in the same run: the minimal SQL
//! of one command (an idempotency row and an event row per transaction), then 50 commands per transaction.
//! Tally's throughput is read as a ratio against these.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use sqlx::PgPool;

/// The scratch schema holding tables shaped like `idempotency_keys` and `events`; dropped afterwards.
const SCHEMA: &str = "bench_pgbench";
/// Commands per transaction in the batched run.
pub const BATCH_COMMANDS: u32 = 50;

#[derive(Debug, Clone)]
pub struct Settings {
    pub binary: PathBuf,
    pub database_url: String,
    pub clients: u32,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct Figures {
    pub minimal_command_tx_per_s: f64,
    pub batched_50_commands_per_s: f64,
    /// What each command left on disk (heap, indexes, TOAST of both tables): the volume Tally's is compared to.
    pub minimal_bytes_per_command: f64,
    pub batched_bytes_per_command: f64,
    /// Write-ahead log per command, one command per transaction (the server's WAL: nothing else writes then).
    pub minimal_wal_bytes_per_command: f64,
    /// CPU milliseconds per 1,000 minimal transactions: Postgres (`postgres`) and pgbench itself (`bench_children`).
    pub minimal_cpu_ms_per_1000_tx: std::collections::BTreeMap<String, f64>,
}

pub async fn run(
    pool: &PgPool,
    settings: &Settings,
    work_dir: &Path,
    processes: &crate::cpu::Processes,
) -> anyhow::Result<Figures> {
    create_scratch_tables(pool).await?;
    let result: anyhow::Result<Figures> = async {
        let minimal = work_dir.join("pgbench-minimal-command.sql");
        std::fs::write(&minimal, script(1)).context("write the pgbench script")?;
        let batched = work_dir.join("pgbench-batched-commands.sql");
        std::fs::write(&batched, script(BATCH_COMMANDS)).context("write the pgbench script")?;
        let wal_before = crate::scenarios::wal_position(pool).await?;
        let tracker = processes.track();
        let minimal_run = pgbench(settings, &minimal).await?;
        let (cpu_percent, cpu_elapsed) = tracker.finish_with_time();
        let minimal_cpu_ms_per_1000_tx = crate::cpu::per_thousand(&cpu_percent, cpu_elapsed, minimal_run.transactions);
        let minimal_wal = crate::scenarios::wal_bytes_since(pool, &wal_before).await?;
        let minimal_bytes = scratch_bytes(pool).await?;
        sqlx::query(&format!("TRUNCATE {SCHEMA}.idempotency_keys, {SCHEMA}.events"))
            .execute(pool)
            .await
            .context("empty the scratch tables")?;
        let empty_bytes = scratch_bytes(pool).await?;
        let batched_run = pgbench(settings, &batched).await?;
        let batched_bytes = scratch_bytes(pool).await? - empty_bytes;
        let batched_commands = batched_run.transactions * f64::from(BATCH_COMMANDS);
        Ok(Figures {
            minimal_command_tx_per_s: minimal_run.tps,
            batched_50_commands_per_s: batched_run.tps * f64::from(BATCH_COMMANDS),
            minimal_bytes_per_command: (minimal_bytes / minimal_run.transactions.max(1.0)).round(),
            batched_bytes_per_command: (batched_bytes / batched_commands.max(1.0)).round(),
            minimal_wal_bytes_per_command: (minimal_wal / minimal_run.transactions.max(1.0)).round(),
            minimal_cpu_ms_per_1000_tx,
        })
    }
    .await;
    let dropped = sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")).execute(pool).await;
    let figures = result?;
    dropped.context("drop the pgbench scratch schema")?;
    Ok(figures)
}

/// Copies of the real tables (columns, defaults, identity, constraints and indexes; not the triggers).
async fn create_scratch_tables(pool: &PgPool) -> anyhow::Result<()> {
    for statement in [
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {SCHEMA}"),
        format!("CREATE TABLE {SCHEMA}.idempotency_keys (LIKE public.idempotency_keys INCLUDING ALL)"),
        format!("CREATE TABLE {SCHEMA}.events (LIKE public.events INCLUDING ALL)"),
    ] {
        sqlx::query(&statement).execute(pool).await.with_context(|| format!("pgbench setup: {statement}"))?;
    }
    Ok(())
}

/// One transaction of `commands` commands, each an idempotency row (with a transfer-sized answer) and a
/// wallet event (with event-sized data and metadata), as command-service would write them.
fn script(commands: u32) -> String {
    let transfer_id = "01932c4e-7b1a-7c3d-9e4f-5a6b7c8d9e0f";
    let wallet = "01932c4e-7b1a-7c3d-9e4f-000000000001";
    let treasury = "01932c4e-7b1a-7c3d-9e4f-000000000002";
    let response = json!({
        "transfer_id": transfer_id, "kind": "topup", "asset": "BENCH", "amount": "10.00", "fee": "0.00",
        "legs": [{"from_wallet_id": treasury, "to_wallet_id": wallet, "amount": "10.00"}],
        "balances": [{"wallet_id": treasury, "balance": "-1234567.00", "version": 123456},
                     {"wallet_id": wallet, "balance": "1010.00", "version": 12}],
        "reference": null, "metadata": null, "position": 1234567,
        // The size of a timestamp, without the colons pgbench would read as variables.
        "recorded_at": "2025-01-01T00.00.00.000000Z"
    });
    let data = json!({
        "transfer_id": transfer_id, "kind": "topup", "amount": "10.00", "balance_after": "1010.00",
        "counterparty_wallet_id": treasury, "leg": 0
    });
    let metadata = json!({
        "idempotency_key": "bench-0123456789ab-123456", "principal": "anonymous",
        "correlation_id": "01932c4e-7b1a-7c3d-9e4f-5a6b7c8d9e10", "causation_id": format!("transfer-{transfer_id}"),
        "request_id": "01932c4e-7b1a-7c3d-9e4f-5a6b7c8d9e10"
    });
    // pgbench reads `:name` as a variable, even inside a literal: a space after each key's colon avoids it.
    let literal = |value: &serde_json::Value| {
        format!("'{}'::jsonb", value.to_string().replace("\":", "\": ").replace('\'', "''"))
    };
    format!(
        "BEGIN;\n\
         INSERT INTO {SCHEMA}.idempotency_keys (principal, idempotency_key, fingerprint, status, response, position, created_at) \
         SELECT 'anonymous', gen_random_uuid()::text, sha256(gen_random_uuid()::text::bytea), 201, {response}, 1234567, now() \
         FROM generate_series(1, {commands});\n\
         INSERT INTO {SCHEMA}.events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash) \
         SELECT 'wallet-' || gen_random_uuid(), 1, gen_random_uuid(), 'WalletCredited', {data}, {metadata}, now(), \
         sha256(gen_random_uuid()::text::bytea) \
         FROM generate_series(1, {commands});\n\
         END;\n",
        response = literal(&response),
        data = literal(&data),
        metadata = literal(&metadata),
    )
}

/// Bytes on disk of the scratch tables, indexes and TOAST included.
async fn scratch_bytes(pool: &PgPool) -> anyhow::Result<f64> {
    let (bytes,): (i64,) = sqlx::query_as(&format!(
        "SELECT (pg_total_relation_size('{SCHEMA}.idempotency_keys') + pg_total_relation_size('{SCHEMA}.events'))::bigint"
    ))
    .fetch_one(pool)
    .await
    .context("measure the scratch tables")?;
    Ok(bytes as f64)
}

struct Run {
    tps: f64,
    transactions: f64,
}

/// Runs one script and returns its transactions per second and count.
async fn pgbench(settings: &Settings, script: &Path) -> anyhow::Result<Run> {
    let threads = settings.clients.min(2);
    let output = tokio::process::Command::new(&settings.binary)
        .arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &settings.clients.to_string()])
        .args(["--jobs", &threads.to_string()])
        .args(["--time", &settings.duration.as_secs().max(1).to_string()])
        .arg("--file")
        .arg(script)
        .arg(&settings.database_url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("run {}", settings.binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}): {}{}", output.status, stdout.trim(), stderr.trim());
    }
    let tps = parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let transactions =
        parse_transactions(&stdout).with_context(|| format!("no transaction count in pgbench's output: {stdout}"))?;
    Ok(Run { tps, transactions })
}

/// `number of transactions actually processed: 12345`.
fn parse_transactions(output: &str) -> Option<f64> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("number of transactions actually processed: "))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// `tps = 1234.567890 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tps = "))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_read_from_pgbench_output() {
        let output = "number of transactions actually processed: 100\n\
                      latency average = 7.1 ms\n\
                      initial connection time = 12.3 ms\n\
                      tps = 4487.123456 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(4487.123456));
        assert_eq!(parse_transactions(output), Some(100.0));
        assert_eq!(parse_tps("nothing here"), None);
    }

    #[test]
    fn the_batched_script_writes_as_many_rows_of_each_kind() {
        let script = script(50);
        assert_eq!(script.matches("generate_series(1, 50)").count(), 2);
        assert!(script.starts_with("BEGIN;") && script.trim_end().ends_with("END;"));
    }

    #[test]
    fn the_scripts_hold_nothing_pgbench_would_take_for_a_variable() {
        let script = script(1);
        let bytes = script.as_bytes();
        for (index, _) in script.match_indices(':') {
            let before = index.checked_sub(1).map(|before| bytes[before]);
            let after = bytes.get(index + 1).copied();
            let starts_name = after.is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
            assert!(
                before == Some(b':') || !starts_name,
                "variable-like text at {index}: {}",
                &script[index..index + 8]
            );
        }
    }
}
