//! The report: `target/bench/report.json` (figures, targets, correctness checks) and the table printed
//! for people. A figure that could not be measured is `null`, with the reason beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Every figure of a run. Field names are the JSON keys of issue 5.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub pgbench: Pgbench,
    pub scenarios: Scenarios,
    /// Each target of SPEC §6 with the figure measured against it.
    pub targets: Vec<Target>,
    /// Exactness checks: any failure makes the bench exit non-zero.
    pub correctness: Vec<Check>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    pub quick: bool,
    pub started_at: String,
    pub duration_s: f64,
    pub cores: usize,
    /// CPU seconds the bench itself used (user + system): the load generator shares the machine it measures.
    pub bench_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Pgbench {
    pub minimal_command_tx_per_s: Option<f64>,
    pub batched_50_commands_per_s: Option<f64>,
    /// Bytes each command left on disk (tables, indexes, TOAST), one per transaction and 50 per transaction.
    pub minimal_bytes_per_command: Option<f64>,
    pub batched_bytes_per_command: Option<f64>,
    /// Write-ahead log per command, one command per transaction.
    pub minimal_wal_bytes_per_command: Option<f64>,
    /// CPU milliseconds per 1,000 minimal transactions, by process group (`cpu.rs`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub minimal_cpu_ms_per_1000_tx: BTreeMap<String, f64>,
    pub clients: u32,
    pub seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scenarios {
    pub spread: Spread,
    pub hot_wallet: HotWallet,
    pub holds: Holds,
    pub projection_lag: ProjectionLag,
    pub feeds: Feeds,
    pub rebuild: Rebuild,
    pub flat_cost: FlatCost,
    pub export: Export,
    pub reads: Reads,
    pub memory: Memory,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    /// Closed loop: completed commands per second.
    pub commands_per_s: Option<f64>,
    /// Open loop at the half load of SPEC §6 (`half_load`): its median and 99th percentile.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Every run: answers that were neither a success nor an expected rejection.
    pub errors: Option<u64>,
    /// Every run: `insufficient_funds` answers (expected now and then, never an error).
    pub rejected: Option<u64>,
    pub wallets: usize,
    pub workers: usize,
    pub closed_loop_p50_ms: Option<f64>,
    pub closed_loop_p99_ms: Option<f64>,
    /// Opening and funding the wallets: commands per second at high concurrency.
    pub setup_commands_per_s: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub closed_loop_cpu_percent: BTreeMap<String, f64>,
    pub closed_loop_appender: Appender,
    /// Closed loop: events appended and bytes left on disk (event store tables, indexes, TOAST) per command.
    pub closed_loop_events_per_command: Option<f64>,
    pub closed_loop_bytes_per_command: Option<f64>,
    /// Closed loop: write-ahead log per command, the projector's included (the whole server's WAL).
    pub closed_loop_wal_bytes_per_command: Option<f64>,
    /// Closed loop: CPU milliseconds per 1,000 commands of each process group (`cpu.rs`: Postgres split into the
    /// appender's backends, the projector's, query-service's and the rest).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub closed_loop_cpu_ms_per_1000_commands: BTreeMap<String, f64>,
    /// The open loop the p99 target is judged on: "half that load", half the pgbench rate the throughput
    /// target names (half the spread's own rate when pgbench did not run).
    pub half_load: Option<OpenLoop>,
    /// The stricter reading, also measured when it is the higher load: half the spread's own rate.
    /// Reported, not judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_own_rate: Option<OpenLoop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One open-loop run of the spread mix at a fixed rate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpenLoop {
    pub rate_per_s: f64,
    /// How the rate was derived, such as `0.5 × pgbench minimal`.
    pub basis: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub dropped: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    pub appender: Appender,
    /// The disk's own sync latency meanwhile (`null` when the probe could not run).
    pub disk_sync: Option<crate::disk::DiskSync>,
}

/// What command-service's own metrics say its appender did during a run (group commit at work).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Appender {
    pub batches: Option<f64>,
    pub batches_per_s: Option<f64>,
    pub mean_batch_size: Option<f64>,
    pub retries: Option<f64>,
    pub conflicts: Option<f64>,
    /// Mean time of a batch attempt in each phase (`tally_append_phase_seconds`), in milliseconds.
    pub phase_mean_ms: BTreeMap<String, f64>,
}

