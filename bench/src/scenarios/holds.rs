//! holds (SPEC §6, §8): one wallet funded with exactly F (scale 0), then N holds of 1 released at once
//! (exactly F placed, N − F refused with `insufficient_funds`), then F captures of those holds released at
//! once (every one succeeds; balance and held end at 0); each phase's rate is read against the spread's.
//! Then E holds expiring within one second, on a wallet of their own: every one must be released by the
//! expirer, and the delay of each release after its `expires_at` is measured (p99 target 2 s).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::cpu;
use crate::http::Request;
use crate::load::{self, Tally, Verdict};
use crate::report::{Check, Holds};

use super::hot_wallet::open;
use super::Bench;

/// How long the expirer gets to release the expiring holds, after the last one's `expires_at`.
const EXPIRY_WAIT: Duration = Duration::from_secs(30);
/// Holds per HTTP/2 connection, as the hot wallet sends its spends.
const HOLDS_PER_CONNECTION: u64 = 100;

pub async fn run(bench: &Bench, holds: &mut Holds) -> anyhow::Result<Vec<Check>> {
    let commands = &bench.commands;
    let (placing, funds) = (bench.config.holds, bench.config.holds_funded);
    holds.holds = placing;
    holds.funded = funds;
    let asset = format!("HOLD_{}", commands.keys.run_tag());
    commands.define_asset(&asset, 0).await?;
    let wallet_id = commands.open_wallet(&format!("bench-holds-{}", commands.keys.run_tag()), &asset).await?;
    commands.move_money(wallet_id, "topup", &funds.to_string()).await?;

    let place = |_: usize| {
        Request::post(format!("/v1/wallets/{wallet_id}/holds"), &json!({"amount": "1"}), commands.keys.next())
    };
    let requests: Vec<Request> = (0..placing as usize).map(place).collect();
    let before = bench.processes.track();
    let (placed, hold_ids) = all_at_once(bench, requests, &["insufficient_funds"]).await?;
    holds.place_cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&holds.place_cpu_percent));
    let rejected = placed.tally.rejected.get("insufficient_funds").copied().unwrap_or(0);
    holds.placed = Some(placed.tally.ok);
    holds.rejected = Some(rejected);
    holds.place_per_s = Some(placed.rate());
    holds.place_p99_ms = Some(placed.tally.latency_ms(0.99));
    eprintln!(
        "    placed {} and refused {rejected} of {placing} holds in {:.2}s = {:.0}/s; errors: {}",
        placed.tally.ok,
        placed.elapsed.as_secs_f64(),
        placed.rate(),
        placed.tally.errors_summary()
    );

    let capture =
        |hold_id: &Uuid| Request::post(format!("/v1/holds/{hold_id}/capture"), &json!({}), commands.keys.next());
    let requests: Vec<Request> = hold_ids.iter().map(capture).collect();
    let before = bench.processes.track();
    let (captured, _) = all_at_once(bench, requests, &[]).await?;
    holds.capture_cpu_percent = before.finish();
    eprintln!("    {}", cpu::describe(&holds.capture_cpu_percent));
    holds.captured = Some(captured.tally.ok);
    holds.capture_per_s = Some(captured.rate());
    holds.capture_p99_ms = Some(captured.tally.latency_ms(0.99));
    let (balance, held) = balance_and_held(bench, wallet_id).await?;
    holds.final_balance = Some(balance);
    holds.final_held = Some(held);
    let errors = placed.tally.error_count() + captured.tally.error_count();
    holds.errors = Some(errors);
    eprintln!(
        "    captured {} holds in {:.2}s = {:.0}/s; balance {balance}, held {held}; errors: {}",
        captured.tally.ok,
        captured.elapsed.as_secs_f64(),
        captured.rate(),
        captured.tally.errors_summary()
    );

    let expiry = expire(bench, holds).await?;
    let refused = placing.saturating_sub(funds);
    let exactly = |check: String, passed: bool, detail: String| Check { check, passed, detail };
    Ok(vec![
        exactly(
            format!("holds: exactly {funds} of {placing} holds placed"),
            placed.tally.ok == funds,
            format!("{} placed", placed.tally.ok),
        ),
        exactly(
            format!("holds: exactly {refused} refused with insufficient_funds"),
            rejected == refused,
            format!("{rejected} refused"),
        ),
        exactly(
            format!("holds: all {funds} captures succeed"),
            captured.tally.ok == funds,
            format!("{} captured", captured.tally.ok),
        ),
        exactly(
            "holds: balance and held end at 0".to_owned(),
            balance == 0 && held == 0,
            format!("balance {balance}, held {held}"),
        ),
        exactly("holds: no errors".to_owned(), errors == 0, format!("{errors} errors")),
        expiry,
    ])
}

/// What a burst measured, and the hold ids its 2xx answers carried.
struct Burst {
    tally: Tally,
    elapsed: Duration,
}

impl Burst {
    fn rate(&self) -> f64 {
        (self.tally.completed() as f64 / self.elapsed.as_secs_f64()).round()
    }
}

