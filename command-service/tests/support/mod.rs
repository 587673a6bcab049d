//! Test harness: the real command-service on port 0 over a test database, with typed HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use clap::Parser;
use command_service::{App, Config};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::oneshot;

/// A running command-service and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    pub pool: PgPool,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A response reduced to what tests assert on.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed").is_some_and(|value| value == "true")
    }
}

pub fn config(extra: &[&str]) -> Config {
    let prefix = format!("test{}", uuid::Uuid::now_v7().simple());
    let mut args = vec!["command-service", "--listen-addr", "127.0.0.1:0", "--nats-subject-prefix", &prefix];
    args.extend_from_slice(extra);
    Config::parse_from(args)
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> TestApp {
        TestApp::spawn_with(pool, config(&[])).await
    }

    pub async fn spawn_with(pool: PgPool, config: Config) -> TestApp {
        let app = App::build(config, pool.clone()).await.expect("command-service builds");
        let address = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        TestApp { address, pool, client, stop: Some(stop), task: Some(task) }
    }

    /// Stops serving and waits until in-flight requests are answered and the appender has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Kills the service as a crash would: its task is aborted mid-flight, nothing drains.
    pub async fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// POSTs JSON with an idempotency key.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).header("idempotency-key", key).json(&body)).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the service");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, body, headers }
    }

    pub async fn define_asset(&self, code: &str, scale: u32, fee: Option<Value>) -> Value {
        let mut body = json!({"code": code, "scale": scale});
        if let Some(fee) = fee {
            body["cash_in_fee"] = fee;
        }
        let reply = self.post("/v1/assets", &key(), body).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.body
    }

    pub async fn open_wallet(&self, owner: &str, asset: &str) -> String {
        let reply = self.post("/v1/wallets", &key(), json!({"owner_id": owner, "asset": asset})).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        reply.body["wallet_id"].as_str().unwrap().to_owned()
    }

    /// A money command on a wallet (`topup`, `bonus`, `spend`, `withdrawal`, `cash-in`).
    pub async fn money(&self, wallet: &str, action: &str, amount: &str) -> Reply {
        self.post(&format!("/v1/wallets/{wallet}/{action}"), &key(), json!({"amount": amount})).await
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&self.pool).await.unwrap()
    }

    /// A wallet's balance as its snapshot has it (the command side's truth after commit).
    pub async fn balance(&self, wallet: &str) -> rust_decimal::Decimal {
        let state: Value = sqlx::query_scalar("SELECT state FROM streams WHERE stream_id = $1")
            .bind(format!("wallet-{wallet}"))
            .fetch_one(&self.pool)
            .await
            .unwrap();
        state["balance"].as_str().unwrap().parse().unwrap()
    }

    /// Sum of all wallet balances of an asset, from snapshots: zero, always.
    pub async fn asset_sum(&self, asset: &str) -> rust_decimal::Decimal {
        let states: Vec<Value> = sqlx::query_scalar("SELECT state FROM streams WHERE stream_id LIKE 'wallet-%'")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        states
            .iter()
            .filter(|state| state["asset"] == asset)
            .map(|state| state["balance"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
            .sum()
    }

    /// Asserts that every stream's versions run 1, 2, 3, … without a gap or a duplicate.
    pub async fn assert_versions_contiguous(&self) {
        let broken: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT stream_id, max(version) AS top, count(*) AS n, min(version) AS low
             FROM events GROUP BY stream_id) s WHERE top <> n OR low <> 1",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap();
        assert_eq!(broken, 0, "streams with gaps in their versions");
    }
}

pub fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}
