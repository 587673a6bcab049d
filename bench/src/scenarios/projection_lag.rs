//! projection lag: the spread mix in an open loop at half the spread rate; for a sample of the commands,
//! the time from the command's `201` to the moment query-service shows the new version of the wallet,
//! asked with `?min_position=<the command's position>` (which waits server-side: read-your-writes).
//! Half the spread's own rate is the stricter of the two readings of "half load" (see `spread`) whenever
//! the spread outruns pgbench; the lag is judged there.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::api::{Queries, TransferAnswer};
use crate::cpu;
use crate::http::Response;
use crate::load::{self, Call, Verdict, Workload};
use crate::report::{Check, ProjectionLag};

use super::{Bench, Mix, Population};

/// One command in this many is read back.
const SAMPLE_EVERY: u64 = 4;
/// How long one sample may wait for its version to show, in all.
const SAMPLE_WAIT: Duration = Duration::from_secs(30);
/// How long the end of the run waits for the last samples.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(40);

struct LagProbe {
    mix: Mix,
    queries: Queries,
    lag_us: Arc<Mutex<Histogram<u64>>>,
    outstanding: Arc<AtomicUsize>,
    /// Samples that failed: no answer, an error, or a version older than the command's (read-your-writes broken).
    failures: Arc<Mutex<Vec<String>>>,
    stale: Arc<AtomicU64>,
}

impl Workload for LagProbe {
    fn call(&self, sequence: u64) -> Call {
        self.mix.call(sequence)
    }

    fn judge(&self, call: &Call, response: &Response) -> Verdict {
        let answered = Instant::now();
        let verdict = load::judge_command(response, &["insufficient_funds"]);
        let (Verdict::Ok, true, Some(wallet_id)) =
            (&verdict, call.sequence.is_multiple_of(SAMPLE_EVERY), call.wallet_id)
        else {
            return verdict;
        };
        let answer: TransferAnswer = match response.json() {
            Ok(answer) => answer,
            Err(error) => return Verdict::Error(format!("unreadable command answer: {error:#}")),
        };
        let Some(expected_version) = answer.balance_of(wallet_id).map(|balance| balance.version) else {
            return Verdict::Error("the command's answer has no balance for its wallet".to_owned());
        };
        let (queries, lag_us, outstanding, failures, stale) = (
            self.queries.clone(),
            self.lag_us.clone(),
            self.outstanding.clone(),
            self.failures.clone(),
            self.stale.clone(),
        );
        outstanding.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            match queries.wallet_at(wallet_id, answer.position, SAMPLE_WAIT).await {
                Ok(wallet) if wallet.version >= expected_version => {
                    let micros = u64::try_from(answered.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                    lag_us.lock().expect("unpoisoned").saturating_record(micros);
                }
                Ok(wallet) => {
                    stale.fetch_add(1, Ordering::Relaxed);
                    failures.lock().expect("unpoisoned").push(format!(
                        "wallet {wallet_id} shown at version {} with min_position={}, but the command made version {expected_version}",
                        wallet.version, answer.position
                    ));
                }
                Err(error) => failures.lock().expect("unpoisoned").push(format!("{error:#}")),
            }
            outstanding.fetch_sub(1, Ordering::Relaxed);
        });
        verdict
    }
}

pub async fn run(
    bench: &Bench,
    population: &Population,
    queries: &Queries,
    rate_per_s: f64,
    lag: &mut ProjectionLag,
) -> anyhow::Result<Vec<Check>> {
    let probe = Arc::new(LagProbe {
        mix: Mix { commands: bench.commands.clone(), wallets: population.wallets.clone() },
        queries: queries.clone(),
        lag_us: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds"))),
        outstanding: Arc::new(AtomicUsize::new(0)),
        failures: Arc::new(Mutex::new(Vec::new())),
        stale: Arc::new(AtomicU64::new(0)),
    });
    let before = bench.processes.track();
    let commands = load::open_loop(&bench.commands.pool, rate_per_s, bench.plan.projection_lag, probe.clone()).await;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while probe.outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lag.cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&lag.cpu_percent));
    let histogram = probe.lag_us.lock().expect("unpoisoned").clone();
    let failures = probe.failures.lock().expect("unpoisoned").clone();
    let unanswered = probe.outstanding.load(Ordering::Relaxed);
    let stale = probe.stale.load(Ordering::Relaxed);
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
    if !histogram.is_empty() {
        lag.p50_ms = Some(ms(0.5));
        lag.p99_ms = Some(ms(0.99));
        lag.max_ms = Some(histogram.max() as f64 / 1_000.0);
    } else {
        lag.reason = Some(format!(
            "no sample became visible; first failure: {}",
            failures.first().map_or("none", String::as_str)
        ));
    }
    lag.samples = Some(histogram.len());
    lag.commands_per_s = Some(commands.rate_per_s().round());
    lag.errors = Some(commands.error_count() + failures.len() as u64 + unanswered as u64);
    eprintln!(
        "    {} commands at {:.0}/s (errors: {}), {} samples: lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         {} samples failed, {unanswered} unanswered",
        commands.completed(),
        rate_per_s,
        commands.errors_summary(),
        histogram.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1_000.0,
        failures.len()
    );
    let shown: Vec<&str> = failures.iter().take(3).map(String::as_str).collect();
    Ok(vec![
        Check {
            check: "projection lag: commands without errors".to_owned(),
            passed: commands.error_count() == 0,
            detail: format!("{} errors: {}", commands.error_count(), commands.errors_summary()),
        },
        Check {
            check: "projection lag: read-your-writes (min_position shows the command's version)".to_owned(),
            passed: stale == 0 && failures.is_empty() && unanswered == 0,
            detail: format!(
                "{stale} stale, {} failed, {unanswered} unanswered of {} samples{}",
                failures.len() as u64 - stale,
                histogram.len() + failures.len() as u64 + unanswered as u64,
                if shown.is_empty() { String::new() } else { format!("; e.g. {}", shown.join(" | ")) }
            ),
        },
    ])
}