/// Sends every request at once over HTTP/2 connections opened beforehand; `expected` problem codes are refusals,
/// anything else unexpected is an error.
async fn all_at_once(
    bench: &Bench,
    requests: Vec<Request>,
    expected: &'static [&'static str],
) -> anyhow::Result<(Burst, Vec<Uuid>)> {
    let connections = open(bench.commands.endpoint(), requests.len() as u64, HOLDS_PER_CONNECTION).await?;
    let (go, ready) = tokio::sync::watch::channel(false);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let hold_ids = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::with_capacity(requests.len());
    for (mut client, request) in connections.into_iter().zip(requests) {
        let (mut ready, tally, hold_ids) = (ready.clone(), tally.clone(), hold_ids.clone());
        tasks.push(tokio::spawn(async move {
            if ready.wait_for(|go| *go).await.is_err() {
                return;
            }
            let sent = Instant::now();
            let verdict = match client.send(&request).await {
                Ok(response) => {
                    let verdict = load::judge_command(&response, expected);
                    if let (Verdict::Ok, Ok(answer)) = (&verdict, response.json::<serde_json::Value>()) {
                        if let Some(id) = answer["hold_id"].as_str().and_then(|text| Uuid::parse_str(text).ok()) {
                            hold_ids.lock().expect("never poisoned").push(id);
                        }
                    }
                    verdict
                }
                Err(error) => Verdict::Error(format!("transport: {error:#}")),
            };
            tally.lock().expect("never poisoned").record(sent.elapsed(), verdict);
        }));
    }
    let started = Instant::now();
    go.send_replace(true);
    join_all(tasks).await;
    let elapsed = started.elapsed();
    let tally = tally.lock().expect("never poisoned").clone();
    let hold_ids = hold_ids.lock().expect("never poisoned").clone();
    Ok((Burst { tally, elapsed }, hold_ids))
}

/// Places E holds expiring within one second (a millisecond or so apart), waits until the expirer has
/// released them all, and measures each release's delay after `expires_at` from the holds' snapshots.
async fn expire(bench: &Bench, holds: &mut Holds) -> anyhow::Result<Check> {
    let commands = &bench.commands;
    let expiring = bench.config.holds_expiring;
    holds.expiring = expiring;
    let asset = format!("EXP_{}", commands.keys.run_tag());
    commands.define_asset(&asset, 0).await?;
    let wallet_id = commands.open_wallet(&format!("bench-expiring-{}", commands.keys.run_tag()), &asset).await?;
    commands.move_money(wallet_id, "topup", &expiring.to_string()).await?;
    // Far enough ahead that every hold is placed before the first expires.
    let first = Utc::now() + chrono::Duration::seconds(5);
    let requests: Vec<Request> = (0..expiring)
        .map(|index| {
            let expires_at = first + chrono::Duration::microseconds((index * 1_000_000 / expiring.max(1)) as i64);
            let body = json!({"amount": "1", "expires_at": expires_at.to_rfc3339()});
            Request::post(format!("/v1/wallets/{wallet_id}/holds"), &body, commands.keys.next())
        })
        .collect();
    let (placed, hold_ids) = all_at_once(bench, requests, &[]).await?;
    if placed.tally.ok != expiring {
        bail!("{} of {expiring} expiring holds placed: {}", placed.tally.ok, placed.tally.errors_summary());
    }
    let deadline =
        Instant::now() + (first - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1) + EXPIRY_WAIT;
    let ids: Vec<String> = hold_ids.iter().map(|id| format!("hold-{id}")).collect();
    let delays = loop {
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT state->>'status', state->>'expires_at', state->>'resolved_at' FROM streams
             WHERE stream_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&bench.database)
        .await
        .context("read the expiring holds")?;
        let expired: Vec<f64> = rows
            .iter()
            .filter(|(status, _, _)| status.as_deref() == Some("expired"))
            .filter_map(|(_, expires_at, resolved_at)| {
                let expires_at: DateTime<Utc> = expires_at.as_deref()?.parse().ok()?;
                let resolved_at: DateTime<Utc> = resolved_at.as_deref()?.parse().ok()?;
                Some((resolved_at - expires_at).num_microseconds()? as f64 / 1_000.0)
            })
            .collect();
        if expired.len() as u64 == expiring || Instant::now() >= deadline {
            break expired;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied();
    holds.expired = Some(delays.len() as u64);
    holds.expiry_delay_p50_ms = quantile(0.5);
    holds.expiry_delay_p99_ms = quantile(0.99);
    holds.expiry_delay_max_ms = sorted.last().copied();
    eprintln!(
        "    {} of {expiring} holds expiring within 1 s released; delay after expires_at p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        holds.expiry_delay_p50_ms.unwrap_or_default(),
        holds.expiry_delay_p99_ms.unwrap_or_default(),
        holds.expiry_delay_max_ms.unwrap_or_default()
    );
    Ok(Check {
        check: format!("holds: all {expiring} expiring holds released, once"),
        passed: delays.len() as u64 == expiring,
        detail: format!("{} released", delays.len()),
    })
}

/// The wallet's `(balance, held)` in its stream snapshot (scale 0, so whole numbers).
async fn balance_and_held(bench: &Bench, wallet_id: Uuid) -> anyhow::Result<(i64, i64)> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT state->>'balance', state->>'held' FROM streams WHERE stream_id = $1")
            .bind(format!("wallet-{wallet_id}"))
            .fetch_optional(&bench.database)
            .await
            .context("read the holds wallet's snapshot")?;
    let Some((Some(balance), held)) = row else { bail!("the holds wallet has no snapshot") };
    let whole = |text: &str| text.parse::<i64>().with_context(|| format!("{text:?} is not a whole number"));
    Ok((whole(&balance)?, whole(held.as_deref().unwrap_or("0"))?))
}
