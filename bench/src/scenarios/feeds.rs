//! feeds (SPEC §9): `FEED_SUBSCRIBERS` subscribers of `GET /v1/transfers/stream`, opened at the head of the
//! log, while the spread mix runs in an open loop at half the spread rate. Each subscriber notes when each
//! message arrives; afterwards every acknowledged command's position is looked for in every subscriber's
//! messages: the delay from the command's `201` to its delivery, and none missing, repeated or out of order.
//! A subscriber that is sent `reset` resumes after the id it names, as a client must.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;

use crate::api::{Queries, TransferAnswer};
use crate::cpu;
use crate::http::{Connection, Endpoint, Request, Response};
use crate::load::{self, Call, Verdict, Workload};
use crate::report::{Check, Feeds};

use super::{head_position, Bench, Mix, Population};

/// How long the subscribers get to connect before the load starts.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long the end of the run waits for every subscriber to have the last acknowledged transfer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// A subscriber whose feed ended opens it again after this long.
const RECONNECT_WAIT: Duration = Duration::from_millis(100);

/// What one subscriber saw: each transfer's position and when it arrived, in arrival order.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(i64, Instant)>,
    resets: u64,
    reconnects: u64,
    errors: Vec<String>,
}

/// Commands of the spread mix; each acknowledged one's position and when its answer arrived.
struct Acknowledged {
    mix: Mix,
    answered: Mutex<HashMap<i64, Instant>>,
}

impl Workload for Acknowledged {
    fn call(&self, sequence: u64) -> Call {
        self.mix.call(sequence)
    }

    fn judge(&self, _call: &Call, response: &Response) -> Verdict {
        let answered = Instant::now();
        let verdict = load::judge_command(response, &["insufficient_funds"]);
        if verdict != Verdict::Ok {
            return verdict;
        }
        match response.json::<TransferAnswer>() {
            Ok(answer) => {
                self.answered.lock().expect("unpoisoned").insert(answer.position, answered);
                Verdict::Ok
            }
            Err(error) => Verdict::Error(format!("unreadable command answer: {error:#}")),
        }
    }
}

/// One subscriber: follows the feed from `after`, resuming after the last id it got whenever the feed ends.
async fn subscribe(endpoint: Arc<Endpoint>, mut after: i64, seen: Arc<Mutex<Seen>>) {
    loop {
        if let Err(error) = follow(&endpoint, &mut after, &seen).await {
            let mut seen = seen.lock().expect("unpoisoned");
            if seen.errors.len() < 5 {
                seen.errors.push(format!("{error:#}"));
            }
        }
        seen.lock().expect("unpoisoned").reconnects += 1;
        tokio::time::sleep(RECONNECT_WAIT).await;
    }
}

/// Reads one connection of the feed until it ends, noting each transfer as it arrives.
async fn follow(endpoint: &Arc<Endpoint>, after: &mut i64, seen: &Mutex<Seen>) -> anyhow::Result<()> {
    let mut connection = Connection::open(endpoint).await?;
    let (status, mut body) = connection.stream(&Request::get(format!("/v1/transfers/stream?after={after}"))).await?;
    anyhow::ensure!(status == 200, "the feed answered {status}");
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read the feed")?;
        let Some(data) = frame.data_ref() else { continue };
        let arrived = Instant::now();
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let message: Vec<u8> = buffer.drain(..end + 2).collect();
            let (id, event) = fields(&message);
            match (id, event) {
                (Some(position), Some("transfer")) => {
                    *after = position;
                    seen.lock().expect("unpoisoned").arrivals.push((position, arrived));
                }
                (Some(position), Some("reset")) => {
                    *after = position;
                    seen.lock().expect("unpoisoned").resets += 1;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The `id:` and `event:` of one Server-Sent Events message.
fn fields(message: &[u8]) -> (Option<i64>, Option<&str>) {
    let text = std::str::from_utf8(message).unwrap_or("");
    let mut id = None;
    let mut event = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim());
        }
    }
    (id, event)
}

/// What the subscribers' notes say of the acknowledged commands.
struct Judgement {
    delays_us: Histogram<u64>,
    missing: u64,
    repeated: u64,
    out_of_order: u64,
}

fn judge(answered: &HashMap<i64, Instant>, subscribers: &[Arc<Mutex<Seen>>]) -> Judgement {
    let mut judgement = Judgement {
        delays_us: Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds"),
        missing: 0,
        repeated: 0,
        out_of_order: 0,
    };
    for seen in subscribers {
        let seen = seen.lock().expect("unpoisoned");
        let mut arrived_at: HashMap<i64, Instant> = HashMap::with_capacity(seen.arrivals.len());
        let mut last = i64::MIN;
        for &(position, arrived) in &seen.arrivals {
            if position <= last {
                judgement.out_of_order += 1;
            }
            last = last.max(position);
            if arrived_at.insert(position, arrived).is_some() {
                judgement.repeated += 1;
            }
        }
        for (position, answered) in answered {
            match arrived_at.get(position) {
                // Delivered before the bench had read the answer: no delay worth a microsecond.
                Some(arrived) => {
                    let micros = arrived.saturating_duration_since(*answered).as_micros();
                    judgement.delays_us.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).max(1));
                }
                None => judgement.missing += 1,
            }
        }
    }
    judgement
}

