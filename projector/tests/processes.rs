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
        Process::spawn_with(pool, prefix, &[])
    }

    fn spawn_with(pool: &PgPool, prefix: &str, env: &[(&str, &str)]) -> Process {
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
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Process { child, address }
    }

    async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.address)).await.unwrap().text().await.unwrap();
        metric(&text, sample).unwrap_or(0.0)
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

#[sqlx::test(migrations = "../migrations")]
async fn a_standby_applies_nothing_while_the_leader_lives(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 4, 40, 61).await;
    let prefix = unique_prefix();
    let processes = [Process::spawn(&pool, &prefix), Process::spawn(&pool, &prefix)];
    let (leader, standby) = leader_and_standby(&processes[0], &processes[1]).await;
    mixed_workload_more_for(&mut ledger, 120).await;
    caught_up(&pool).await;

    let applied = |index: usize| processes[index].metric("tally_projection_events_applied_total");
    assert!(applied(leader).await > 0.0, "the leader applied the log");
    assert_eq!(applied(standby).await, 0.0, "the standby applied events while the leader lived");
    assert_eq!(processes[standby].metric("tally_projection_fenced_total").await, 0.0, "nor tried to");
    assert_eq!(processes[standby].role().await.as_deref(), Some("standby"));
    assert_verified(&pool).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_projector_killed_in_the_middle_of_catching_up_is_replaced_and_the_read_models_equal_a_replay(pool: PgPool) {
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 8, 1_500, 67).await;
    let head = head(&pool).await;
    let prefix = unique_prefix();
    // Small batches, so that the catch-up takes many transactions and the kill lands inside one of them.
    let mut first = Process::spawn_with(&pool, &prefix, &[("BATCH_SIZE_MAX", "5")]);
    let reached = eventually("the projector is part way through the log", Duration::from_secs(30), || async {
        let applied = checkpoint(&pool).await;
        (applied > 0).then_some(applied)
    })
    .await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let at_kill = checkpoint(&pool).await;
    assert!(at_kill < head, "the projector had caught up before the kill ({at_kill} of {head}): it died idle");
    assert!(at_kill >= reached);

    let second = Process::spawn(&pool, &prefix);
    caught_up(&pool).await;
    assert_verified(&pool).await;
    assert_eq!(second.role().await.as_deref(), Some("leader"));
}

async fn mixed_workload_more_for(ledger: &mut Ledger, commands: usize) {
    for index in 0..commands {
        let wallet = ledger.open_wallet(&format!("more-{index}"), "GEMS").await;
        ledger.topup(wallet, "2").await;
    }
}
