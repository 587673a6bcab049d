//! query-service binary: Config::parse → telemetry → App::build → run_until_stopped.

use clap::Parser;
use query_service::{database, shutdown_signal, telemetry, App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let pool = database::connect(&config)?;
    let app = App::build(config, pool).await?;
    tracing::info!(listen_addr = %app.local_addr(), "query-service listening");
    app.run_until_stopped(shutdown_signal()).await
}
