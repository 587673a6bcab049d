//! After the load: every acknowledged command found once, by its reference, with the id it was acknowledged
//! with; the sink holding exactly one unit per acknowledged transfer and the hot wallet the difference; and the
//! figures of the run (throughput, the longest stretch without an acknowledgement after the fault, retries,
//! replica lag).

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::load::{Ack, ClientLog, Kind, Setup};

/// Lookups by reference at once.
const LOOKUPS_IN_FLIGHT_MAX: usize = 16;
/// How long the read side may take to show the last acknowledged command.
const PROJECTION_WAIT: Duration = Duration::from_secs(60);
/// How often the replica-backed query-service's lag is sampled.
const REPLICA_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Failures listed in the report at most (all are counted).
const FAILURES_SHOWN_MAX: usize = 20;

/// The fault command's run.
#[derive(Debug)]
pub struct Fault {
    pub at: Instant,
    pub took: Duration,
    pub output: String,
}

pub async fn run_fault(command: &str) -> anyhow::Result<Fault> {
    eprintln!("fault: {command}");
    let at = Instant::now();
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("run the fault {command:?}"))?;
    let took = at.elapsed();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(output.status.success(), "the fault {command:?} failed: {said}");
    Ok(Fault { at, took, output: said.trim().to_owned() })
}

/// The replica-backed query-service's own view of its lag, sampled while the load runs.
#[derive(Debug, Default)]
pub struct ReplicaLag {
    pub samples: u64,
    pub positions_behind: Vec<i64>,
    pub replay_lag_bytes_max: i64,
    pub unanswered: u64,
}

pub async fn sample_replica(url: String, mut stopped: watch::Receiver<bool>) -> ReplicaLag {
    let client = reqwest::Client::new();
    let mut lag = ReplicaLag::default();
    while !*stopped.borrow_and_update() {
        lag.samples += 1;
        let answered = client.get(format!("{url}/health/ready")).timeout(Duration::from_secs(1)).send().await;
        match answered {
            Ok(response) => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if let Some(behind) = body["replica"]["positions_behind"].as_i64() {
                    lag.positions_behind.push(behind);
                }
                let bytes = body["replica"]["replay_lag_bytes"].as_i64().unwrap_or(0);
                lag.replay_lag_bytes_max = lag.replay_lag_bytes_max.max(bytes);
            }
            Err(_) => lag.unanswered += 1,
        }
        tokio::time::sleep(REPLICA_SAMPLE_INTERVAL).await;
    }
    lag
}

pub struct Run {
    pub started: Instant,
    pub load_ended: Instant,
    pub fault: Option<Fault>,
    pub logs: Vec<ClientLog>,
    pub replica_lag: Option<ReplicaLag>,
}

/// Every check and figure of a run, as the report's JSON (`failed` lists what did not hold).
pub async fn check(client: &Client, query_url: &str, setup: &Setup, name: &str, run: Run) -> anyhow::Result<Value> {
    let mut failed: Vec<String> = Vec::new();
    let acks: Vec<&Ack> = run.logs.iter().flat_map(|log| &log.acks).collect();
    for log in &run.logs {
        failed.extend(log.failures.iter().map(|failure| format!("unanswered or refused: {failure}")));
        failed.extend(log.replica_stale.iter().map(|stale| format!("stale read on the replica: {stale}")));
    }
    let topups = acks.iter().filter(|ack| ack.kind == Kind::Topup).count();
    let transfers = acks.len() - topups;
    let last_position = acks.iter().map(|ack| ack.position).max().unwrap_or(0);

    // The read side must show the last acknowledged command; then the balances are final.
    let wallet = |id: &str| format!("{query_url}/v1/wallets/{id}");
    let at = Some(last_position);
    let sink = client.get_ok(&wallet(&setup.sink), at, PROJECTION_WAIT).await.context("read the sink wallet")?;
    let hot = client.get_ok(&wallet(&setup.hot), at, PROJECTION_WAIT).await.context("read the hot wallet")?;
    let expect = |units: usize| format!("{units}.00");
    if sink["balance"] != expect(transfers).as_str() {
        failed.push(format!("the sink holds {} after {transfers} acknowledged transfers of 1.00", sink["balance"]));
    }
    if hot["balance"] != expect(topups - transfers).as_str() {
        failed.push(format!(
            "the hot wallet holds {} after {topups} top-ups and {transfers} transfers of 1.00",
            hot["balance"]
        ));
    }
    // Every lookup waits for the last acknowledged position: whichever query-service answers, replica or not.
    failed.extend(look_up_each(client, query_url, &acks, last_position).await);
    let replica_reads: u64 = run.logs.iter().map(|log| log.replica_reads).sum();
    let replica_unavailable: u64 = run.logs.iter().map(|log| log.replica_unavailable).sum();
    if replica_unavailable * 2 > replica_reads {
        failed.push(format!(
            "only {} of {replica_reads} reads back from the replica could be made",
            replica_reads - replica_unavailable
        ));
    }
    if let Some(lag) = &run.replica_lag {
        if lag.positions_behind.is_empty() {
            failed.push("the replica's query-service never reported reading from a replica".to_owned());
        }
    }

    let mut report = json!({
        "name": name,
        "asset": setup.asset,
        "clients": run.logs.len(),
        "acknowledged": acks.len(),
        // The pairs finished after the load ended are not counted in the rate.
        "acknowledged_per_s": per_second(
            acks.iter().filter(|ack| ack.acknowledged <= run.load_ended).count(),
            run.load_ended - run.started
        ),
        "retries": acks.iter().map(|ack| u64::from(ack.attempts - 1)).sum::<u64>(),
        "command_latency_max_ms": acks.iter().map(|ack| ack.acknowledged - ack.first_sent).max().map(millis),
        "replica_reads": replica_reads,
        "replica_reads_unavailable": replica_unavailable,
    });
    if let Some(fault) = &run.fault {
        report["fault_command_ms"] = json!(millis(fault.took));
        report["fault_said"] = json!(fault.output);
        let outage = outage(&acks, fault.at, run.load_ended);
        report["first_success_after_fault_ms"] = json!(outage.first_success.map(millis));
        report["longest_gap_after_fault_ms"] = json!(millis(outage.longest_gap));
        report["acknowledged_per_s_before_fault"] =
            json!(per_second(acks.iter().filter(|ack| ack.acknowledged < fault.at).count(), fault.at - run.started));
    }
    if let Some(lag) = &run.replica_lag {
        let mut behind = lag.positions_behind.clone();
        behind.sort_unstable();
        let quantile = |q: f64| behind.get(((behind.len() as f64 - 1.0) * q).round() as usize).copied();
        report["replica_positions_behind_p50"] = json!(quantile(0.5));
        report["replica_positions_behind_p99"] = json!(quantile(0.99));
        report["replica_positions_behind_max"] = json!(behind.last());
        report["replica_replay_lag_bytes_max"] = json!(lag.replay_lag_bytes_max);
        report["replica_samples_unanswered"] = json!(lag.unanswered);
    }
    report["failures"] = json!(failed.len());
    failed.truncate(FAILURES_SHOWN_MAX);
    report["failed"] = json!(failed);
    Ok(report)
}

