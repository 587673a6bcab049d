//! The notification contract: NATS "events appended" from command-service to the projector, and the names
//! the projector and query-service share for the read models: their tables, their projection and its Postgres
//! channel.
//! Notifications carry no truth, only "the log has grown to at least `position`".

use serde::{Deserialize, Serialize};

/// What command-service publishes after each commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The global position of the last event of the committed batch.
    pub position: i64,
}

/// Subject of [`Appended`] notifications under a stack's `NATS_SUBJECT_PREFIX`.
pub fn appended_subject(prefix: &str) -> String {
    format!("{prefix}.events.appended")
}

/// The JetStream stream that keeps recent notifications (names may not contain `.`).
pub fn stream_name(prefix: &str) -> String {
    format!("{}_events", prefix.replace(['.', '*', '>', ' '], "_"))
}

/// `Nats-Msg-Id` of a notification, so that JetStream drops a republished duplicate.
pub fn message_id(position: i64) -> String {
    format!("appended-{position}")
}

/// What the projector publishes after each committed batch of the read models: query-services on a replica
/// (which get no `LISTEN/NOTIFY`) re-read their checkpoint when one arrives. It says only that the primary's
/// checkpoint has reached `position`: a replica may not have replayed that far yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projected {
    pub position: i64,
}

/// Subject of [`Projected`] notifications under a stack's `NATS_SUBJECT_PREFIX` (plain NATS, not JetStream:
/// a missed one costs a query-service one poll).
pub fn projected_subject(prefix: &str) -> String {
    format!("{prefix}.projection.advanced")
}

/// The name of the projection that maintains the read models (`rm_*`), as `projection_checkpoints` knows it.
pub const READ_MODELS_PROJECTION: &str = "read_models";

/// The Postgres channel the projector notifies in each batch's transaction, with the new checkpoint as payload:
/// query-service waits on it for read-your-writes.
pub const PROJECTION_ADVANCED_CHANNEL: &str = "projection_advanced";

/// The read-model tables: the projector writes and rebuilds them together, query-service reads them
/// (`projection_checkpoints` is not one of them).
pub const READ_MODEL_TABLES: [&str; 7] = [
    "rm_assets",
    "rm_asset_volumes",
    "rm_wallets",
    "rm_wallet_history",
    "rm_transfers",
    "rm_transfer_reversals",
    "rm_holds",
];
