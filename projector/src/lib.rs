//! Tally's projector: turns the event store into read models, rebuilds them, and audits them.
//!
//! - [`config`]: the command line (`run`, `rebuild`, `verify`) and its environment variables.
//! - [`app`]: `projector run`: leadership, the catch-up loop, health and metrics, graceful shutdown.
//! - [`leader`]: the session advisory lock that lets exactly one projector apply at a time.
//! - [`catch_up`]: reads the log from the checkpoint and applies one fenced batch per transaction.
//! - [`events`]: reading stored events in position order, in bounded batches.
//! - [`batch`]: folds a batch of events into the rows to write (pure, no IO).
//! - [`read_models`]: bulk writes of each read model (assets, wallets, wallet history, transfers).
//! - [`notifications`]: the JetStream consumer that wakes the catch-up loop early.
//! - [`metrics`]: Prometheus metrics of one projector instance.
//! - [`http`]: `/health/live`, `/health/ready` and `/metrics`.
//! - [`schema`]: waiting for the schema and the names of the read-model tables.
//! - [`rebuild`]: `projector rebuild`: rebuild into a staging schema, then swap atomically.
//! - [`verify`]: `projector verify`: replay every stream and compare with read models, snapshots and invariants.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod app;
pub mod batch;
pub mod catch_up;
pub mod config;
pub mod digests;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod notifications;
pub mod read_models;
pub mod rebuild;
pub mod schema;
pub mod telemetry;
pub mod verify;

pub use app::App;
pub use config::{Action, Cli, Config, RebuildConfig, VerifyConfig};

/// The name of the one projection this projector maintains, as `projection_checkpoints` records it.
pub use tally_shared::notification::READ_MODELS_PROJECTION as PROJECTION_NAME;

/// The key of the session advisory lock held by the projector that applies `read_models` (and by `rebuild`).
/// Distinct from command-service's append lock; the value is arbitrary but fixed forever ("TALLYPRJ" in ASCII).
pub const PROJECTOR_LOCK_KEY: i64 = 0x5441_4c4c_5950_524a;

/// The channel query-service LISTENs on to learn that the projection advanced (payload: the new checkpoint).
pub use tally_shared::notification::PROJECTION_ADVANCED_CHANNEL;
