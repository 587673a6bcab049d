//! hot wallet: one wallet funded with exactly F (scale 0), then N spends of 1 released at once. Exactly F
//! must succeed and N − F be refused with `insufficient_funds`, with no error, and the balance must end
//! at zero: anything else fails the run.
//!
//! The spends go as a client library with a connection pool sends them: HTTP/2 streams, 100 per
//! connection by default, all N in flight at once. `--hot-spends-per-connection 0` gives each its own
//! HTTP/1.1 connection instead, N connections open at once: command-service's memory then measures
//! hyper's buffers of so many connections more than Tally (README, Performance).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::join_all;
use uuid::Uuid;

use crate::cpu;
use crate::http::{Connection, Endpoint, Multiplexed, Request, Response};
use crate::load::{self, Tally, Verdict};
use crate::report::{Check, HotWallet};
use crate::service_metrics;

use super::Bench;

/// Connections opened at once while preparing, so that the server's accept backlog never overflows.
const CONNECT_WAVE: usize = 500;
/// How long the read side gets to show the final balance.
const FINAL_READ_WAIT: Duration = Duration::from_secs(30);

pub async fn run(bench: &Bench, hot: &mut HotWallet) -> anyhow::Result<Vec<Check>> {
    let commands = &bench.commands;
    let spends = bench.config.hot_spends;
    let funds = bench.config.hot_funds;
    let asset = format!("HOT_{}", commands.keys.run_tag());
    commands.define_asset(&asset, 0).await?;
    let wallet_id = commands.open_wallet(&format!("bench-hot-{}", commands.keys.run_tag()), &asset).await?;
    commands.move_money(wallet_id, "topup", &funds.to_string()).await?;

    let connections = open(commands.endpoint(), spends, bench.config.hot_spends_per_connection).await?;
    let (go, ready) = tokio::sync::watch::channel(false);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::with_capacity(connections.len());
    for mut client in connections {
        let request = commands.move_request(wallet_id, "spend", "1");
        let (mut ready, tally) = (ready.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            if ready.wait_for(|go| *go).await.is_err() {
                return;
            }
            let sent = Instant::now();
            let verdict = match client.send(&request).await {
                Ok(response) => load::judge_command(&response, &["insufficient_funds"]),
                Err(error) => Verdict::Error(format!("transport: {error:#}")),
            };
            tally.lock().expect("tally lock is never poisoned").record(sent.elapsed(), verdict);
        }));
    }
    let metrics_before = service_metrics::scrape(&bench.commands.pool).await;
    let before = bench.processes.track();
    let started = Instant::now();
    go.send_replace(true);
    join_all(tasks).await;
    let elapsed = started.elapsed();
    hot.cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&hot.cpu_percent));
    hot.appender = metrics_before.appender_until(&service_metrics::scrape(&bench.commands.pool).await, elapsed);
    let tally = tally.lock().expect("tally lock is never poisoned").clone();

    let succeeded = tally.ok;
    let rejected = tally.rejected.get("insufficient_funds").copied().unwrap_or(0);
    let errors = tally.error_count();
    let final_balance = snapshot_balance(bench, wallet_id).await?;
    hot.commands_per_s = Some((tally.completed() as f64 / elapsed.as_secs_f64()).round());
    hot.succeeded = Some(succeeded);
    hot.rejected = Some(rejected);
    hot.errors = Some(errors);
    hot.final_balance = Some(final_balance);
    hot.p50_ms = Some(tally.latency_ms(0.5));
    hot.p99_ms = Some(tally.latency_ms(0.99));
    eprintln!(
        "    {} answers in {:.2}s = {:.0}/s: {succeeded} succeeded, {rejected} insufficient_funds, errors: {}; \
         balance {final_balance}",
        tally.completed(),
        elapsed.as_secs_f64(),
        tally.completed() as f64 / elapsed.as_secs_f64(),
        tally.errors_summary()
    );
    eprintln!("    {}", hot.appender.describe());

    let refused = spends.saturating_sub(funds);
    let mut checks = vec![
        Check {
            check: format!("hot wallet: exactly {funds} of {spends} spends succeed"),
            passed: succeeded == funds,
            detail: format!("{succeeded} succeeded"),
        },
        Check {
            check: format!("hot wallet: exactly {refused} refused with insufficient_funds"),
            passed: rejected == refused,
            detail: format!("{rejected} refused"),
        },
        Check {
            check: "hot wallet: no errors".to_owned(),
            passed: errors == 0,
            detail: format!("{errors} errors: {}", tally.errors_summary()),
        },
        Check {
            check: "hot wallet: the snapshot's balance ends at 0".to_owned(),
            passed: final_balance == 0,
            detail: format!("balance {final_balance}"),
        },
    ];
    if let Ok(queries) = bench.read_side() {
        let head = super::head_position(&bench.database).await?;
        let shown = queries.wallet_at(wallet_id, head, FINAL_READ_WAIT).await;
        checks.push(match shown {
            Ok(wallet) => Check {
                check: "hot wallet: query-service shows a balance of 0".to_owned(),
                passed: wallet.balance == "0",
                detail: format!("balance {} at version {}", wallet.balance, wallet.version),
            },
            Err(error) => Check {
                check: "hot wallet: query-service shows a balance of 0".to_owned(),
                passed: false,
                detail: format!("{error:#}"),
            },
        });
    }
    Ok(checks)
}

/// A spend's way to the server: its own HTTP/1.1 connection, or a stream of a shared HTTP/2 one.
pub(super) enum Client {
    Http1(Connection),
    Http2(Multiplexed),
}

impl Client {
    pub(super) async fn send(&mut self, request: &Request) -> anyhow::Result<Response> {
        match self {
            Client::Http1(connection) => connection.send(request).await,
            Client::Http2(connection) => connection.send(request).await,
        }
    }
}

/// One client per spend, connected before the spends are released.
pub(super) async fn open(
    endpoint: &Arc<Endpoint>,
    spends: u64,
    spends_per_connection: u64,
) -> anyhow::Result<Vec<Client>> {
    let spends = spends as usize;
    let mut clients = Vec::with_capacity(spends);
    if spends_per_connection == 0 {
        while clients.len() < spends {
            let wave = CONNECT_WAVE.min(spends - clients.len());
            for opened in join_all((0..wave).map(|_| Connection::open(endpoint))).await {
                clients.push(Client::Http1(opened.context("open the hot wallet's connections")?));
            }
        }
        return Ok(clients);
    }
    let connections = spends.div_ceil(spends_per_connection as usize);
    let mut opened = Vec::with_capacity(connections);
    for wave in join_all((0..connections).map(|_| Multiplexed::open(endpoint))).await {
        opened.push(wave.context("open the hot wallet's HTTP/2 connections")?);
    }
    for index in 0..spends {
        clients.push(Client::Http2(opened[index % connections].clone()));
    }
    Ok(clients)
}

/// The wallet's balance in its stream snapshot (scale 0, so a whole number).
async fn snapshot_balance(bench: &Bench, wallet_id: Uuid) -> anyhow::Result<i64> {
    let balance: Option<(String,)> = sqlx::query_as("SELECT state->>'balance' FROM streams WHERE stream_id = $1")
        .bind(format!("wallet-{wallet_id}"))
        .fetch_optional(&bench.database)
        .await
        .context("read the hot wallet's snapshot")?;
    let Some((balance,)) = balance else { bail!("the hot wallet has no snapshot") };
    balance.parse().with_context(|| format!("the hot wallet's balance {balance:?} is not a whole number"))
}
