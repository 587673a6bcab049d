//! The scenarios of SPEC §6, in the order a run takes them, and what they share: the stack, the wallets
//! they load, and whether the read side is there yet.
//!
//! A scenario whose service is not ready reports `null` with the reason and does not fail the run;
//! a scenario that breaks on a ready service, and every failed exactness check, does.

mod checks;
mod export;
mod feeds;
mod flat_cost;
mod holds;
mod hot_wallet;
mod projection_lag;
mod reads;
mod rebuild;
mod spread;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::{Commands, Keys, Queries};
use crate::cpu::Processes;
use crate::http::{Endpoint, Pool, Request, Response};
use crate::load::{self, Call, Stop, Verdict, Workload};
use crate::memory::{Sampler, Watched};
use crate::report::{Check, Report};
use crate::{pgbench, Config, Plan};

/// How long a service gets to answer `/health/ready` when the bench starts.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long the projector gets to show the wallets the setup opened, before the read side counts as not ready.
const FIRST_PROJECTION_WAIT: Duration = Duration::from_secs(60);
/// Between load phases the projector catches up, so that one phase's backlog does not load the next; bounded.
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// Concurrent requests while opening and funding wallets.
const SETUP_CONCURRENCY: usize = 256;
/// What each spread wallet is funded with; moves are 0.01 to 5.00, so rejections are rare.
const SPREAD_FUNDS: &str = "1000.00";

/// The scenarios, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Scenario {
    Pgbench,
    Spread,
    HotWallet,
    Holds,
    ProjectionLag,
    Feeds,
    Reads,
    Rebuild,
    FlatCost,
    Export,
}

/// The stack under test and the bench's handles on it.
pub struct Bench {
    pub config: Config,
    pub plan: Plan,
    pub database: PgPool,
    pub commands: Commands,
    /// The read side, or why it is not ready (query-service down, or the projector not projecting).
    pub queries: Result<Queries, String>,
    pub processes: Processes,
    memory: Sampler,
}

impl Bench {
    pub async fn connect(config: Config, plan: Plan) -> anyhow::Result<Bench> {
        let database = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&config.database_url)
            .await
            .context("connect to DATABASE_URL")?;
        let token = config.token.as_deref();
        let command_endpoint = Endpoint::parse(&config.command_url, token).await?;
        wait_ready(&command_endpoint, READY_WAIT).await.context("command-service is not ready")?;
        let commands = Commands { pool: Pool::new(command_endpoint), keys: Arc::new(Keys::new()) };
        let query_endpoint = Endpoint::parse(&config.query_url, token).await?;
        let projector_endpoint = Endpoint::parse(&config.projector_url, token).await?;
        let queries =
            match (wait_ready(&query_endpoint, READY_WAIT).await, wait_ready(&projector_endpoint, READY_WAIT).await) {
                (Ok(()), Ok(())) => Ok(Queries { pool: Pool::new(query_endpoint) }),
                (Err(error), _) => Err(format!("query-service is not ready: {error:#}")),
                (_, Err(error)) => Err(format!("the projector is not ready: {error:#}")),
            };
        let processes = Processes {
            command_service: config.command_pid,
            projector: config.projector_pid,
            query_service: config.query_pid,
            database: database_name(&config.database_url),
            pool: database.clone(),
            backends: Default::default(),
        };
        processes.learn_backends().await;
        let memory = Sampler::start(vec![
            Watched { name: "command_service", pid: config.command_pid },
            Watched { name: "projector", pid: config.projector_pid },
            Watched { name: "query_service", pid: config.query_pid },
        ]);
        Ok(Bench { config, plan, database, commands, queries, processes, memory })
    }

    fn wants(&self, scenario: Scenario) -> bool {
        self.config.only.is_empty() || self.config.only.contains(&scenario)
    }

    /// The read side, once it has shown it projects: `Err` says why not.
    fn read_side(&self) -> Result<&Queries, String> {
        self.queries.as_ref().map_err(Clone::clone)
    }

    /// Waits (bounded) until the projection has caught up with everything appended so far.
    async fn settle(&self, anchor_wallet: Uuid) {
        let Ok(queries) = self.read_side() else { return };
        let Ok(head) = head_position(&self.database).await else { return };
        if let Err(error) = queries.wallet_at(anchor_wallet, head, SETTLE_WAIT).await {
            eprintln!("warning: the projection did not catch up with position {head} between phases: {error:#}");
        }
    }
}

