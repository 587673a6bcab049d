//! spread: top-ups, spends and transfers over many wallets. A closed loop of many workers gives the
//! throughput; an open loop at half that rate gives the latency a client sees at a sustainable load.

use std::sync::Arc;
use std::time::Duration;

use crate::cpu;
use crate::load::{self, Stop};
use crate::report::Spread;
use crate::service_metrics;

use super::{Bench, Mix, Population};

/// A pause between the closed and the open run, so that the first one's tail does not load the second.
const PAUSE: Duration = Duration::from_secs(1);

pub async fn run(bench: &Bench, population: &Population, spread: &mut Spread) -> anyhow::Result<()> {
    let mix = Arc::new(Mix { commands: bench.commands.clone(), wallets: population.wallets.clone() });

    let metrics_before = service_metrics::scrape(&bench.commands.pool).await;
    let (events_before, bytes_before) = super::event_store_size(&bench.database).await?;
    let before = bench.processes.track();
    let closed = load::closed_loop(
        bench.commands.endpoint(),
        bench.config.workers,
        Stop::After(bench.plan.spread_closed),
        mix.clone(),
    )
    .await;
    spread.closed_loop_cpu_percent = before.finish();
    eprintln!("    closed loop {}", cpu::describe(&spread.closed_loop_cpu_percent));
    let metrics_after = service_metrics::scrape(&bench.commands.pool).await;
    let (events_after, bytes_after) = super::event_store_size(&bench.database).await?;
    let commands = closed.completed().max(1) as f64;
    spread.closed_loop_events_per_command =
        Some(((events_after - events_before) as f64 / commands * 100.0).round() / 100.0);
    spread.closed_loop_bytes_per_command = Some(((bytes_after - bytes_before) as f64 / commands).round());
    spread.closed_loop_appender = metrics_before.appender_until(&metrics_after, closed.elapsed);
    let rate = closed.rate_per_s();
    spread.commands_per_s = Some(rate.round());
    spread.closed_loop_p50_ms = Some(closed.latency_ms(0.5));
    spread.closed_loop_p99_ms = Some(closed.latency_ms(0.99));
    eprintln!(
        "    closed loop: {} commands in {:.1}s = {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, rejected: {}, errors: {}",
        closed.completed(),
        closed.elapsed.as_secs_f64(),
        rate,
        closed.latency_ms(0.5),
        closed.latency_ms(0.99),
        closed.rejected_summary(),
        closed.errors_summary()
    );
    eprintln!("    {}", spread.closed_loop_appender.describe());
    if let (Some(events), Some(bytes)) = (spread.closed_loop_events_per_command, spread.closed_loop_bytes_per_command) {
        eprintln!("    per command: {events:.2} events, {bytes:.0} bytes on disk");
    }
    if closed.ok == 0 {
        spread.errors = Some(closed.error_count());
        anyhow::bail!("no command succeeded in the closed loop; errors: {}", closed.errors_summary());
    }

    bench.settle(population.wallets[0]).await;
    tokio::time::sleep(PAUSE).await;
    let open_rate = rate * 0.5;
    let metrics_before = service_metrics::scrape(&bench.commands.pool).await;
    let before = bench.processes.track();
    let open = load::open_loop(&bench.commands.pool, open_rate, bench.plan.spread_open, mix).await;
    spread.open_loop_cpu_percent = before.finish();
    spread.open_loop_appender =
        metrics_before.appender_until(&service_metrics::scrape(&bench.commands.pool).await, open.elapsed);
    eprintln!("    open loop {}", cpu::describe(&spread.open_loop_cpu_percent));
    spread.open_loop_rate_per_s = Some(open_rate.round());
    spread.p50_ms = Some(open.latency_ms(0.5));
    spread.p99_ms = Some(open.latency_ms(0.99));
    spread.open_loop_p999_ms = Some(open.latency_ms(0.999));
    spread.open_loop_dropped = Some(open.dropped);
    spread.errors = Some(closed.error_count() + open.error_count());
    spread.rejected = Some(closed.rejected_count() + open.rejected_count());
    eprintln!(
        "    open loop at {:.0}/s: {} commands, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, dropped {}, errors: {}",
        open_rate,
        open.completed(),
        open.latency_ms(0.5),
        open.latency_ms(0.99),
        open.latency_ms(0.999),
        open.dropped,
        open.errors_summary()
    );
    eprintln!("    {}", spread.open_loop_appender.describe());
    Ok(())
}
