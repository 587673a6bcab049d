//! Resident memory of the service processes, from `/proc/<pid>/status`: sampled while the bench runs,
//! and each process's own high-water mark (`VmHWM`) at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often resident memory is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// A service process to watch.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: &'static str,
    pub pid: Option<u32>,
}

/// Peak resident memory per service, in KiB: over the whole run, and since the current phase began.
#[derive(Debug, Clone, Default)]
pub struct Peaks {
    pub sampled_rss_kib: BTreeMap<&'static str, u64>,
    pub phase_rss_kib: BTreeMap<&'static str, u64>,
}

/// Samples `VmRSS` of every watched process until the returned handle is dropped.
pub struct Sampler {
    watched: Vec<Watched>,
    peaks: Arc<Mutex<Peaks>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(watched: Vec<Watched>) -> Sampler {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let task = {
            let (watched, peaks) = (watched.clone(), peaks.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
                loop {
                    interval.tick().await;
                    for process in &watched {
                        let Some(rss) = process.pid.and_then(|pid| status_kib(pid, "VmRSS")) else { continue };
                        let mut peaks = peaks.lock().expect("peaks lock is never poisoned");
                        let peak = peaks.sampled_rss_kib.entry(process.name).or_default();
                        *peak = (*peak).max(rss);
                        let phase_peak = peaks.phase_rss_kib.entry(process.name).or_default();
                        *phase_peak = (*phase_peak).max(rss);
                    }
                }
            })
        };
        Sampler { watched, peaks, task }
    }

    /// Each service's peak sampled resident memory since the last call, in MB; starts the next phase.
    pub fn take_phase_peaks_mb(&self) -> BTreeMap<String, f64> {
        let mut peaks = self.peaks.lock().expect("peaks lock is never poisoned");
        std::mem::take(&mut peaks.phase_rss_kib)
            .into_iter()
            .map(|(name, kib)| (name.to_owned(), (kib as f64 / 1024.0 * 10.0).round() / 10.0))
            .collect()
    }

    /// Each service's peak resident memory in MB: the larger of its `VmHWM` and the sampled peak,
    /// or why it is unknown.
    pub fn peaks_mb(&self) -> BTreeMap<&'static str, Result<f64, String>> {
        let sampled = self.peaks.lock().expect("peaks lock is never poisoned").clone();
        self.watched
            .iter()
            .map(|process| {
                let peak = match process.pid {
                    None => Err("no pid given (--*-pid)".to_owned()),
                    Some(pid) => {
                        let high_water = status_kib(pid, "VmHWM");
                        let sampled = sampled.sampled_rss_kib.get(process.name).copied();
                        match high_water.max(sampled) {
                            Some(kib) => Ok(kib as f64 / 1024.0),
                            None => Err(format!("/proc/{pid}/status is not readable (process gone?)")),
                        }
                    }
                };
                (process.name, peak)
            })
            .collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `kB` line of `/proc/<pid>/status`, such as `VmRSS:    12345 kB`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tquery-service\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(81_234));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(70_000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(status_kib(std::process::id(), "VmRSS").is_some_and(|kib| kib > 0));
    }
}
