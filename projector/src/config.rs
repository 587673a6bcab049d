//! The command line: `projector [run]`, `projector rebuild`, `projector verify`, each field also an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Poll interval at most: NATS carries no truth, so a lost notification may delay a projection by this much only.
pub const POLL_INTERVAL_MS_MAX: u64 = 1_000;

/// Events per batch at most: bounds the memory of one batch and the length of its transaction.
pub const BATCH_SIZE_MAX_LIMIT: i64 = 50_000;

/// Tally's projector: keeps the read models an exact replay of the event store (`projector` alone means
/// `projector run`).
#[derive(Debug, Parser)]
#[command(name = "projector", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Action,
}

impl Cli {
    /// Parses `arguments`, reading them as `run`'s when they name no subcommand (`projector`, or
    /// `projector --listen-addr …`), so that the long-running mode needs no word of its own.
    pub fn parse_defaulting_to_run<I: IntoIterator<Item = std::ffi::OsString>>(arguments: I) -> Cli {
        let mut arguments: Vec<std::ffi::OsString> = arguments.into_iter().collect();
        let first = arguments.get(1).and_then(|argument| argument.to_str()).unwrap_or_default();
        let names_a_subcommand =
            ["run", "rebuild", "verify", "help", "-h", "--help", "-V", "--version"].contains(&first);
        if !names_a_subcommand {
            arguments.insert(1.min(arguments.len()), "run".into());
        }
        Cli::parse_from(arguments)
    }
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Keep the read models current (the default).
    Run(Config),
    /// Rebuild every read model from position 0 into fresh tables and swap them in atomically.
    Rebuild(RebuildConfig),
    /// Replay every stream and check read models, snapshots and invariants; exits non-zero on any finding.
    Verify(VerifyConfig),
}

/// Settings of `projector run`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Postgres URL of the event store and read models, or a comma-separated list (a primary and its replicas):
    /// only the one not in recovery is used.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// NATS servers, comma-separated (a cluster's nodes); notifications only wake the projector early, so it
    /// works (by polling) while NATS is down.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Nodes that keep a copy of the notification stream: 1 on one server, 3 on a 3-node JetStream cluster.
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    pub nats_stream_replicas: u16,

    /// Prefix of the NATS subject and JetStream stream, so that stacks sharing one NATS server stay apart.
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "tally")]
    pub nats_subject_prefix: String,

    /// Address of the health and metrics endpoints.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8082")]
    pub listen_addr: SocketAddr,

    /// How often to look for new events without a notification, in milliseconds (at most 1000).
    #[arg(long, env = "POLL_INTERVAL_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=POLL_INTERVAL_MS_MAX))]
    pub poll_interval_ms: u64,

    /// Events applied per transaction at most.
    #[arg(long, env = "BATCH_SIZE_MAX", default_value_t = 2_000,
          value_parser = clap::value_parser!(i64).range(1..=BATCH_SIZE_MAX_LIMIT))]
    pub batch_size_max: i64,

    /// Connections to Postgres at most (one more is held for the leadership lock).
    #[arg(long, env = "DATABASE_CONNECTIONS_MAX", default_value_t = 4)]
    pub database_connections_max: u32,

    /// How often a standby instance retries to take the leadership lock, in milliseconds (at most 1000).
    #[arg(long, env = "STANDBY_RETRY_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub standby_retry_ms: u64,

    /// `json` for one JSON object per log line, anything else for human-readable lines.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// A file holding the Ed25519 key that signs digests: its 32-byte secret as 64 hex digits. It lives outside
    /// the database; without it the log hash is kept but no digest is recorded.
    #[arg(long, env = "DIGEST_SIGNING_KEY_FILE")]
    pub digest_signing_key_file: Option<std::path::PathBuf>,

    /// How often the leader records a digest of the log hash, in seconds, when the log has advanced.
    #[arg(long, env = "DIGEST_INTERVAL_S", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub digest_interval_s: u64,
}

impl Config {
    pub fn digest_interval(&self) -> Duration {
        Duration::from_secs(self.digest_interval_s)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn standby_retry(&self) -> Duration {
        Duration::from_millis(self.standby_retry_ms)
    }
}

/// Settings of `projector rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildConfig {
    /// Postgres URL of the event store and read models, or a comma-separated list (a primary and its replicas):
    /// only the one not in recovery is used.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Events applied per transaction while rebuilding.
    #[arg(long, env = "REBUILD_BATCH_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(1..=BATCH_SIZE_MAX_LIMIT))]
    pub batch_size: i64,

    /// `json` for one JSON object per log line, anything else for human-readable lines.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Settings of `projector verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyConfig {
    /// Postgres URL of the event store and read models, or a comma-separated list (a primary and its replicas):
    /// only the one not in recovery is used.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Events read per query while replaying.
    #[arg(long, env = "VERIFY_BATCH_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(i64).range(1..=BATCH_SIZE_MAX_LIMIT))]
    pub batch_size: i64,

    /// Findings printed per check at most (all are counted).
    #[arg(long, env = "VERIFY_FINDINGS_SHOWN_MAX", default_value_t = 20)]
    pub findings_shown_max: usize,

    /// `json` for one JSON object per log line, anything else for human-readable lines.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Action {
        Cli::parse_defaulting_to_run(arguments.iter().map(std::ffi::OsString::from)).command
    }

    #[test]
    fn flags_without_a_subcommand_mean_run() {
        let Action::Run(config) = parse(&["projector", "--database-url", "postgres://x", "--batch-size-max", "7"])
        else {
            panic!("not run")
        };
        assert_eq!((config.database_url.as_str(), config.batch_size_max), ("postgres://x", 7));
    }

    #[test]
    fn subcommands_take_their_own_flags() {
        assert!(matches!(parse(&["projector", "verify", "--database-url", "postgres://x"]), Action::Verify(_)));
        assert!(matches!(parse(&["projector", "rebuild", "--database-url", "postgres://x"]), Action::Rebuild(_)));
    }

    #[test]
    fn the_poll_interval_is_at_most_a_second() {
        let too_slow = ["projector", "run", "--database-url", "x", "--poll-interval-ms", "1001"];
        assert!(Cli::try_parse_from(too_slow).is_err());
    }
}
