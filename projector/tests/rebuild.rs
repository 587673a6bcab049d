//! `projector rebuild`: fresh tables equal to a replay, byte for byte the same as incremental projection, swapped
//! in atomically, alone or beside a running projector.
#![allow(clippy::unwrap_used)]

mod support;

use sqlx::PgPool;
use support::*;

/// Every read-model row as text, in key order: what "byte for byte the same" compares.
async fn dump(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, key) in [
        ("rm_assets", "code"),
        ("rm_asset_volumes", "asset, kind"),
        ("rm_wallets", "wallet_id"),
        ("rm_wallet_history", "wallet_id, version"),
        ("rm_transfers", "transfer_id"),
        ("rm_transfer_reversals", "transfer_id, reversal_id"),
        ("rm_holds", "hold_id"),
    ] {
        let table_rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM {table} t ORDER BY {key}")).fetch_all(pool).await.unwrap();
        rows.extend(table_rows.into_iter().map(|row| format!("{table} {row}")));
    }
    rows
}

/// Index and constraint definitions of the read models, by name.
async fn schema_of_read_models(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename || ' ' || indexname || ' ' || indexdef FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename LIKE 'rm\\_%'
         UNION ALL
         SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid::regclass::text LIKE 'rm\\_%'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rebuild_equals_incremental_projection_byte_for_byte(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 6, 200, 41).await;
    let projector =
        RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &["--batch-size-max", "5"]))
            .await;
    let head = caught_up(&pool).await;
    projector.stop().await;
    let incremental = dump(&pool).await;
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT status FROM rm_holds ORDER BY status").fetch_all(&pool).await.unwrap();
    assert!(statuses.len() >= 3, "the workload places, captures, voids and expires holds: {statuses:?}");
    let schema_before = schema_of_read_models(&pool).await;
    sqlx::query("UPDATE rm_wallets SET balance = 0, held = 0").execute(&pool).await.unwrap();

    let mut reported = Vec::new();
    let stats = projector::rebuild::rebuild(&pool, 64, |position| reported.push(position)).await.unwrap();

    assert_eq!(stats.checkpoint, head);
    assert_eq!(reported.last().copied(), Some(head));
    assert_eq!(checkpoint(&pool).await, head);
    assert_eq!(dump(&pool).await, incremental);
    assert_eq!(schema_of_read_models(&pool).await, schema_before, "same tables, indexes and constraints, same names");
    let staging: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'projector_rebuild'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(staging, 0, "the staging schema is gone");
    assert_verified(&pool).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rebuild_beside_a_running_projector_swaps_in_and_the_projector_carries_on(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 100, 43).await;
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    caught_up(&pool).await;

    let rebuild_pool = pool.clone();
    let rebuild = tokio::spawn(async move { projector::rebuild::rebuild(&rebuild_pool, 16, |_| {}).await });
    for index in 0..40 {
        let wallet = ledger.open_wallet(&format!("during-{index}"), "GOLD").await;
        ledger.topup(wallet, "1.00").await;
    }
    let stats = rebuild.await.unwrap().unwrap();
    assert!(stats.events > 0);
    let wallet = ledger.open_wallet("after", "GOLD").await;
    ledger.topup(wallet, "2.00").await;
    caught_up(&pool).await;

    assert_verified(&pool).await;
    assert_eq!(projector.role().await, "leader");
    projector.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_projector_started_during_a_rebuild_stands_by_until_it_ends(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 60, 47).await;
    let before = head(&pool).await;
    // The rebuild runs on a thread of its own and pauses after its first batch until the test says go.
    let (reached, reached_here) = std::sync::mpsc::channel::<()>();
    let (go, go_there) = std::sync::mpsc::channel::<()>();
    let url = database_url(&pool);
    let rebuild = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let pool = PgPool::connect(&url).await.unwrap();
            let mut paused = false;
            projector::rebuild::rebuild(&pool, 10, |_| {
                if !paused {
                    paused = true;
                    reached.send(()).unwrap();
                    go_there.recv().unwrap();
                }
            })
            .await
            .unwrap()
        })
    });
    tokio::task::spawn_blocking(move || reached_here.recv().unwrap()).await.unwrap();

    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    eventually("the projector stands by during the rebuild", std::time::Duration::from_secs(10), || async {
        (projector.role().await == "standby").then_some(())
    })
    .await;
    assert_eq!(checkpoint(&pool).await, 0, "nothing applied to the live models meanwhile");
    go.send(()).unwrap();
    let stats = tokio::task::spawn_blocking(move || rebuild.join().unwrap()).await.unwrap();
    ledger.topup(ledger_wallet(&ledger), "1.00").await;
    caught_up(&pool).await;

    assert_eq!(stats.checkpoint, before);
    assert_eq!(projector.role().await, "leader");
    assert_verified(&pool).await;
    projector.stop().await;
}

/// The URL of the test's own database.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

fn ledger_wallet(ledger: &Ledger) -> tally_shared::wallet::WalletId {
    ledger
        .world
        .wallets
        .iter()
        .find_map(|(id, wallet)| match wallet {
            tally_shared::wallet::Wallet::Open(open)
                if open.kind == tally_shared::wallet::WalletKind::User
                    && open.status == tally_shared::wallet::WalletStatus::Active
                    && open.asset.as_str() == "GOLD" =>
            {
                Some(*id)
            }
            _ => None,
        })
        .unwrap()
}

/// Throughput of `rebuild` on 300,000 events (run with `--release -- --ignored --nocapture`); prints, asserts nothing
/// about time (SPEC §6: performance is measured by benchmarks, never by timed tests).
#[sqlx::test(migrations = "../migrations")]
#[ignore = "a measurement, not a test: cargo test --release -p projector --test rebuild -- --ignored --nocapture"]
async fn rebuild_throughput(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    ledger.define_asset("GOLD", 2, None).await;
    let mut wallets = Vec::new();
    for index in 0..2_000 {
        wallets.push(ledger.open_wallet(&format!("owner-{index}"), "GOLD").await);
    }
    let mut dice = Dice::new(7);
    let mut commands = Vec::new();
    for index in 0..100_000 {
        let wallet = *dice.pick(&wallets);
        commands.push(if index % 2 == 0 {
            Ledger::move_command(tally_shared::transfer::TransferKind::Topup, wallet, "10.00")
        } else {
            tally_shared::ledger::Command::Transfer {
                transfer_id: tally_shared::transfer::TransferId(uuid::Uuid::now_v7()),
                from_wallet_id: wallet,
                to_wallet_id: *dice.pick(&wallets),
                amount: rust_decimal::Decimal::ONE,
                fee: None,
                reference: None,
                metadata: serde_json::Value::Null,
            }
        });
    }
    let loaded = ledger.load_in_bulk(commands).await;
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await.unwrap();

    // The binary, not the library: its multi-threaded runtime decodes the next batch while this one is written.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .args(["rebuild", "--database-url", &database_url(&pool)])
        .output()
        .await
        .unwrap();

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    println!("{loaded} events bulk-loaded; {}", String::from_utf8_lossy(&output.stdout).trim());
}
