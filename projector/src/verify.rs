//! `projector verify`: replays every stream in memory, in position order and in batches, and checks what the
//! auditors rely on. Everything is read in one `REPEATABLE READ` snapshot, so a running projector or
//! command-service cannot make the comparison flicker.
//!
//! Checks, each a [`Check`]: stored events decode and follow their stream's state; versions run 1, 2, 3… per
//! stream; every hash chain recomputes; postings add up (`balance_after` = before ± amount) and never go below
//! the wallet's limit (debits against what holds leave available); every transfer's debits equal its credits
//! and its legs; every asset sums to zero; holds (SPEC §8) are resolved at most once, never captured at or after
//! `expires_at`, add up once resolved, and each wallet's `held` is what its active holds have left; the
//! `streams` snapshots equal the replay; and the read models equal the replay up to their checkpoint.
//!
//! The expected read models are computed here from the replayed states, independently of the projector's own
//! fold, so that a bug in one is caught by the other.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Row};
use tally_shared::asset::{Asset, AssetEvent};
use tally_shared::digest::LOG_GENESIS_HASH;
use tally_shared::envelope::{canonical_json, canonical_time, Change, Event, HashedFields, StreamId, GENESIS_HASH};
use tally_shared::hold::{Hold, HoldEvent, HoldStatus};
use tally_shared::ledger::World;
use tally_shared::money::Total;
use tally_shared::transfer::{Transfer, TransferEvent};
use tally_shared::wallet::{Wallet, WalletEvent, WalletKind};
use uuid::Uuid;

use crate::batch::negate;
use crate::config::VerifyConfig;
use crate::events::EventRow;
use crate::PROJECTION_NAME;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// A stored event that cannot be read back, or that cannot follow its stream's state.
    Decode,
    /// A stream whose versions do not run 1, 2, 3… without a gap.
    Versions,
    /// A stored hash that the recomputed chain disagrees with.
    HashChain,
    /// A posting whose `balance_after` is not the previous balance plus or minus its amount.
    Arithmetic,
    /// A balance below its wallet's limit.
    Limit,
    /// A transfer whose debits, credits and legs disagree.
    TransferBalance,
    /// An asset whose wallets do not sum to zero.
    ZeroSum,
    /// A hold resolved twice, captured at or after its `expires_at`, over-settled, or a wallet whose `held`
    /// is not what its active holds have left.
    Holds,
    /// A `streams` snapshot that differs from the replay.
    Snapshot,
    /// A read-model row that differs from the replay.
    ReadModel,
    /// The checkpoint's log hash or a digest that the replayed log hash disagrees with, or a digest whose
    /// signature does not verify.
    Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub events: u64,
    pub streams: u64,
    pub head: i64,
    pub checkpoint: i64,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn has(&self, check: Check) -> bool {
        self.findings.iter().any(|finding| finding.check == check)
    }

    /// The report as people read it: a summary, then findings grouped by check (at most `shown_max` each).
    pub fn render(&self, shown_max: usize) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "verified {} events in {} streams (head {}, read models at checkpoint {})",
            self.events, self.streams, self.head, self.checkpoint
        );
        if self.is_clean() {
            let _ = writeln!(text, "OK: no finding");
            return text;
        }
        let mut by_check: BTreeMap<Check, Vec<&Finding>> = BTreeMap::new();
        for finding in &self.findings {
            by_check.entry(finding.check).or_default().push(finding);
        }
        let _ = writeln!(text, "FAILED: {} findings", self.findings.len());
        for (check, findings) in by_check {
            let _ = writeln!(text, "\n{check:?}: {} findings", findings.len());
            for finding in findings.iter().take(shown_max) {
                let _ = writeln!(text, "  - {}", finding.detail);
            }
            if findings.len() > shown_max {
                let _ = writeln!(text, "  … and {} more", findings.len() - shown_max);
            }
        }
        text
    }
}

