//! The real projector in-process.

use clap::Parser;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Projector {
    stop: Option<oneshot::Sender<()>>,
    ran: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Projector {
    /// Applies the log to the read models, woken by notifications under `prefix` and by its poll.
    pub async fn spawn(pool: PgPool, prefix: &str) -> Projector {
        Projector::spawn_with(pool, prefix, &[]).await
    }

    /// [`Projector::spawn`] with more flags of `projector run`.
    pub async fn spawn_with(pool: PgPool, prefix: &str, extra: &[&str]) -> Projector {
        let mut args = vec!["projector", "run", "--listen-addr", "127.0.0.1:0", "--nats-subject-prefix", prefix];
        args.extend_from_slice(extra);
        let cli = projector::Cli::parse_from(args);
        let projector::Action::Run(config) = cli.command else { unreachable!("parsed as run") };
        let app = projector::App::build(config, pool).await.expect("the projector starts");
        let (stop, stopped) = oneshot::channel();
        let ran = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Projector { stop: Some(stop), ran: Some(ran) }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(ran) = self.ran.take() {
            ran.await.expect("the projector task does not panic").expect("the projector stops cleanly");
        }
    }
}
