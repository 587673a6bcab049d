//! query-service binary: Config::parse → telemetry → App::build → run_until_stopped.

use clap::Parser;
use query_service::{database, telemetry, App, Config};
use tally_edge::shutdown_signal;

/// mimalloc instead of the system allocator: glibc malloc and free took about 10 % of a profile of
/// `GET /v1/wallets/{id}` under load (each request builds a few short-lived strings and JSON values).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let pool = database::connect(&config)?;
    let app = App::build(config, pool).await?;
    tracing::info!(listen_addr = %app.local_addr(), "query-service listening");
    app.run_until_stopped(shutdown_signal()).await
}
