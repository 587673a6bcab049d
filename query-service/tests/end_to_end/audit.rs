//! The auditor kit end to end (SPEC §10): a real stack's export and signed digests, recomputed by an independent
//! implementation of docs/audit.md (in Python, from the document) and by `tally-audit`, which also names each of
//! the tamperings an attacker with the database could try.

use std::io::Cursor;
use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_audit::canonical::{chained_hash, digest_message, ExportedEvent};
use tally_audit::verify::{read_digests, verify, Digests};

use crate::commands::{unique_prefix, CommandService};
use crate::projector::Projector;
use crate::support::TestApp;

/// The test's signing key (a 32-byte secret), and another one an attacker might sign with.
const SECRET: [u8; 32] = [7; 32];
const OTHER_SECRET: [u8; 32] = [9; 32];

/// A scratch directory of this test's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let path = std::env::temp_dir().join(format!("tally-audit-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A little of everything: two assets, wallets, top-ups, a transfer with a fee, a spend, a reversal, and holds
/// placed, partly captured and voided; a metadata object with a number and a string that needs escaping.
async fn workload(commands: &crate::commands::Commands) -> i64 {
    commands.define_asset("GOLD", 2).await;
    commands.define_asset("GEMS", 0).await;
    let alice = commands.open_wallet("alice", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let bob = commands.open_wallet("bob \"b\" é", "GOLD").await.body["wallet_id"].as_str().unwrap().to_owned();
    let gems = commands.open_wallet("alice", "GEMS").await.body["wallet_id"].as_str().unwrap().to_owned();
    commands.money(&alice, "topup", "100.00").await.position();
    commands.money(&gems, "bonus", "7").await.position();
    let body = json!({"from_wallet_id": alice, "to_wallet_id": bob, "amount": "20.00", "fee": "0.50",
                      "reference": "gift", "metadata": {"order": 42, "note": "tab\there", "ratio": 1.25}});
    let transfer = commands.post("/v1/transfers", body).await;
    let transfer_id = transfer.body["transfer_id"].as_str().unwrap().to_owned();
    commands.post(&format!("/v1/transfers/{transfer_id}/reversal"), json!({"amount": "5.00"})).await.position();
    commands.money(&bob, "spend", "3.00").await.position();
    let hold = commands.post(&format!("/v1/wallets/{alice}/holds"), json!({"amount": "30", "reference": "cart"})).await;
    let hold_id = hold.body["hold_id"].as_str().unwrap().to_owned();
    commands.post(&format!("/v1/holds/{hold_id}/capture"), json!({"amount": "10", "final": false})).await.position();
    commands.post(&format!("/v1/holds/{hold_id}/void"), json!({})).await.position()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn audit(export: &[String], digests: &Digests) -> tally_audit::Report {
    verify(Cursor::new(export.join("\n")), Some(digests)).unwrap()
}

/// The line of the first event of `event_type`.
fn index_of(export: &[String], event_type: &str) -> usize {
    export.iter().position(|line| line.contains(&format!("\"type\":\"{event_type}\""))).unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn an_export_verifies_independently_and_every_tampering_is_named(pool: PgPool) {
    let scratch = Scratch::new();
    let key_file = scratch.write("digest.key", &hex::encode(SECRET));
    let prefix = unique_prefix();
    let service = CommandService::spawn_with_prefix(pool.clone(), &prefix).await;
    let flags = ["--digest-signing-key-file", key_file.to_str().unwrap(), "--digest-interval-s", "1"];
    let projector = Projector::spawn_with(pool.clone(), &prefix, &flags).await;
    let queries = TestApp::spawn(pool.clone()).await;
    let head = workload(&service.commands).await;
    let mut latest = Value::Null;
    for _ in 0..100 {
        latest = queries.get("/v1/digests/latest").await.body;
        if latest["position"].as_i64() == Some(head) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(latest["position"].as_i64(), Some(head), "a digest of the head: {latest}");
    let public_key = SigningKey::from_bytes(&SECRET).verifying_key().to_bytes();
    assert_eq!(queries.get("/v1/digests/key").await.ok()["public_key"], hex::encode(public_key));

    let response = queries.client.get(format!("{}/v1/export", queries.base_url)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let export_text = response.text().await.unwrap();
    let digests_text = queries.get("/v1/digests?limit=1000").await.body.to_string();
    let export = lines(&export_text);
    assert_eq!(export.len() as i64, head, "every event, one per line");
    let resumed = queries.client.get(format!("{}/v1/export?after=10&until=12", queries.base_url)).send().await.unwrap();
    assert_eq!(lines(&resumed.text().await.unwrap()), export[10..12], "resumable, bounded by until");

    // An implementation written from docs/audit.md in another language agrees on every hash and the log hash.
    let export_file = scratch.write("export.ndjson", &export_text);
    let digests_file = scratch.write("digests.json", &digests_text);
    let output = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/audit/independent_check.py"))
        .args([&export_file, &digests_file])
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}{}", String::from_utf8_lossy(&output.stderr));
    assert!(said.contains(&format!("{} events", export.len())), "{said}");

    // tally-audit passes the honest export…
    let digests = Digests { digests: read_digests(&digests_text).unwrap(), pinned_key: Some(public_key) };
    let honest = audit(&export, &digests);
    assert!(honest.is_clean(), "{}", honest.render(20));
    assert!(honest.digests_checked >= 1 && honest.wallets >= 9, "{}", honest.render(20));

    // …and names each tampering.
    let debit = index_of(&export, "WalletDebited");
    let altered: Vec<String> = export
        .iter()
        .enumerate()
        .map(
            |(index, line)| {
                if index == debit {
                    line.replacen("\"amount\":\"", "\"amount\":\"1", 1)
                } else {
                    line.clone()
                }
            },
        )
        .collect();
    let report = audit(&altered, &digests);
    assert!(report.has("hash") && report.has("balance"), "{}", report.render(20));

    // The treasury's top-up debit is the last event of its stream: removing it leaves no gap, only the digest (and
    // the zero sum) can tell. Alice's top-up credit has events after it: its removal is a gap too.
    let mut deleted = export.clone();
    deleted.remove(debit);
    let report = audit(&deleted, &digests);
    assert!(report.has("digest") && report.has("zero sum") && !report.has("hash"), "{}", report.render(20));
    let mut deleted = export.clone();
    deleted.remove(index_of(&export, "WalletCredited"));
    let report = audit(&deleted, &digests);
    assert!(report.has("versions") && report.has("digest"), "{}", report.render(20));

    let mut swapped = export.clone();
    swapped.swap(debit, debit + 1);
    assert!(audit(&swapped, &digests).has("order"));

    let mut inserted = export.clone();
    inserted.insert(debit + 1, export[debit].clone());
    let report = audit(&inserted, &digests);
    assert!(report.has("order") && report.has("versions"), "{}", report.render(20));

    // A whole stream rewritten with its chain recomputed: every stream hash checks out; only the digest catches it.
    let recorded = export.iter().position(|line| line.contains("\"reference\":\"gift\"")).unwrap();
    let stream_id = serde_json::from_str::<ExportedEvent>(&export[recorded]).unwrap().stream_id;
    let mut previous = [0u8; 32];
    let rechained: Vec<String> = export
        .iter()
        .map(|line| {
            let mut event: Value = serde_json::from_str(line).unwrap();
            if event["stream_id"] != stream_id.as_str() {
                return line.clone();
            }
            if event["data"]["reference"] == "gift" {
                event["data"]["reference"] = json!("rewritten");
            }
            let parsed: ExportedEvent = serde_json::from_value(event.clone()).unwrap();
            previous = chained_hash(&previous, &parsed);
            event["hash"] = json!(hex::encode(previous));
            event.to_string()
        })
        .collect();
    let report = audit(&rechained, &digests);
    assert!(report.has("digest") && !report.has("hash") && !report.has("versions"), "{}", report.render(20));

    let mut bad_signature = read_digests(&digests_text).unwrap();
    let last = bad_signature.len() - 1;
    let flipped = if bad_signature[last].signature.starts_with('0') { "1" } else { "0" };
    bad_signature[last].signature.replace_range(0..1, flipped);
    let report = audit(&export, &Digests { digests: bad_signature, pinned_key: Some(public_key) });
    assert!(report.has("signature") && !report.has("digest"), "{}", report.render(20));

    let other = SigningKey::from_bytes(&OTHER_SECRET);
    let mut forged = read_digests(&digests_text).unwrap();
    for digest in &mut forged {
        let message = digest_message(digest.position, &digest.log_hash, digest.recorded_at);
        digest.signature = hex::encode(other.sign(message.as_bytes()).to_bytes());
        digest.public_key = hex::encode(other.verifying_key().to_bytes());
    }
    let report = audit(&export, &Digests { digests: forged, pinned_key: Some(public_key) });
    assert!(report.render(20).contains("not the pinned"), "{}", report.render(20));

    let balance = tally_audit::verify::balance(Cursor::new(export_text.clone()), &stream_id, None);
    assert!(balance.is_err(), "a transfer stream is not a wallet");

    // The product's own verify agrees, and its outcome is served for the dashboard.
    let started_at = chrono::Utc::now();
    let report = projector::verify::verify(&pool, 100).await.unwrap();
    assert!(report.is_clean(), "{}", report.render(20));
    projector::verify::record(&pool, &report, started_at).await.unwrap();
    let runs = queries.get("/v1/verifications").await;
    let last = &runs.ok()["items"][0];
    assert_eq!((last["clean"].as_bool(), last["head"].as_i64()), (Some(true), Some(head)), "{last}");
    queries.stop().await;
    projector.stop().await;
    service.stop().await;
}
