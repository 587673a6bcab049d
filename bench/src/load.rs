//! The load generator: closed-loop runs (N workers, each sending its next request when the last one is
//! answered) for throughput, and open-loop runs (requests sent on a fixed schedule, whatever the answers)
//! for latency, with HDR histograms. Open-loop latency is measured from when a request was *due*, so that
//! a stalled service cannot hide its stall by slowing the generator down (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use uuid::Uuid;

use crate::http::{Connection, Endpoint, Pool, Request, Response};

/// Latencies recorded, in microseconds: 1 µs to 5 minutes, 3 significant digits.
const LATENCY_US_MAX: u64 = 300_000_000;
/// Open-loop requests in flight at most; a request due beyond it is counted as dropped, not sent.
pub const OPEN_LOOP_IN_FLIGHT_MAX: usize = 4_000;
/// How long the end of a run waits for its last answers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Times a closed-loop worker tries to (re)connect before it gives up.
const CONNECT_ATTEMPTS_MAX: u32 = 5;

/// How one answer counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// A business rejection the workload expects (such as `insufficient_funds`), by code.
    Rejected(String),
    /// Anything else: a transport failure, a 5xx, an unexpected problem code.
    Error(String),
}

/// One request of a workload, with what the workload needs to judge its answer.
#[derive(Debug, Clone)]
pub struct Call {
    pub request: Request,
    /// The wallet the request is about, if any.
    pub wallet_id: Option<Uuid>,
    /// The request's number in its run.
    pub sequence: u64,
}

/// What a run sends and how it judges the answers.
pub trait Workload: Send + Sync + 'static {
    /// The `sequence`-th request of the run.
    fn call(&self, sequence: u64) -> Call;
    /// How the answer counts. Runs on the sending task, after its latency was taken.
    fn judge(&self, call: &Call, response: &Response) -> Verdict;
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub rejected: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Open loop only: requests that were due while too many were in flight, and were not sent.
    pub dropped: u64,
    pub elapsed: Duration,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"),
            ok: 0,
            rejected: BTreeMap::new(),
            errors: BTreeMap::new(),
            dropped: 0,
            elapsed: Duration::ZERO,
        }
    }
}

