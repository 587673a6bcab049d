//! flat cost: a wallet with a million events (seeded through the bulk path, not HTTP) against a fresh one
//! of the same asset. A spend on each, and a history page with a cursor on each (deep in the big wallet,
//! the second page of the fresh one), interleaved; the ratios of their median latencies should stay
//! near 1: loading state and paging must not cost O(stream length).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::try_join_all;
use hdrhistogram::Histogram;
use uuid::Uuid;

use crate::api::{self, Queries};
use crate::cpu;
use crate::http::{Connection, Request};
use crate::report::FlatCost;
use crate::seed;

use super::Bench;

/// Small top-ups that give the fresh wallet a few pages of history.
const FRESH_HISTORY_TOPUPS: usize = 120;
/// Concurrent requests while giving the fresh wallet its history.
const FRESH_CONCURRENCY: usize = 16;
/// Rows of a history page in the comparison (the API's default page).
const PAGE_LIMIT: u32 = 50;
/// Rows per page while walking down to the deep cursor (the API's maximum).
const WALK_LIMIT: u32 = 1_000;

pub async fn run(bench: &Bench, flat: &mut FlatCost) -> anyhow::Result<()> {
    let commands = &bench.commands;
    let samples = bench.plan.flat_samples;
    let tag = commands.keys.run_tag();
    let asset = format!("FLAT_{tag}");
    commands.define_asset(&asset, 0).await?;
    let deep = commands.open_wallet(&format!("bench-flat-deep-{tag}"), &asset).await?;
    let fresh = commands.open_wallet(&format!("bench-flat-fresh-{tag}"), &asset).await?;
    // Enough for every spend of the comparison, then pages of small top-ups.
    commands.move_money(fresh, "topup", &(samples + 1).to_string()).await?;
    for wave in (0..FRESH_HISTORY_TOPUPS).collect::<Vec<_>>().chunks(FRESH_CONCURRENCY) {
        try_join_all(wave.iter().map(|_| commands.move_money(fresh, "topup", "1"))).await?;
    }

    let (version,): (i64,) = sqlx::query_as("SELECT version FROM streams WHERE stream_id = $1")
        .bind(format!("wallet-{deep}"))
        .fetch_one(&bench.database)
        .await
        .context("read the deep wallet's version")?;
    let to_seed = bench.plan.flat_events.saturating_sub(u64::try_from(version).unwrap_or(0));
    eprintln!("    seeding {to_seed} top-ups of the deep wallet through the bulk path");
    let cpu_before = bench.processes.track();
    let seeded = seed::topups(&bench.database, deep, to_seed).await?;
    flat.seed_cpu_percent = cpu_before.finish();
    eprintln!("    seed {}", cpu::describe(&flat.seed_cpu_percent));
    let seed_seconds = seeded.elapsed.as_secs_f64();
    flat.wallet_events = Some(seeded.wallet_version);
    flat.seeded_events = Some(seeded.events);
    flat.seed_events_per_s = Some((seeded.events as f64 / seed_seconds).round());
    eprintln!(
        "    seeded {} events ({} commands) in {seed_seconds:.1}s = {:.0} events/s; the wallet has {} events",
        seeded.events,
        seeded.commands,
        seeded.events as f64 / seed_seconds,
        seeded.wallet_version
    );

    let caught_up = match bench.read_side() {
        Err(reason) => Err(reason),
        Ok(queries) => {
            let cpu_before = bench.processes.track();
            let started = Instant::now();
            let head = super::head_position(&bench.database).await?;
            match queries.wallet_at(deep, head, bench.plan.catch_up_max).await {
                Ok(_) => {
                    let catch_up = started.elapsed().as_secs_f64();
                    flat.catch_up_cpu_percent = cpu_before.finish();
                    eprintln!("    catch-up {}", cpu::describe(&flat.catch_up_cpu_percent));
                    flat.catch_up_s = Some((catch_up * 10.0).round() / 10.0);
                    flat.catch_up_events_per_s = Some((seeded.events as f64 / (seed_seconds + catch_up)).round());
                    eprintln!("    the projection caught up {catch_up:.1}s after the seed ended");
                    Ok(queries)
                }
                Err(error) => Err(format!(
                    "the projection did not catch up with the seed within {}s: {error:#}",
                    bench.plan.catch_up_max.as_secs()
                )),
            }
        }
    };

    match caught_up {
        Ok(queries) => {
            if let Err(error) = history_pages(bench, queries, deep, fresh, seeded.wallet_version, flat).await {
                flat.history_reason = Some(format!("{error:#}"));
                return Err(error);
            }
        }
        Err(reason) => flat.history_reason = Some(reason),
    }

    let mut deep_connection = Connection::open(commands.endpoint()).await?;
    let mut fresh_connection = Connection::open(commands.endpoint()).await?;
    let mut deep_us = histogram();
    let mut fresh_us = histogram();
    for _ in 0..samples {
        for (wallet_id, connection, latencies) in
            [(deep, &mut deep_connection, &mut deep_us), (fresh, &mut fresh_connection, &mut fresh_us)]
        {
            let request = commands.move_request(wallet_id, "spend", "1");
            let started = Instant::now();
            connection.send(&request).await?.success(&format!("spend 1 on wallet {wallet_id}"))?;
            latencies.saturating_record(micros(started.elapsed()));
        }
    }
    let (deep_ms, fresh_ms) = (median_ms(&deep_us), median_ms(&fresh_us));
    flat.deep_command_p50_ms = Some(deep_ms);
    flat.fresh_command_p50_ms = Some(fresh_ms);
    flat.command_ratio = Some(round2(deep_ms / fresh_ms));
    eprintln!("    spend: deep p50 {deep_ms:.2} ms, fresh p50 {fresh_ms:.2} ms, ratio {:.2}", deep_ms / fresh_ms);
    Ok(())
}

