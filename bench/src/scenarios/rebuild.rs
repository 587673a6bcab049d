//! rebuild: `projector rebuild` against the bench's database after the load, timed from outside:
//! events in the store over wall-clock seconds.

use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use crate::cpu;
use crate::report::Rebuild;

use super::Bench;

/// What the rebuild did, when it did not fail.
pub enum Outcome {
    Rebuilt,
    /// The projector cannot rebuild yet (no binary, or a rebuild that rewrote nothing): why.
    NotReady(String),
}

/// Lines of the projector's output quoted when it fails.
const OUTPUT_LINES_SHOWN: usize = 15;

pub async fn run(bench: &Bench, rebuild: &mut Rebuild) -> anyhow::Result<Outcome> {
    let binary = &bench.config.projector_bin;
    if !binary.exists() {
        return Ok(Outcome::NotReady(format!("no projector binary at {}", binary.display())));
    }
    let (events,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events").fetch_one(&bench.database).await.context("count events")?;
    let before = read_model_footprint(&bench.database).await?;
    let cpu_before = bench.processes.track();
    let started = Instant::now();
    let child = tokio::process::Command::new(binary)
        .arg("rebuild")
        .env("DATABASE_URL", &bench.config.database_url)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {} rebuild", binary.display()))?;
    let output = tokio::time::timeout(bench.plan.rebuild_max, child.wait_with_output())
        .await
        .with_context(|| format!("projector rebuild took longer than {}s", bench.plan.rebuild_max.as_secs()))?
        .context("wait for projector rebuild")?;
    let seconds = started.elapsed().as_secs_f64();
    rebuild.cpu_percent = cpu_before.finish();
    eprintln!("    {} (bench_children: the rebuild process)", cpu::describe(&rebuild.cpu_percent));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(OUTPUT_LINES_SHOWN).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!("projector rebuild failed ({}) after {seconds:.1}s: {}", output.status, tail.join("\n"));
    }
    let after = read_model_footprint(&bench.database).await?;
    let history_rows: i64 = sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM rm_wallet_history")
        .fetch_one(&bench.database)
        .await
        .map_or(0, |(rows,)| rows);
    // The running projector's statistics may be flushed late (up to 10 s after it went idle): only a
    // change of storage, or at least a full history's worth of inserts, counts as a rebuild.
    let rewritten = after.0 != before.0 || after.1 - before.1 >= history_rows.max(1);
    if !rewritten {
        return Ok(Outcome::NotReady(format!(
            "projector rebuild exited 0 after {seconds:.2}s but rewrote no read model (not implemented yet?)"
        )));
    }
    let events = u64::try_from(events).unwrap_or(0);
    rebuild.events = Some(events);
    rebuild.seconds = Some((seconds * 100.0).round() / 100.0);
    rebuild.events_per_s = Some((events as f64 / seconds).round());
    eprintln!("    {events} events in {seconds:.2}s = {:.0} events/s", events as f64 / seconds);
    Ok(Outcome::Rebuilt)
}

/// The storage of the read-model tables (`rm_*`) and the rows ever inserted into them: a rebuild into fresh
/// tables, a truncate-and-refill and a delete-and-refill each change it; a no-op does not.
async fn read_model_footprint(database: &PgPool) -> anyhow::Result<(String, i64)> {
    // Statistics of the rebuild's own backends are flushed when they exit, before this runs.
    let (files, inserted): (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT string_agg(c.relname || ':' || c.relfilenode, ',' ORDER BY c.relname),
                sum(s.n_tup_ins)::bigint
         FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE c.relkind = 'r' AND c.relname LIKE 'rm\\_%' AND s.schemaname = current_schema()",
    )
    .fetch_one(database)
    .await
    .context("read the read models' footprint")?;
    Ok((files.unwrap_or_default(), inserted.unwrap_or(0)))
}
