//! The `projector` binary: parse the command line, set up logs, and run, rebuild or verify.

use std::process::ExitCode;

use projector::{app, rebuild, telemetry, verify, Action, App, Cli};

/// The fold allocates many small rows per event; mimalloc roughly halves what the system allocator costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse_defaulting_to_run(std::env::args_os()).command;
    let log_format = match &command {
        Action::Run(config) => config.log_format.clone(),
        Action::Rebuild(config) => config.log_format.clone(),
        Action::Verify(config) => config.log_format.clone(),
    };
    telemetry::init(&log_format);
    let result = match command {
        Action::Run(config) => run(config).await.map(|()| ExitCode::SUCCESS),
        Action::Rebuild(config) => rebuild::main(config).await.map(|()| ExitCode::SUCCESS),
        Action::Verify(config) => verify::main(config).await,
    };
    result.unwrap_or_else(|error| {
        tracing::error!(error = format!("{error:#}"), "projector failed");
        ExitCode::FAILURE
    })
}

async fn run(config: projector::Config) -> anyhow::Result<()> {
    let pool = app::pool(&config)?;
    let app = App::build(config, pool).await?;
    tracing::info!(listen_addr = %app.local_addr(), "projector started");
    app.run_until_stopped(tally_edge::shutdown_signal()).await
}
