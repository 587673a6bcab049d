//! How long the disk takes to make a small write durable while a phase runs: what every commit waits
//! for. A [`Probe`] writes one block and `fdatasync`s it every [`SYNC_INTERVAL`] on a scratch file (beside
//! the report: on a one-machine run, the disk Postgres writes its WAL to), so that a latency tail can be
//! read against the disk's own.
//!
//! Its cost is small beside the load it watches (100 syncs of 8 KiB a second against hundreds of commits),
//! and it runs only during the spread's open loops.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// How often the probe syncs.
const SYNC_INTERVAL: Duration = Duration::from_millis(10);
/// What each sync makes durable: one database page.
const BLOCK_BYTES: usize = 8_192;
/// The blocks of the scratch file, written in turn.
const FILE_BLOCKS: u64 = 256;
/// A sync slower than this shows as a stall in the commands' latency.
const SLOW_SYNC_MS: f64 = 20.0;
/// A sync this slow holds every commit behind it for twice the 25 ms p99 target.
const STALL_SYNC_MS: f64 = 50.0;

/// The syncs of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskSync {
    pub syncs: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub over_20_ms: u64,
    pub over_50_ms: u64,
}

impl DiskSync {
    fn of(mut latencies_ms: Vec<f64>) -> DiskSync {
        latencies_ms.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let index = ((latencies_ms.len() as f64 * q) as usize).min(latencies_ms.len().saturating_sub(1));
            latencies_ms.get(index).copied().unwrap_or(0.0)
        };
        DiskSync {
            syncs: latencies_ms.len() as u64,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            max_ms: latencies_ms.last().copied().unwrap_or(0.0),
            over_20_ms: latencies_ms.iter().filter(|&&ms| ms > SLOW_SYNC_MS).count() as u64,
            over_50_ms: latencies_ms.iter().filter(|&&ms| ms > STALL_SYNC_MS).count() as u64,
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        format!(
            "disk: {} syncs of {} KiB, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {} over {SLOW_SYNC_MS} ms, {} over \
             {STALL_SYNC_MS} ms",
            self.syncs,
            BLOCK_BYTES / 1024,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.over_20_ms,
            self.over_50_ms
        )
    }
}

/// A running probe; [`Probe::finish`] stops it and removes its file.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Vec<f64>>>,
    path: PathBuf,
}

impl Probe {
    /// Starts syncing a scratch file in `directory`, on a thread of its own (the syncs block).
    pub fn start(directory: &Path) -> anyhow::Result<Probe> {
        std::fs::create_dir_all(directory).with_context(|| format!("create {}", directory.display()))?;
        let path = directory.join(format!("disk-probe-{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("disk-probe".to_owned())
            .spawn(move || sync_until(&file, &stopped))
            .context("start the disk probe")?;
        Ok(Probe { stop, thread, path })
    }

    pub fn finish(self) -> anyhow::Result<DiskSync> {
        self.stop.store(true, Ordering::Relaxed);
        let latencies = self.thread.join().map_err(|_| anyhow::anyhow!("the disk probe panicked"))?;
        let _scratch_left_behind_is_harmless = std::fs::remove_file(&self.path);
        Ok(DiskSync::of(latencies.context("write and sync the probe's file")?))
    }
}

fn sync_until(file: &File, stop: &AtomicBool) -> std::io::Result<Vec<f64>> {
    let block = vec![0x5a_u8; BLOCK_BYTES];
    let mut latencies_ms = Vec::new();
    let mut next = Instant::now();
    // At least one sync, however soon it is stopped.
    for index in 0_u64.. {
        file.write_all_at(&block, (index % FILE_BLOCKS) * BLOCK_BYTES as u64)?;
        let started = Instant::now();
        file.sync_data()?;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        next += SYNC_INTERVAL;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(latencies_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_slow_counts_come_from_the_samples() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        samples.reverse();
        let figures = DiskSync::of(samples);
        assert_eq!(figures.syncs, 100);
        assert_eq!(figures.p50_ms, 51.0);
        assert_eq!(figures.p99_ms, 100.0);
        assert_eq!(figures.max_ms, 100.0);
        assert_eq!(figures.over_20_ms, 80);
        assert_eq!(figures.over_50_ms, 50);
    }

    #[test]
    fn the_log_line_names_the_bounds_it_counts_against() {
        let line = DiskSync::of(vec![1.0, 30.0, 60.0]).describe();
        assert_eq!(line, "disk: 3 syncs of 8 KiB, p50 30.00 ms, p99 60.00 ms, max 60.0 ms; 2 over 20 ms, 1 over 50 ms");
    }

    #[test]
    fn no_sample_gives_zeros_rather_than_a_panic() {
        let figures = DiskSync::of(Vec::new());
        assert_eq!((figures.syncs, figures.max_ms, figures.over_50_ms), (0, 0.0, 0));
    }

    #[test]
    fn a_probe_syncs_until_finished_and_removes_its_file() {
        let directory = std::env::temp_dir().join(format!("tally-disk-probe-test-{}", std::process::id()));
        let probe = Probe::start(&directory).expect("a probe starts in a writable directory");
        let path = probe.path.clone();
        let figures = probe.finish().expect("the probe finishes");
        assert!(figures.syncs >= 1, "a probe syncs at least once: {figures:?}");
        assert!(!path.exists(), "the scratch file is removed");
        let _ = std::fs::remove_dir(&directory);
    }
}
