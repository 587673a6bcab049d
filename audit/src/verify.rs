//! `tally-audit verify`: every check of SPEC §10 over one export, each finding named by where it is.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead;

use anyhow::Context;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::canonical::{chained_hash, digest_message, next_log_hash, Digest, ExportedEvent};
use crate::ledger::Ledger;

/// One thing that is not as it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `order`, `versions`, `hash`, `digest`, `signature`, `balance`, `limit`, `held`, `holds`, `zero sum`, `data`.
    pub check: &'static str,
    /// The stream (or the digest, or the asset) it is about, with version and position where there are.
    pub place: String,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub events: u64,
    pub streams: usize,
    pub wallets: usize,
    pub digests_checked: usize,
    pub findings: Vec<Finding>,
    pub ledger: Ledger,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn has(&self, check: &str) -> bool {
        self.findings.iter().any(|finding| finding.check == check)
    }

    /// The report for people: a count per check, then each finding (the first `shown_max`).
    pub fn render(&self, shown_max: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tally-audit: {} events in {} streams, {} wallets, {} digests checked",
            self.events, self.streams, self.wallets, self.digests_checked
        );
        if self.findings.is_empty() {
            out.push_str("OK: no finding\n");
            return out;
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for finding in &self.findings {
            *counts.entry(finding.check).or_default() += 1;
        }
        for (check, count) in counts {
            let _ = writeln!(out, "FAILED {check}: {count} findings");
        }
        for finding in self.findings.iter().take(shown_max) {
            let _ = writeln!(out, "  [{}] {}: {}", finding.check, finding.place, finding.detail);
        }
        if self.findings.len() > shown_max {
            let _ = writeln!(out, "  … and {} more", self.findings.len() - shown_max);
        }
        out
    }
}

/// What the digests are checked against: the key the auditor pinned, if any.
pub struct Digests {
    pub digests: Vec<Digest>,
    pub pinned_key: Option<[u8; 32]>,
}

/// Reads digests as `GET /v1/digests` (`{"items": […]}`), `GET /v1/digests/latest` (one object) or JSON lines give
/// them.
pub fn read_digests(text: &str) -> anyhow::Result<Vec<Digest>> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if let Some(items) = value.get("items") {
            return serde_json::from_value(items.clone()).context("read the digests' items");
        }
        if value.is_array() {
            return serde_json::from_value(value).context("read the digests");
        }
        return Ok(vec![serde_json::from_value(value).context("read a digest")?]);
    }
    trimmed
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).context("read a digest line"))
        .collect()
}

/// Reads a public key file: 64 hex digits.
pub fn read_key(text: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(text.trim()).ok().and_then(|bytes| bytes.try_into().ok()).context("a public key is 64 hex digits")
}

struct Stream {
    version: i64,
    last_hash: [u8; 32],
}

/// Verifies an export read from `lines`, from position 0 on, and the `digests` against it.
pub fn verify(lines: impl BufRead, digests: Option<&Digests>) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let mut log_hash = [0u8; 32];
    let mut log_hash_at: HashMap<i64, [u8; 32]> = HashMap::new();
    let wanted: std::collections::HashSet<i64> =
        digests.map(|digests| digests.digests.iter().map(|digest| digest.position).collect()).unwrap_or_default();
    let mut last_position = 0;
    for (number, line) in lines.lines().enumerate() {
        let line = line.with_context(|| format!("read line {}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: ExportedEvent =
            serde_json::from_str(&line).with_context(|| format!("line {} is not an exported event", number + 1))?;
        report.events += 1;
        let place = format!("{} version {} (position {})", event.stream_id, event.version, event.position);
        let mut find = |check: &'static str, detail: String| {
            report.findings.push(Finding { check, place: place.clone(), detail });
        };
        if event.position <= last_position {
            find("order", format!("comes after position {last_position}"));
        }
        last_position = last_position.max(event.position);
        let stream = streams.entry(event.stream_id.clone()).or_insert(Stream { version: 0, last_hash: [0; 32] });
        if event.version != stream.version + 1 {
            find("versions", format!("follows version {}", stream.version));
        }
        let recomputed = chained_hash(&stream.last_hash, &event);
        let stored: Option<[u8; 32]> = hex::decode(&event.hash).ok().and_then(|bytes| bytes.try_into().ok());
        match stored {
            Some(stored) if stored == recomputed => {}
            Some(_) => {
                find("hash", format!("stored hash {} but the chain gives {}", event.hash, hex::encode(recomputed)))
            }
            None => find("hash", format!("{:?} is not a 32-byte hex hash", event.hash)),
        }
        // The chain and the log hash go on from the stored hash: one altered event is one finding.
        let stored = stored.unwrap_or(recomputed);
        stream.version = event.version;
        stream.last_hash = stored;
        log_hash = next_log_hash(&log_hash, &stored);
        if wanted.contains(&event.position) {
            log_hash_at.insert(event.position, log_hash);
        }
        for (check, detail) in report.ledger.apply(&event.stream_id, event.version, &event.event_type, &event.data) {
            find(check, detail);
        }
    }
    for (place, (check, detail)) in report.ledger.finish() {
        report.findings.push(Finding { check, place, detail });
    }
    if let Some(digests) = digests {
        check_digests(&mut report, digests, &log_hash_at, last_position);
    }
    report.streams = streams.len();
    report.wallets = report.ledger.wallets.len();
    Ok(report)
}

