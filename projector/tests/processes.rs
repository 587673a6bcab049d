//! Two `projector` processes against one database: one applies, the other stands by and takes over when the
//! first is killed with SIGKILL; SIGTERM stops a projector cleanly.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sqlx::PgPool;
use support::*;
use tokio::process::{Child, Command};

struct Process {
    child: Child,
    address: String,
}

impl Process {
    fn spawn(pool: &PgPool, prefix: &str) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_projector"))
            .env("DATABASE_URL", database_url(pool))
            .env("LISTEN_ADDR", &address)
            .env("NATS_URL", nats_url())
            .env("NATS_SUBJECT_PREFIX", prefix)
            .env("POLL_INTERVAL_MS", "100")
            .env("STANDBY_RETRY_MS", "100")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process { child, address }
    }

    async fn role(&self) -> Option<String> {
        let response = reqwest::get(format!("http://{}/health/ready", self.address)).await.ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        body["role"].as_str().map(str::to_owned)
    }
}

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{database}")
}

async fn leader_and_standby(first: &Process, second: &Process) -> (usize, usize) {
    eventually("one process leads and the other stands by", Duration::from_secs(20), || async {
        match (first.role().await.as_deref(), second.role().await.as_deref()) {
            (Some("leader"), Some("standby")) => Some((0, 1)),
            (Some("standby"), Some("leader")) => Some((1, 0)),
            _ => None,
        }
    })
    .await
}

#[sqlx::test(migrations = "../migrations")]
async fn a_killed_leader_process_is_replaced_by_the_standby(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 60, 53).await;
    let prefix = unique_prefix();
    let mut processes = [Process::spawn(&pool, &prefix), Process::spawn(&pool, &prefix)];
    let (leader, standby) = leader_and_standby(&processes[0], &processes[1]).await;
    caught_up(&pool).await;

    processes[leader].child.start_kill().unwrap(); // SIGKILL: no clean-up, the lock goes with the session
    processes[leader].child.wait().await.unwrap();
    for index in 0..30 {
        let wallet = ledger.open_wallet(&format!("late-{index}"), "GEMS").await;
        ledger.topup(wallet, "4").await;
    }
    eventually("the standby takes over", Duration::from_secs(20), || async {
        (processes[standby].role().await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    caught_up(&pool).await;

    assert_verified(&pool).await;
    let pid = processes[standby].child.id().unwrap().to_string();
    let terminated = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(terminated.success());
    let status = tokio::time::timeout(Duration::from_secs(20), processes[standby].child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "SIGTERM stops the projector cleanly: {status}");
}
