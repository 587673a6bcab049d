//! Test harness: a test-only appender that writes the event store as command-service does (same advisory lock,
//! hash chain and snapshots) with full control over transactions, the projector started in-process, and polls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use command_service::event_store;
use projector::catch_up::Failpoints;
use projector::{Action, App, Cli, Config};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use tally_shared::asset::{AssetCode, DefineAsset, FeePolicy, SystemWallets};
use tally_shared::envelope::{truncate_to_micros, Change, EventMetadata, HashedFields, StreamId, GENESIS_HASH};
use tally_shared::hold::{Expiry, HoldId};
use tally_shared::ledger::{self, Command, DomainError, StatusCommand, World};
use tally_shared::money::Scale;
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::WalletId;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The NATS server of the tests: `NATS_URL` (as `scripts/test` sets it), or the local default.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}
/// A port nothing listens on: NATS "down".
pub const NATS_URL_UNREACHABLE: &str = "nats://127.0.0.1:1";

/// Bounded poll: `check` until it returns `Some`, at most `timeout`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn unique_prefix() -> String {
    format!("projtest{}", Uuid::now_v7().simple())
}

pub async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT max(position) FROM events").fetch_one(pool).await.unwrap().unwrap_or(0)
}

pub async fn checkpoint(pool: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT position FROM projection_checkpoints WHERE projection = 'read_models'")
        .fetch_optional(pool)
        .await
        .unwrap()
        .flatten()
        .unwrap_or(0)
}

/// Waits until the projection has applied everything committed so far.
pub async fn caught_up(pool: &PgPool) -> i64 {
    eventually("the projection catches up with the head", Duration::from_secs(30), || async {
        let (head, checkpoint) = (head(pool).await, checkpoint(pool).await);
        (head == checkpoint).then_some(head)
    })
    .await
}

/// Asserts that `verify` finds nothing.
pub async fn assert_verified(pool: &PgPool) {
    let report = projector::verify::verify(pool, 257).await.unwrap();
    assert!(report.is_clean(), "{}", report.render(50));
}

pub fn config(prefix: &str, nats_url: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "projector",
        "run",
        "--database-url",
        "postgres://unused",
        "--listen-addr",
        "127.0.0.1:0",
        "--nats-subject-prefix",
        prefix,
        "--nats-url",
        nats_url,
    ];
    for (flag, default) in [("--poll-interval-ms", "100"), ("--standby-retry-ms", "100")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    match Cli::parse_from(args).command {
        Action::Run(config) => config,
        other => panic!("not a run command: {other:?}"),
    }
}

/// A projector running in-process.
pub struct RunningProjector {
    pub address: SocketAddr,
    pub failpoints: Arc<Failpoints>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningProjector {
    pub async fn start(pool: &PgPool, config: Config) -> RunningProjector {
        let app = App::build(config, pool.clone()).await.unwrap();
        let (address, failpoints) = (app.local_addr(), app.failpoints());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        RunningProjector { address, failpoints, stop: Some(stop), task }
    }

    /// Graceful stop: finishes the batch in flight and releases leadership.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    /// Abrupt death: the task is dropped mid-flight, its connections (and the leadership lock's session) close.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits for the run to end by itself (a failpoint's crash) and returns its result.
    pub async fn exited(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the projector exits").unwrap()
    }

    pub async fn ready(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/health/ready", self.address)).await.unwrap().json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.address)).await.unwrap().text().await.unwrap()
    }

    pub async fn role(&self) -> String {
        self.ready().await["role"].as_str().unwrap_or_default().to_owned()
    }
}

/// The value of one sample in a Prometheus text exposition (`name{labels}` exactly as rendered).
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One `events` row to insert: stream, version, event id, type, data, metadata, recorded at, hash.
type EventInsert =
    (String, i64, Uuid, String, serde_json::Value, serde_json::Value, chrono::DateTime<chrono::Utc>, [u8; 32]);

/// A command decided and ready to append: its changes, events and new stream heads.
pub struct Prepared {
    changes: Vec<Change>,
    rows: Vec<EventInsert>,
    snapshots: Vec<(String, i64, serde_json::Value, [u8; 32])>,
}

/// An append whose transaction is still open (holding the append lock), to commit or roll back later.
pub struct PendingAppend {
    pub transaction: Transaction<'static, Postgres>,
    pub positions: Vec<i64>,
    prepared: Prepared,
}

impl PendingAppend {
    /// Commits without a ledger at hand; give the result to [`Ledger::learn`].
    pub async fn commit_detached(self) -> (Vec<i64>, Prepared) {
        self.transaction.commit().await.unwrap();
        (self.positions, self.prepared)
    }
}

/// The test-only appender: the whole world in memory, every append as command-service makes it.
pub struct Ledger {
    pub pool: PgPool,
    pub world: World,
    heads: HashMap<String, (i64, [u8; 32])>,
    key_counter: u64,
}

impl Ledger {
    pub fn new(pool: &PgPool) -> Ledger {
        Ledger { pool: pool.clone(), world: World::default(), heads: HashMap::new(), key_counter: 0 }
    }