/// `projector verify`: prints the report on stdout; exit code 1 on any finding.
pub async fn main(config: VerifyConfig) -> anyhow::Result<ExitCode> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(crate::app::primary_options(&config.database_url).await?.options([("statement_timeout", "0")]))
        .await
        .context("connect to Postgres")?;
    let started_at = Utc::now();
    let report = verify(&pool, config.batch_size).await?;
    print!("{}", report.render(config.findings_shown_max));
    if let Err(error) = record(&pool, &report, started_at).await {
        eprintln!("warning: the outcome was not recorded for GET /v1/verifications: {error:#}");
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Records a run's outcome (`verifications`), which query-service serves at `GET /v1/verifications`.
pub async fn record(pool: &PgPool, report: &Report, started_at: DateTime<Utc>) -> anyhow::Result<()> {
    let mut by_check: BTreeMap<String, u64> = BTreeMap::new();
    for finding in &report.findings {
        *by_check.entry(format!("{:?}", finding.check)).or_default() += 1;
    }
    sqlx::query(
        "INSERT INTO verifications (started_at, finished_at, head, checkpoint, events, streams, findings, by_check)
         VALUES ($1, now(), $2, $3, $4, $5, $6, $7)",
    )
    .bind(started_at)
    .bind(report.head)
    .bind(report.checkpoint)
    .bind(i64::try_from(report.events).unwrap_or(i64::MAX))
    .bind(i64::try_from(report.streams).unwrap_or(i64::MAX))
    .bind(report.findings.len() as i64)
    .bind(serde_json::json!(by_check))
    .execute(pool)
    .await
    .context("record the verification")?;
    Ok(())
}

/// Replays the whole log and checks everything; see the module documentation.
pub async fn verify(pool: &PgPool, batch_size: i64) -> anyhow::Result<Report> {
    let mut transaction = pool.begin().await.context("begin verification")?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await
        .context("take one snapshot for the whole verification")?;
    let stored: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, log_hash FROM projection_checkpoints WHERE projection = $1")
            .bind(PROJECTION_NAME)
            .fetch_optional(&mut *transaction)
            .await
            .context("read the checkpoint")?;
    let (checkpoint, checkpoint_log_hash) = stored.unwrap_or((0, LOG_GENESIS_HASH.to_vec()));
    let digests: Vec<DigestRow> =
        sqlx::query_as("SELECT position, log_hash, recorded_at, public_key, signature FROM digests ORDER BY position")
            .fetch_all(&mut *transaction)
            .await
            .context("read the digests")?;
    let mut replay = Replay::default();
    let mut wanted: std::collections::HashSet<i64> = digests.iter().map(|digest| digest.0).collect();
    wanted.insert(checkpoint);
    let mut compared = false;
    let mut after = 0;
    loop {
        let rows = crate::events::read_after(&mut transaction, after, batch_size).await?;
        let Some(last) = rows.last() else { break };
        after = last.position;
        let mut history = Vec::new();
        for row in &rows {
            if row.position > checkpoint && !compared {
                compare_history(&mut transaction, &mut replay, std::mem::take(&mut history)).await?;
                compare_read_models(&mut transaction, &mut replay).await?;
                compared = true;
            }
            if let Some(expected) = replay.apply(row) {
                if row.position <= checkpoint {
                    history.push(expected);
                }
            }
            if wanted.contains(&row.position) {
                replay.log_hash_at.insert(row.position, replay.log_hash);
            }
        }
        compare_history(&mut transaction, &mut replay, history).await?;
    }
    if !compared {
        compare_read_models(&mut transaction, &mut replay).await?;
    }
    replay.finish_invariants();
    replay.check_log_hashes(checkpoint, &checkpoint_log_hash, &digests);
    compare_snapshots(&mut transaction, &mut replay).await?;
    transaction.rollback().await.ok();
    Ok(Report {
        events: replay.events,
        streams: replay.streams.len() as u64,
        head: after,
        checkpoint,
        findings: replay.findings,
    })
}

/// A stream as replayed so far.
struct ReplayedStream {
    version: i64,
    position: i64,
    last_hash: [u8; 32],
    /// Set once an event could not be applied: the state is no longer trustworthy, so it is not compared.
    broken: bool,
}

/// What `rm_wallets` should hold for a wallet.
struct ExpectedWallet {
    owner_id: String,
    version: i64,
    position: i64,
    metadata: Option<serde_json::Value>,
    opened_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// What `rm_transfers` should hold for a transfer, and what its postings added up to.
struct ExpectedTransfer {
    row: serde_json::Map<String, serde_json::Value>,
    balances: Vec<(Uuid, String, i64)>,
    position: i64,
    scale: u32,
    legs_total: Decimal,
    debits: Decimal,
    credits: Decimal,
    postings: usize,
    legs: usize,
}

/// One history row as the replay expects it: `(wallet_id, version)` and its columns as text.
struct ExpectedHistory {
    wallet_id: Uuid,
    version: i64,
    columns: Vec<(&'static str, String)>,
}

/// A `digests` row: position, log hash, recorded_at, public key, signature.
type DigestRow = (i64, Vec<u8>, DateTime<Utc>, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct Replay {
    /// The log hash over the stored hashes of the events replayed so far (docs/audit.md).
    log_hash: [u8; 32],
    /// The log hash at the checkpoint's and the digests' positions.
    log_hash_at: HashMap<i64, [u8; 32]>,
    world: World,
    streams: HashMap<String, ReplayedStream>,
    wallets: HashMap<Uuid, ExpectedWallet>,
    transfers: HashMap<Uuid, ExpectedTransfer>,
    reversals: BTreeMap<(Uuid, Uuid), Vec<(&'static str, String)>>,
    volumes: BTreeMap<(String, String), (Total, i64)>,
    /// Position of the last event that changed each asset's totals (as `rm_assets.position` records it).
    asset_positions: HashMap<String, i64>,
    asset_defined_at: HashMap<String, DateTime<Utc>>,
    history_rows: u64,
    events: u64,
    findings: Vec<Finding>,
}

fn text(value: impl ToString) -> String {
    value.to_string()
}

fn optional(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "NULL".to_owned(), |value| value.to_string())
}

fn json_text(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "NULL".to_owned(),
        Some(value) => canonical_json(value),
    }
}

impl Replay {
    fn finding(&mut self, check: Check, detail: String) {
        self.findings.push(Finding { check, detail });
    }

    /// Checks and applies one stored event; returns the history row it implies, if it is a posting.
    fn apply(&mut self, row: &EventRow) -> Option<ExpectedHistory> {
        self.events += 1;
        let stream = self.streams.entry(row.stream_id.clone()).or_insert(ReplayedStream {
            version: 0,
            position: 0,
            last_hash: GENESIS_HASH,
            broken: false,
        });
        let mut findings = Vec::new();
        if row.version != stream.version + 1 {
            findings.push(Finding {
                check: Check::Versions,
                detail: format!(
                    "{} has version {} at position {} after version {}",
                    row.stream_id, row.version, row.position, stream.version
                ),
            });
        }
        let hash = HashedFields {
            stream_id: &row.stream_id,
            version: row.version,
            event_id: row.event_id,
            event_type: &row.event_type,
            data: &row.data,
            metadata: &row.metadata,
            recorded_at: row.recorded_at,
        }
        .chain_hash(&stream.last_hash);
        if hash.as_slice() != row.hash.as_slice() {
            findings.push(Finding {
                check: Check::HashChain,
                detail: format!(
                    "{} version {} (position {}): stored hash {} but the chain gives {}",
                    row.stream_id,
                    row.version,
                    row.position,
                    hex::encode(&row.hash),
                    hex::encode(hash)
                ),
            });
        }
        // Chain on the stored hash, so that one altered event is reported once, not for the rest of its stream.
        stream.last_hash = row.hash.as_slice().try_into().unwrap_or(hash);
        self.log_hash = tally_shared::digest::chain_log(&self.log_hash, &stream.last_hash);
        stream.version = row.version;
        stream.position = row.position;
        let broken = stream.broken;
        self.findings.extend(findings);
        if broken {
            return None;
        }
        let decoded = match row.decode() {
            Ok(decoded) => decoded,
            Err(error) => {
                self.break_stream(&row.stream_id, error.to_string());
                return None;
            }
        };
        if let Some(violation) = self.hold_violation(&decoded.stream, &decoded.event) {
            self.findings.push(Finding {
                check: Check::Holds,
                detail: format!("{} at position {}: {violation}", row.stream_id, row.position),
            });
            if let Some(stream) = self.streams.get_mut(&row.stream_id) {
                stream.broken = true;
            }
            return None;
        }
        if let Err(reason) = self.can_follow(&decoded.stream, &decoded.event) {
            self.break_stream(&row.stream_id, format!("{} at position {}: {reason}", row.stream_id, row.position));
            return None;
        }
        let history = self.expect(row, &decoded.stream, &decoded.event, decoded.idempotency_key.clone());
        self.world.apply(&Change { stream: decoded.stream, event: decoded.event });
        history
    }

    fn break_stream(&mut self, stream_id: &str, detail: String) {
        if let Some(stream) = self.streams.get_mut(stream_id) {
            stream.broken = true;
        }
        self.finding(Check::Decode, detail);
    }

    /// Whether `event` can follow its stream's state (what `evolve` would otherwise panic on).
    fn can_follow(&self, stream: &StreamId, event: &Event) -> Result<(), String> {
        match (stream, event) {
            (StreamId::Asset(code), Event::Asset(AssetEvent::AssetDefined(_))) => match self.world.assets.get(code) {
                Some(Asset::Defined(_)) => Err("asset defined twice".to_owned()),
                _ => Ok(()),
            },
            (StreamId::Wallet(id), Event::Wallet(wallet_event)) => {
                let open = matches!(self.world.wallets.get(id), Some(Wallet::Open(_)));
                match (open, wallet_event) {
                    (true, WalletEvent::WalletOpened(_)) => Err("wallet opened twice".to_owned()),
                    (false, WalletEvent::WalletOpened(_)) | (true, _) => Ok(()),
                    (false, _) => Err("wallet event before WalletOpened".to_owned()),
                }
            }
            (StreamId::Transfer(id), Event::Transfer(transfer_event)) => {
                let recorded = matches!(self.world.transfers.get(id), Some(Transfer::Recorded(_)));
                match (recorded, transfer_event) {
                    (false, TransferEvent::TransferRecorded(_)) | (true, TransferEvent::TransferReversed(_)) => Ok(()),
                    (true, TransferEvent::TransferRecorded(_)) => Err("transfer recorded twice".to_owned()),
                    (false, TransferEvent::TransferReversed(_)) => Err("reversal of an unrecorded transfer".to_owned()),
                }
            }
            (StreamId::Hold(id), Event::Hold(hold_event)) => {
                let placed = matches!(self.world.holds.get(id), Some(Hold::Placed(_)));
                match (placed, hold_event) {
                    (true, HoldEvent::HoldPlaced(_)) => Err("hold placed twice".to_owned()),
                    (false, HoldEvent::HoldPlaced(_)) | (true, _) => Ok(()),
                    (false, _) => Err("hold event before HoldPlaced".to_owned()),
                }
            }
            _ => Err("event of another stream kind".to_owned()),
        }
    }

    /// What a hold event breaks, if anything: a hold is resolved at most once, never captured at or after its
    /// `expires_at`, never settles more than remains, and a final settlement leaves nothing.
    fn hold_violation(&self, stream: &StreamId, event: &Event) -> Option<String> {
        let (StreamId::Hold(id), Event::Hold(event)) = (stream, event) else { return None };
        let Some(Hold::Placed(hold)) = self.world.holds.get(id) else { return None };
        if hold.status != HoldStatus::Active {
            return Some(format!("an event of hold {id} after it was {}", hold.status.as_str()));
        }
        let remaining = hold.remaining();
        match event {
            HoldEvent::HoldPlaced(_) => None,
            HoldEvent::HoldCaptured(captured) => {
                if captured.captured_at >= hold.expires_at {
                    return Some(format!(
                        "capture of hold {id} at {}, at or after its expires_at {}",
                        captured.captured_at, hold.expires_at
                    ));
                }
                let left = remaining - captured.amount;
                let released_ok =
                    if captured.is_final { captured.released == left } else { captured.released.is_zero() };
                (captured.amount <= Decimal::ZERO || left < Decimal::ZERO || !released_ok).then(|| {
                    format!(
                        "capture of {} releasing {} from hold {id} with {remaining} remaining",
                        captured.amount, captured.released
                    )
                })
            }
            HoldEvent::HoldVoided(released) | HoldEvent::HoldExpired(released) => {
                let early = matches!(event, HoldEvent::HoldExpired(_)) && released.released_at < hold.expires_at;
                if early {
                    return Some(format!("hold {id} expired at {}, before {}", released.released_at, hold.expires_at));
                }
                (released.released != remaining)
                    .then(|| format!("hold {id} released {} with {remaining} remaining", released.released))
            }
        }
    }

    /// Records what the read models should say after `event` (applied next), and checks postings.
    fn expect(
        &mut self,
        row: &EventRow,
        stream: &StreamId,
        event: &Event,
        idempotency_key: Option<String>,
    ) -> Option<ExpectedHistory> {
        let (position, at) = (row.position, row.recorded_at);
        match (stream, event) {
            (StreamId::Asset(code), Event::Asset(AssetEvent::AssetDefined(_))) => {
                self.asset_positions.insert(code.to_string(), position);
                self.asset_defined_at.insert(code.to_string(), at);
                None
            }
            (StreamId::Wallet(id), Event::Wallet(WalletEvent::WalletOpened(opened))) => {
                if opened.kind == WalletKind::User {
                    self.asset_positions.insert(opened.asset.to_string(), position);
                }
                self.wallets.insert(
                    id.0,
                    ExpectedWallet {
                        owner_id: opened.owner_id.clone(),
                        version: row.version,
                        position,
                        metadata: (!opened.metadata.is_null()).then(|| opened.metadata.clone()),
                        opened_at: at,
                        updated_at: at,
                    },
                );
                None
            }
            (StreamId::Wallet(id), Event::Wallet(wallet_event)) => {
                if let Some(expected) = self.wallets.get_mut(&id.0) {
                    expected.version = row.version;
                    expected.position = position;
                    expected.updated_at = at;
                }
                let (posting, direction) = match wallet_event {
                    WalletEvent::WalletDebited(posting) => (posting, "debit"),
                    WalletEvent::WalletCredited(posting) => (posting, "credit"),
                    WalletEvent::WalletHoldPlaced(_) | WalletEvent::WalletHoldSettled(_) => {
                        self.expect_held(row, *id, wallet_event);
                        return None;
                    }
                    _ => return None,
                };
                let Some(Wallet::Open(open)) = self.world.wallets.get(id).cloned() else { return None };
                let expected_after =
                    if direction == "debit" { open.balance - posting.amount } else { open.balance + posting.amount };
                if posting.balance_after != expected_after || posting.amount <= Decimal::ZERO {
                    let detail = format!(
                        "wallet {id} version {}: {direction} of {} from {} gives {}, event says {}",
                        row.version, posting.amount, open.balance, expected_after, posting.balance_after
                    );
                    self.finding(Check::Arithmetic, detail);
                }
                if let Some(limit) = open.overdraft_limit {
                    // A debit is decided against what holds leave available; a credit only adds.
                    let available = posting.balance_after - open.held;
                    if direction == "debit" && available < -limit {
                        let detail = format!(
                            "wallet {id} version {}: {} available (balance {}, held {}) below its limit of -{limit}",
                            row.version, available, posting.balance_after, open.held
                        );
                        self.finding(Check::Limit, detail);
                    }
                }
                if matches!(open.kind, WalletKind::User | WalletKind::Treasury) {
                    self.asset_positions.insert(open.asset.to_string(), position);
                }
                let transfer_id = posting.transfer_id.0;
                let reference = match self.transfers.get_mut(&transfer_id) {
                    Some(transfer) => {
                        match direction {
                            "debit" => transfer.debits += posting.amount,
                            _ => transfer.credits += posting.amount,
                        }
                        transfer.postings += 1;
                        transfer.position = position;
                        let balance = posting.balance_after.to_string();
                        match transfer.balances.iter_mut().find(|(wallet, _, _)| *wallet == id.0) {
                            Some(entry) => *entry = (id.0, balance, row.version),
                            None => transfer.balances.push((id.0, balance, row.version)),
                        }
                        transfer.row.get("reference").and_then(|value| value.as_str().map(str::to_owned))
                    }
                    None => {
                        let detail =
                            format!("wallet {id} version {}: posting of unknown transfer {transfer_id}", row.version);
                        self.finding(Check::TransferBalance, detail);
                        None
                    }
                };
                self.history_rows += 1;
                Some(ExpectedHistory {
                    wallet_id: id.0,
                    version: row.version,
                    columns: vec![
                        ("position", text(position)),
                        ("transfer_id", text(transfer_id)),
                        ("kind", posting.kind.as_str().to_owned()),
                        ("direction", direction.to_owned()),
                        ("amount", text(posting.amount)),
                        ("balance_after", text(posting.balance_after)),
                        ("counterparty_wallet_id", text(posting.counterparty_wallet_id)),
                        ("reference", optional(reference)),
                        ("recorded_at", canonical_time(at)),
                    ],
                })
            }
            (StreamId::Transfer(id), Event::Transfer(TransferEvent::TransferRecorded(recorded))) => {
                let volume =
                    self.volumes.entry((recorded.asset.to_string(), recorded.kind.as_str().to_owned())).or_default();
                let added = volume.0.add(recorded.amount);
                volume.1 += 1;
                if added.is_err() {
                    self.findings.push(Finding {
                        check: Check::ReadModel,
                        detail: format!("{}: the volume of {} left the range of 128-bit units", id, recorded.asset),
                    });
                }
                let legs: Vec<serde_json::Value> = recorded
                    .legs
                    .iter()
                    .map(|leg| {
                        serde_json::json!({
                            "from_wallet_id": leg.from_wallet_id,
                            "to_wallet_id": leg.to_wallet_id,
                            "amount": leg.amount.to_string(),
                        })
                    })
                    .collect();
                let mut row_columns = serde_json::Map::new();
                let mut put = |name: &str, value: String| {
                    row_columns.insert(name.to_owned(), serde_json::Value::String(value));
                };
                put("kind", recorded.kind.as_str().to_owned());
                put("asset", recorded.asset.to_string());
                put("amount", text(recorded.amount));
                put("fee", text(recorded.fee));
                put("legs", canonical_json(&serde_json::Value::Array(legs)));
                put("metadata", json_text(Some(&recorded.metadata)));
                put("reverses", optional(recorded.reverses));
                put("reason", optional(recorded.reason.as_ref()));
                put("hold_id", optional(recorded.hold_id));
                put("idempotency_key", optional(idempotency_key));
                put("recorded_at", canonical_time(at));
                if let Some(reference) = &recorded.reference {
                    row_columns.insert("reference".to_owned(), serde_json::Value::String(reference.clone()));
                }
                self.transfers.insert(
                    id.0,
                    ExpectedTransfer {
                        row: row_columns,
                        balances: Vec::new(),
                        position,
                        scale: recorded.scale.places(),
                        legs_total: recorded.legs.iter().map(|leg| leg.amount).sum(),
                        debits: Decimal::ZERO,
                        credits: Decimal::ZERO,
                        postings: 0,
                        legs: recorded.legs.len(),
                    },
                );
                None
            }
            (StreamId::Transfer(id), Event::Transfer(TransferEvent::TransferReversed(reversed))) => {
                self.reversals.insert(
                    (id.0, reversed.reversal_id.0),
                    vec![
                        ("amount", text(reversed.amount)),
                        ("fee", text(reversed.fee)),
                        ("position", text(position)),
                        ("recorded_at", canonical_time(at)),
                    ],
                );
                None
            }
            _ => None,
        }
    }

    /// Checks a change of a wallet's `held`: its arithmetic, and that what stays available is within the limit.
    fn expect_held(&mut self, row: &EventRow, id: tally_shared::wallet::WalletId, event: &WalletEvent) {
        let Some(Wallet::Open(open)) = self.world.wallets.get(&id).cloned() else { return };
        let (expected_after, held_after, grows) = match event {
            WalletEvent::WalletHoldPlaced(placed) => (open.held + placed.amount, placed.held_after, true),
            WalletEvent::WalletHoldSettled(settled) => {
                (open.held - settled.captured - settled.released, settled.held_after, false)
            }
            _ => return,
        };
        if held_after != expected_after || held_after < Decimal::ZERO {
            let detail = format!(
                "wallet {id} version {}: held {} becomes {held_after}, the amounts say {expected_after}",
                row.version, open.held
            );
            self.finding(Check::Arithmetic, detail);
        }
        if let (true, Some(limit)) = (grows, open.overdraft_limit) {
            if open.balance - held_after < -limit {
                let detail = format!(
                    "wallet {id} version {}: a hold leaves {} available, below its limit of -{limit}",
                    row.version,
                    open.balance - held_after
                );
                self.finding(Check::Limit, detail);
            }
        }
        self.asset_positions.insert(open.asset.to_string(), row.position);
    }

    /// The checkpoint's log hash and every digest agree with the replayed log hash, and every digest's signature
    /// verifies with the key it names.
    fn check_log_hashes(&mut self, checkpoint: i64, stored: &[u8], digests: &[DigestRow]) {
        let at = |replay: &Replay, position: i64| {
            if position == 0 {
                Some(LOG_GENESIS_HASH)
            } else {
                replay.log_hash_at.get(&position).copied()
            }
        };
        if at(self, checkpoint).is_some_and(|replayed| replayed.as_slice() != stored) {
            let detail = format!("the checkpoint's log hash at position {checkpoint} is not the replay's");
            self.finding(Check::Digest, detail);
        }
        for (position, log_hash, recorded_at, public_key, signature) in digests {
            let what = format!("digest at position {position}");
            match at(self, *position) {
                None => self.finding(Check::Digest, format!("{what}: no event at that position")),
                Some(replayed) if replayed.as_slice() != log_hash.as_slice() => self.finding(
                    Check::Digest,
                    format!(
                        "{what}: log hash {} but the replay gives {}",
                        hex::encode(log_hash),
                        hex::encode(replayed)
                    ),
                ),
                Some(_) => {}
            }
            let verified = (|| {
                let key = ed25519_dalek::VerifyingKey::from_bytes(public_key.as_slice().try_into().ok()?).ok()?;
                let signature = ed25519_dalek::Signature::from_slice(signature).ok()?;
                let log_hash: [u8; 32] = log_hash.as_slice().try_into().ok()?;
                let message = tally_shared::digest::signed_message(*position, &log_hash, *recorded_at);
                key.verify_strict(message.as_bytes(), &signature).ok()
            })();
            if verified.is_none() {
                self.finding(Check::Digest, format!("{what}: the signature does not verify with its public key"));
            }
        }
    }

    /// Every wallet's `held` is what its active holds have left, and resolved holds add up to their amount.
    fn finish_hold_invariants(&mut self) {
        let mut remaining: HashMap<tally_shared::wallet::WalletId, (Decimal, u32)> = HashMap::new();
        let mut details = Vec::new();
        for hold in self.world.holds.values() {
            let Hold::Placed(hold) = hold else { continue };
            if hold.captured > hold.amount || hold.captured + hold.released > hold.amount {
                details.push(format!(
                    "hold {}: captured {} and released {} of {}",
                    hold.hold_id, hold.captured, hold.released, hold.amount
                ));
            }
            if hold.status == HoldStatus::Active {
                let entry = remaining.entry(hold.wallet_id).or_default();
                entry.0 += hold.remaining();
                entry.1 += 1;
            } else if hold.captured + hold.released != hold.amount {
                details.push(format!(
                    "hold {} is {} with {} captured and {} released of {}",
                    hold.hold_id,
                    hold.status.as_str(),
                    hold.captured,
                    hold.released,
                    hold.amount
                ));
            }
        }
        for (id, wallet) in &self.world.wallets {
            let Wallet::Open(open) = wallet else { continue };
            let (held, active) = remaining.get(id).copied().unwrap_or_default();
            if open.held != held || open.active_holds != active {
                details.push(format!(
                    "wallet {id}: held {} in {} active holds, its holds have {held} left in {active}",
                    open.held, open.active_holds
                ));
            }
        }
        details.sort();
        for detail in details {
            self.finding(Check::Holds, detail);
        }
    }

    /// Invariants over the whole log: balanced transfers and zero sum per asset.
    fn finish_invariants(&mut self) {
        self.finish_hold_invariants();
        let mut unbalanced = Vec::new();
        for (transfer_id, transfer) in &self.transfers {
            if transfer.debits != transfer.credits
                || transfer.debits != transfer.legs_total
                || transfer.postings != 2 * transfer.legs
            {
                unbalanced.push(format!(
                    "transfer {transfer_id}: debits {}, credits {}, legs total {} ({} postings for {} legs)",
                    transfer.debits, transfer.credits, transfer.legs_total, transfer.postings, transfer.legs
                ));
            }
        }
        unbalanced.sort();
        for detail in unbalanced {
            self.finding(Check::TransferBalance, detail);
        }
        let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
        for wallet in self.world.wallets.values() {
            if let Wallet::Open(open) = wallet {
                *sums.entry(open.asset.to_string()).or_default() += open.balance;
            }
        }
        for (asset, sum) in sums {
            if !sum.is_zero() {
                self.finding(Check::ZeroSum, format!("asset {asset}: wallets sum to {sum}, not zero"));
            }
        }
    }
}

/// Reports every difference between a stored row's columns and the replay's.
fn diff_columns(
    findings: &mut Vec<Finding>,
    what: &str,
    stored: &[(&str, String)],
    expected: &[(&'static str, String)],
) {
    for (name, expected_value) in expected {
        let stored_value = stored.iter().find(|(column, _)| column == name).map(|(_, value)| value.as_str());
        if stored_value != Some(expected_value.as_str()) {
            findings.push(Finding {
                check: Check::ReadModel,
                detail: format!(
                    "{what}: {name} is {}, the replay says {expected_value}",
                    stored_value.unwrap_or("missing")
                ),
            });
        }
    }
}

fn column_text(row: &sqlx::postgres::PgRow, name: &str) -> anyhow::Result<String> {
    let value: Option<String> = row.try_get(name).with_context(|| format!("read column {name}"))?;
    Ok(value.unwrap_or_else(|| "NULL".to_owned()))
}

fn column_json(row: &sqlx::postgres::PgRow, name: &str) -> anyhow::Result<String> {
    let value: Option<serde_json::Value> = row.try_get(name).with_context(|| format!("read column {name}"))?;
    Ok(json_text(value.as_ref()))
}

fn column_time(row: &sqlx::postgres::PgRow, name: &str) -> anyhow::Result<String> {
    let value: DateTime<Utc> = row.try_get(name).with_context(|| format!("read column {name}"))?;
    Ok(canonical_time(value))
}

/// Compares the history rows a batch of postings implies with `rm_wallet_history`, by primary key.
async fn compare_history(
    connection: &mut PgConnection,
    replay: &mut Replay,
    expected: Vec<ExpectedHistory>,
) -> anyhow::Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    let wallet_ids: Vec<Uuid> = expected.iter().map(|row| row.wallet_id).collect();
    let versions: Vec<i64> = expected.iter().map(|row| row.version).collect();
    let rows = sqlx::query(
        "SELECT h.wallet_id, h.version, h.position::text, h.transfer_id::text, h.kind, h.direction,
             h.amount::text, h.balance_after::text, h.counterparty_wallet_id::text, h.reference, h.recorded_at
         FROM rm_wallet_history h JOIN UNNEST($1::uuid[], $2::int8[]) AS k(wallet_id, version)
             ON h.wallet_id = k.wallet_id AND h.version = k.version",
    )
    .bind(&wallet_ids)
    .bind(&versions)
    .fetch_all(&mut *connection)
    .await
    .context("read rm_wallet_history")?;
    let mut stored: HashMap<(Uuid, i64), Vec<(&str, String)>> = HashMap::new();
    for row in rows {
        let columns = vec![
            ("position", column_text(&row, "position")?),
            ("transfer_id", column_text(&row, "transfer_id")?),
            ("kind", column_text(&row, "kind")?),
            ("direction", column_text(&row, "direction")?),
            ("amount", column_text(&row, "amount")?),
            ("balance_after", column_text(&row, "balance_after")?),
            ("counterparty_wallet_id", column_text(&row, "counterparty_wallet_id")?),
            ("reference", column_text(&row, "reference")?),
            ("recorded_at", column_time(&row, "recorded_at")?),
        ];
        stored.insert((row.try_get("wallet_id")?, row.try_get("version")?), columns);
    }
    for row in expected {
        let what = format!("rm_wallet_history {} version {}", row.wallet_id, row.version);
        match stored.get(&(row.wallet_id, row.version)) {
            Some(columns) => diff_columns(&mut replay.findings, &what, columns, &row.columns),
            None => replay.finding(Check::ReadModel, format!("{what}: missing")),
        }
    }
    Ok(())
}

/// Compares every read model with the replay (the replay is at the read models' checkpoint now).
async fn compare_read_models(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    compare_wallets(connection, replay).await?;
    compare_assets(connection, replay).await?;
    compare_transfers(connection, replay).await?;
    compare_holds(connection, replay).await?;
    let history_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_wallet_history")
        .fetch_one(&mut *connection)
        .await
        .context("count rm_wallet_history")?;
    // Every expected row was found by its primary key; equal counts then mean there is no extra row.
    if history_rows as u64 != replay.history_rows {
        let detail =
            format!("rm_wallet_history has {history_rows} rows, the replay has {} postings", replay.history_rows);
        replay.finding(Check::ReadModel, detail);
    }
    Ok(())
}

async fn compare_wallets(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut rows = sqlx::query(
        "SELECT wallet_id, owner_id, asset, kind, status, balance::text, overdraft_limit::text, version::text,
             position::text, metadata, opened_at, updated_at, held::text
         FROM rm_wallets",
    )
    .fetch(&mut *connection);
    let mut findings = Vec::new();
    while let Some(row) = rows.try_next().await.context("read rm_wallets")? {
        let wallet_id: Uuid = row.try_get("wallet_id")?;
        seen.insert(wallet_id);
        let what = format!("rm_wallets {wallet_id}");
        let (Some(Wallet::Open(open)), Some(expected)) =
            (replay.world.wallets.get(&tally_shared::wallet::WalletId(wallet_id)), replay.wallets.get(&wallet_id))
        else {
            findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: no such wallet in the log") });
            continue;
        };
        let stored = vec![
            ("owner_id", column_text(&row, "owner_id")?),
            ("asset", column_text(&row, "asset")?),
            ("kind", column_text(&row, "kind")?),
            ("status", column_text(&row, "status")?),
            ("balance", column_text(&row, "balance")?),
            ("held", column_text(&row, "held")?),
            ("overdraft_limit", column_text(&row, "overdraft_limit")?),
            ("version", column_text(&row, "version")?),
            ("position", column_text(&row, "position")?),
            ("metadata", column_json(&row, "metadata")?),
            ("opened_at", column_time(&row, "opened_at")?),
            ("updated_at", column_time(&row, "updated_at")?),
        ];
        let wanted = vec![
            ("owner_id", expected.owner_id.clone()),
            ("asset", open.asset.to_string()),
            ("kind", open.kind.as_str().to_owned()),
            ("status", open.status.as_str().to_owned()),
            ("balance", text(open.balance)),
            ("held", text(open.held)),
            ("overdraft_limit", optional(open.overdraft_limit)),
            ("version", text(expected.version)),
            ("position", text(expected.position)),
            ("metadata", json_text(expected.metadata.as_ref())),
            ("opened_at", canonical_time(expected.opened_at)),
            ("updated_at", canonical_time(expected.updated_at)),
        ];
        diff_columns(&mut findings, &what, &stored, &wanted);
    }
    drop(rows);
    let mut missing: Vec<Uuid> = replay.wallets.keys().filter(|id| !seen.contains(id)).copied().collect();
    missing.sort();
    for wallet_id in missing {
        findings.push(Finding { check: Check::ReadModel, detail: format!("rm_wallets {wallet_id}: missing") });
    }
    replay.findings.extend(findings);
    Ok(())
}

async fn compare_assets(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    // Totals from the replayed wallet states, not from the projector's arithmetic.
    let mut expected: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
    for (code, asset) in &replay.world.assets {
        let Asset::Defined(definition) = asset else { continue };
        let zero = tally_shared::wallet::zero_at(definition.scale);
        let (mut user_total, mut wallet_count, mut treasury_balance) = (Total::from(zero), 0_i64, zero);
        let (mut held_total, mut active_holds) = (Total::from(zero), 0_i64);
        for wallet in replay.world.wallets.values() {
            let Wallet::Open(open) = wallet else { continue };
            if open.asset != *code {
                continue;
            }
            match open.kind {
                WalletKind::User => {
                    if user_total.add(open.balance).is_err() {
                        findings.push(Finding {
                            check: Check::ReadModel,
                            detail: format!("asset {code}: the user balance total left the range of 128-bit units"),
                        });
                    }
                    wallet_count += 1;
                    if held_total.add(open.held).is_err() {
                        findings.push(Finding {
                            check: Check::ReadModel,
                            detail: format!("asset {code}: the held total left the range of 128-bit units"),
                        });
                    }
                    active_holds += i64::from(open.active_holds);
                }
                WalletKind::Treasury => treasury_balance = open.balance,
                WalletKind::Revenue | WalletKind::Fees => {}
            }
        }
        let system = definition.system_wallets;
        expected.insert(
            code.to_string(),
            vec![
                ("scale", text(definition.scale.places())),
                ("cash_in_fee", json_text(serde_json::to_value(&definition.cash_in_fee).ok().as_ref())),
                ("treasury_wallet_id", text(system.treasury)),
                ("revenue_wallet_id", text(system.revenue)),
                ("fees_wallet_id", text(system.fees)),
                ("supply", text(negate(treasury_balance))),
                ("user_balance_total", text(user_total)),
                ("wallet_count", text(wallet_count)),
                ("held_total", text(held_total)),
                ("active_hold_count", text(active_holds)),
                (
                    "defined_at",
                    replay.asset_defined_at.get(code.as_str()).map(|at| canonical_time(*at)).unwrap_or_default(),
                ),
                ("position", text(replay.asset_positions.get(code.as_str()).copied().unwrap_or_default())),
            ],
        );
    }
    let rows = sqlx::query(
        "SELECT code, scale::text, cash_in_fee, treasury_wallet_id::text, revenue_wallet_id::text,
             fees_wallet_id::text, supply::text, user_balance_total::text, wallet_count::text, defined_at,
             position::text, held_total::text, active_hold_count::text
         FROM rm_assets",
    )
    .fetch_all(&mut *connection)
    .await
    .context("read rm_assets")?;
    for row in rows {
        let code: String = row.try_get("code")?;
        let what = format!("rm_assets {code}");
        let Some(wanted) = expected.remove(&code) else {
            findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: no such asset in the log") });
            continue;
        };
        let mut stored = Vec::new();
        for (name, _) in &wanted {
            let value = match *name {
                "cash_in_fee" => column_json(&row, name)?,
                "defined_at" => column_time(&row, name)?,
                _ => column_text(&row, name)?,
            };
            stored.push((*name, value));
        }
        diff_columns(&mut findings, &what, &stored, &wanted);
    }
    for code in expected.keys() {
        findings.push(Finding { check: Check::ReadModel, detail: format!("rm_assets {code}: missing") });
    }
    let rows: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT asset, kind, volume::text, transfer_count FROM rm_asset_volumes")
            .fetch_all(&mut *connection)
            .await
            .context("read rm_asset_volumes")?;
    let mut volumes = replay.volumes.clone();
    for (asset, kind, volume, count) in rows {
        let what = format!("rm_asset_volumes {asset} {kind}");
        match volumes.remove(&(asset, kind)) {
            Some((expected_volume, expected_count)) => diff_columns(
                &mut findings,
                &what,
                &[("volume", volume), ("transfer_count", text(count))],
                &[("volume", text(expected_volume)), ("transfer_count", text(expected_count))],
            ),
            None => findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: not in the log") }),
        }
    }
    for (asset, kind) in volumes.keys() {
        findings.push(Finding { check: Check::ReadModel, detail: format!("rm_asset_volumes {asset} {kind}: missing") });
    }
    replay.findings.extend(findings);
    Ok(())
}

async fn compare_transfers(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rows = sqlx::query(
        "SELECT transfer_id, kind, asset, amount::text, fee::text, legs, balances, reference, metadata,
             reverses::text, reason, hold_id::text, idempotency_key, reversed_amount::text, position::text,
             recorded_at
         FROM rm_transfers",
    )
    .fetch(&mut *connection);
    while let Some(row) = rows.try_next().await.context("read rm_transfers")? {
        let transfer_id: Uuid = row.try_get("transfer_id")?;
        seen.insert(transfer_id);
        let what = format!("rm_transfers {transfer_id}");
        let (Some(expected), Some(Transfer::Recorded(recorded))) = (
            replay.transfers.get(&transfer_id),
            replay.world.transfers.get(&tally_shared::transfer::TransferId(transfer_id)),
        ) else {
            findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: no such transfer in the log") });
            continue;
        };
        let column = |name: &str| expected.row.get(name).and_then(|value| value.as_str()).map(str::to_owned);
        let balances: Vec<serde_json::Value> = expected
            .balances
            .iter()
            .map(|(wallet_id, balance, version)| {
                serde_json::json!({"wallet_id": wallet_id, "balance": balance, "version": version})
            })
            .collect();
        let mut reversed = tally_shared::wallet::zero_at(tally_shared::money::Scale::new(expected.scale)?);
        reversed += recorded.reversed_amount;
        let mut wanted: Vec<(&'static str, String)> = Vec::new();
        for name in [
            "kind",
            "asset",
            "amount",
            "fee",
            "legs",
            "metadata",
            "reverses",
            "reason",
            "hold_id",
            "idempotency_key",
            "recorded_at",
        ] {
            wanted.push((name, column(name).unwrap_or_default()));
        }
        wanted.push(("reference", optional(column("reference"))));
        wanted.push(("balances", canonical_json(&serde_json::Value::Array(balances))));
        wanted.push(("reversed_amount", text(reversed)));
        wanted.push(("position", text(expected.position)));
        let stored = vec![
            ("kind", column_text(&row, "kind")?),
            ("asset", column_text(&row, "asset")?),
            ("amount", column_text(&row, "amount")?),
            ("fee", column_text(&row, "fee")?),
            ("legs", column_json(&row, "legs")?),
            ("metadata", column_json(&row, "metadata")?),
            ("reverses", column_text(&row, "reverses")?),
            ("reason", column_text(&row, "reason")?),
            ("hold_id", column_text(&row, "hold_id")?),
            ("idempotency_key", column_text(&row, "idempotency_key")?),
            ("recorded_at", column_time(&row, "recorded_at")?),
            ("reference", column_text(&row, "reference")?),
            ("balances", column_json(&row, "balances")?),
            ("reversed_amount", column_text(&row, "reversed_amount")?),
            ("position", column_text(&row, "position")?),
        ];
        diff_columns(&mut findings, &what, &stored, &wanted);
    }
    drop(rows);
    let mut missing: Vec<Uuid> = replay.transfers.keys().filter(|id| !seen.contains(id)).copied().collect();
    missing.sort();
    for transfer_id in missing {
        findings.push(Finding { check: Check::ReadModel, detail: format!("rm_transfers {transfer_id}: missing") });
    }
    let rows = sqlx::query(
        "SELECT transfer_id, reversal_id, amount::text, fee::text, position::text, recorded_at FROM rm_transfer_reversals",
    )
    .fetch_all(&mut *connection)
    .await
    .context("read rm_transfer_reversals")?;
    let mut reversals = replay.reversals.clone();
    for row in rows {
        let key: (Uuid, Uuid) = (row.try_get("transfer_id")?, row.try_get("reversal_id")?);
        let what = format!("rm_transfer_reversals {} {}", key.0, key.1);
        let stored = vec![
            ("amount", column_text(&row, "amount")?),
            ("fee", column_text(&row, "fee")?),
            ("position", column_text(&row, "position")?),
            ("recorded_at", column_time(&row, "recorded_at")?),
        ];
        match reversals.remove(&key) {
            Some(wanted) => diff_columns(&mut findings, &what, &stored, &wanted),
            None => findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: not in the log") }),
        }
    }
    for (transfer_id, reversal_id) in reversals.keys() {
        let detail = format!("rm_transfer_reversals {transfer_id} {reversal_id}: missing");
        findings.push(Finding { check: Check::ReadModel, detail });
    }
    replay.findings.extend(findings);
    Ok(())
}

/// Compares `rm_holds` with the replayed holds.
async fn compare_holds(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rows = sqlx::query(
        "SELECT hold_id, wallet_id::text, asset, amount::text, captured::text, released::text, status, expires_at,
             reference, metadata, captures, created_at, resolved_at, version::text, position::text
         FROM rm_holds",
    )
    .fetch(&mut *connection);
    while let Some(row) = rows.try_next().await.context("read rm_holds")? {
        let hold_id: Uuid = row.try_get("hold_id")?;
        seen.insert(hold_id);
        let what = format!("rm_holds {hold_id}");
        let id = tally_shared::hold::HoldId(hold_id);
        let (Some(Hold::Placed(hold)), Some(stream)) =
            (replay.world.holds.get(&id), replay.streams.get(&StreamId::Hold(id).to_string()))
        else {
            findings.push(Finding { check: Check::ReadModel, detail: format!("{what}: no such hold in the log") });
            continue;
        };
        let resolved_at: Option<DateTime<Utc>> = row.try_get("resolved_at")?;
        let stored = vec![
            ("wallet_id", column_text(&row, "wallet_id")?),
            ("asset", column_text(&row, "asset")?),
            ("amount", column_text(&row, "amount")?),
            ("captured", column_text(&row, "captured")?),
            ("released", column_text(&row, "released")?),
            ("status", column_text(&row, "status")?),
            ("expires_at", column_time(&row, "expires_at")?),
            ("reference", column_text(&row, "reference")?),
            ("metadata", column_json(&row, "metadata")?),
            ("captures", column_json(&row, "captures")?),
            ("created_at", column_time(&row, "created_at")?),
            ("resolved_at", resolved_at.map_or_else(|| "NULL".to_owned(), canonical_time)),
            ("version", column_text(&row, "version")?),
            ("position", column_text(&row, "position")?),
        ];
        let captures: Vec<String> = hold.captures.iter().map(ToString::to_string).collect();
        let wanted = vec![
            ("wallet_id", text(hold.wallet_id)),
            ("asset", hold.asset.to_string()),
            ("amount", text(hold.amount)),
            ("captured", text(hold.captured)),
            ("released", text(hold.released)),
            ("status", hold.status.as_str().to_owned()),
            ("expires_at", canonical_time(hold.expires_at)),
            ("reference", optional(hold.reference.as_ref())),
            ("metadata", json_text(Some(&hold.metadata))),
            ("captures", canonical_json(&serde_json::json!(captures))),
            ("created_at", canonical_time(hold.created_at)),
            ("resolved_at", hold.resolved_at.map_or_else(|| "NULL".to_owned(), canonical_time)),
            ("version", text(stream.version)),
            ("position", text(stream.position)),
        ];
        diff_columns(&mut findings, &what, &stored, &wanted);
    }
    drop(rows);
    let mut missing: Vec<Uuid> = replay
        .world
        .holds
        .iter()
        .filter(|(id, hold)| matches!(hold, Hold::Placed(_)) && !seen.contains(&id.0))
        .map(|(id, _)| id.0)
        .collect();
    missing.sort();
    for hold_id in missing {
        findings.push(Finding { check: Check::ReadModel, detail: format!("rm_holds {hold_id}: missing") });
    }
    replay.findings.extend(findings);
    Ok(())
}

/// Compares every `streams` snapshot with the replayed stream (state, version, position, last hash).
async fn compare_snapshots(connection: &mut PgConnection, replay: &mut Replay) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut rows =
        sqlx::query("SELECT stream_id, version, position, state, last_hash FROM streams").fetch(&mut *connection);
    while let Some(row) = rows.try_next().await.context("read streams")? {
        let stream_id: String = row.try_get("stream_id")?;
        let (version, position): (i64, i64) = (row.try_get("version")?, row.try_get("position")?);
        let (state, last_hash): (serde_json::Value, Vec<u8>) = (row.try_get("state")?, row.try_get("last_hash")?);
        seen.insert(stream_id.clone());
        let what = format!("snapshot of {stream_id}");
        let Some(replayed) = replay.streams.get(&stream_id) else {
            findings.push(Finding { check: Check::Snapshot, detail: format!("{what}: the stream has no event") });
            continue;
        };
        if version != replayed.version || position != replayed.position || last_hash != replayed.last_hash {
            findings.push(Finding {
                check: Check::Snapshot,
                detail: format!(
                    "{what}: version {version}, position {position}, hash {} but the replay has version {}, \
                     position {}, hash {}",
                    hex::encode(&last_hash),
                    replayed.version,
                    replayed.position,
                    hex::encode(replayed.last_hash)
                ),
            });
        }
        if replayed.broken {
            continue;
        }
        if let Some(difference) = state_difference(&replay.world, &stream_id, state) {
            findings.push(Finding { check: Check::Snapshot, detail: format!("{what}: {difference}") });
        }
    }
    drop(rows);
    let mut missing: Vec<&String> = replay.streams.keys().filter(|id| !seen.contains(*id)).collect();
    missing.sort();
    for stream_id in missing {
        findings.push(Finding { check: Check::Snapshot, detail: format!("snapshot of {stream_id}: missing") });
    }
    replay.findings.extend(findings);
    Ok(())
}

/// How a stored state differs from the replayed one, compared as typed states (so that JSON formatting
/// does not matter, but every field does).
fn state_difference(world: &World, stream_id: &str, state: serde_json::Value) -> Option<String> {
    let Ok(stream) = stream_id.parse::<StreamId>() else {
        return Some("not a stream id".to_owned());
    };
    match stream {
        StreamId::Asset(code) => compare(state, world.assets.get(&code), |stored, replayed| stored == replayed),
        // Balances compare with their scale too, as the read models print them.
        StreamId::Wallet(id) => compare(state, world.wallets.get(&id), |stored, replayed| match (stored, replayed) {
            (Wallet::Open(stored), Wallet::Open(replayed)) => {
                stored == replayed && stored.balance.to_string() == replayed.balance.to_string()
            }
            _ => stored == replayed,
        }),
        StreamId::Transfer(id) => compare(state, world.transfers.get(&id), |stored, replayed| stored == replayed),
        StreamId::Hold(id) => compare(state, world.holds.get(&id), |stored, replayed| stored == replayed),
    }
}

/// Reads a stored state as `T` and tells how it differs from the replay's (a stream the replay lacks has the
/// default state), by `same`.
fn compare<T>(state: serde_json::Value, replayed: Option<&T>, same: impl Fn(&T, &T) -> bool) -> Option<String>
where
    T: serde::de::DeserializeOwned + Default + Clone + std::fmt::Debug,
{
    let stored: T = match serde_json::from_value(state) {
        Ok(stored) => stored,
        Err(error) => return Some(format!("state unreadable: {error}")),
    };
    let replayed = replayed.cloned().unwrap_or_default();
    (!same(&stored, &replayed)).then(|| format!("state {stored:?} but the replay has {replayed:?}"))
}
