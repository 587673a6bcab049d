//! command-service binary: Config::parse → telemetry → App::build → run_until_stopped.

use clap::Parser;
use command_service::{connect, telemetry, App, Config};
use tally_edge::shutdown_signal;

/// mimalloc instead of the system allocator: a profile under load showed ~40% of CPU time in glibc
/// malloc/free, from the short-lived JSON values every request and event makes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init_logs(&config.log_format);
    let pool = connect(&config).await?;
    let app = App::build(config, pool).await?;
    app.run_until_stopped(shutdown_signal()).await
}
