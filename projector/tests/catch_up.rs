//! `projector run` against a real Postgres (and NATS): the read models always end equal to a replay, whatever
//! the batch limits, late commits, holes, crashes, takeovers and notifications do.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use support::*;
use tally_shared::notification::{appended_subject, message_id, Appended};

#[sqlx::test(migrations = "../migrations")]
async fn a_mixed_workload_is_projected_equal_to_a_replay(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 8, 300, 7).await;
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), &nats_url(), &[])).await;

    caught_up(&pool).await;
    assert_verified(&pool).await;
    mixed_workload_more(&mut ledger, 100).await;
    caught_up(&pool).await;

    assert_verified(&pool).await;
    projector.stop().await;
}

/// More commands on the assets and wallets the ledger already has.
async fn mixed_workload_more(ledger: &mut Ledger, commands: usize) {
    let wallets: Vec<_> = ledger
        .world
        .wallets
        .iter()
        .filter_map(|(id, wallet)| match wallet {
            tally_shared::wallet::Wallet::Open(open) if open.kind == tally_shared::wallet::WalletKind::User => {
                Some(*id)
            }
            _ => None,
        })
        .collect();
    let mut dice = Dice::new(99);
    for _ in 0..commands {
        let wallet = *dice.pick(&wallets);
        let _ = ledger.execute(Ledger::move_command(tally_shared::transfer::TransferKind::Topup, wallet, "3")).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn batches_that_cut_commands_in_two_still_equal_a_replay(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 120, 11).await;

    for batch_size in ["1", "7"] {
        let tables = projector::schema::READ_MODEL_TABLES.join(", ");
        sqlx::query(&format!("TRUNCATE {tables}")).execute(&pool).await.unwrap();
        sqlx::query("UPDATE projection_checkpoints SET position = 0, log_hash = DEFAULT").execute(&pool).await.unwrap();
        let projector =
            RunningProjector::start(&pool, config(&unique_prefix(), &nats_url(), &["--batch-size-max", batch_size]))
                .await;
        caught_up(&pool).await;
        assert_verified(&pool).await;
        projector.stop().await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_late_committing_append_is_applied_exactly_once_and_holes_never_stall(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    ledger.define_asset("GOLD", 2, None).await;
    let early = ledger.open_wallet("early", "GOLD").await;
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    let before = caught_up(&pool).await;

    // An append takes the append lock and its positions, and does not commit yet.
    let held = ledger.prepare(&Ledger::move_command(tally_shared::transfer::TransferKind::Topup, early, "5")).unwrap();
    let held = ledger.begin(held).await;
    // A second append, on other streams, queues behind it on the lock (as command-service's would).
    let queued = ledger
        .prepare(&tally_shared::ledger::Command::OpenWallet {
            wallet_id: tally_shared::wallet::WalletId(uuid::Uuid::now_v7()),
            owner_id: "queued".to_owned(),
            asset: tally_shared::asset::AssetCode::parse("GOLD").unwrap(),
            overdraft_limit: None,
            metadata: serde_json::Value::Null,
        })
        .unwrap();
    let second = Ledger::new(&pool);
    let queued_task = tokio::spawn(async move { second.begin(queued).await.commit_detached().await });
    eventually("the second append waits for the append lock", Duration::from_secs(10), || async {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                .fetch_one(&pool)
                .await
                .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    // The projector polls meanwhile and sees nothing past what is committed.
    assert_eq!(checkpoint(&pool).await, before);

    let committed = ledger.commit(held).await;
    let (queued_positions, queued) = queued_task.await.unwrap();
    ledger.learn(queued);
    assert!(queued_positions[0] > committed[committed.len() - 1], "position order is commit order");
    caught_up(&pool).await;

    // A rolled-back append leaves a hole that must not stall the projector.
    let doomed =
        ledger.prepare(&Ledger::move_command(tally_shared::transfer::TransferKind::Topup, early, "1")).unwrap();
    let doomed = ledger.begin(doomed).await;
    let hole = doomed.positions.clone();
    doomed.transaction.rollback().await.unwrap();
    ledger.topup(early, "2").await;
    ledger.topup(early, "3").await;
    let head = caught_up(&pool).await;
    assert!(head > hole[hole.len() - 1], "the projection went past the hole");

    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_wallet_history").fetch_one(&pool).await.unwrap();
    assert_eq!(history, 6, "three topups, each a debit and a credit, each applied exactly once");
    assert_verified(&pool).await;
    projector.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_crash_between_applying_and_checkpointing_leaves_no_trace_and_a_restart_converges(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 50, 3).await;
    let prefix = unique_prefix();
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &["--batch-size-max", "10"])).await;
    let before = caught_up(&pool).await;

    projector.failpoints.crash_after_next_apply();
    mixed_workload_more(&mut ledger, 20).await;
    let crash = projector.exited().await.unwrap_err();

    assert!(crash.is::<projector::catch_up::InjectedCrash>(), "{crash:#}");
    assert_eq!(checkpoint(&pool).await, before, "the crashed batch's checkpoint was never written");
    assert_verified(&pool).await; // its read-model writes were rolled back with it
    let restarted = RunningProjector::start(&pool, config(&prefix, &nats_url(), &["--batch-size-max", "10"])).await;
    caught_up(&pool).await;
    assert_verified(&pool).await;
    restarted.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn one_projector_applies_and_a_standby_takes_over_when_it_dies(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 60, 5).await;
    let prefix = unique_prefix();
    let first = RunningProjector::start(&pool, config(&prefix, &nats_url(), &[])).await;
    eventually("the first projector leads", Duration::from_secs(10), || async {
        (first.role().await == "leader").then_some(())
    })
    .await;
    let second = RunningProjector::start(&pool, config(&prefix, &nats_url(), &[])).await;
    caught_up(&pool).await;
    eventually("the second projector stands by", Duration::from_secs(10), || async {
        (second.role().await == "standby").then_some(())
    })
    .await;
    assert_eq!(first.role().await, "leader");

    first.kill().await;
    mixed_workload_more(&mut ledger, 40).await;
    eventually("the standby takes over", Duration::from_secs(10), || async {
        (second.role().await == "leader").then_some(())
    })
    .await;
    caught_up(&pool).await;

    assert_verified(&pool).await;
    second.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn the_projection_converges_by_polling_while_nats_is_unreachable(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;

    mixed_workload(&mut ledger, 4, 80, 13).await;
    caught_up(&pool).await;

    assert_verified(&pool).await;
    let ready = projector.ready().await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_ne!(ready["nats"], "connected", "{ready}");
    projector.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn duplicate_reordered_and_lost_notifications_only_wake_the_projector(pool: PgPool) {
    let prefix = unique_prefix();
    let mut ledger = Ledger::new(&pool);
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &["--poll-interval-ms", "1000"])).await;
    eventually("the projector leads", Duration::from_secs(10), || async {
        (projector.role().await == "leader").then_some(())
    })
    .await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let jetstream = jetstream::new(client);
    let stream_ready = || async {
        let found = jetstream.get_stream(tally_shared::notification::stream_name(&prefix)).await.is_ok();
        found.then_some(())
    };
    eventually("the projector creates the notification stream", Duration::from_secs(10), stream_ready).await;

    // Lost: these commands are never announced.
    mixed_workload(&mut ledger, 3, 40, 17).await;
    let head = head(&pool).await;
    // Reordered and duplicated, some naming positions that do not exist yet.
    for position in [head + 50, head, head - 3, head, 1, head + 50] {
        let payload = serde_json::to_vec(&Appended { position }).unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id(position).as_str());
        let ack = jetstream.publish_with_headers(appended_subject(&prefix), headers, payload.into()).await.unwrap();
        ack.await.unwrap();
    }
    // A duplicate without a message id gets past JetStream's de-duplication: it must still be harmless.
    let ack =
        jetstream.publish(appended_subject(&prefix), serde_json::to_vec(&Appended { position: head }).unwrap().into());
    ack.await.unwrap().await.unwrap();
    caught_up(&pool).await;

    eventually("notifications wake the projector", Duration::from_secs(10), || async {
        let text = projector.metrics().await;
        let woken = metric(&text, "tally_projection_wakeups_total{cause=\"notification\"}").unwrap_or(0.0);
        (woken >= 1.0).then_some(())
    })
    .await;
    assert_verified(&pool).await;
    projector.stop().await;
}

#[sqlx::test(migrations = "../migrations")]
async fn health_and_metrics_report_the_projection(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &[])).await;
    mixed_workload(&mut ledger, 2, 10, 23).await;
    let head = caught_up(&pool).await;

    let live = reqwest::get(format!("http://{}/health/live", projector.address)).await.unwrap();
    assert_eq!(live.status(), 200);
    // The checkpoint's gauge moves with each batch, head and lag with the look at the log that follows the
    // round: for a moment the checkpoint can show the head while the lag still shows the round's start.
    let text = eventually("metrics show the checkpoint at the head and no lag", Duration::from_secs(10), || async {
        let text = projector.metrics().await;
        (metric(&text, "tally_projection_checkpoint") == Some(head as f64)
            && metric(&text, "tally_projection_head") == Some(head as f64)
            && metric(&text, "tally_projection_lag_events") == Some(0.0))
        .then_some(text)
    })
    .await;
    assert!(text.contains("tally_projection_batch_size_bucket"), "{text}");
    assert!(text.contains("tally_projection_lag_ms"), "{text}");
    projector.stop().await;
}
