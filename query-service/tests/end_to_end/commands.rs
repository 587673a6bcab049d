//! The real command-service in-process, with a typed helper per command.

use clap::Parser;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running command-service; [`Commands`] talks to it.
pub struct CommandService {
    pub commands: Commands,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A client of command-service, cheap to clone into concurrent tasks.
#[derive(Clone)]
pub struct Commands {
    pub base_url: String,
    pub client: reqwest::Client,
}

/// A command's answer.
#[derive(Debug)]
pub struct Answered {
    pub status: u16,
    pub body: Value,
}

impl Answered {
    /// The global position of the command's last event.
    #[track_caller]
    pub fn position(&self) -> i64 {
        assert!(self.status == 201, "{} {:#}", self.status, self.body);
        self.body["position"].as_i64().expect("a command answers its position")
    }
}

/// A NATS subject prefix of this test's own, so that tests running at once never hear each other.
pub fn unique_prefix() -> String {
    format!("qs{}", uuid::Uuid::now_v7().simple())
}

impl CommandService {
    /// Starts command-service before anything else of the test: it installs the process's metrics recorder
    /// and refuses to start after another one, while query-service only warns.
    pub async fn spawn(pool: PgPool) -> CommandService {
        CommandService::spawn_with_prefix(pool, &unique_prefix()).await
    }

    /// Publishes notifications under `prefix`, for a projector of the same test to hear.
    pub async fn spawn_with_prefix(pool: PgPool, prefix: &str) -> CommandService {
        let config = command_service::Config::parse_from([
            "command-service",
            "--listen-addr",
            "127.0.0.1:0",
            "--nats-subject-prefix",
            prefix,
        ]);
        let app = command_service::App::build(config, pool).await.expect("command-service starts");
        let base_url = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let commands = Commands { base_url, client: reqwest::Client::new() };
        CommandService { commands, stop: Some(stop), served: Some(served) }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("the server task does not panic").expect("command-service stops cleanly");
        }
    }
}

impl Commands {
    pub async fn post(&self, path: &str, body: Value) -> Answered {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&body)
            .send()
            .await
            .expect("command-service answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Answered { status, body }
    }

    /// Defines an asset and returns its answer (with `system_wallets`).
    pub async fn define_asset(&self, code: &str, scale: u32) -> Value {
        let answered = self.post("/v1/assets", json!({ "code": code, "scale": scale })).await;
        assert_eq!(answered.status, 201, "{:#}", answered.body);
        answered.body
    }

    pub async fn open_wallet(&self, owner_id: &str, asset: &str) -> Answered {
        self.post("/v1/wallets", json!({ "owner_id": owner_id, "asset": asset })).await
    }

    /// `topup`, `bonus`, `spend`, `withdrawal` or `cash-in` of `amount` on `wallet_id`.
    pub async fn money(&self, wallet_id: &str, action: &str, amount: &str) -> Answered {
        self.post(&format!("/v1/wallets/{wallet_id}/{action}"), json!({ "amount": amount })).await
    }

    pub async fn transfer(&self, from: &str, to: &str, amount: &str) -> Answered {
        self.post("/v1/transfers", json!({ "from_wallet_id": from, "to_wallet_id": to, "amount": amount })).await
    }
}