impl Tally {
    pub fn record(&mut self, latency: Duration, verdict: Verdict) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_US_MAX);
        self.latency_us.record(micros).expect("latency clamped into the histogram's range");
        match verdict {
            Verdict::Ok => self.ok += 1,
            Verdict::Rejected(code) => *self.rejected.entry(code).or_default() += 1,
            Verdict::Error(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// Answered requests, whatever the answer.
    pub fn completed(&self) -> u64 {
        self.ok + self.rejected_count() + self.error_count()
    }

    pub fn rejected_count(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Completed requests per second of the run.
    pub fn rate_per_s(&self) -> f64 {
        self.completed() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at `quantile` (0..=1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1_000.0
    }

    /// A one-line account of the errors, for messages: `3 × status 503 overloaded, 1 × transport …`.
    pub fn errors_summary(&self) -> String {
        summary(&self.errors)
    }

    pub fn rejected_summary(&self) -> String {
        summary(&self.rejected)
    }
}

fn summary(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts.iter().map(|(kind, count)| format!("{count} × {kind}")).collect::<Vec<_>>().join(", ")
}

/// When a closed-loop run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    /// After this many requests in all (workers pick sequence numbers until it is reached).
    Count(u64),
}

/// `workers` concurrent workers, each on its own connection, each sending its next request when the last
/// one is answered, until `stop`.
pub async fn closed_loop<W: Workload>(endpoint: &Arc<Endpoint>, workers: usize, stop: Stop, workload: Arc<W>) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sequence = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = match stop {
        Stop::After(duration) => Some(started + duration),
        Stop::Count(_) => None,
    };
    let count = match stop {
        Stop::Count(count) => count,
        Stop::After(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (endpoint, tally, sequence, workload) =
            (endpoint.clone(), tally.clone(), sequence.clone(), workload.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection: Option<Connection> = None;
            let mut connect_failures = 0;
            loop {
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    break;
                }
                let connected = match connection.take() {
                    Some(connection) if !connection.is_closed() => connection,
                    _ => match Connection::open(&endpoint).await {
                        Ok(connection) => connection,
                        Err(error) => {
                            connect_failures += 1;
                            record_error(&tally, Duration::ZERO, &error);
                            if connect_failures >= CONNECT_ATTEMPTS_MAX {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let mut connected = connected;
                let number = sequence.fetch_add(1, Ordering::Relaxed);
                if number >= count {
                    break;
                }
                let call = workload.call(number);
                let sent = Instant::now();
                match connected.send(&call.request).await {
                    Ok(response) => {
                        let latency = sent.elapsed();
                        let verdict = workload.judge(&call, &response);
                        tally.lock().expect("tally lock is never poisoned").record(latency, verdict);
                        connection = Some(connected);
                    }
                    Err(error) => record_error(&tally, sent.elapsed(), &error),
                }
            }
        }));
    }
    for task in tasks {
        let _worker_ended = task.await;
    }
    let mut tally = std::mem::take(&mut *tally.lock().expect("tally lock is never poisoned"));
    tally.elapsed = started.elapsed();
    tally
}

/// Requests sent at `rate_per_s` for `duration`, on connections from `pool`, however slowly they are
/// answered (up to [`OPEN_LOOP_IN_FLIGHT_MAX`] in flight).
pub async fn open_loop<W: Workload>(pool: &Pool, rate_per_s: f64, duration: Duration, workload: Arc<W>) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let total = (rate_per_s * duration.as_secs_f64()).floor() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate_per_s.max(f64::EPSILON));
    let started = Instant::now();
    let mut dropped = 0;
    let mut sent = 0_u64;
    while sent < total {
        let due_now = ((started.elapsed().as_secs_f64() * rate_per_s).floor() as u64 + 1).min(total);
        while sent < due_now {
            let due_at = started + interval.mul_f64(sent as f64);
            if in_flight.load(Ordering::Relaxed) >= OPEN_LOOP_IN_FLIGHT_MAX {
                dropped += 1;
            } else {
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (pool, tally, in_flight, workload) =
                    (pool.clone(), tally.clone(), in_flight.clone(), workload.clone());
                tokio::spawn(async move {
                    let call = workload.call(sent);
                    let result = pool.send(&call.request).await;
                    let latency = due_at.elapsed();
                    match result {
                        Ok(response) => {
                            let verdict = workload.judge(&call, &response);
                            tally.lock().expect("tally lock is never poisoned").record(latency, verdict);
                        }
                        Err(error) => record_error(&tally, latency, &error),
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
            sent += 1;
        }
        tokio::time::sleep_until((started + interval.mul_f64(sent as f64)).into()).await;
    }
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let mut tally = tally.lock().expect("tally lock is never poisoned").clone();
    tally.elapsed = elapsed;
    tally.dropped = dropped;
    let unanswered = in_flight.load(Ordering::Relaxed) as u64;
    if unanswered > 0 {
        *tally.errors.entry(format!("no answer within {}s of the run's end", DRAIN_TIMEOUT.as_secs())).or_default() +=
            unanswered;
    }
    tally
}

fn record_error(tally: &Mutex<Tally>, latency: Duration, error: &anyhow::Error) {
    // The outermost context and the root cause name the failure without a request-specific detail,
    // so that errors of one kind count together.
    let kind = format!("transport: {}: {}", error, error.root_cause());
    tally.lock().expect("tally lock is never poisoned").record(latency, Verdict::Error(kind));
}

/// The usual judgement of a command: 2xx is fine, the `expected` problem codes are rejections, all else errors.
pub fn judge_command(response: &Response, expected: &[&str]) -> Verdict {
    if response.is_success() {
        return Verdict::Ok;
    }
    match response.problem_code() {
        Some(code) if expected.contains(&code.as_str()) => Verdict::Rejected(code),
        Some(code) => Verdict::Error(format!("status {} {code}", response.status)),
        None => Verdict::Error(format!("status {} (not a problem document)", response.status)),
    }
}