/// Waits until `GET /health/ready` answers 2xx.
async fn wait_ready(endpoint: &Arc<Endpoint>, wait: Duration) -> anyhow::Result<()> {
    let pool = Pool::new(endpoint.clone());
    let deadline = Instant::now() + wait;
    loop {
        let last = match pool.send(&Request::get("/health/ready")).await {
            Ok(response) if response.is_success() => return Ok(()),
            Ok(response) => {
                format!("GET {}/health/ready: status {}: {}", endpoint.url, response.status, response.text())
            }
            Err(error) => format!("GET {}/health/ready: {error:#}", endpoint.url),
        };
        if Instant::now() >= deadline {
            bail!("{last} (waited {}s)", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The database a Postgres URL names: `postgres://u@h:5432/NAME?options` → `NAME`.
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// The event store as it stands: events appended, and bytes on disk of its tables (indexes and TOAST included).
pub async fn event_store_size(database: &PgPool) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events),
                (SELECT sum(pg_total_relation_size(t))::bigint
                 FROM unnest(ARRAY['events', 'streams', 'idempotency_keys', 'wallet_owners']::regclass[]) AS t)",
    )
    .fetch_one(database)
    .await
    .context("measure the event store")
}

/// Where the server's write-ahead log is now (`pg_current_wal_lsn()`): WAL bytes since then are
/// [`wal_bytes_since`]. The WAL is the whole server's, so it counts the projector's writes too.
pub async fn wal_position(database: &PgPool) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(database).await.context("read the WAL position")
}

/// Bytes of write-ahead log written since `position` (from [`wal_position`]).
pub async fn wal_bytes_since(database: &PgPool, position: &str) -> anyhow::Result<f64> {
    sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
        .bind(position)
        .fetch_one(database)
        .await
        .context("measure the WAL written")
}

