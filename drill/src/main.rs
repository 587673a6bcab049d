//! tally-drill: one run of the failover drill (SPEC §11). It puts load on the cluster through HAProxy with
//! clients that retry under the same key, runs one fault command in the middle (kill -9 a command-service, a
//! NATS node, the projector leader, or crash the Postgres primary and promote its replica), keeps the load on,
//! then checks that every acknowledged command is there exactly once and that the hot wallet's count is exact.
//! It prints the figures as one JSON object on stdout and exits 1 if any check failed.
//! `scripts/cluster drill` runs it once per fault, and `projector verify` after each.
//!
//! - [`client`]: the retrying client (same key until answered).
//! - [`load`]: the clients' pairs of commands, and reads back from the replica with `min_position`.
//! - [`checks`]: what must hold afterwards, and the figures of the run.

mod checks;
mod client;
mod load;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::load::{Setup, Targets};

/// Clients at most: each holds one command in flight.
const CLIENTS_MAX: usize = 256;

/// One fault under load, and every check that nothing acknowledged was lost or applied twice. A flag given twice
/// takes its last value (scripts/cluster adds its own to the defaults).
#[derive(Debug, Parser)]
#[command(name = "tally-drill", version, about, args_override_self = true)]
struct Config {
    /// Commands: HAProxy's front for command-services.
    #[arg(long, env = "DRILL_COMMAND_URL", default_value = "http://127.0.0.1:8080")]
    command_url: String,
    /// Queries: HAProxy's front for query-services.
    #[arg(long, env = "DRILL_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    query_url: String,
    /// The query-service that reads from the replica, read directly: acknowledged transfers are read back there
    /// with `min_position`.
    #[arg(long, env = "DRILL_REPLICA_QUERY_URL")]
    replica_query_url: Option<String>,
    /// File holding a token of scope admin.
    #[arg(long, env = "DRILL_TOKEN_FILE")]
    token_file: std::path::PathBuf,
    /// What this run is called in the report.
    #[arg(long, default_value = "no fault")]
    name: String,
    /// Shell command that causes the fault; none for a run without one (a measurement).
    #[arg(long)]
    fault: Option<String>,
    /// Clients, each with one command in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=CLIENTS_MAX as i64))]
    clients: u16,
    /// Seconds of load before the fault.
    #[arg(long, default_value_t = 3)]
    before_s: u64,
    /// Seconds of load after the fault command returned.
    #[arg(long, default_value_t = 8)]
    after_s: u64,
    /// Seconds a command is retried under its key before it counts as unanswered (a failed check).
    #[arg(long, default_value_t = 60)]
    command_deadline_s: u64,
    /// Measure reads instead: the clients read one wallet from `--query-url` for `--before-s` + `--after-s`
    /// seconds (no fault), and the report gives reads per second.
    #[arg(long)]
    reads: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    match run(config).await {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).expect("reports serialize"));
            if report["failed"].as_array().is_some_and(|failed| failed.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("tally-drill: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<serde_json::Value> {
    let token =
        std::fs::read_to_string(&config.token_file).with_context(|| format!("read {}", config.token_file.display()))?;
    let client = Client::new(token.trim(), Duration::from_secs(config.command_deadline_s))?;
    let setup = Arc::new(set_up(&client, &config).await?);
    eprintln!("drill {:?}: asset {}, hot wallet {}, {} clients", config.name, setup.asset, setup.hot, config.clients);
    if config.reads {
        let over = Duration::from_secs(config.before_s + config.after_s);
        return load::measure_reads(&client, &config.query_url, &setup, config.clients.into(), over).await;
    }
    let targets = Arc::new(Targets {
        client: client.clone(),
        command_url: config.command_url.clone(),
        replica_query_url: config.replica_query_url.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let clients: Vec<_> = (0..usize::from(config.clients))
        .map(|index| tokio::spawn(load::run_client(index, targets.clone(), setup.clone(), stopped.clone())))
        .collect();
    let replica_lag = config.replica_query_url.clone().map(|url| tokio::spawn(checks::sample_replica(url, stopped)));

    tokio::time::sleep(Duration::from_secs(config.before_s)).await;
    let fault = match &config.fault {
        Some(command) => Some(checks::run_fault(command).await?),
        None => None,
    };
    tokio::time::sleep(Duration::from_secs(config.after_s)).await;
    stop.send_replace(true);
    let load_ended = Instant::now();
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.context("a client panicked")?);
    }
    let replica_lag = match replica_lag {
        Some(task) => Some(task.await.context("the replica sampler panicked")?),
        None => None,
    };
    let run = checks::Run { started, load_ended, fault, logs, replica_lag };
    checks::check(&client, &config.query_url, &setup, &config.name, run).await
}

/// A fresh asset and its two wallets, so that runs never see each other's commands.
async fn set_up(client: &Client, config: &Config) -> anyhow::Result<Setup> {
    let suffix = Alphanumeric.sample_string(&mut rand::rng(), 8).to_uppercase();
    let tag = format!("drill-{}", suffix.to_lowercase());
    let asset = format!("DRILL_{suffix}");
    let command = |path: &str| format!("{}{path}", config.command_url);
    let answered =
        client.command(&command("/v1/assets"), &format!("{tag}-asset"), &json!({ "code": asset, "scale": 2 })).await?;
    anyhow::ensure!(answered.status == 201, "define {asset}: {} {}", answered.status, answered.body);
    let mut wallets = Vec::new();
    for owner in ["hot", "sink"] {
        let body = json!({ "owner_id": format!("{tag}-{owner}"), "asset": asset });
        let answered = client.command(&command("/v1/wallets"), &format!("{tag}-{owner}"), &body).await?;
        anyhow::ensure!(answered.status == 201, "open the {owner} wallet: {} {}", answered.status, answered.body);
        wallets.push(answered.body["wallet_id"].as_str().context("a wallet id")?.to_owned());
    }
    let sink = wallets.pop().expect("two wallets");
    let hot = wallets.pop().expect("two wallets");
    Ok(Setup { tag, asset, hot, sink })
}
