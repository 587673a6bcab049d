//! command-service configuration: one clap struct, every field a flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Takes money commands over HTTP and appends them to the Postgres event store.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "command-service", version, about)]
pub struct Config {
    /// Postgres URL of the event store, or a comma-separated list of them (a primary and its replicas): writes
    /// go only to the one not in recovery, and move to another when it fails and that one is promoted.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://root@127.0.0.1:5432/tally")]
    pub database_url: String,

    /// NATS servers for "events appended" notifications (JetStream), comma-separated (a cluster's nodes).
    /// Commands never wait for them.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Nodes that keep a copy of the notification stream: 1 on one server, 3 on a 3-node JetStream cluster.
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    pub nats_stream_replicas: u16,

    /// Prefix of NATS subjects and streams, so that stacks sharing one NATS server stay apart.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "tally")]
    pub nats_subject_prefix: String,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Postgres connections at most.
    #[arg(long, env = "DATABASE_CONNECTIONS_MAX", default_value_t = 8)]
    pub database_connections_max: u32,

    /// Postgres `statement_timeout` of every connection, in milliseconds.
    #[arg(long, env = "STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub statement_timeout_ms: u64,

    /// Postgres `idle_in_transaction_session_timeout` of every connection, in milliseconds.
    #[arg(long, env = "IDLE_IN_TRANSACTION_TIMEOUT_MS", default_value_t = 10_000)]
    pub idle_in_transaction_timeout_ms: u64,

    /// Appender tasks: batches decided and written at once. One by default: batches of mixed traffic nearly
    /// all touch the system wallets, so a batch decided while another one is being written finds them moved
    /// and is decided again, and more appenders split the queue into smaller batches (measured slower on 2
    /// cores: README, Performance).
    #[arg(long, env = "APPENDERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub appenders: u16,

    /// Commands decided and appended in one transaction at most (group commit).
    #[arg(long, env = "BATCH_SIZE_MAX", default_value_t = 512)]
    pub batch_size_max: usize,

    /// Commands waiting for the appender at most; beyond it requests get `503 overloaded` at once.
    #[arg(long, env = "QUEUE_DEPTH_MAX", default_value_t = 20_000)]
    pub queue_depth_max: usize,

    /// Times a batch is retried after a version conflict or a lost connection before its commands fail.
    #[arg(long, env = "APPEND_RETRIES_MAX", default_value_t = 5)]
    pub append_retries_max: u32,

    /// How long a request with an idempotency key already in flight waits for the first one, in milliseconds,
    /// before answering `409 idempotency_key_in_flight`.
    #[arg(long, env = "IDEMPOTENCY_WAIT_MS", default_value_t = 5_000)]
    pub idempotency_wait_ms: u64,

    /// How long idempotency keys are kept, in hours (at least 24 by contract).
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(24..))]
    pub idempotency_retention_hours: u64,

    /// How long the active expirer sleeps at most between two looks for due holds, in milliseconds.
    #[arg(long, env = "EXPIRER_POLL_MS", default_value_t = 250)]
    pub expirer_poll_ms: u64,

    /// Holds the expirer releases per round at most.
    #[arg(long, env = "EXPIRER_BATCH_SIZE_MAX", default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub expirer_batch_size_max: i64,

    /// How long a notification publish may take before it is counted as failed, in milliseconds.
    #[arg(long, env = "PUBLISH_TIMEOUT_MS", default_value_t = 1_000)]
    pub publish_timeout_ms: u64,

    /// Tokens and limits of the HTTP edge: AUTH_TOKENS_FILE, BODY_BYTES_MAX, CONCURRENCY_MAX, REQUEST_TIMEOUT_MS,
    /// HEADER_READ_TIMEOUT_MS.
    #[command(flatten)]
    pub edge: tally_edge::EdgeConfig,

    /// Log format: `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn idempotency_wait(&self) -> Duration {
        Duration::from_millis(self.idempotency_wait_ms)
    }
}