    /// Decides `command` against the committed world and prepares its events, hashes and snapshots.
    pub fn prepare(&mut self, command: &Command) -> Result<Prepared, DomainError> {
        let changes = ledger::decide(&self.world, command)?;
        self.key_counter += 1;
        let metadata = serde_json::to_value(EventMetadata {
            idempotency_key: Some(format!("test-key-{}", self.key_counter)),
            principal: Some("test".to_owned()),
            correlation_id: Some(format!("request-{}", self.key_counter)),
            causation_id: None,
            request_id: Some(format!("request-{}", self.key_counter)),
        })
        .unwrap();
        let recorded_at = truncate_to_micros(chrono::Utc::now());
        let mut heads = HashMap::new();
        let mut touched = World::default();
        let mut rows = Vec::new();
        for change in &changes {
            let stream_id = change.stream.to_string();
            let (version, last_hash) = *heads
                .entry(stream_id.clone())
                .or_insert_with(|| self.heads.get(&stream_id).copied().unwrap_or((0, GENESIS_HASH)));
            let (event_type, data) = change.event.to_stored();
            let event_id = Uuid::now_v7();
            let hash = HashedFields {
                stream_id: &stream_id,
                version: version + 1,
                event_id,
                event_type: &event_type,
                data: &data,
                metadata: &metadata,
                recorded_at,
            }
            .chain_hash(&last_hash);
            heads.insert(stream_id.clone(), (version + 1, hash));
            match &change.stream {
                StreamId::Asset(code) => {
                    let state = self.world.assets.get(code).cloned().unwrap_or_default();
                    touched.assets.entry(code.clone()).or_insert(state);
                }
                StreamId::Wallet(id) => {
                    let state = self.world.wallets.get(id).cloned().unwrap_or_default();
                    touched.wallets.entry(*id).or_insert(state);
                }
                StreamId::Transfer(id) => {
                    let state = self.world.transfers.get(id).cloned().unwrap_or_default();
                    touched.transfers.entry(*id).or_insert(state);
                }
                StreamId::Hold(id) => {
                    let state = self.world.holds.get(id).cloned().unwrap_or_default();
                    touched.holds.entry(*id).or_insert(state);
                }
            }
            touched.apply(change);
            rows.push((stream_id, version + 1, event_id, event_type, data, metadata.clone(), recorded_at, hash));
        }
        let snapshots = heads
            .into_iter()
            .map(|(stream_id, (version, hash))| {
                let state = match stream_id.parse::<StreamId>().unwrap() {
                    StreamId::Asset(code) => serde_json::to_value(&touched.assets[&code]).unwrap(),
                    StreamId::Wallet(id) => serde_json::to_value(&touched.wallets[&id]).unwrap(),
                    StreamId::Transfer(id) => serde_json::to_value(&touched.transfers[&id]).unwrap(),
                    StreamId::Hold(id) => serde_json::to_value(&touched.holds[&id]).unwrap(),
                };
                (stream_id, version, state, hash)
            })
            .collect();
        Ok(Prepared { changes, rows, snapshots })
    }

    /// Opens a transaction, takes the append lock and inserts `prepared`'s events and snapshots, uncommitted.
    pub async fn begin(&self, prepared: Prepared) -> PendingAppend {
        let mut transaction = self.pool.begin().await.unwrap();
        event_store::take_append_lock(&mut transaction).await.unwrap();
        let mut positions = Vec::new();
        let mut last_position = HashMap::new();
        for (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash) in &prepared.rows {
            let position: i64 = sqlx::query_scalar(
                "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING position",
            )
            .bind(stream_id)
            .bind(version)
            .bind(event_id)
            .bind(event_type)
            .bind(data)
            .bind(metadata)
            .bind(recorded_at)
            .bind(hash.as_slice())
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
            positions.push(position);
            last_position.insert(stream_id.clone(), position);
        }
        for (stream_id, version, state, hash) in &prepared.snapshots {
            sqlx::query(
                "INSERT INTO streams (stream_id, version, position, state, last_hash, updated_at)
                 VALUES ($1, $2, $3, $4, $5, now())
                 ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, position = EXCLUDED.position,
                     state = EXCLUDED.state, last_hash = EXCLUDED.last_hash, updated_at = EXCLUDED.updated_at",
            )
            .bind(stream_id)
            .bind(version)
            .bind(last_position[stream_id])
            .bind(state)
            .bind(hash.as_slice())
            .execute(&mut *transaction)
            .await
            .unwrap();
        }
        PendingAppend { transaction, positions, prepared }
    }

