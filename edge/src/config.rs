//! `EdgeConfig`: the edge's flags, each also an environment variable, flattened into each service's `Config`.

use std::path::PathBuf;
use std::time::Duration;

/// Request bodies larger than this by default get `413 payload_too_large`: commands are small JSON objects
/// (metadata is capped at 4 KiB), so 64 KiB leaves room without letting one client make the service buffer megabytes.
pub const BODY_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Requests in flight at most by default: above the benchmark's 10,000 simultaneous spends on one wallet,
/// and at a few KiB each, far below the memory budget (SPEC §6).
pub const CONCURRENCY_MAX_DEFAULT: usize = 16_384;

/// How long a client has by default, in milliseconds, to send a whole request head after connecting or after its
/// previous response: long enough for any honest client on a slow link, short enough that a slow-loris client
/// holds a connection for seconds, not forever.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Authentication and limits of an HTTP service.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// JSON file of bearer tokens: `[{"name", "token_sha256", "scopes": [...], "owner_id"?, "rate_per_s"?}]`.
    /// Unset, the service is open: every request acts as `anonymous` with every scope (a warning is logged).
    #[arg(long, env = "AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Request bodies larger than this, in bytes, get `413 payload_too_large`.
    #[arg(long, env = "BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64 * 1024 * 1024))]
    pub body_bytes_max: usize,

    /// Requests in flight at most; beyond it requests get `503 overloaded` at once.
    #[arg(long, env = "CONCURRENCY_MAX", default_value_t = CONCURRENCY_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub concurrency_max: usize,

    /// How long a request may take end to end, in milliseconds, before it answers `503 timeout`.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,

    /// How long a client may take to send a request's head (line and headers), in milliseconds, counted from
    /// connecting or from the previous response on the connection; then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = HEADER_READ_TIMEOUT_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub header_read_timeout_ms: u64,
}

impl EdgeConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
