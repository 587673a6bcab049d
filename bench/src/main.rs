//! tally-bench: drives a running Tally stack over HTTP, measures the targets of SPEC §6 against pgbench's
//! figures for the same Postgres, prints a table and writes `target/bench/report.json`.
//! `scripts/bench` starts the stack and runs this; it can also be pointed at a stack started by hand.
//!
//! - [`http`]: a lean HTTP/1.1 client (hyper connections, a pool for open-loop runs).
//! - [`load`]: the load generator: closed-loop and open-loop runs, HDR latency histograms.
//! - [`api`]: typed helpers over the commands and reads of SPEC §5.
//! - [`pgbench`]: the machine's own limit for the minimal SQL of a command.
//! - [`scenarios`]: spread, hot wallet, projection lag, reads, rebuild, flat cost, and the correctness checks.
//! - [`seed`]: the bulk path that gives one wallet a million events without HTTP.
//! - [`memory`]: resident memory of the service processes; [`cpu`]: where the CPU went in each phase;
//!   [`disk`]: how long the disk took to sync a small write meanwhile.
//! - [`service_metrics`]: command-service's own metrics (batch sizes of group commit).
//! - [`report`]: the JSON report and the printed table.

mod api;
mod cpu;
mod disk;
mod http;
mod load;
mod memory;
mod pgbench;
mod report;
mod scenarios;
mod seed;
mod service_metrics;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::report::Report;

/// Measures a running Tally stack against the performance targets of SPEC §6.
#[derive(Debug, Clone, Parser)]
#[command(name = "tally-bench", version, about)]
pub struct Config {
    /// Base URL of command-service.
    #[arg(long, env = "BENCH_COMMAND_URL", default_value = "http://127.0.0.1:8080")]
    pub command_url: String,

    /// Base URL of query-service.
    #[arg(long, env = "BENCH_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    pub query_url: String,

    /// Base URL of the projector's health and metrics endpoints.
    #[arg(long, env = "BENCH_PROJECTOR_URL", default_value = "http://127.0.0.1:8082")]
    pub projector_url: String,

    /// Postgres URL of the stack's database: pgbench, the bulk seed, `projector rebuild` and the
    /// correctness checks use it. Use a database of its own: the bench writes a lot into it.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// The projector binary, for `projector rebuild`.
    #[arg(long, env = "BENCH_PROJECTOR_BIN", default_value = "target/release/projector")]
    pub projector_bin: PathBuf,

    /// The tally-audit binary, for the export scenario.
    #[arg(long, env = "BENCH_AUDIT_BIN", default_value = "target/release/tally-audit")]
    pub audit_bin: PathBuf,

    /// The pgbench binary.
    #[arg(long, env = "BENCH_PGBENCH_BIN", default_value = "pgbench")]
    pub pgbench_bin: PathBuf,

    /// Process id of command-service, for its resident memory.
    #[arg(long, env = "BENCH_COMMAND_PID")]
    pub command_pid: Option<u32>,

    /// Process id of the projector (`run`), for its resident memory.
    #[arg(long, env = "BENCH_PROJECTOR_PID")]
    pub projector_pid: Option<u32>,

    /// Process id of query-service, for its resident memory.
    #[arg(long, env = "BENCH_QUERY_PID")]
    pub query_pid: Option<u32>,

    /// Bearer token sent with every request (scope `admin`), when the services require one.
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Where the JSON report goes.
    #[arg(long, env = "BENCH_REPORT", default_value = "target/bench/report.json")]
    pub report: PathBuf,

    /// A run of at most about two minutes: shorter phases, 100,000 events in the flat-cost wallet.
    #[arg(long)]
    pub quick: bool,

    /// Only these scenarios (comma-separated: pgbench, spread, hot_wallet, holds, projection_lag, feeds,
    /// reads, rebuild, flat_cost, export); all by default. The others report null.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<scenarios::Scenario>,

    /// Wallets of the spread, projection-lag and reads scenarios.
    #[arg(long, default_value_t = 10_000)]
    pub wallets: usize,

    /// Concurrent workers of the closed-loop command runs (group commit feeds on concurrency).
    #[arg(long, default_value_t = 256)]
    pub workers: usize,

    /// Concurrent workers of the closed-loop read run.
    #[arg(long, default_value_t = 64)]
    pub read_workers: usize,