    /// Commits a pending append and learns its effect.
    pub async fn commit(&mut self, pending: PendingAppend) -> Vec<i64> {
        pending.transaction.commit().await.unwrap();
        self.learn(pending.prepared);
        pending.positions
    }

    /// Learns the effect of a prepared command whose append was committed elsewhere.
    pub fn learn(&mut self, prepared: Prepared) {
        for change in &prepared.changes {
            self.world.apply(change);
        }
        for (stream_id, version, _, hash) in prepared.snapshots {
            self.heads.insert(stream_id, (version, hash));
        }
    }

    /// Decides and appends one command; returns the positions of its events.
    pub async fn execute(&mut self, command: Command) -> Result<Vec<i64>, DomainError> {
        let prepared = self.prepare(&command)?;
        let pending = self.begin(prepared).await;
        Ok(self.commit(pending).await)
    }

    pub async fn define_asset(&mut self, code: &str, scale: u32, cash_in_fee: Option<FeePolicy>) -> SystemWallets {
        let system_wallets = SystemWallets {
            treasury: WalletId(Uuid::now_v7()),
            revenue: WalletId(Uuid::now_v7()),
            fees: WalletId(Uuid::now_v7()),
        };
        let define = DefineAsset {
            code: AssetCode::parse(code).unwrap(),
            scale: Scale::new(scale).unwrap(),
            cash_in_fee,
            system_wallets,
        };
        self.execute(Command::DefineAsset(define)).await.unwrap();
        system_wallets
    }

    pub async fn open_wallet(&mut self, owner_id: &str, asset: &str) -> WalletId {
        let wallet_id = WalletId(Uuid::now_v7());
        self.execute(Command::OpenWallet {
            wallet_id,
            owner_id: owner_id.to_owned(),
            asset: AssetCode::parse(asset).unwrap(),
            overdraft_limit: None,
            metadata: serde_json::json!({"tier": "gold"}),
        })
        .await
        .unwrap();
        wallet_id
    }

    pub fn move_command(kind: TransferKind, wallet_id: WalletId, amount: &str) -> Command {
        Command::Move {
            transfer_id: TransferId(Uuid::now_v7()),
            kind,
            wallet_id,
            amount: Decimal::from_str(amount).unwrap(),
            reference: Some(format!("ref-{}", Uuid::now_v7().simple())),
            metadata: serde_json::Value::Null,
        }
    }

