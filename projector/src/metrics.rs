//! Prometheus metrics of one projector instance, on a recorder of its own (not the process-global one), so
//! that several instances in one test process each report their own numbers.

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of `tally_projection_batch_size` (events per applied batch).
const BATCH_SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0];

/// Buckets of `tally_projection_delay_seconds` (commit of a batch minus the record time of its last event).
const DELAY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Why the catch-up loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeCause {
    Notification,
    Poll,
}

#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    pub checkpoint: Gauge,
    pub head: Gauge,
    pub lag_events: Gauge,
    pub lag_ms: Gauge,
    pub leader: Gauge,
    pub nats_connected: Gauge,
    pub batch_size: Histogram,
    pub delay_seconds: Histogram,
    pub events_applied: Counter,
    pub fenced: Counter,
    pub batch_errors: Counter,
    pub notifications: Counter,
    wake_notification: Counter,
    wake_poll: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("tally_projection_batch_size".into()), &BATCH_SIZE_BUCKETS)
            .expect("batch size buckets are not empty")
            .set_buckets_for_metric(Matcher::Full("tally_projection_delay_seconds".into()), &DELAY_BUCKETS)
            .expect("delay buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let gauge = |name: &'static str, unit: Unit, help: &'static str| {
            recorder.describe_gauge(name.into(), Some(unit), help.into());
            recorder.register_gauge(&Key::from_static_name(name), &METADATA)
        };
        let counter = |name: &'static str, help: &'static str| {
            recorder.describe_counter(name.into(), Some(Unit::Count), help.into());
            recorder.register_counter(&Key::from_static_name(name), &METADATA)
        };
        let checkpoint = gauge("tally_projection_checkpoint", Unit::Count, "Last position applied to the read models.");
        let head = gauge("tally_projection_head", Unit::Count, "Last position committed to the event store.");
        let lag_events = gauge("tally_projection_lag_events", Unit::Count, "Head minus checkpoint.");
        let lag_ms = gauge(
            "tally_projection_lag_ms",
            Unit::Milliseconds,
            "Age of the oldest event not yet applied (0 when caught up).",
        );
        let leader = gauge("tally_projection_leader", Unit::Count, "1 while this instance applies the projection.");
        let nats_connected = gauge("tally_nats_connected", Unit::Count, "1 while connected to NATS.");
        recorder.describe_histogram(
            "tally_projection_batch_size".into(),
            Some(Unit::Count),
            "Events per applied batch.".into(),
        );
        let batch_size = recorder.register_histogram(&Key::from_static_name("tally_projection_batch_size"), &METADATA);
        recorder.describe_histogram(
            "tally_projection_delay_seconds".into(),
            Some(Unit::Seconds),
            "From the record time of a batch's last event to the batch's commit.".into(),
        );
        let delay_seconds =
            recorder.register_histogram(&Key::from_static_name("tally_projection_delay_seconds"), &METADATA);
        let events_applied = counter("tally_projection_events_applied_total", "Events applied to the read models.");
        let fenced =
            counter("tally_projection_fenced_total", "Batches refused because the checkpoint moved elsewhere.");
        let batch_errors = counter("tally_projection_batch_errors_total", "Batches that failed and were rolled back.");
        let notifications = counter("tally_projection_notifications_total", "NATS notifications received.");
        recorder.describe_counter(
            "tally_projection_wakeups_total".into(),
            Some(Unit::Count),
            "Catch-up rounds, by what started them.".into(),
        );
        let wakeup = |cause: &'static str| {
            let key = Key::from_parts("tally_projection_wakeups_total", vec![Label::new("cause", cause)]);
            recorder.register_counter(&key, &METADATA)
        };
        let (wake_notification, wake_poll) = (wakeup("notification"), wakeup("poll"));
        Metrics {
            handle,
            checkpoint,
            head,
            lag_events,
            lag_ms,
            leader,
            nats_connected,
            batch_size,
            delay_seconds,
            events_applied,
            fenced,
            batch_errors,
            notifications,
            wake_notification,
            wake_poll,
        }
    }

    pub fn woke(&self, cause: WakeCause) {
        match cause {
            WakeCause::Notification => self.wake_notification.increment(1),
            WakeCause::Poll => self.wake_poll.increment(1),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call it periodically, so that memory stays bounded
    /// however rarely `/metrics` is scraped.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