pub async fn run(
    bench: &Bench,
    population: &Population,
    queries: &Queries,
    rate_per_s: f64,
    feeds: &mut Feeds,
) -> anyhow::Result<Vec<Check>> {
    let subscribers = bench.config.feed_subscribers;
    let after = head_position(&bench.database).await?;
    let seen: Vec<Arc<Mutex<Seen>>> = (0..subscribers).map(|_| Arc::new(Mutex::new(Seen::default()))).collect();
    let tasks: Vec<_> =
        seen.iter().map(|seen| tokio::spawn(subscribe(queries.pool.endpoint().clone(), after, seen.clone()))).collect();
    tokio::time::sleep(CONNECT_WAIT).await;

    let workload = Arc::new(Acknowledged {
        mix: Mix { commands: bench.commands.clone(), wallets: population.wallets.clone() },
        answered: Mutex::new(HashMap::new()),
    });
    let before = bench.processes.track();
    let commands = load::open_loop(&bench.commands.pool, rate_per_s, bench.plan.projection_lag, workload.clone()).await;
    let last = workload.answered.lock().expect("unpoisoned").keys().max().copied().unwrap_or(after);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let caught_up = |seen: &Arc<Mutex<Seen>>| {
        seen.lock().expect("unpoisoned").arrivals.last().is_some_and(|(position, _)| *position >= last)
    };
    while !seen.iter().all(caught_up) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    feeds.cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&feeds.cpu_percent));
    for task in &tasks {
        task.abort();
    }

    let answered = workload.answered.lock().expect("unpoisoned").clone();
    let judgement = judge(&answered, &seen);
    let (resets, reconnects, errors) =
        seen.iter().fold((0, 0, Vec::new()), |(resets, reconnects, mut errors), seen| {
            let seen = seen.lock().expect("unpoisoned");
            errors.extend(seen.errors.iter().take(1).cloned());
            (resets + seen.resets, reconnects + seen.reconnects, errors)
        });
    let delays = &judgement.delays_us;
    let ms = |quantile: f64| delays.value_at_quantile(quantile) as f64 / 1_000.0;
    if !delays.is_empty() {
        feeds.p50_ms = Some(ms(0.5));
        feeds.p99_ms = Some(ms(0.99));
        feeds.max_ms = Some(delays.max() as f64 / 1_000.0);
    } else {
        feeds.reason =
            Some(format!("nothing was delivered; first error: {}", errors.first().map_or("none", String::as_str)));
    }
    feeds.subscribers = Some(subscribers as u64);
    feeds.transfers = Some(answered.len() as u64);
    feeds.delivered = Some(delays.len());
    feeds.missing = Some(judgement.missing);
    feeds.repeated = Some(judgement.repeated + judgement.out_of_order);
    feeds.resets = Some(resets);
    feeds.commands_per_s = Some(commands.rate_per_s().round());
    feeds.errors = Some(commands.error_count());
    eprintln!(
        "    {} commands at {rate_per_s:.0}/s (errors: {}), {subscribers} subscribers: {} deliveries, delay p50 \
         {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} missing, {} repeated, {} out of order, {resets} resets, \
         {reconnects} reconnects",
        commands.completed(),
        commands.errors_summary(),
        delays.len(),
        ms(0.5),
        ms(0.99),
        delays.max() as f64 / 1_000.0,
        judgement.missing,
        judgement.repeated,
        judgement.out_of_order,
    );
    Ok(vec![
        Check {
            check: "feeds: commands without errors".to_owned(),
            passed: commands.error_count() == 0,
            detail: format!("{} errors: {}", commands.error_count(), commands.errors_summary()),
        },
        Check {
            check: "feeds: every subscriber got every transfer once, in order".to_owned(),
            passed: judgement.missing == 0 && judgement.repeated == 0 && judgement.out_of_order == 0,
            detail: format!(
                "{} transfers × {subscribers} subscribers: {} missing, {} repeated, {} out of order ({resets} \
                 resets resumed){}",
                answered.len(),
                judgement.missing,
                judgement.repeated,
                judgement.out_of_order,
                errors.first().map(|error| format!("; e.g. {error}")).unwrap_or_default()
            ),
        },
    ])
}
