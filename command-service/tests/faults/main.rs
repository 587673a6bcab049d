//! Fault drills against the real stack (issue #19, SPEC §7): Postgres crashed and restarted under load, and
//! command-service killed with SIGKILL under load and started again, while clients retry each command under
//! its idempotency key. After each: every acknowledged command is in the log exactly once, nothing else is,
//! the fault provably hit commands in flight, and every balance and the asset's zero sum are exact.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod harness;

use std::time::Duration;

use harness::{assert_each_acknowledged_once, topup_load, wait_for_count, TempPostgres};
use sqlx::PgPool;
use support::TestApp;
use tokio::process::{Child, Command};

/// Clients, each topping up a wallet of its own this many times.
const CLIENTS: usize = 8;
const TOPUPS_PER_CLIENT: usize = 150;
/// Commands settled before the fault strikes: well inside the load.
const FAULT_AFTER: usize = 120;

async fn wallets(app_base: &str, client: &reqwest::Client) -> Vec<String> {
    let post = |path: &str, key: String, body: serde_json::Value| {
        client.post(format!("{app_base}{path}")).header("idempotency-key", key).json(&body).send()
    };
    let defined = post("/v1/assets", support::key(), serde_json::json!({"code": "NGN", "scale": 0})).await.unwrap();
    assert_eq!(defined.status(), 201);
    let mut wallets = Vec::new();
    for index in 0..CLIENTS {
        let opened = post(
            "/v1/wallets",
            support::key(),
            serde_json::json!({"owner_id": format!("owner-{index}"), "asset": "NGN"}),
        )
        .await
        .unwrap();
        assert_eq!(opened.status(), 201);
        wallets.push(opened.json::<serde_json::Value>().await.unwrap()["wallet_id"].as_str().unwrap().to_owned());
    }
    wallets
}

async fn assert_balances(pool: &PgPool, wallets: &[String]) {
    for wallet in wallets {
        let balance: String = sqlx::query_scalar("SELECT state->>'balance' FROM streams WHERE stream_id = $1")
            .bind(format!("wallet-{wallet}"))
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(balance, TOPUPS_PER_CLIENT.to_string(), "wallet {wallet}");
    }
    let sums: Vec<(String, String)> = sqlx::query_as(
        "SELECT state->>'asset', sum((state->>'balance')::numeric)::text FROM streams
         WHERE stream_id LIKE 'wallet-%' GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(sums, [("NGN".to_owned(), "0".to_owned())], "zero sum per asset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_and_restarted_under_load_loses_no_acknowledged_command_and_applies_none_twice() {
    let postgres = TempPostgres::start();
    let config = support::config(&["--database-url", &postgres.url("postgres")]);
    let pool = command_service::connect(&config).await.unwrap();
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let wallets = wallets(&app.url(""), &app.client).await;

    let retries_before = append_retries(&app).await;
    let (load, settled) = topup_load(app.url(""), wallets.clone(), TOPUPS_PER_CLIENT);
    wait_for_count(&settled, FAULT_AFTER, Duration::from_secs(60)).await;
    let postgres = tokio::task::spawn_blocking(move || {
        postgres.crash_and_restart();
        postgres
    })
    .await
    .unwrap();
    let answers = load.await.unwrap();

    // The appender retries a batch whose connection died, so most clients never see the crash: its retries
    // (and any client's failed tries) show that the crash hit commands in flight.
    let hit: usize = answers.iter().map(|answer| answer.failed_tries).sum();
    let retries = append_retries(&app).await - retries_before;
    assert!(hit > 0 || retries > 0.0, "the crash hit no command in flight: the drill tested nothing");
    assert_each_acknowledged_once(&pool, &answers).await;
    assert_balances(&pool, &wallets).await;
    app.assert_versions_contiguous().await;
    eprintln!(
        "postgres crash: {} commands; {hit} client tries and {retries} batch attempts failed and were retried",
        answers.len()
    );
    app.stop().await;
    drop(postgres);
}

/// `tally_append_retries_total` of `app`'s process.
async fn append_retries(app: &TestApp) -> f64 {
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tally_append_retries_total "))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

struct Service {
    child: Child,
    base: String,
}

impl Service {
    async fn spawn(database_url: &str, address: &str, prefix: &str) -> Service {
        let child = Command::new(env!("CARGO_BIN_EXE_command-service"))
            .env("DATABASE_URL", database_url)
            .env("LISTEN_ADDR", address)
            .env("NATS_SUBJECT_PREFIX", prefix)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://{address}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{base}/health/ready"))
            .await
            .map_or(true, |response| !response.status().is_success())
        {
            assert!(tokio::time::Instant::now() < deadline, "command-service did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Service { child, base }
    }
}

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

#[sqlx::test(migrations = "../migrations")]
async fn command_service_killed_mid_load_and_restarted_loses_no_acknowledged_command_and_applies_none_twice(
    pool: PgPool,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let prefix = format!("kill{}", uuid::Uuid::now_v7().simple());
    let url = database_url(&pool);
    let mut service = Service::spawn(&url, &address, &prefix).await;
    let wallets = wallets(&service.base, &reqwest::Client::new()).await;

    let (load, settled) = topup_load(service.base.clone(), wallets.clone(), TOPUPS_PER_CLIENT);
    wait_for_count(&settled, FAULT_AFTER, Duration::from_secs(60)).await;
    service.child.start_kill().unwrap(); // SIGKILL: nothing is flushed, nothing is answered
    service.child.wait().await.unwrap();
    let restarted = Service::spawn(&url, &address, &prefix).await;
    let answers = load.await.unwrap();

    let hit: usize = answers.iter().map(|answer| answer.failed_tries).sum();
    assert!(hit > 0, "the kill hit no command in flight: the drill tested nothing");
    assert_each_acknowledged_once(&pool, &answers).await;
    assert_balances(&pool, &wallets).await;
    eprintln!("command-service kill: {} commands, {hit} tries failed and were retried", answers.len());
    drop(restarted);
}
