//! `projector verify`: passes on an honest database, and reports planted damage with a non-zero exit.
#![allow(clippy::unwrap_used)]

mod support;

use projector::verify::{verify, Check};
use sqlx::PgPool;
use support::*;

async fn projected_workload(pool: &PgPool) -> Ledger {
    let mut ledger = Ledger::new(pool);
    mixed_workload(&mut ledger, 4, 120, 31).await;
    let projector = RunningProjector::start(pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    caught_up(pool).await;
    projector.stop().await;
    ledger
}

/// The URL of the test's own database, for the `projector` binary.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

async fn verify_exit_code(pool: &PgPool) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .args(["verify", "--database-url", &database_url(pool)])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Appends an event of the test's to `stream_id`, after its last one, with a valid hash chain and under the
/// append lock: as a writer who can forge the chain would, so that only the invariants can catch it.
async fn plant(pool: &PgPool, stream_id: &str, event_type: &str, data: &serde_json::Value) {
    let (version, hash): (i64, Vec<u8>) =
        sqlx::query_as("SELECT version, hash FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1")
            .bind(stream_id)
            .fetch_one(pool)
            .await
            .unwrap();
    let metadata = serde_json::json!({});
    let recorded_at = tally_shared::envelope::truncate_to_micros(chrono::Utc::now());
    let event_id = uuid::Uuid::now_v7();
    let chained = tally_shared::envelope::HashedFields {
        stream_id,
        version: version + 1,
        event_id,
        event_type,
        data,
        metadata: &metadata,
        recorded_at,
    }
    .chain_hash(&hash.try_into().unwrap());
    sqlx::query(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($9))
         INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM lock",
    )
    .bind(stream_id)
    .bind(version + 1)
    .bind(event_id)
    .bind(event_type)
    .bind(data)
    .bind(&metadata)
    .bind(recorded_at)
    .bind(chained.as_slice())
    .bind(command_service::event_store::APPEND_LOCK_KEY)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn an_honest_database_passes(pool: PgPool) {
    projected_workload(&pool).await;

    let report = verify(&pool, 50).await.unwrap();

    assert!(report.is_clean(), "{}", report.render(50));
    assert!(report.events > 100, "{report:?}");
    let (code, stdout) = verify_exit_code(&pool).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("OK: no finding"), "{stdout}");
    let (findings, events, by_check): (i64, i64, serde_json::Value) =
        sqlx::query_as("SELECT findings, events, by_check FROM verifications ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((findings, events as u64, by_check), (0, report.events, serde_json::json!({})), "the run is recorded");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_tampered_event_payload_breaks_its_hash_chain(pool: PgPool) {
    projected_workload(&pool).await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete").execute(&pool).await.unwrap();
    let tampered: i64 = sqlx::query_scalar(
        "UPDATE events SET data = jsonb_set(data, '{reference}', '\"rewritten\"')
         WHERE position = (SELECT min(position) FROM events WHERE event_type = 'TransferRecorded')
         RETURNING position",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let report = verify(&pool, 50).await.unwrap();

    let chain: Vec<_> = report.findings.iter().filter(|finding| finding.check == Check::HashChain).collect();
    assert_eq!(chain.len(), 1, "{}", report.render(50));
    assert!(chain[0].detail.contains(&format!("position {tampered}")), "{}", chain[0].detail);
    let (code, stdout) = verify_exit_code(&pool).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("HashChain: 1 findings"), "{stdout}");
    let by_check: serde_json::Value = sqlx::query_scalar("SELECT by_check FROM verifications ORDER BY id DESC LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(by_check["HashChain"], 1, "a failed run is recorded with its findings: {by_check}");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_wrong_balance_row_is_reported(pool: PgPool) {
    projected_workload(&pool).await;
    let wallet: uuid::Uuid = sqlx::query_scalar(
        "UPDATE rm_wallets SET balance = balance + 1
         WHERE wallet_id = (SELECT wallet_id FROM rm_wallets WHERE kind = 'user' ORDER BY wallet_id LIMIT 1)
         RETURNING wallet_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let report = verify(&pool, 50).await.unwrap();

    assert_eq!(report.findings.len(), 1, "{}", report.render(50));
    assert_eq!(report.findings[0].check, Check::ReadModel);
    assert!(report.findings[0].detail.contains(&format!("rm_wallets {wallet}: balance")), "{:?}", report.findings);
    let (code, _) = verify_exit_code(&pool).await;
    assert_eq!(code, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn damaged_history_totals_and_snapshots_are_reported(pool: PgPool) {
    projected_workload(&pool).await;
    sqlx::query("DELETE FROM rm_wallet_history WHERE (wallet_id, version) IN (SELECT wallet_id, version FROM rm_wallet_history LIMIT 1)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE rm_assets SET wallet_count = wallet_count + 1 WHERE code = 'GOLD'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE rm_asset_volumes SET volume = volume * 2 WHERE asset = 'GEMS' AND kind = 'topup'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE streams SET state = jsonb_set(state, '{balance}', '\"12345.00\"')
         WHERE stream_id = (SELECT 'wallet-' || wallet_id FROM rm_wallets WHERE asset = 'GOLD' AND kind = 'user' LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let report = verify(&pool, 50).await.unwrap();

    let text = report.render(50);
    assert!(report.has(Check::Snapshot), "{text}");
    assert!(text.contains("rm_wallet_history") && text.contains("missing"), "{text}");
    assert!(text.contains("rm_assets GOLD: wallet_count"), "{text}");
    assert!(text.contains("rm_asset_volumes GEMS topup: volume"), "{text}");
    assert!(!report.has(Check::HashChain) && !report.has(Check::ZeroSum), "{text}");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_overdrawn_and_unbalanced_log_is_reported(pool: PgPool) {
    let mut ledger = projected_workload(&pool).await;
    let wallet = ledger.open_wallet("victim", "GOLD").await;
    ledger.topup(wallet, "1.00").await;
    // Plant a debit that takes the wallet below zero and has no matching credit, with a valid hash chain:
    // only the invariants can catch it.
    let row: (i64, String, serde_json::Value, Vec<u8>) = sqlx::query_as(
        "SELECT version, event_type, data, hash FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(format!("wallet-{wallet}"))
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut posting = row.2.clone();
    posting["amount"] = serde_json::json!("5.00");
    posting["balance_after"] = serde_json::json!("-4.00");
    plant(&pool, &format!("wallet-{wallet}"), "WalletDebited", &posting).await;

    let report = verify(&pool, 50).await.unwrap();

    let text = report.render(50);
    assert!(report.has(Check::Limit), "{text}");
    assert!(report.has(Check::ZeroSum), "{text}");
    assert!(report.has(Check::TransferBalance), "{text}");
    assert!(report.has(Check::Snapshot), "the snapshot no longer matches: {text}");
    assert!(!report.has(Check::HashChain), "{text}");
}

/// A hold placed and captured (final) in the log, its ids: `(hold_id, wallet_id)`.
async fn captured_hold(ledger: &mut Ledger) -> (tally_shared::hold::HoldId, tally_shared::wallet::WalletId) {
    let wallet = ledger.open_wallet("escrow", "GOLD").await;
    ledger.topup(wallet, "50.00").await;
    let hold_id = tally_shared::hold::HoldId(uuid::Uuid::now_v7());
    let now = chrono::Utc::now();
    ledger
        .execute(tally_shared::ledger::Command::PlaceHold {
            hold_id,
            wallet_id: wallet,
            amount: "20.00".parse().unwrap(),
            expiry: tally_shared::hold::Expiry::In(600),
            reference: None,
            metadata: serde_json::Value::Null,
            at: now,
        })
        .await
        .unwrap();
    ledger
        .execute(tally_shared::ledger::Command::CaptureHold {
            hold_id,
            transfer_id: tally_shared::transfer::TransferId(uuid::Uuid::now_v7()),
            amount: Some("5.00".parse().unwrap()),
            to_wallet_id: None,
            is_final: true,
            reference: None,
            metadata: serde_json::Value::Null,
            at: now,
        })
        .await
        .unwrap();
    (hold_id, wallet)
}

#[sqlx::test(migrations = "../migrations")]
async fn an_altered_held_amount_is_reported(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 3, 60, 7).await;
    let (_, wallet) = captured_hold(&mut ledger).await;
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    caught_up(&pool).await;
    projector.stop().await;
    assert!(verify(&pool, 50).await.unwrap().is_clean());
    sqlx::query("UPDATE rm_wallets SET held = held + 3 WHERE wallet_id = $1")
        .bind(wallet.0)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE rm_assets SET active_hold_count = active_hold_count + 1 WHERE code = 'GOLD'")
        .execute(&pool)
        .await
        .unwrap();

    let report = verify(&pool, 50).await.unwrap();

    let text = report.render(50);
    assert!(text.contains(&format!("rm_wallets {wallet}: held is 3.00")), "{text}");
    assert!(text.contains("rm_assets GOLD: active_hold_count"), "{text}");
    assert!(!report.has(Check::Holds) && !report.has(Check::HashChain), "the log itself is sound: {text}");
}

/// A second capture planted after the hold was resolved, with a valid hash chain: only the holds invariants
/// can catch it.
#[sqlx::test(migrations = "../migrations")]
async fn a_hold_captured_twice_in_the_log_is_reported(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    let (hold_id, _) = {
        ledger.define_asset("GOLD", 2, None).await;
        captured_hold(&mut ledger).await
    };
    let data = serde_json::json!({
        "transfer_id": uuid::Uuid::now_v7(), "amount": "5.00", "released": "0.00", "final": true,
        "captured_at": chrono::Utc::now(),
    });
    plant(&pool, &format!("hold-{hold_id}"), "HoldCaptured", &data).await;

    let report = verify(&pool, 50).await.unwrap();

    let text = report.render(50);
    let holds: Vec<_> = report.findings.iter().filter(|finding| finding.check == Check::Holds).collect();
    assert_eq!(holds.len(), 1, "{text}");
    assert!(holds[0].detail.contains("after it was captured"), "{text}");
    assert!(!report.has(Check::HashChain), "{text}");
}
