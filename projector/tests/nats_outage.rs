//! NATS stopped under load (SPEC §7): commands keep succeeding while it is gone, the projection catches up by
//! polling meanwhile, and once NATS is back the projector is woken by notifications again. NATS here is a
//! server of the test's own (port and store directory), stopped and started without touching anyone else's.
//!
//! `NATS_DOWN_S` sets how long NATS stays down (5 s by default; `scripts/drills` runs a minute).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::*;
use tokio::process::{Child, Command};
use tokio::time::Instant;

struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    async fn start(port: u16, store: PathBuf) -> Nats {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Nats { child, port, store }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) -> (u16, PathBuf) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
        (self.port, self.store)
    }
}

fn down_for() -> Duration {
    Duration::from_secs(std::env::var("NATS_DOWN_S").ok().and_then(|seconds| seconds.parse().ok()).unwrap_or(5))
}

async fn post(client: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}{path}"))
        .header("idempotency-key", uuid::Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn notification_wakeups(metrics: &str) -> f64 {
    metric(metrics, "tally_projection_wakeups_total{cause=\"notification\"}").unwrap_or(0.0)
}

#[sqlx::test(migrations = "../migrations")]
async fn with_nats_stopped_commands_succeed_and_projections_catch_up_by_polling_then_by_notification(pool: PgPool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = std::env::temp_dir().join(format!("tally-nats-{}", uuid::Uuid::now_v7().simple()));
    let nats = Nats::start(port, store).await;
    let prefix = unique_prefix();
    let service_config = command_service::Config::parse_from([
        "command-service",
        "--listen-addr",
        "127.0.0.1:0",
        "--nats-url",
        &nats.url(),
        "--nats-subject-prefix",
        &prefix,
    ]);
    let app = command_service::App::build(service_config, pool.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // A poll far slower than notifications, so that a wake-up by notification is told apart from a poll.
    let projector = RunningProjector::start(&pool, config(&prefix, &nats.url(), &["--poll-interval-ms", "500"])).await;
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &base, "/v1/assets", json!({"code": "NGN", "scale": 0})).await.0, 201);
    let (_, opened) = post(&client, &base, "/v1/wallets", json!({"owner_id": "alice", "asset": "NGN"})).await;
    let wallet = opened["wallet_id"].as_str().unwrap().to_owned();
    let topup = |client: reqwest::Client, base: String, wallet: String| async move {
        post(&client, &base, &format!("/v1/wallets/{wallet}/topup"), json!({"amount": "1"})).await.0
    };
    let mut sent = 0;
    for _ in 0..20 {
        assert_eq!(topup(client.clone(), base.clone(), wallet.clone()).await, 201);
        sent += 1;
    }
    caught_up(&pool).await;
    eventually("notifications wake the projector while NATS is up", Duration::from_secs(20), || async {
        (notification_wakeups(&projector.metrics().await) > 0.0).then_some(())
    })
    .await;

    let (port, store) = nats.stop().await;
    let outage_ends = Instant::now() + down_for();
    while Instant::now() < outage_ends {
        assert_eq!(topup(client.clone(), base.clone(), wallet.clone()).await, 201, "a command failed with NATS down");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let woken_before_restart = notification_wakeups(&projector.metrics().await);
    let head_while_down = head(&pool).await;
    eventually("the projection catches up by polling while NATS is down", Duration::from_secs(20), || async {
        (checkpoint(&pool).await >= head_while_down).then_some(())
    })
    .await;

    let nats = Nats::start(port, store).await;
    eventually("notifications wake the projector again once NATS is back", Duration::from_secs(60), || {
        let (client, base, wallet) = (client.clone(), base.clone(), wallet.clone());
        let projector = &projector;
        async move {
            assert_eq!(topup(client, base, wallet).await, 201);
            (notification_wakeups(&projector.metrics().await) > woken_before_restart).then_some(())
        }
    })
    .await;
    caught_up(&pool).await;
    assert_verified(&pool).await;
    eprintln!("NATS down {:?}: {sent} commands, all answered 201", down_for());

    projector.stop().await;
    let _ = stop.send(());
    service.await.unwrap().unwrap();
    let (_, store) = nats.stop().await;
    let _ = std::fs::remove_dir_all(store);
}
