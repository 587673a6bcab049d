//! command-service's own Prometheus metrics, read before and after a run: how many batches the appender
//! committed and how large they were, and how often it retried. This is what says whether group commit
//! is doing its job when a throughput target is missed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::http::{Pool, Request};
use crate::report::Appender;

/// Every sample of a scrape, summed over labels, by metric name (quantile lines left out), and the
/// append phases' sums and counts by phase.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    totals: BTreeMap<String, f64>,
    phases: BTreeMap<String, (f64, f64)>,
}

/// Reads `GET /metrics`; an unreachable or unreadable endpoint gives an empty scrape.
pub async fn scrape(pool: &Pool) -> Scrape {
    match pool.send(&Request::get("/metrics")).await {
        Ok(response) if response.is_success() => parse(&String::from_utf8_lossy(&response.body)),
        _ => Scrape::default(),
    }
}

fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if line.starts_with('#') || line.contains("quantile=") {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        *scrape.totals.entry(name.to_owned()).or_default() += value;
        let phase = labels.split_once("phase=\"").and_then(|(_, rest)| rest.split_once('"')).map(|(phase, _)| phase);
        if let Some(phase) = phase {
            let entry = scrape.phases.entry(phase.to_owned()).or_default();
            match name {
                "tally_append_phase_seconds_sum" => entry.0 += value,
                "tally_append_phase_seconds_count" => entry.1 += value,
                _ => {}
            }
        }
    }
    scrape
}

impl Scrape {
    fn delta(&self, later: &Scrape, name: &str) -> Option<f64> {
        Some(later.totals.get(name)? - self.totals.get(name).copied().unwrap_or(0.0))
    }

    /// The appender's work between `self` and `later`.
    pub fn appender_until(&self, later: &Scrape, elapsed: Duration) -> Appender {
        let batches = self.delta(later, "tally_batch_size_count");
        let commands_batched = self.delta(later, "tally_batch_size_sum");
        Appender {
            batches,
            batches_per_s: batches.map(|batches| (batches / elapsed.as_secs_f64().max(f64::EPSILON)).round()),
            mean_batch_size: match (commands_batched, batches) {
                (Some(sum), Some(count)) if count > 0.0 => Some((sum / count * 10.0).round() / 10.0),
                _ => None,
            },
            retries: self.delta(later, "tally_append_retries_total").or(Some(0.0)).filter(|_| batches.is_some()),
            conflicts: self.delta(later, "tally_append_conflicts_total").or(Some(0.0)).filter(|_| batches.is_some()),
            phase_mean_ms: later
                .phases
                .iter()
                .filter_map(|(phase, (sum, count))| {
                    let (sum_before, count_before) = self.phases.get(phase).copied().unwrap_or_default();
                    let count = count - count_before;
                    (count > 0.0).then(|| (phase.clone(), ((sum - sum_before) / count * 1e4).round() / 10.0))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_come_from_the_summary_sum_and_count() {
        let before = parse("tally_batch_size_sum 100\ntally_batch_size_count 10\n");
        let after = parse(
            "# TYPE tally_batch_size summary\n\
             tally_batch_size{quantile=\"0.5\"} 12\n\
             tally_batch_size_sum 1100\n\
             tally_batch_size_count 60\n\
             tally_append_retries_total 3\n",
        );
        let appender = before.appender_until(&after, Duration::from_secs(10));
        assert_eq!(appender.batches, Some(50.0));
        assert_eq!(appender.mean_batch_size, Some(20.0));
        assert_eq!(appender.batches_per_s, Some(5.0));
        assert_eq!(appender.retries, Some(3.0));
    }

    #[test]
    fn labelled_series_are_summed() {
        let scrape = parse("x_total{route=\"a\"} 2\nx_total{route=\"b\"} 3\n");
        assert_eq!(scrape.totals.get("x_total"), Some(&5.0));
    }

    #[test]
    fn phase_means_are_per_phase() {
        let before = parse(
            "tally_append_phase_seconds_sum{phase=\"load\"} 1\ntally_append_phase_seconds_count{phase=\"load\"} 10\n",
        );
        let after = parse(
            "tally_append_phase_seconds_sum{phase=\"load\"} 1.5\n\
             tally_append_phase_seconds_count{phase=\"load\"} 110\n\
             tally_append_phase_seconds_sum{phase=\"commit\"} 0.2\n\
             tally_append_phase_seconds_count{phase=\"commit\"} 100\n",
        );
        let appender = before.appender_until(&after, Duration::from_secs(1));
        assert_eq!(appender.phase_mean_ms.get("load"), Some(&5.0));
        assert_eq!(appender.phase_mean_ms.get("commit"), Some(&2.0));
    }
}
