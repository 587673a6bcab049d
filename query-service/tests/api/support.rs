//! `TestApp`: the real query-service on port 0 against the test's own database, typed HTTP helpers, and
//! helpers that arrange read-model rows and events the way the projector and command-service write them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use query_service::{database, App, Config};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_shared::asset::{AssetCode, AssetDefinition, AssetEvent, SystemWallets};
use tally_shared::envelope::{Event, StreamId};
use tally_shared::money::Scale;
use tally_shared::transfer::{TransferId, TransferKind};
use tally_shared::wallet::{Posting, WalletEvent, WalletId, WalletKind, WalletOpened};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long a test's HTTP request may take at most: far above any wait the service is configured with.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<anyhow::Result<()>>>,
}

/// An answer: status, headers and the JSON body (`Value::Null` if the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn projection_position(&self) -> i64 {
        let value = self.headers.get("x-projection-position").expect("X-Projection-Position is on every answer");
        value.to_str().unwrap().parse().unwrap()
    }

    /// Asserts a problem document with this status and code, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert_eq!(self.body["code"], code, "{:#}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"].as_str().unwrap().starts_with("/problems/"));
        assert!(self.body["title"].is_string());
        &self.body
    }

    /// Asserts `422 validation_failed` naming `field`.
    #[track_caller]
    pub fn validation(&self, field: &str) {
        let problem = self.problem(422, "validation_failed");
        assert_eq!(problem["field"], field, "{problem:#}");
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:#}", self.body);
        &self.body
    }
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> TestApp {
        TestApp::spawn_with(pool, &[]).await
    }

    /// Starts the real service with extra command-line flags.
    pub async fn spawn_with(pool: PgPool, flags: &[&str]) -> TestApp {
        let mut arguments = vec![
            "query-service",
            "--database-url",
            "postgres://unused",
            "--listen-addr",
            "127.0.0.1:0",
            "--schema-wait-secs",
            "5",
        ];
        arguments.extend_from_slice(flags);
        let config = Config::parse_from(arguments);
        let read_only = database::read_only_pool(pool.connect_options().as_ref().clone(), &config);
        TestApp::serve(config, read_only).await
    }

    /// Starts the real service on `config` and `pool` as they are (a pool of `database::connect`, say).
    pub async fn serve(config: Config, pool: PgPool) -> TestApp {
        let app = App::build(config, pool).await.expect("query-service starts");
        let base_url = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap();
        TestApp { base_url, client, stop: Some(stop), served: Some(served) }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base_url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.expect("query-service answers")).await
    }

    /// Shuts the service down gracefully and closes its connections, so the test database can be dropped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("the server task does not panic").expect("query-service stops cleanly");
        }
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, headers, body }
}

/// Polls `probe` until it yields a value, at most `attempts` times, `interval` apart.
pub async fn eventually<T, F, Fut>(attempts: u32, interval: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..attempts {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(interval).await;
    }
    panic!("condition not reached after {attempts} attempts");
}

pub fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

// ---- Arranging the event log ---------------------------------------------------------------------

/// Appends one event as command-service would (the hash is 32 zero bytes: read-side tests do not check chains).
pub async fn append(pool: &PgPool, stream: &StreamId, version: i64, event: Event, recorded_at: DateTime<Utc>) -> i64 {
    let (event_type, data) = event.to_stored();
    sqlx::query_scalar(
        "WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock($9))
         INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at, hash)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM lock RETURNING position",
    )
    .bind(stream.to_string())
    .bind(version)
    .bind(Uuid::now_v7())
    .bind(event_type)
    .bind(data)
    .bind(json!({ "request_id": "test" }))
    .bind(recorded_at)
    .bind(vec![0_u8; 32])
    .bind(command_service::event_store::APPEND_LOCK_KEY)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub fn wallet_opened(wallet_id: Uuid, owner_id: &str, asset: &str, scale: u32) -> Event {
    Event::Wallet(WalletEvent::WalletOpened(WalletOpened {
        wallet_id: WalletId(wallet_id),
        owner_id: owner_id.to_owned(),
        asset: AssetCode::parse(asset).unwrap(),
        scale: Scale::new(scale).unwrap(),
        kind: WalletKind::User,
        overdraft_limit: Some(Decimal::ZERO),
        metadata: Value::Null,
    }))
}

pub fn posting(credit: bool, amount: &str, balance_after: &str, counterparty: Uuid) -> Event {
    let posting = Posting {
        transfer_id: TransferId(Uuid::now_v7()),
        kind: if credit { TransferKind::Topup } else { TransferKind::Spend },
        amount: dec(amount),
        balance_after: dec(balance_after),
        counterparty_wallet_id: WalletId(counterparty),
        leg: 0,
    };
    Event::Wallet(if credit { WalletEvent::WalletCredited(posting) } else { WalletEvent::WalletDebited(posting) })
}

