//! The log hash and its signed digests (SPEC §10): kept with the checkpoint, the same after a restart and a
//! rebuild, recorded only when the log advanced, one per position whatever the number of projectors, and checked
//! by `projector verify`.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use projector::verify::{verify, Check};
use sqlx::PgPool;
use support::*;

/// A key file of the test's own (removed when dropped) for `--digest-signing-key-file`.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn new() -> KeyFile {
        let path = std::env::temp_dir().join(format!("tally-digest-key-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, hex::encode([5u8; 32])).unwrap();
        KeyFile(path)
    }

    fn flags(&self) -> [&str; 4] {
        ["--digest-signing-key-file", self.0.to_str().unwrap(), "--digest-interval-s", "1"]
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn log_hash(pool: &PgPool) -> (i64, Vec<u8>) {
    sqlx::query_as("SELECT position, log_hash FROM projection_checkpoints").fetch_one(pool).await.unwrap()
}

async fn digests(pool: &PgPool) -> Vec<(i64, Vec<u8>)> {
    sqlx::query_as("SELECT position, log_hash FROM digests ORDER BY position").fetch_all(pool).await.unwrap()
}

/// Waits (bounded) for a digest of `position`.
async fn digest_of(pool: &PgPool, position: i64) -> Vec<(i64, Vec<u8>)> {
    eventually("a digest of the head", Duration::from_secs(15), || async {
        let all = digests(pool).await;
        all.iter().any(|(at, _)| *at == position).then_some(all)
    })
    .await
}

#[sqlx::test(migrations = "../migrations")]
async fn the_log_hash_survives_a_restart_and_a_rebuild_and_digests_follow_only_an_advancing_log(pool: PgPool) {
    let key = KeyFile::new();
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 3, 80, 5).await;
    let first = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &key.flags())).await;
    let head = caught_up(&pool).await;
    let recorded = digest_of(&pool, head).await;
    // Nothing new for two intervals: no new digest.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(digests(&pool).await, recorded, "a digest only when the log advanced");
    first.kill().await;

    mixed_workload(&mut ledger, 2, 40, 6).await;
    let restarted = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &key.flags())).await;
    let head = caught_up(&pool).await;
    digest_of(&pool, head).await;
    restarted.stop().await;
    let continued = log_hash(&pool).await;
    assert_eq!(continued.0, head);

    projector::rebuild::rebuild(&pool, 37, |_| {}).await.unwrap();
    assert_eq!(log_hash(&pool).await, continued, "a rebuild reproduces the log hash");
    let report = verify(&pool, 50).await.unwrap();
    assert!(report.is_clean(), "every digest and the checkpoint's log hash agree with a replay: {}", report.render(20));
}

#[sqlx::test(migrations = "../migrations")]
async fn two_projectors_record_one_digest_per_position(pool: PgPool) {
    let key = KeyFile::new();
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 3, 30, 8).await;
    let leader = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &key.flags())).await;
    let standby = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &key.flags())).await;
    for round in 0..3 {
        mixed_workload(&mut ledger, 1, 20, 20 + round).await;
        let head = caught_up(&pool).await;
        digest_of(&pool, head).await;
    }
    leader.kill().await;
    mixed_workload(&mut ledger, 1, 20, 30).await;
    let head = caught_up(&pool).await;
    digest_of(&pool, head).await;
    standby.stop().await;
    let report = verify(&pool, 50).await.unwrap();
    assert!(report.is_clean(), "{}", report.render(20));
    let positions: Vec<i64> = digests(&pool).await.into_iter().map(|(position, _)| position).collect();
    let mut distinct = positions.clone();
    distinct.dedup();
    assert_eq!(positions, distinct);
}

#[sqlx::test(migrations = "../migrations")]
async fn verify_reports_a_digest_or_log_hash_that_disagrees_with_the_log(pool: PgPool) {
    let key = KeyFile::new();
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 3, 40, 9).await;
    let projector = RunningProjector::start(&pool, config(&unique_prefix(), NATS_URL_UNREACHABLE, &key.flags())).await;
    let head = caught_up(&pool).await;
    digest_of(&pool, head).await;
    projector.stop().await;
    sqlx::query("UPDATE digests SET log_hash = sha256(log_hash)").execute(&pool).await.unwrap();
    sqlx::query("UPDATE projection_checkpoints SET log_hash = sha256(log_hash)").execute(&pool).await.unwrap();

    let report = verify(&pool, 50).await.unwrap();

    let text = report.render(20);
    assert!(report.has(Check::Digest), "{text}");
    assert!(text.contains("the checkpoint's log hash"), "{text}");
    assert!(text.contains("the signature does not verify"), "the signed message names the log hash: {text}");
}

/// Auditors who collect digests as they happen get each one on NATS, as recorded.
#[sqlx::test(migrations = "../migrations")]
async fn each_digest_is_published_on_nats(pool: PgPool) {
    let key = KeyFile::new();
    let prefix = unique_prefix();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let mut subscription = client.subscribe(format!("{prefix}.digests")).await.unwrap();
    let mut ledger = Ledger::new(&pool);
    mixed_workload(&mut ledger, 2, 30, 12).await;
    let projector = RunningProjector::start(&pool, config(&prefix, &nats_url(), &key.flags())).await;
    let head = caught_up(&pool).await;

    let message = tokio::time::timeout(Duration::from_secs(15), futures::StreamExt::next(&mut subscription))
        .await
        .expect("a digest is published")
        .unwrap();
    let published: tally_shared::digest::DigestView = serde_json::from_slice(&message.payload).unwrap();
    projector.stop().await;
    assert_eq!(published.position, head);
    let recorded = digests(&pool).await;
    assert_eq!(recorded, vec![(head, hex::decode(&published.log_hash).unwrap())]);
}