/// Walks the deep wallet's history down to its middle, then times the page there against the fresh wallet's
/// second page, interleaved.
async fn history_pages(
    bench: &Bench,
    queries: &Queries,
    deep: Uuid,
    fresh: Uuid,
    deep_version: i64,
    flat: &mut FlatCost,
) -> anyhow::Result<()> {
    let middle = deep_version / 2;
    let mut cursor: Option<String> = None;
    let mut reached = i64::MAX;
    let walk_started = Instant::now();
    while reached > middle {
        let page = queries.history(deep, WALK_LIMIT, cursor.as_deref()).await?;
        reached = page.items.last().map_or(0, |item| item.version);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let Some(deep_cursor) = cursor else {
        bail!("the deep wallet's history ended before its middle (version {reached})")
    };
    eprintln!(
        "    walked the deep wallet's history down to version {reached} in {:.1}s",
        walk_started.elapsed().as_secs_f64()
    );
    let first = queries.history(fresh, PAGE_LIMIT, None).await?;
    let Some(fresh_cursor) = first.next_cursor else { bail!("the fresh wallet has a single page of history") };

    let endpoint = queries.pool.endpoint();
    let (mut deep_connection, mut fresh_connection) =
        (Connection::open(endpoint).await?, Connection::open(endpoint).await?);
    let deep_request = api::history_request(deep, PAGE_LIMIT, Some(&deep_cursor));
    let fresh_request = api::history_request(fresh, PAGE_LIMIT, Some(&fresh_cursor));
    let mut deep_us = histogram();
    let mut fresh_us = histogram();
    for _ in 0..bench.plan.flat_samples {
        for (request, connection, latencies) in [
            (&deep_request, &mut deep_connection, &mut deep_us),
            (&fresh_request, &mut fresh_connection, &mut fresh_us),
        ] {
            let started = Instant::now();
            let page = connection.send(request).await?.success("history page")?.json::<api::HistoryPage>()?;
            latencies.saturating_record(micros(started.elapsed()));
            if page.items.len() != PAGE_LIMIT as usize {
                bail!("{}: {} items instead of {PAGE_LIMIT}", page_path(request), page.items.len());
            }
        }
    }
    let (deep_ms, fresh_ms) = (median_ms(&deep_us), median_ms(&fresh_us));
    flat.deep_page_version = Some(reached);
    flat.deep_page_p50_ms = Some(deep_ms);
    flat.fresh_page_p50_ms = Some(fresh_ms);
    flat.history_page_ratio = Some(round2(deep_ms / fresh_ms));
    eprintln!(
        "    history page: deep p50 {deep_ms:.2} ms, fresh p50 {fresh_ms:.2} ms, ratio {:.2}",
        deep_ms / fresh_ms
    );
    Ok(())
}

fn page_path(request: &Request) -> &str {
    request.path.split('?').next().unwrap_or_default()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn median_ms(histogram: &Histogram<u64>) -> f64 {
    histogram.value_at_quantile(0.5) as f64 / 1_000.0
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