pub fn asset_defined(code: &str, scale: u32, system_wallets: SystemWallets) -> Event {
    Event::Asset(AssetEvent::AssetDefined(AssetDefinition {
        code: AssetCode::parse(code).unwrap(),
        scale: Scale::new(scale).unwrap(),
        cash_in_fee: None,
        system_wallets,
    }))
}

// ---- Arranging the read models -------------------------------------------------------------------

/// The projector's checkpoint, moved and announced as the projector does in each batch.
pub async fn advance_checkpoint(pool: &PgPool, position: i64, notify: bool) {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, position, updated_at) VALUES ('read_models', $1, now())
         ON CONFLICT (projection) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind(position)
    .execute(&mut *transaction)
    .await
    .unwrap();
    if notify {
        sqlx::query("SELECT pg_notify($2, $1)")
            .bind(position.to_string())
            .bind(tally_shared::notification::PROJECTION_ADVANCED_CHANNEL)
            .execute(&mut *transaction)
            .await
            .unwrap();
    }
    transaction.commit().await.unwrap();
}

/// An asset row with its three system wallets; returns their ids.
pub async fn insert_asset(pool: &PgPool, code: &str, scale: i32, cash_in_fee: Option<Value>) -> SystemWallets {
    let system_wallets = SystemWallets {
        treasury: WalletId(Uuid::now_v7()),
        revenue: WalletId(Uuid::now_v7()),
        fees: WalletId(Uuid::now_v7()),
    };
    sqlx::query(
        "INSERT INTO rm_assets (code, scale, cash_in_fee, treasury_wallet_id, revenue_wallet_id, fees_wallet_id,
                                supply, user_balance_total, wallet_count, defined_at, position)
         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 3, now(), 1)",
    )
    .bind(code)
    .bind(scale)
    .bind(cash_in_fee)
    .bind(system_wallets.treasury.0)
    .bind(system_wallets.revenue.0)
    .bind(system_wallets.fees.0)
    .execute(pool)
    .await
    .unwrap();
    for (id, kind) in
        [(system_wallets.treasury, "treasury"), (system_wallets.revenue, "revenue"), (system_wallets.fees, "fees")]
    {
        let limit = if kind == "treasury" { None } else { Some(Decimal::ZERO) };
        insert_wallet_row(pool, id.0, &format!("system:{code}"), code, kind, dec("0"), limit, 1).await;
    }
    system_wallets
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_wallet_row(
    pool: &PgPool,
    wallet_id: Uuid,
    owner_id: &str,
    asset: &str,
    kind: &str,
    balance: Decimal,
    overdraft_limit: Option<Decimal>,
    version: i64,
) {
    sqlx::query(
        "INSERT INTO rm_wallets (wallet_id, owner_id, asset, kind, status, balance, overdraft_limit, version, position,
                                 metadata, opened_at, updated_at)
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, 1, NULL, now(), now())",
    )
    .bind(wallet_id)
    .bind(owner_id)
    .bind(asset)
    .bind(kind)
    .bind(balance)
    .bind(overdraft_limit)
    .bind(version)
    .execute(pool)
    .await
    .unwrap();
}

/// A user wallet with a zero balance.
pub async fn insert_wallet(pool: &PgPool, owner_id: &str, asset: &str) -> Uuid {
    let wallet_id = Uuid::now_v7();
    insert_wallet_row(pool, wallet_id, owner_id, asset, "user", dec("0"), Some(dec("0")), 1).await;
    wallet_id
}

/// One history row: a credit of `amount` bringing the wallet to `balance_after`.
pub async fn insert_history(
    pool: &PgPool,
    wallet_id: Uuid,
    version: i64,
    position: i64,
    amount: Decimal,
    balance_after: Decimal,
) {
    sqlx::query(
        "INSERT INTO rm_wallet_history (wallet_id, version, position, transfer_id, kind, direction, amount, balance_after,
                                        counterparty_wallet_id, reference, recorded_at)
         VALUES ($1, $2, $3, $4, 'topup', 'credit', $5, $6, $7, $8, now())",
    )
    .bind(wallet_id)
    .bind(version)
    .bind(position)
    .bind(Uuid::now_v7())
    .bind(amount)
    .bind(balance_after)
    .bind(Uuid::now_v7())
    .bind(format!("ref-{version}"))
    .execute(pool)
    .await
    .unwrap();
}
