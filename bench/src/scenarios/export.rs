//! export (SPEC §10): `GET /v1/export` of the whole log (after the flat-cost seed: a million events and more in a
//! full run), streamed to a file, its rate, and query-service's memory while it streams (the `export` phase's
//! peak: it must stay flat, a few pages, whatever the log's length); then `tally-audit verify` on that file, its
//! rate, and that it finds nothing.

use std::time::Instant;

use anyhow::{bail, Context};

use crate::report::{Check, Export};

use super::Bench;

pub async fn run(bench: &Bench, export: &mut Export) -> anyhow::Result<Vec<Check>> {
    let file = std::env::temp_dir().join(format!("tally-bench-export-{}.ndjson", std::process::id()));
    let result = measure(bench, export, &file).await;
    let _left_behind_is_harmless = std::fs::remove_file(&file);
    result
}

async fn measure(bench: &Bench, export: &mut Export, file: &std::path::Path) -> anyhow::Result<Vec<Check>> {
    let url = format!("{}/v1/export", bench.config.query_url.trim_end_matches('/'));
    let mut curl = tokio::process::Command::new("curl");
    curl.args(["-sS", "-f", "-o"]).arg(file).arg(&url);
    if let Some(token) = &bench.config.token {
        curl.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let started = Instant::now();
    let status = curl.status().await.context("run curl")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("curl {url}: {status}");
    }
    let bytes = std::fs::metadata(file).context("the export file")?.len();
    let events = std::fs::read(file).context("read the export")?.iter().filter(|byte| **byte == b'\n').count() as u64;
    export.events = Some(events);
    export.bytes = Some(bytes);
    export.events_per_s = Some((events as f64 / seconds).round());
    eprintln!(
        "    exported {events} events ({:.0} MB) in {seconds:.1}s = {:.0} events/s",
        bytes as f64 / 1e6,
        events as f64 / seconds
    );

    let audit_bin = &bench.config.audit_bin;
    if !audit_bin.exists() {
        export.reason = Some(format!("{} is not there: tally-audit not run", audit_bin.display()));
        return Ok(vec![]);
    }
    let started = Instant::now();
    let output = tokio::process::Command::new(audit_bin)
        .args(["verify", "--export"])
        .arg(file)
        .output()
        .await
        .context("run tally-audit")?;
    let seconds = started.elapsed().as_secs_f64();
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    export.audit_events_per_s = Some((events as f64 / seconds).round());
    eprintln!("    tally-audit verify: {seconds:.1}s = {:.0} events/s: {}", events as f64 / seconds, said.trim());
    Ok(vec![Check {
        check: "tally-audit verify passes on the whole export".to_owned(),
        passed: output.status.success(),
        detail: said.lines().take(6).collect::<Vec<_>>().join(" / "),
    }])
}
