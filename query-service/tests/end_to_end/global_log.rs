//! The global log read while commands append concurrently never skips an event.

use std::time::Duration;

use futures::future::join_all;
use sqlx::PgPool;

use crate::commands::CommandService;
use crate::support::TestApp;

const WRITERS: usize = 6;
const COMMANDS_PER_WRITER: usize = 60;
/// Reads of the log at most while tailing it: far more than the appends need, so the loop always ends.
const TAIL_READS_MAX: usize = 100_000;

/// Reads `/v1/events` from position 0 to the end, in pages of `limit`.
async fn read_all(app: &TestApp, limit: i64) -> Vec<i64> {
    let mut positions = Vec::new();
    let mut after = 0;
    loop {
        let page = app.get(&format!("/v1/events?after={after}&limit={limit}")).await;
        let items = page.ok()["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return positions;
        }
        positions.extend(items.iter().map(|event| event["position"].as_i64().unwrap()));
        after = page.body["next_after"].as_i64().unwrap();
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reader_tailing_the_log_during_concurrent_appends_misses_nothing(pool: PgPool) {
    let service = CommandService::spawn(pool.clone()).await;
    let commands = service.commands.clone();
    let queries = TestApp::spawn(pool).await;
    commands.define_asset("GOLD", 0).await;
    let mut wallets = Vec::new();
    for owner in 0..WRITERS {
        let opened = commands.open_wallet(&format!("owner-{owner}"), "GOLD").await;
        wallets.push(opened.body["wallet_id"].as_str().unwrap().to_owned());
    }

    // Writers: top-ups and transfers between the wallets, all at once, so appends batch and interleave.
    let writing = tokio::spawn({
        let (commands, wallets) = (commands.clone(), wallets.clone());
        async move {
            let writers = (0..WRITERS).map(|writer| {
                let (commands, wallets) = (&commands, &wallets);
                async move {
                    for step in 0..COMMANDS_PER_WRITER {
                        let answered = if step % 3 == 2 {
                            commands.transfer(&wallets[writer], &wallets[(writer + 1) % WRITERS], "1").await
                        } else {
                            commands.money(&wallets[writer], "topup", "2").await
                        };
                        assert_eq!(answered.status, 201, "{:#}", answered.body);
                    }
                }
            });
            join_all(writers).await;
        }
    });
    // The tailing reader: small pages, from where it left off, until the writers are done and it has caught up.
    let mut tailed = Vec::new();
    let mut after = 0;
    let mut pages_read_while_writing = 0;
    for _ in 0..TAIL_READS_MAX {
        let writers_done = writing.is_finished();
        let page = queries.get(&format!("/v1/events?after={after}&limit=7")).await;
        let items = page.ok()["items"].as_array().unwrap().clone();
        if !items.is_empty() && !writing.is_finished() {
            pages_read_while_writing += 1;
        }
        tailed.extend(items.iter().map(|event| event["position"].as_i64().unwrap()));
        after = page.body["next_after"].as_i64().unwrap();
        if items.is_empty() {
            if writers_done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    writing.await.unwrap();
    let full = read_all(&queries, 1000).await;

    assert!(pages_read_while_writing > 1, "the reader tailed the log while it grew");
    assert!(full.len() >= WRITERS * COMMANDS_PER_WRITER * 2, "{} events", full.len());
    assert!(full.windows(2).all(|pair| pair[0] < pair[1]), "the log is in position order");
    assert_eq!(tailed, full, "the tailing reader saw exactly the final log");
    queries.stop().await;
    service.stop().await;
}