/// Looks every acknowledged command up by its reference: exactly one transfer, the one acknowledged.
async fn look_up_each(client: &Client, query_url: &str, acks: &[&Ack], last_position: i64) -> Vec<String> {
    let lookups = futures::stream::iter(acks.iter().map(|ack| async move {
        let url = format!("{query_url}/v1/transfers?reference={}", ack.reference);
        match client.get_ok(&url, Some(last_position), PROJECTION_WAIT).await {
            Ok(found) => {
                let items = found["items"].as_array().cloned().unwrap_or_default();
                match items.as_slice() {
                    [only] if only["transfer_id"] == ack.transfer_id.as_str() => None,
                    [] => Some(format!("lost: {} (acknowledged as {})", ack.reference, ack.transfer_id)),
                    [other] => Some(format!(
                        "{}: acknowledged as {}, found {}",
                        ack.reference, ack.transfer_id, other["transfer_id"]
                    )),
                    many => Some(format!("applied {} times: {}", many.len(), ack.reference)),
                }
            }
            Err(error) => Some(format!("look up {}: {error:#}", ack.reference)),
        }
    }))
    .buffer_unordered(LOOKUPS_IN_FLIGHT_MAX);
    lookups.filter_map(|finding| async move { finding }).collect().await
}

struct Outage {
    /// From the fault to the first acknowledgement of a command first sent after it.
    first_success: Option<Duration>,
    /// The longest stretch without any acknowledgement, from the fault to the end of the load.
    longest_gap: Duration,
}

fn outage(acks: &[&Ack], fault: Instant, end: Instant) -> Outage {
    let first_success = acks.iter().filter(|ack| ack.first_sent >= fault).map(|ack| ack.acknowledged - fault).min();
    let mut after: Vec<Instant> = acks.iter().map(|ack| ack.acknowledged).filter(|at| *at >= fault).collect();
    after.sort_unstable();
    let mut longest_gap = Duration::ZERO;
    let mut previous = fault;
    for at in after.iter().copied().chain([end]) {
        longest_gap = longest_gap.max(at.saturating_duration_since(previous));
        previous = at;
    }
    Outage { first_success, longest_gap }
}

fn per_second(count: usize, over: Duration) -> f64 {
    (count as f64 / over.as_secs_f64().max(1e-9) * 10.0).round() / 10.0
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(sent_ms: u64, acknowledged_ms: u64, origin: Instant) -> Ack {
        Ack {
            kind: Kind::Topup,
            reference: String::new(),
            transfer_id: String::new(),
            position: 0,
            first_sent: origin + Duration::from_millis(sent_ms),
            acknowledged: origin + Duration::from_millis(acknowledged_ms),
            attempts: 1,
        }
    }

    #[test]
    fn the_outage_is_the_longest_silence_after_the_fault() {
        let origin = Instant::now();
        let acks = [ack(0, 900, origin), ack(950, 1_000, origin), ack(1_100, 3_500, origin), ack(3_500, 3_600, origin)];
        let refs: Vec<&Ack> = acks.iter().collect();
        let found = outage(&refs, origin + Duration::from_millis(1_050), origin + Duration::from_millis(4_000));
        // Nothing is acknowledged from 1,050 ms to 3,500 ms; the first command sent after the fault took 2,450 ms.
        assert_eq!(found.longest_gap, Duration::from_millis(2_450));
        assert_eq!(found.first_success, Some(Duration::from_millis(2_450)));
        let quiet = outage(&[], origin, origin + Duration::from_millis(500));
        assert_eq!((quiet.longest_gap, quiet.first_success), (Duration::from_millis(500), None));
    }
}
