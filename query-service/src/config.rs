//! The one configuration of query-service: command-line flags, each also read from an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Longest `MIN_POSITION_WAIT_MS` accepted: a read-your-writes wait holds a request open, so it stays short.
pub const MIN_POSITION_WAIT_MS_MAX: u64 = 30_000;

/// How query-service reaches Postgres and NATS, where it listens, and its bounds.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "query-service", version, about = "Tally's read side: balances, histories, transfers, events")]
pub struct Config {
    /// Postgres URL of the event store and read models, or a comma-separated list: reads go to the first that
    /// answers (a replica will do), and move on when it stops answering. Connections are opened read-only.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// NATS servers, comma-separated (a cluster's nodes). query-service does not need NATS to answer; on a
    /// replica, the projector's progress notifications make read-your-writes wait for replay rather than for a
    /// poll. `/health/ready` reports its state.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Prefix of NATS subjects, as the projector's (`{prefix}.projection.advanced`).
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "tally")]
    pub nats_subject_prefix: String,

    /// Address and port to serve HTTP on (port 0 picks a free one).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub listen_addr: SocketAddr,

    /// How long a read given `min_position` waits for the projection before `503 projection_behind`, in ms.
    #[arg(long, env = "MIN_POSITION_WAIT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(0..=MIN_POSITION_WAIT_MS_MAX))]
    pub min_position_wait_ms: u64,

    /// Postgres connections lent to requests (one more serves the checkpoint follower and health checks, and the
    /// checkpoint listener holds its own).
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub database_pool_size: u32,

    /// How long a request waits for a free pool connection before `503 unavailable`, in ms.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub database_acquire_timeout_ms: u64,

    /// Postgres `statement_timeout` of every connection, in ms: no query runs longer.
    #[arg(long, env = "STATEMENT_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub statement_timeout_ms: u64,

    /// How often the projection checkpoint is re-read in case a `projection_advanced` notification was lost, in ms.
    #[arg(long, env = "CHECKPOINT_POLL_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub checkpoint_poll_ms: u64,

    /// Live feeds (`/v1/events/stream`) open at once at most; beyond it `503 overloaded`.
    #[arg(long, env = "FEED_SUBSCRIBERS_MAX", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub feed_subscribers_max: u64,

    /// Items a feed's subscriber may fall behind at most before it gets `event: reset` and is closed.
    #[arg(long, env = "FEED_BUFFER_ITEMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub feed_buffer_items: u64,

    /// How often an idle feed sends a comment to keep its connection open, in seconds.
    #[arg(long, env = "FEED_HEARTBEAT_S", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub feed_heartbeat_s: u64,

    /// How long start-up waits for command-service to have applied the migrations, in seconds.
    #[arg(long, env = "SCHEMA_WAIT_SECS", default_value_t = 120)]
    pub schema_wait_secs: u64,

    /// How long a graceful shutdown lets in-flight requests finish, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Tokens and limits of the HTTP edge: AUTH_TOKENS_FILE, BODY_BYTES_MAX, CONCURRENCY_MAX, REQUEST_TIMEOUT_MS,
    /// HEADER_READ_TIMEOUT_MS.
    #[command(flatten)]
    pub edge: tally_edge::EdgeConfig,

    /// Log format: `text` for people, `json` for machines.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn min_position_wait(&self) -> Duration {
        Duration::from_millis(self.min_position_wait_ms)
    }

    pub fn checkpoint_poll(&self) -> Duration {
        Duration::from_millis(self.checkpoint_poll_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms)
    }

    pub fn schema_wait(&self) -> Duration {
        Duration::from_secs(self.schema_wait_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn every_flag_is_documented_and_consistent() {
        Config::command().debug_assert();
        for argument in Config::command().get_arguments() {
            assert!(argument.get_help().is_some(), "--{} has no help", argument.get_id());
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let config = Config::parse_from(["query-service", "--database-url", "postgres://localhost/tally"]);
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(config.min_position_wait(), Duration::from_secs(2));
        assert!(Config::try_parse_from(["query-service", "--database-url", "x", "--min-position-wait-ms", "30001"])
            .is_err());
    }
}
