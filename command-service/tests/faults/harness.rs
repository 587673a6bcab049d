//! What the fault drills share: a Postgres cluster of the test's own (to crash it without disturbing other
//! tests), and clients that retry each command under its idempotency key until it is answered for good.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

/// A Postgres cluster in a directory of its own, on a port of its own; stopped and removed when dropped.
pub struct TempPostgres {
    pub port: u16,
    directory: PathBuf,
    bin: PathBuf,
}

/// The directory of Postgres's server binaries (`initdb`, `pg_ctl`), from Debian's layout.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres's server binaries are installed (scripts/test installs them)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres version with pg_ctl")
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|user| user == "root")
        || Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.starts_with(b"0"))
}

/// Runs a Postgres binary, as the `postgres` user when this is root (the server refuses to run as root).
fn run(bin: &Path, program: &str, arguments: &[&str]) -> std::process::Output {
    let path = bin.join(program);
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&path);
        command
    } else {
        Command::new(&path)
    };
    command.args(arguments).stdin(Stdio::null()).output().unwrap_or_else(|error| panic!("run {program}: {error}"))
}

impl TempPostgres {
    pub fn start() -> TempPostgres {
        let bin = postgres_bin();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let directory = std::env::temp_dir().join(format!("tally-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&directory).unwrap();
        if is_root() {
            let chown = Command::new("chown").args(["postgres:postgres"]).arg(&directory).status().unwrap();
            assert!(chown.success());
        }
        let data = directory.join("data");
        let initdb = run(&bin, "initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "root", "--no-sync"]);
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        let postgres = TempPostgres { port, directory, bin };
        postgres.pg_ctl("start");
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://root@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.directory.join("data");
        let log = self.directory.join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.directory.display()
        );
        let mut arguments =
            vec![action, "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w"];
        if action != "start" {
            arguments.extend(["-m", "immediate"]);
        }
        let output = run(&self.bin, "pg_ctl", &arguments);
        assert!(output.status.success(), "pg_ctl {action}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Crashes the server (`pg_ctl -m immediate`: no shutdown checkpoint, recovery on start) and starts it again.
    pub fn crash_and_restart(&self) {
        self.pg_ctl("stop");
        self.pg_ctl("start");
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let data = self.directory.join("data");
        let _ = run(&self.bin, "pg_ctl", &["stop", "-D", data.to_str().unwrap(), "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// How a retried command ended.
#[derive(Debug, Clone)]
pub struct Settled {
    pub key: String,
    pub status: u16,
    pub body: Value,
    /// Tries that met a transport error or a 5xx: the fault hit this command in flight.
    pub failed_tries: usize,
}

/// Sends `body` to `url` under `key` until it gets an answer that is not a fault (a transport error, 409
/// `idempotency_key_in_flight`, 5xx), pausing 50 ms between tries, for at most `patience`.
pub async fn until_settled(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
    patience: Duration,
) -> Settled {
    let deadline = Instant::now() + patience;
    let mut failed_tries = 0;
    loop {
        let sent = client.post(url).header("idempotency-key", key).json(body).send().await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            let in_flight = status == 409 && body["code"] == "idempotency_key_in_flight";
            if status < 500 && !in_flight {
                return Settled { key: key.to_owned(), status, body, failed_tries };
            }
        }
        failed_tries += 1;
        assert!(Instant::now() < deadline, "{url} under {key} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `clients` concurrent clients each topping up its own wallet `per_client` times by 1, every top-up retried
/// until settled. Returns every settled command and a counter of those settled so far (to time a fault by).
pub fn topup_load(
    base: String,
    wallets: Vec<String>,
    per_client: usize,
) -> (tokio::task::JoinHandle<Vec<Settled>>, Arc<AtomicUsize>) {
    let settled = Arc::new(AtomicUsize::new(0));
    let counter = settled.clone();
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut clients = tokio::task::JoinSet::new();
        for wallet in wallets {
            let (client, base, counter) = (client.clone(), base.clone(), counter.clone());
            clients.spawn(async move {
                let mut answers = Vec::new();
                for index in 0..per_client {
                    let key = format!("{wallet}-topup-{index}");
                    let url = format!("{base}/v1/wallets/{wallet}/topup");
                    let answer =
                        until_settled(&client, &url, &key, &json!({"amount": "1"}), Duration::from_secs(120)).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    answers.push(answer);
                }
                answers
            });
        }
        let mut all = Vec::new();
        while let Some(answers) = clients.join_next().await {
            all.extend(answers.unwrap());
        }
        all
    });
    (task, settled)
}

/// Waits until `counter` reaches `at_least` (bounded by `patience`).
pub async fn wait_for_count(counter: &AtomicUsize, at_least: usize, patience: Duration) {
    let deadline = Instant::now() + patience;
    while counter.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "the load did not reach {at_least} settled commands");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After a drill: every acknowledged top-up is in the log exactly once, and nothing else is.
pub async fn assert_each_acknowledged_once(pool: &sqlx::PgPool, settled: &[Settled]) {
    for answer in settled {
        assert_eq!(answer.status, 201, "{} settled as {} {:?}", answer.key, answer.status, answer.body);
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metadata->>'idempotency_key', count(*) FROM events
         WHERE event_type = 'TransferRecorded' AND metadata->>'idempotency_key' LIKE '%-topup-%' GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let counts: std::collections::HashMap<String, i64> = counts.into_iter().collect();
    for answer in settled {
        assert_eq!(
            counts.get(&answer.key),
            Some(&1),
            "{} is in the log {:?} times",
            answer.key,
            counts.get(&answer.key)
        );
        let transfer_id = answer.body["transfer_id"].as_str().unwrap();
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
            .bind(format!("transfer-{transfer_id}"))
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(recorded, 1, "the acknowledged transfer {transfer_id} is recorded once");
    }
    assert_eq!(counts.len(), settled.len(), "the log holds top-ups that no client was answered for");
}