impl Appender {
    /// One line for the log: batches, their mean size, and where a batch's time goes.
    pub fn describe(&self) -> String {
        let mut line = match (self.batches_per_s, self.mean_batch_size) {
            (Some(batches), Some(size)) => format!("appender: {batches:.0} batches/s of {size:.1} commands on average"),
            _ => "appender: no metrics".to_owned(),
        };
        if !self.phase_mean_ms.is_empty() {
            line.push_str("; mean ms per phase:");
            for (phase, mean_ms) in &self.phase_mean_ms {
                let _ = write!(line, " {phase} {mean_ms:.1}");
            }
        }
        line
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HotWallet {
    pub commands_per_s: Option<f64>,
    pub succeeded: Option<u64>,
    pub rejected: Option<u64>,
    pub final_balance: Option<i64>,
    pub errors: Option<u64>,
    pub spends: u64,
    pub funded: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub appender: Appender,
    /// Percent of one core used by the bench, each service and Postgres during the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The export scenario: the whole log as NDJSON, and tally-audit over it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Export {
    pub events: Option<u64>,
    pub bytes: Option<u64>,
    pub events_per_s: Option<f64>,
    pub audit_events_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The holds scenario: placement and capture bursts on one wallet, and the expirer's delay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Holds {
    pub holds: u64,
    pub funded: u64,
    pub placed: Option<u64>,
    pub rejected: Option<u64>,
    pub place_per_s: Option<f64>,
    pub place_p99_ms: Option<f64>,
    pub captured: Option<u64>,
    pub capture_per_s: Option<f64>,
    pub capture_p99_ms: Option<f64>,
    pub final_balance: Option<i64>,
    pub final_held: Option<i64>,
    pub errors: Option<u64>,
    pub expiring: u64,
    pub expired: Option<u64>,
    /// Release time minus `expires_at`, over the expiring holds.
    pub expiry_delay_p50_ms: Option<f64>,
    pub expiry_delay_p99_ms: Option<f64>,
    pub expiry_delay_max_ms: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub place_cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capture_cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectionLag {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub samples: Option<u64>,
    pub commands_per_s: Option<f64>,
    pub errors: Option<u64>,
    /// Percent of one core used by the bench, each service and Postgres during the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The transfers feed's subscribers while commands run at half the spread rate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Feeds {
    pub subscribers: Option<u64>,
    /// Transfers acknowledged (201) during the run: each subscriber must get every one.
    pub transfers: Option<u64>,
    /// Deliveries timed: transfers × subscribers when none is missing.
    pub delivered: Option<u64>,
    /// From the command's 201 to the subscriber's receipt of its message.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub missing: Option<u64>,
    /// Messages received twice or out of position order.
    pub repeated: Option<u64>,
    pub resets: Option<u64>,
    pub commands_per_s: Option<f64>,
    pub errors: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rebuild {
    pub events_per_s: Option<f64>,
    pub events: Option<u64>,
    pub seconds: Option<f64>,
    /// Percent of one core used by the bench, each service and Postgres during the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FlatCost {
    /// p50 of a spend on the deep wallet over p50 of a spend on a fresh one.
    pub command_ratio: Option<f64>,
    /// p50 of a history page deep in the deep wallet over p50 of the same page on a fresh one.
    pub history_page_ratio: Option<f64>,
    pub wallet_events: Option<i64>,
    pub seeded_events: Option<u64>,
    pub seed_events_per_s: Option<f64>,
    /// How long the projector took to catch up with the seeded events, and its rate.
    pub catch_up_s: Option<f64>,
    pub catch_up_events_per_s: Option<f64>,
    pub deep_command_p50_ms: Option<f64>,
    pub fresh_command_p50_ms: Option<f64>,
    pub deep_page_p50_ms: Option<f64>,
    pub fresh_page_p50_ms: Option<f64>,
    /// The version just above which the deep page starts.
    pub deep_page_version: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub seed_cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub catch_up_cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Reads {
    pub requests_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: Option<u64>,
    pub workers: usize,
    /// Percent of one core used by the bench, each service and Postgres during the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_percent: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub command_service_rss_mb: Option<f64>,
    pub projector_rss_mb: Option<f64>,
    pub query_service_rss_mb: Option<f64>,
    /// The sampled peak of each service during each phase, in MB: which load costs the memory.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub phase_peaks_mb: BTreeMap<String, BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a figure should be at least or at most its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    AtLeast,
    AtMost,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub figure: String,
    pub value: Option<f64>,
    pub unit: String,
    pub direction: Direction,
    pub target: Option<f64>,
    /// How the target is derived, such as `1.0 × pgbench minimal`.
    pub target_text: String,
    /// `value / target`.
    pub ratio: Option<f64>,
    /// `None` when either side could not be measured.
    pub pass: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

impl Report {
    /// Derives the targets of SPEC §6 from the figures.
    pub fn evaluate_targets(&mut self) {
        let scenarios = &self.scenarios;
        let pgbench_minimal = self.pgbench.minimal_command_tx_per_s;
        let spread = scenarios.spread.commands_per_s;
        let half_spread = spread.map(|rate| rate * 0.5);
        let memory = &scenarios.memory;
        let mut targets = vec![
            target(
                "spread commands/s",
                spread,
                "/s",
                Direction::AtLeast,
                pgbench_minimal,
                "1.0 × pgbench minimal",
                scenarios.spread.reason.as_ref().or(self.pgbench.reason.as_ref()),
            ),
            target(
                "spread p99 at half load",
                scenarios.spread.p99_ms,
                "ms",
                Direction::AtMost,
                Some(25.0),
                "25 ms",
                scenarios.spread.reason.as_ref(),
            ),
            target(
                "hot wallet commands/s",
                scenarios.hot_wallet.commands_per_s,
                "/s",
                Direction::AtLeast,
                half_spread,
                "0.5 × spread",
                scenarios.hot_wallet.reason.as_ref().or(scenarios.spread.reason.as_ref()),
            ),
            target(
                "holds placed/s",
                scenarios.holds.place_per_s,
                "/s",
                Direction::AtLeast,
                half_spread,
                "0.5 × spread",
                scenarios.holds.reason.as_ref().or(scenarios.spread.reason.as_ref()),
            ),
            target(
                "holds captured/s",
                scenarios.holds.capture_per_s,
                "/s",
                Direction::AtLeast,
                half_spread,
                "0.5 × spread",
                scenarios.holds.reason.as_ref().or(scenarios.spread.reason.as_ref()),
            ),
            target(
                "hold expiry delay p99",
                scenarios.holds.expiry_delay_p99_ms,
                "ms",
                Direction::AtMost,
                Some(2_000.0),
                "2,000 ms",
                scenarios.holds.reason.as_ref(),
            ),
            target(
                "projection lag p99",
                scenarios.projection_lag.p99_ms,
                "ms",
                Direction::AtMost,
                Some(100.0),
                "100 ms",
                scenarios.projection_lag.reason.as_ref(),
            ),
            target(
                "feeds delivery p99",
                scenarios.feeds.p99_ms,
                "ms",
                Direction::AtMost,
                Some(250.0),
                "250 ms",
                scenarios.feeds.reason.as_ref(),
            ),
            target(
                "rebuild events/s",
                scenarios.rebuild.events_per_s,
                "/s",
                Direction::AtLeast,
                Some(50_000.0),
                "50,000/s",
                scenarios.rebuild.reason.as_ref(),
            ),
            target(
                "flat cost: command",
                scenarios.flat_cost.command_ratio,
                "×",
                Direction::AtMost,
                Some(1.5),
                "1.5 × fresh wallet",
                scenarios.flat_cost.reason.as_ref(),
            ),
            target(
                "flat cost: history page",
                scenarios.flat_cost.history_page_ratio,
                "×",
                Direction::AtMost,
                Some(1.5),
                "1.5 × fresh wallet",
                scenarios.flat_cost.history_reason.as_ref().or(scenarios.flat_cost.reason.as_ref()),
            ),
            target(
                "reads requests/s",
                scenarios.reads.requests_per_s,
                "/s",
                Direction::AtLeast,
                Some(10_000.0),
                "10,000/s",
                scenarios.reads.reason.as_ref(),
            ),
        ];
        for (name, value) in [
            ("command-service RSS", memory.command_service_rss_mb),
            ("projector RSS", memory.projector_rss_mb),
            ("query-service RSS", memory.query_service_rss_mb),
        ] {
            targets.push(target(name, value, "MB", Direction::AtMost, Some(150.0), "150 MB", memory.reason.as_ref()));
        }
        self.targets = targets;
    }

    pub fn correctness_passed(&self) -> bool {
        self.correctness.iter().all(|check| check.passed)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let rule = "-".repeat(100);
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(out, "{:<28} {:>14}  {:<26} {:>8}  verdict", "figure", "value", "target", "ratio");
        let _ = writeln!(out, "{rule}");
        for (name, value) in [
            ("pgbench minimal command tx/s", self.pgbench.minimal_command_tx_per_s),
            ("pgbench 50 per tx, cmd/s", self.pgbench.batched_50_commands_per_s),
        ] {
            let shown = value.map_or_else(|| "null".to_owned(), |value| format_value(value, "/s"));
            let _ = writeln!(out, "{name:<28} {shown:>14}  {:<26} {:>8}  reference", "(the machine's limit)", "");
        }
        for target in &self.targets {
            let value = target.value.map_or_else(|| "null".to_owned(), |value| format_value(value, &target.unit));
            let bound = match target.target {
                Some(bound) => format!(
                    "{} {} ({})",
                    if target.direction == Direction::AtLeast { "≥" } else { "≤" },
                    format_value(bound, &target.unit),
                    target.target_text
                ),
                None => format!("{} (unknown)", target.target_text),
            };
            let ratio = target.ratio.map_or_else(String::new, |ratio| format!("{ratio:.2}"));
            let verdict = match (target.pass, &target.reason) {
                (Some(true), _) => "pass".to_owned(),
                (Some(false), _) => "MISS".to_owned(),
                (None, Some(reason)) => format!("n/a: {}", shortened(reason)),
                (None, None) => "n/a".to_owned(),
            };
            let _ = writeln!(out, "{:<28} {value:>14}  {bound:<26} {ratio:>8}  {verdict}", target.figure);
        }
        let spread = &self.scenarios.spread;
        for open in spread.half_load.iter().chain(&spread.half_own_rate) {
            let _ = writeln!(
                out,
                "spread open loop at {} ({}): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
                format_value(open.rate_per_s, "/s"),
                open.basis,
                open.p50_ms,
                open.p99_ms,
                open.p999_ms
            );
            if let Some(disk) = &open.disk_sync {
                let _ = writeln!(out, "    meanwhile {}", disk.describe());
            }
        }
        let _ = writeln!(out, "{rule}");
        for check in &self.correctness {
            let verdict = if check.passed { "ok    " } else { "FAILED" };
            let _ = writeln!(out, "{verdict} {}: {}", check.check, check.detail);
        }
        let _ = writeln!(out, "{rule}");
        out
    }
}

/// A reason as the table shows it: its first line, cut short (the JSON has it whole).
fn shortened(reason: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 90;
    let line = reason.lines().next().unwrap_or_default();
    match line.char_indices().nth(SHOWN_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn target(
    figure: &str,
    value: Option<f64>,
    unit: &str,
    direction: Direction,
    bound: Option<f64>,
    target_text: &str,
    reason: Option<&String>,
) -> Target {
    let ratio = match (value, bound) {
        (Some(value), Some(bound)) if bound > 0.0 => Some(value / bound),
        _ => None,
    };
    let pass = ratio.map(|ratio| match direction {
        Direction::AtLeast => ratio >= 1.0,
        Direction::AtMost => ratio <= 1.0,
    });
    Target {
        figure: figure.to_owned(),
        value,
        unit: unit.to_owned(),
        direction,
        target: bound,
        target_text: target_text.to_owned(),
        ratio,
        pass,
        reason: if pass.is_none() { reason.cloned() } else { None },
    }
}

fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{}/s", thousands(value.round() as i64)),
        "ms" => format!("{value:.1} ms"),
        "MB" => format!("{value:.0} MB"),
        "×" => format!("{value:.2}×"),
        other => format!("{value:.2} {other}"),
    }
}

/// `12345` → `12,345`.
pub fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }

    #[test]
    fn a_target_passes_on_its_side_of_the_bound() {
        let at_least = target("t", Some(12.0), "/s", Direction::AtLeast, Some(10.0), "10", None);
        assert_eq!((at_least.pass, at_least.ratio), (Some(true), Some(1.2)));
        let at_most = target("t", Some(30.0), "ms", Direction::AtMost, Some(25.0), "25 ms", None);
        assert_eq!(at_most.pass, Some(false));
        let unknown = target("t", None, "ms", Direction::AtMost, Some(25.0), "25 ms", Some(&"not ready".to_owned()));
        assert_eq!((unknown.pass, unknown.reason.as_deref()), (None, Some("not ready")));
    }

    #[test]
    fn the_json_has_the_keys_of_the_issue() {
        let mut report = Report::default();
        report.evaluate_targets();
        let json = serde_json::to_value(&report).unwrap();
        for key in ["minimal_command_tx_per_s", "batched_50_commands_per_s"] {
            assert!(json["pgbench"].get(key).is_some(), "pgbench.{key}");
        }
        let scenarios = &json["scenarios"];
        for (scenario, keys) in [
            ("spread", &["commands_per_s", "p50_ms", "p99_ms", "errors", "closed_loop_wal_bytes_per_command"][..]),
            ("hot_wallet", &["commands_per_s", "succeeded", "rejected", "final_balance", "errors"]),
            ("holds", &["placed", "place_per_s", "captured", "capture_per_s", "expiry_delay_p99_ms"]),
            ("projection_lag", &["p50_ms", "p99_ms"]),
            ("feeds", &["subscribers", "p99_ms", "missing", "repeated"]),
            ("rebuild", &["events_per_s"]),
            ("flat_cost", &["command_ratio", "history_page_ratio"]),
            ("reads", &["requests_per_s"]),
            ("memory", &["command_service_rss_mb", "projector_rss_mb", "query_service_rss_mb"]),
        ] {
            for key in keys {
                assert!(scenarios[scenario].get(*key).is_some(), "{scenario}.{key}");
            }
        }
    }
}