    /// Concurrent spends on the hot wallet, all in flight at once.
    #[arg(long, default_value_t = 10_000)]
    pub hot_spends: u64,

    /// Hot-wallet spends carried by one HTTP/2 connection, each on its own stream (at most the server's
    /// 200 concurrent streams); 0 sends each spend on its own HTTP/1.1 connection instead.
    #[arg(long, default_value_t = 100)]
    pub hot_spends_per_connection: u64,

    /// What the hot wallet is funded with (scale 0): exactly this many spends of 1 succeed.
    #[arg(long, default_value_t = 5_000)]
    pub hot_funds: u64,

    /// Concurrent holds of 1 on the holds wallet, all in flight at once.
    #[arg(long, default_value_t = 10_000)]
    pub holds: u64,

    /// What the holds wallet is funded with (scale 0): exactly this many holds are placed, then captured.
    #[arg(long, default_value_t = 5_000)]
    pub holds_funded: u64,

    /// Holds placed to expire within one second, whose release the expirer is timed on.
    #[arg(long, default_value_t = 1_000)]
    pub holds_expiring: u64,

    /// Subscribers of the transfers feed in the feeds scenario.
    #[arg(long, default_value_t = 100)]
    pub feed_subscribers: usize,

    /// Events of the flat-cost wallet [default: 1,000,000; 100,000 with --quick].
    #[arg(long)]
    pub flat_events: Option<u64>,

    /// pgbench clients.
    #[arg(long, default_value_t = 32)]
    pub pgbench_clients: u32,
}

/// How long each phase runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub pgbench: Duration,
    pub spread_closed: Duration,
    pub spread_open: Duration,
    pub projection_lag: Duration,
    pub reads: Duration,
    pub flat_events: u64,
    /// Interleaved samples per side of each flat-cost comparison.
    pub flat_samples: usize,
    /// How long the projector gets to catch up with the flat-cost seed.
    pub catch_up_max: Duration,
    pub rebuild_max: Duration,
}

impl Plan {
    fn of(config: &Config) -> Plan {
        let plan = if config.quick {
            Plan {
                pgbench: Duration::from_secs(5),
                spread_closed: Duration::from_secs(8),
                spread_open: Duration::from_secs(8),
                projection_lag: Duration::from_secs(8),
                reads: Duration::from_secs(6),
                flat_events: 100_000,
                flat_samples: 100,
                catch_up_max: Duration::from_secs(90),
                rebuild_max: Duration::from_secs(120),
            }
        } else {
            Plan {
                pgbench: Duration::from_secs(15),
                spread_closed: Duration::from_secs(30),
                spread_open: Duration::from_secs(30),
                projection_lag: Duration::from_secs(30),
                reads: Duration::from_secs(20),
                flat_events: 1_000_000,
                flat_samples: 300,
                catch_up_max: Duration::from_secs(420),
                rebuild_max: Duration::from_secs(420),
            }
        };
        Plan { flat_events: config.flat_events.unwrap_or(plan.flat_events), ..plan }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    match run(config).await {
        Ok(report) if report.correctness_passed() => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("tally-bench: correctness checks FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("tally-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<Report> {
    let started = Instant::now();
    let plan = Plan::of(&config);
    let mut report = Report::default();
    report.run.quick = config.quick;
    report.run.started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report.run.cores = std::thread::available_parallelism().map_or(0, usize::from);

    let bench = scenarios::Bench::connect(config.clone(), plan).await?;
    scenarios::run_all(bench, &mut report).await;

    report.run.duration_s = started.elapsed().as_secs_f64();
    report.run.bench_cpu_s = own_cpu_seconds();
    report.evaluate_targets();
    println!("{}", report.table());
    if let Some(directory) = config.report.parent() {
        std::fs::create_dir_all(directory).with_context(|| format!("create {}", directory.display()))?;
    }
    let json = serde_json::to_string_pretty(&report).context("serialize the report")?;
    std::fs::write(&config.report, json + "\n").with_context(|| format!("write {}", config.report.display()))?;
    println!("report: {}", config.report.display());
    Ok(report)
}

/// User and system CPU time of this process so far, from `/proc/self/stat` (in clock ticks of 1/100 s,
/// the value on every Linux the bench targets).
fn own_cpu_seconds() -> Option<f64> {
    const TICKS_PER_S: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_S)
}