    pub async fn topup(&mut self, wallet_id: WalletId, amount: &str) -> Vec<i64> {
        self.execute(Self::move_command(TransferKind::Topup, wallet_id, amount)).await.unwrap()
    }
}

/// A small deterministic generator (xorshift), so that workloads are reproducible without a dependency.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed.max(1))
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Two assets (one with a cash-in fee), `wallets` user wallets each, then `commands` mixed commands (holds,
/// captures, voids and expiries among them) through the test appender (refused ones are skipped, as command-service would answer them without an event).
pub async fn mixed_workload(ledger: &mut Ledger, wallets: usize, commands: usize, seed: u64) {
    let fee = FeePolicy {
        percent: Decimal::from_str("1.5").unwrap(),
        fixed: Decimal::from_str("0.10").unwrap(),
        min: None,
        max: Some(Decimal::from_str("5.00").unwrap()),
    };
    // A second workload on the same ledger adds wallets and commands to the assets the first defined.
    if ledger.world.assets.is_empty() {
        ledger.define_asset("GOLD", 2, Some(fee)).await;
        ledger.define_asset("GEMS", 0, None).await;
    }
    let mut all = Vec::new();
    for asset in ["GOLD", "GEMS"] {
        let mut ids = Vec::new();
        for index in 0..wallets {
            ids.push(ledger.open_wallet(&format!("owner-{seed}-{index}"), asset).await);
        }
        all.push((asset, ids));
    }
    let mut dice = Dice::new(seed);
    let mut transfers: Vec<TransferId> = Vec::new();
    let mut holds: Vec<HoldId> = Vec::new();
    for _ in 0..commands {
        let (asset, ids) = dice.pick(&all).clone();
        let wallet = *dice.pick(&ids);
        let amount = if asset == "GOLD" {
            format!("{}.{:02}", 1 + dice.below(50), dice.below(100))
        } else {
            format!("{}", 1 + dice.below(50))
        };
        let now = chrono::Utc::now();
        let hold_id = if holds.is_empty() { HoldId(Uuid::now_v7()) } else { *dice.pick(&holds) };
        let command = match dice.below(16) {
            0..=2 => Ledger::move_command(TransferKind::Topup, wallet, &amount),
            3 => Ledger::move_command(TransferKind::Bonus, wallet, &amount),
            4 => Ledger::move_command(TransferKind::Spend, wallet, &amount),
            5 => Ledger::move_command(TransferKind::Withdrawal, wallet, &amount),
            6 => Ledger::move_command(TransferKind::CashIn, wallet, &amount),
            7 | 8 => Command::Transfer {
                transfer_id: TransferId(Uuid::now_v7()),
                from_wallet_id: wallet,
                to_wallet_id: *dice.pick(&ids),
                amount: Decimal::from_str(&amount).unwrap(),
                fee: (dice.below(2) == 0).then_some(Decimal::ONE),
                reference: None,
                metadata: serde_json::json!({"note": "gift"}),
            },
            9 if !transfers.is_empty() => Command::Reverse {
                reversal_id: TransferId(Uuid::now_v7()),
                transfer_id: *dice.pick(&transfers),
                amount: (dice.below(2) == 0).then_some(Decimal::ONE),
                reason: Some("customer asked".to_owned()),
            },
            10 => Command::ChangeStatus { wallet_id: wallet, change: StatusCommand::Freeze, reason: None },
            11 => Command::ChangeStatus { wallet_id: wallet, change: StatusCommand::Unfreeze, reason: None },
            12 => Command::PlaceHold {
                hold_id: HoldId(Uuid::now_v7()),
                wallet_id: wallet,
                amount: Decimal::from_str(&amount).unwrap(),
                expiry: Expiry::In(3_600),
                reference: Some(format!("order-{}", dice.below(5))),
                metadata: serde_json::json!({"cart": 1}),
                at: now,
            },
            13 => Command::CaptureHold {
                hold_id,
                transfer_id: TransferId(Uuid::now_v7()),
                amount: (dice.below(2) == 0).then_some(Decimal::ONE),
                to_wallet_id: (dice.below(3) == 0).then(|| *dice.pick(&ids)),
                is_final: dice.below(2) == 0,
                reference: None,
                metadata: serde_json::Value::Null,
                at: now,
            },
            14 => Command::VoidHold { hold_id, reason: Some("cancelled".to_owned()), at: now },
            // The expirer's view from two hours on: every hold placed above is due.
            _ => Command::ExpireHold { hold_id, at: now + chrono::Duration::hours(2) },
        };
        let placed = match &command {
            Command::PlaceHold { hold_id, .. } => Some(*hold_id),
            _ => None,
        };
        let transfer_id = match &command {
            Command::Move { transfer_id, .. }
            | Command::Transfer { transfer_id, .. }
            | Command::CaptureHold { transfer_id, .. } => Some(*transfer_id),
            _ => None,
        };
        if ledger.execute(command).await.is_ok() {
            transfers.extend(transfer_id);
            holds.extend(placed);
        }
    }
}

impl Ledger {
    /// Decides `commands` in memory and inserts all their events with a few bulk statements, without stream
    /// snapshots: a fast loader for throughput measurements (verify would report the missing snapshots).
    pub async fn load_in_bulk(&mut self, commands: Vec<Command>) -> usize {
        let mut rows = Vec::new();
        for command in commands {
            if let Ok(prepared) = self.prepare(&command) {
                rows.extend(prepared.rows.iter().cloned());
                self.learn(prepared);
            }
        }
        for chunk in rows.chunks(10_000) {
            sqlx::query(
                "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($9))
                 INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
                 SELECT e.* FROM lock, UNNEST($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[],
                     $7::timestamptz[], $8::bytea[]) AS e",
            )
            .bind(chunk.iter().map(|row| row.0.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.1).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.2).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.3.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| sqlx::types::Json(row.4.clone())).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| sqlx::types::Json(row.5.clone())).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.6).collect::<Vec<_>>())
            .bind(chunk.iter().map(|row| row.7.to_vec()).collect::<Vec<_>>())
            .bind(event_store::APPEND_LOCK_KEY)
            .execute(&self.pool)
            .await
            .unwrap();
        }
        rows.len()
    }
}