fn check_digests(report: &mut Report, digests: &Digests, log_hash_at: &HashMap<i64, [u8; 32]>, last: i64) {
    for digest in &digests.digests {
        let place = format!("digest at position {}", digest.position);
        let mut find = |check: &'static str, detail: String| {
            report.findings.push(Finding { check, place: place.clone(), detail });
        };
        report.digests_checked += 1;
        match log_hash_at.get(&digest.position) {
            Some(replayed) if hex::encode(replayed) == digest.log_hash.to_ascii_lowercase() => {}
            Some(replayed) => find(
                "digest",
                format!(
                    "log hash {} but the export gives {}: an event at or before it changed",
                    digest.log_hash,
                    hex::encode(replayed)
                ),
            ),
            None if digest.position > last => find("digest", format!("beyond the export, which ends at {last}")),
            None => find("digest", "no event of the export at that position: an event was removed".to_owned()),
        }
        let key: Option<[u8; 32]> = hex::decode(&digest.public_key).ok().and_then(|bytes| bytes.try_into().ok());
        if let (Some(pinned), Some(key)) = (digests.pinned_key, key) {
            if pinned != key {
                find(
                    "signature",
                    format!("signed by key {}, not the pinned {}", digest.public_key, hex::encode(pinned)),
                );
                continue;
            }
        }
        let verified = (|| {
            let key = VerifyingKey::from_bytes(&digests.pinned_key.or(key)?).ok()?;
            let signature = Signature::from_slice(&hex::decode(&digest.signature).ok()?).ok()?;
            let message = digest_message(digest.position, &digest.log_hash, digest.recorded_at);
            key.verify_strict(message.as_bytes(), &signature).ok()
        })();
        if verified.is_none() {
            find("signature", "the signature does not verify".to_owned());
        }
    }
}

/// `tally-audit balance`: a wallet's balance and what its holds reserved after its last event at or before
/// `at_position` (the end of the export by default), replayed from the export alone.
pub fn balance(lines: impl BufRead, wallet_id: &str, at_position: Option<i64>) -> anyhow::Result<String> {
    let stream_id = if wallet_id.starts_with("wallet-") { wallet_id.to_owned() } else { format!("wallet-{wallet_id}") };
    let mut ledger = Ledger::default();
    let mut position = 0;
    for line in lines.lines() {
        let line = line.context("read the export")?;
        if line.trim().is_empty() {
            continue;
        }
        let event: ExportedEvent = serde_json::from_str(&line).context("an export line is not an event")?;
        if at_position.is_some_and(|at| event.position > at) {
            break;
        }
        if event.stream_id == stream_id {
            position = event.position;
        }
        ledger.apply(&event.stream_id, event.version, &event.event_type, &event.data);
    }
    let wallet = ledger.wallets.get(&stream_id).with_context(|| format!("{stream_id} is not in the export"))?;
    let format = |units| crate::ledger::format(units, wallet.scale);
    Ok(format!(
        "{{\"wallet_id\":\"{}\",\"asset\":\"{}\",\"balance\":\"{}\",\"held\":\"{}\",\"available\":\"{}\",\"version\":{},\"position\":{}}}",
        stream_id.trim_start_matches("wallet-"),
        wallet.asset,
        format(wallet.balance),
        format(wallet.held),
        format(wallet.balance - wallet.held),
        wallet.version,
        position
    ))
}
