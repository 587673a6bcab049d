//! The `tally-audit` command line on a small export made here: exit codes, the report, `balance`, and `-`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use tally_audit::canonical::{chained_hash, ExportedEvent};

/// An export of a treasury and a wallet, and a top-up of 5 between them, each event hashed as docs/audit.md says.
fn export() -> String {
    let wallet = "0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e";
    let treasury = "0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8d9f";
    let posting = |amount: &str, after: &str, other: &str| {
        json!({"amount": amount, "balance_after": after, "counterparty_wallet_id": other, "kind": "topup", "leg": 0,
               "transfer_id": "0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8da0"})
    };
    let events = [
        (
            format!("wallet-{treasury}"),
            "WalletOpened",
            json!({"asset": "GEMS", "scale": 0, "overdraft_limit": null, "kind": "treasury"}),
        ),
        (
            format!("wallet-{wallet}"),
            "WalletOpened",
            json!({"asset": "GEMS", "scale": 0, "overdraft_limit": "0", "kind": "user"}),
        ),
        (format!("wallet-{treasury}"), "WalletDebited", posting("5", "-5", wallet)),
        (format!("wallet-{wallet}"), "WalletCredited", posting("5", "5", treasury)),
    ];
    let mut lines = Vec::new();
    let mut last: std::collections::HashMap<String, (i64, [u8; 32])> = std::collections::HashMap::new();
    for (index, (stream_id, event_type, data)) in events.into_iter().enumerate() {
        let (version, previous) = last.get(&stream_id).copied().unwrap_or((0, [0; 32]));
        let mut line = json!({
            "position": index + 1, "stream_id": stream_id, "version": version + 1,
            "event_id": format!("0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8e0{index}"), "type": event_type, "data": data,
            "metadata": {"principal": "test"}, "recorded_at": "2026-12-02T14:00:00.5Z", "hash": "",
        });
        let hash = chained_hash(&previous, &serde_json::from_value::<ExportedEvent>(line.clone()).unwrap());
        line["hash"] = json!(hex::encode(hash));
        last.insert(stream_id, (version + 1, hash));
        lines.push(line.to_string());
    }
    lines.join("\n") + "\n"
}

fn run(arguments: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally-audit"))
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn verify_exits_0_on_an_honest_export_and_1_naming_the_finding_otherwise() {
    let (code, said) = run(&["verify", "--export", "-"], &export());
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("4 events in 2 streams, 2 wallets") && said.contains("OK: no finding"), "{said}");

    let tampered = export().replace("\"balance_after\":\"5\"", "\"balance_after\":\"6\"");
    let (code, said) = run(&["verify", "--export", "-"], &tampered);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("FAILED balance: 1 findings") && said.contains("FAILED hash: 1 findings"), "{said}");
    assert!(said.contains("wallet-0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e version 2 (position 4)"), "{said}");
}

#[test]
fn balance_answers_a_wallet_at_a_position() {
    let wallet = "0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e";
    let (code, said) = run(&["balance", "--export", "-", "--wallet", wallet], &export());
    assert_eq!(code, 0);
    let answer: serde_json::Value = serde_json::from_str(&said).unwrap();
    assert_eq!((answer["balance"].as_str(), answer["available"].as_str()), (Some("5"), Some("5")));
    let (_, said) = run(&["balance", "--export", "-", "--wallet", wallet, "--at-position", "3"], &export());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&said).unwrap()["balance"], "0");
}