/// The position of the last event appended.
pub async fn head_position(database: &PgPool) -> anyhow::Result<i64> {
    let (head,): (i64,) = sqlx::query_as("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(database)
        .await
        .context("read the head position")?;
    Ok(head)
}

/// The wallets the spread, projection-lag and reads scenarios share, all of one asset of scale 2.
pub struct Population {
    pub wallets: Arc<Vec<Uuid>>,
}

/// Runs every scenario that was asked for, filling `report`; never fails: what breaks becomes a reason
/// and, where it is a correctness matter, a failed check.
pub async fn run_all(mut bench: Bench, report: &mut Report) {
    let mut phases = Phases::default();
    let plan = bench.plan;
    report.pgbench.clients = bench.config.pgbench_clients;
    report.pgbench.seconds = plan.pgbench.as_secs();
    report.scenarios.spread.wallets = bench.config.wallets;
    report.scenarios.spread.workers = bench.config.workers;
    report.scenarios.reads.workers = bench.config.read_workers;
    report.scenarios.hot_wallet.spends = bench.config.hot_spends;
    report.scenarios.hot_wallet.funded = bench.config.hot_funds;

    if bench.wants(Scenario::Pgbench) {
        phases.begin(
            report,
            &bench.memory,
            "pgbench",
            "pgbench: the minimal SQL of one command, then 50 per transaction",
        );
        let settings = pgbench::Settings {
            binary: bench.config.pgbench_bin.clone(),
            database_url: bench.config.database_url.clone(),
            clients: bench.config.pgbench_clients,
            duration: plan.pgbench,
        };
        let work_dir = std::env::temp_dir().join(format!("tally-bench-{}", std::process::id()));
        let result = match std::fs::create_dir_all(&work_dir) {
            Ok(()) => pgbench::run(&bench.database, &settings, &work_dir, &bench.processes).await,
            Err(error) => Err(anyhow::Error::new(error).context("create a scratch directory")),
        };
        let _scratch_left_behind_is_harmless = std::fs::remove_dir_all(&work_dir);
        match result {
            Ok(figures) => {
                report.pgbench.minimal_command_tx_per_s = Some(figures.minimal_command_tx_per_s);
                report.pgbench.batched_50_commands_per_s = Some(figures.batched_50_commands_per_s);
                report.pgbench.minimal_bytes_per_command = Some(figures.minimal_bytes_per_command);
                report.pgbench.batched_bytes_per_command = Some(figures.batched_bytes_per_command);
                report.pgbench.minimal_wal_bytes_per_command = Some(figures.minimal_wal_bytes_per_command);
                eprintln!(
                    "    {}",
                    crate::cpu::describe_per_thousand(&figures.minimal_cpu_ms_per_1000_tx, "minimal transactions")
                );
                report.pgbench.minimal_cpu_ms_per_1000_tx = figures.minimal_cpu_ms_per_1000_tx;
                eprintln!(
                    "    minimal: {:.0} tx/s, {:.0} bytes per command ({:.0} of WAL); 50 per transaction: {:.0} \
                     commands/s, {:.0} bytes each",
                    figures.minimal_command_tx_per_s,
                    figures.minimal_bytes_per_command,
                    figures.minimal_wal_bytes_per_command,
                    figures.batched_50_commands_per_s,
                    figures.batched_bytes_per_command
                );
            }
            Err(error) => {
                report.pgbench.reason = Some(format!("{error:#}"));
                fail(report, "pgbench ran", format!("{error:#}"));
            }
        }
    } else {
        report.pgbench.reason = Some(skipped());
    }

    let needs_population = [Scenario::Spread, Scenario::ProjectionLag, Scenario::Reads].iter().any(|s| bench.wants(*s));
    let population = if needs_population {
        phases.begin(
            report,
            &bench.memory,
            "setup",
            &format!("setup: {} wallets, opened and funded through the API", bench.config.wallets),
        );
        match populate(&bench).await {
            Ok((population, rate)) => {
                report.scenarios.spread.setup_commands_per_s = Some(rate);
                Some(population)
            }
            Err(error) => {
                let reason = format!("setup failed: {error:#}");
                fail(report, "setup of the spread wallets", reason.clone());
                report.scenarios.spread.reason = Some(reason.clone());
                report.scenarios.projection_lag.reason = Some(reason.clone());
                report.scenarios.reads.reason = Some(reason);
                None
            }
        }
    } else {
        None
    };

    // Does the read side project? The wallets just opened must show up within a bound.
    if let (Some(population), Ok(queries)) = (&population, &bench.queries) {
        phases.begin(report, &bench.memory, "setup", "read side: waiting for the projection to show the new wallets");
        let anchor = population.wallets[0];
        let probe = async {
            let head = head_position(&bench.database).await?;
            queries.wallet_at(anchor, head, FIRST_PROJECTION_WAIT).await
        };
        if let Err(error) = probe.await {
            let reason = format!("the projection does not show the wallets opened by the setup: {error:#}");
            eprintln!("warning: {reason}");
            bench.queries = Err(reason);
        }
    }
    let bench = &bench;

    if bench.wants(Scenario::Spread) {
        match &population {
            Some(population) => {
                phases.begin(report, &bench.memory, "spread", "spread: closed loop, then open loops at half load");
                let pgbench_rate = report.pgbench.minimal_command_tx_per_s;
                if let Err(error) = spread::run(bench, population, pgbench_rate, &mut report.scenarios.spread).await {
                    report.scenarios.spread.reason = Some(format!("{error:#}"));
                    fail(report, "spread ran", format!("{error:#}"));
                }
                let errors = report.scenarios.spread.errors.unwrap_or(0);
                if report.scenarios.spread.commands_per_s.is_some() {
                    check(report, "spread: no errors", errors == 0, format!("{errors} errors"));
                }
                bench.settle(population.wallets[0]).await;
            }
            None if report.scenarios.spread.reason.is_none() => report.scenarios.spread.reason = Some(skipped()),
            None => {}
        }
    } else {
        report.scenarios.spread.reason = Some(skipped());
    }

    if bench.wants(Scenario::HotWallet) {
        phases.begin(
            report,
            &bench.memory,
            "hot_wallet",
            &format!(
                "hot wallet: {} concurrent spends of 1 on a wallet funded with {}",
                bench.config.hot_spends, bench.config.hot_funds
            ),
        );
        match hot_wallet::run(bench, &mut report.scenarios.hot_wallet).await {
            Ok(checks) => report.correctness.extend(checks),
            Err(error) => {
                report.scenarios.hot_wallet.reason = Some(format!("{error:#}"));
                fail(report, "hot wallet ran", format!("{error:#}"));
            }
        }
    } else {
        report.scenarios.hot_wallet.reason = Some(skipped());
    }

    if bench.wants(Scenario::Holds) {
        phases.begin(
            report,
            &bench.memory,
            "holds",
            &format!(
                "holds: {} concurrent holds of 1 on a wallet funded with {}, their captures, {} expiring within 1 s",
                bench.config.holds, bench.config.holds_funded, bench.config.holds_expiring
            ),
        );
        match holds::run(bench, &mut report.scenarios.holds).await {
            Ok(checks) => report.correctness.extend(checks),
            Err(error) => {
                report.scenarios.holds.reason = Some(format!("{error:#}"));
                fail(report, "holds ran", format!("{error:#}"));
            }
        }
    } else {
        report.scenarios.holds.reason = Some(skipped());
    }

    let spread_rate = report.scenarios.spread.commands_per_s;
    if bench.wants(Scenario::ProjectionLag) {
        match (&population, bench.read_side(), spread_rate) {
            (Some(population), Ok(queries), Some(rate)) => {
                phases.begin(
                    report,
                    &bench.memory,
                    "projection_lag",
                    "projection lag: commands at half the spread rate, each sample read back with min_position",
                );
                let lag = &mut report.scenarios.projection_lag;
                match projection_lag::run(bench, population, queries, rate * 0.5, lag).await {
                    Ok(checks) => report.correctness.extend(checks),
                    Err(error) => {
                        report.scenarios.projection_lag.reason = Some(format!("{error:#}"));
                        fail(report, "projection lag ran", format!("{error:#}"));
                    }
                }
                bench.settle(population.wallets[0]).await;
            }
            (_, Err(reason), _) => report.scenarios.projection_lag.reason = Some(reason),
            (_, _, None) => {
                report.scenarios.projection_lag.reason.get_or_insert_with(|| "needs the spread rate".to_owned());
            }
            (None, _, _) => {
                report.scenarios.projection_lag.reason.get_or_insert_with(skipped);
            }
        }
    } else {
        report.scenarios.projection_lag.reason = Some(skipped());
    }

    if bench.wants(Scenario::Feeds) {
        match (&population, bench.read_side(), spread_rate) {
            (Some(population), Ok(queries), Some(rate)) => {
                phases.begin(
                    report,
                    &bench.memory,
                    "feeds",
                    &format!(
                        "feeds: {} subscribers of /v1/transfers/stream, commands at half the spread rate",
                        bench.config.feed_subscribers
                    ),
                );
                match feeds::run(bench, population, queries, rate * 0.5, &mut report.scenarios.feeds).await {
                    Ok(checks) => report.correctness.extend(checks),
                    Err(error) => {
                        report.scenarios.feeds.reason = Some(format!("{error:#}"));
                        fail(report, "feeds ran", format!("{error:#}"));
                    }
                }
                bench.settle(population.wallets[0]).await;
            }
            (_, Err(reason), _) => report.scenarios.feeds.reason = Some(reason),
            (_, _, None) => {
                report.scenarios.feeds.reason.get_or_insert_with(|| "needs the spread rate".to_owned());
            }
            (None, _, _) => {
                report.scenarios.feeds.reason.get_or_insert_with(skipped);
            }
        }
    } else {
        report.scenarios.feeds.reason = Some(skipped());
    }

    if bench.wants(Scenario::Reads) {
        match (&population, bench.read_side()) {
            (Some(population), Ok(queries)) => {
                phases.begin(report, &bench.memory, "reads", "reads: closed loop of GET /v1/wallets/{id}");
                if let Err(error) = reads::run(bench, population, queries, &mut report.scenarios.reads).await {
                    report.scenarios.reads.reason = Some(format!("{error:#}"));
                    fail(report, "reads ran", format!("{error:#}"));
                }
                let errors = report.scenarios.reads.errors.unwrap_or(0);
                if report.scenarios.reads.requests_per_s.is_some() {
                    check(report, "reads: no errors", errors == 0, format!("{errors} errors"));
                }
            }
            (_, Err(reason)) => report.scenarios.reads.reason = Some(reason),
            (None, _) => {
                report.scenarios.reads.reason.get_or_insert_with(skipped);
            }
        }
    } else {
        report.scenarios.reads.reason = Some(skipped());
    }

    phases.begin(
        report,
        &bench.memory,
        "checks",
        "correctness: zero sum per asset, read models equal to the snapshots",
    );
    report.correctness.push(checks::zero_sum(&bench.database, "after the load").await);
    if let (Ok(_), Some(population)) = (bench.read_side(), &population) {
        bench.settle(population.wallets[0]).await;
        report.correctness.push(checks::read_models_match_snapshots(&bench.database, "after the load").await);
    }

    if bench.wants(Scenario::Rebuild) {
        phases.begin(report, &bench.memory, "rebuild", "rebuild: projector rebuild of everything appended so far");
        match rebuild::run(bench, &mut report.scenarios.rebuild).await {
            Ok(rebuild::Outcome::Rebuilt) => {
                report
                    .correctness
                    .push(checks::read_models_match_snapshots(&bench.database, "after the rebuild").await);
            }
            Ok(rebuild::Outcome::NotReady(reason)) => report.scenarios.rebuild.reason = Some(reason),
            Err(error) => {
                report.scenarios.rebuild.reason = Some(format!("{error:#}"));
                fail(report, "projector rebuild ran", format!("{error:#}"));
            }
        }
    } else {
        report.scenarios.rebuild.reason = Some(skipped());
    }
    if bench.read_side().is_ok() && bench.config.projector_bin.exists() {
        let when = "after the load and the rebuild";
        report
            .correctness
            .push(checks::projector_verify(&bench.config.projector_bin, &bench.config.database_url, when).await);
    }

    if bench.wants(Scenario::FlatCost) {
        phases.begin(
            report,
            &bench.memory,
            "flat_cost",
            &format!("flat cost: a wallet with {} events against a fresh one", plan.flat_events),
        );
        if let Err(error) = flat_cost::run(bench, &mut report.scenarios.flat_cost).await {
            report.scenarios.flat_cost.reason = Some(format!("{error:#}"));
            fail(report, "flat cost ran", format!("{error:#}"));
        }
        report.correctness.push(checks::zero_sum(&bench.database, "after the flat-cost seed").await);
    } else {
        report.scenarios.flat_cost.reason = Some(skipped());
    }

    if bench.wants(Scenario::Export) {
        match bench.read_side() {
            Ok(_) => {
                phases.begin(
                    report,
                    &bench.memory,
                    "export",
                    "export: GET /v1/export of the whole log, then tally-audit verify",
                );
                match export::run(bench, &mut report.scenarios.export).await {
                    Ok(checks) => report.correctness.extend(checks),
                    Err(error) => {
                        report.scenarios.export.reason = Some(format!("{error:#}"));
                        fail(report, "export ran", format!("{error:#}"));
                    }
                }
            }
            Err(reason) => report.scenarios.export.reason = Some(reason),
        }
    } else {
        report.scenarios.export.reason = Some(skipped());
    }

    phases.end(report, &bench.memory);
    let memory = &mut report.scenarios.memory;
    let mut reasons = Vec::new();
    for (name, peak) in bench.memory.peaks_mb() {
        let slot = match name {
            "command_service" => &mut memory.command_service_rss_mb,
            "projector" => &mut memory.projector_rss_mb,
            _ => &mut memory.query_service_rss_mb,
        };
        match peak {
            Ok(megabytes) => *slot = Some((megabytes * 10.0).round() / 10.0),
            Err(reason) => reasons.push(format!("{name}: {reason}")),
        }
    }
    if !reasons.is_empty() {
        memory.reason = Some(reasons.join("; "));
    }
}

/// The phases of a run, for the memory each one costs.
#[derive(Default)]
struct Phases {
    current: Option<&'static str>,
}

impl Phases {
    fn begin(&mut self, report: &mut Report, memory: &Sampler, key: &'static str, title: &str) {
        eprintln!("==> {title}");
        if self.current != Some(key) {
            self.end(report, memory);
            self.current = Some(key);
        }
    }

    /// Files the memory peaks of the phase that ends under its name.
    fn end(&mut self, report: &mut Report, memory: &Sampler) {
        let peaks = memory.take_phase_peaks_mb();
        if let (Some(key), false) = (self.current.take(), peaks.is_empty()) {
            report.scenarios.memory.phase_peaks_mb.insert(key.to_owned(), peaks);
        }
    }
}

fn skipped() -> String {
    "not run (--only)".to_owned()
}

fn check(report: &mut Report, name: &str, passed: bool, detail: String) {
    report.correctness.push(Check { check: name.to_owned(), passed, detail });
}

fn fail(report: &mut Report, name: &str, detail: String) {
    eprintln!("error: {name}: {detail}");
    check(report, name, false, detail);
}

/// Opens and funds the spread wallets at high concurrency; returns them and the commands per second.
async fn populate(bench: &Bench) -> anyhow::Result<(Population, f64)> {
    let commands = &bench.commands;
    let asset = format!("SPREAD_{}", commands.keys.run_tag());
    commands.define_asset(&asset, 2).await?;
    let count = bench.config.wallets;
    let opener = Arc::new(OpenWallets {
        commands: commands.clone(),
        asset: asset.clone(),
        owner_prefix: format!("bench-{}", commands.keys.run_tag().to_ascii_lowercase()),
        opened: std::sync::Mutex::new(vec![None; count]),
    });
    let started = Instant::now();
    let opened =
        load::closed_loop(commands.endpoint(), SETUP_CONCURRENCY, Stop::Count(count as u64), opener.clone()).await;
    if opened.error_count() > 0 || opened.ok != count as u64 {
        bail!("opening {count} wallets: {} opened, errors: {}", opened.ok, opened.errors_summary());
    }
    let wallets: Vec<Uuid> = opener.opened.lock().expect("unpoisoned").iter().flatten().copied().collect();
    let wallets = Arc::new(wallets);
    let funder = Arc::new(Fund { commands: commands.clone(), wallets: wallets.clone(), amount: SPREAD_FUNDS });
    let funded = load::closed_loop(commands.endpoint(), SETUP_CONCURRENCY, Stop::Count(count as u64), funder).await;
    if funded.error_count() > 0 || funded.ok != count as u64 {
        bail!("funding {count} wallets: {} funded, errors: {}", funded.ok, funded.errors_summary());
    }
    let rate = (2 * count) as f64 / started.elapsed().as_secs_f64();
    Ok((Population { wallets }, rate))
}

struct OpenWallets {
    commands: Commands,
    asset: String,
    owner_prefix: String,
    opened: std::sync::Mutex<Vec<Option<Uuid>>>,
}

impl Workload for OpenWallets {
    fn call(&self, sequence: u64) -> Call {
        let owner = format!("{}-{sequence}", self.owner_prefix);
        Call { request: self.commands.open_wallet_request(&owner, &self.asset), wallet_id: None, sequence }
    }

    fn judge(&self, call: &Call, response: &Response) -> Verdict {
        if !response.is_success() {
            return load::judge_command(response, &[]);
        }
        match crate::api::wallet_id_of(response) {
            Ok(wallet_id) => {
                self.opened.lock().expect("unpoisoned")[call.sequence as usize] = Some(wallet_id);
                Verdict::Ok
            }
            Err(error) => Verdict::Error(format!("{error:#}")),
        }
    }
}

struct Fund {
    commands: Commands,
    wallets: Arc<Vec<Uuid>>,
    amount: &'static str,
}

impl Workload for Fund {
    fn call(&self, sequence: u64) -> Call {
        let wallet_id = self.wallets[sequence as usize];
        Call {
            request: self.commands.move_request(wallet_id, "topup", self.amount),
            wallet_id: Some(wallet_id),
            sequence,
        }
    }

    fn judge(&self, _call: &Call, response: &Response) -> Verdict {
        load::judge_command(response, &[])
    }
}

/// The spread mix: top-ups, spends and transfers, a third each, of 0.01 to 5.00, over random wallets.
#[derive(Clone)]
pub struct Mix {
    pub commands: Commands,
    pub wallets: Arc<Vec<Uuid>>,
}

impl Mix {
    pub fn call(&self, sequence: u64) -> Call {
        let mut rng = rand::rng();
        let wallet_id = self.wallets[rng.random_range(0..self.wallets.len())];
        let cents: u32 = rng.random_range(1..=500);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let request = match rng.random_range(0..3) {
            0 => self.commands.move_request(wallet_id, "topup", &amount),
            1 => self.commands.move_request(wallet_id, "spend", &amount),
            _ => {
                let mut to = self.wallets[rng.random_range(0..self.wallets.len())];
                while to == wallet_id && self.wallets.len() > 1 {
                    to = self.wallets[rng.random_range(0..self.wallets.len())];
                }
                self.commands.transfer_request(wallet_id, to, &amount)
            }
        };
        Call { request, wallet_id: Some(wallet_id), sequence }
    }
}

impl Workload for Mix {
    fn call(&self, sequence: u64) -> Call {
        Mix::call(self, sequence)
    }

    fn judge(&self, _call: &Call, response: &Response) -> Verdict {
        load::judge_command(response, &["insufficient_funds"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_the_last_path_segment() {
        assert_eq!(database_name("postgres://root@127.0.0.1:5432/tally_bench_7"), "tally_bench_7");
        assert_eq!(database_name("postgres://u:p@h/db?sslmode=disable"), "db");
    }
}
