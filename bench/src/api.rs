//! Typed helpers over the HTTP API of SPEC §5: the few commands and reads the scenarios set up with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::http::{Endpoint, Pool, Request, Response};

/// Idempotency keys unique to this run: `bench-{run}-{counter}`.
#[derive(Debug)]
pub struct Keys {
    run: String,
    counter: AtomicU64,
}

impl Keys {
    pub fn new() -> Keys {
        Keys { run: Uuid::now_v7().simple().to_string()[..12].to_owned(), counter: AtomicU64::new(0) }
    }

    pub fn next(&self) -> String {
        format!("bench-{}-{}", self.run, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A short tag of this run, for names that must not collide with an earlier run's (asset codes).
    pub fn run_tag(&self) -> String {
        self.run[self.run.len() - 4..].to_ascii_uppercase()
    }
}

/// What the bench reads from a money command's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TransferAnswer {
    pub position: i64,
    pub balances: Vec<BalanceAnswer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BalanceAnswer {
    pub wallet_id: Uuid,
    pub version: i64,
}

impl TransferAnswer {
    pub fn balance_of(&self, wallet_id: Uuid) -> Option<&BalanceAnswer> {
        self.balances.iter().find(|balance| balance.wallet_id == wallet_id)
    }
}

/// What the bench reads from `GET /v1/wallets/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct WalletAnswer {
    pub balance: String,
    pub version: i64,
}

/// What the bench reads from a history page.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HistoryItem {
    pub version: i64,
}

/// The command side.
#[derive(Clone)]
pub struct Commands {
    pub pool: Pool,
    pub keys: Arc<Keys>,
}

impl Commands {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        self.pool.endpoint()
    }

    pub async fn define_asset(&self, code: &str, scale: u32) -> anyhow::Result<()> {
        let request = Request::post("/v1/assets", &json!({ "code": code, "scale": scale }), self.keys.next());
        self.pool.send(&request).await?.success(&format!("define asset {code}"))?;
        Ok(())
    }

    pub fn open_wallet_request(&self, owner_id: &str, asset: &str) -> Request {
        Request::post("/v1/wallets", &json!({ "owner_id": owner_id, "asset": asset }), self.keys.next())
    }

    pub async fn open_wallet(&self, owner_id: &str, asset: &str) -> anyhow::Result<Uuid> {
        let response = self.pool.send(&self.open_wallet_request(owner_id, asset)).await?;
        wallet_id_of(&response.success(&format!("open a wallet for {owner_id}"))?)
    }

    /// `POST /v1/wallets/{id}/{kind}` with `amount`: topup, bonus, spend, withdrawal, cash-in.
    pub fn move_request(&self, wallet_id: Uuid, kind: &str, amount: &str) -> Request {
        Request::post(format!("/v1/wallets/{wallet_id}/{kind}"), &json!({ "amount": amount }), self.keys.next())
    }

    pub fn transfer_request(&self, from_wallet_id: Uuid, to_wallet_id: Uuid, amount: &str) -> Request {
        let body = json!({ "from_wallet_id": from_wallet_id, "to_wallet_id": to_wallet_id, "amount": amount });
        Request::post("/v1/transfers", &body, self.keys.next())
    }

    pub async fn move_money(&self, wallet_id: Uuid, kind: &str, amount: &str) -> anyhow::Result<TransferAnswer> {
        let response = self.pool.send(&self.move_request(wallet_id, kind, amount)).await?;
        response.success(&format!("{kind} {amount} on wallet {wallet_id}"))?.json()
    }
}

/// The wallet id of a `POST /v1/wallets` answer.
pub fn wallet_id_of(response: &Response) -> anyhow::Result<Uuid> {
    #[derive(Deserialize)]
    struct Opened {
        wallet_id: Uuid,
    }
    Ok(response.json::<Opened>()?.wallet_id)
}

/// The read side.
#[derive(Clone)]
pub struct Queries {
    pub pool: Pool,
}

impl Queries {
    pub fn wallet_request(wallet_id: Uuid) -> Request {
        Request::get(format!("/v1/wallets/{wallet_id}"))
    }

    /// The wallet as query-service shows it once its projection has reached `min_position`, retrying
    /// `503 projection_behind` for up to `wait` in all.
    pub async fn wallet_at(&self, wallet_id: Uuid, min_position: i64, wait: Duration) -> anyhow::Result<WalletAnswer> {
        let request = Request::get(format!("/v1/wallets/{wallet_id}?min_position={min_position}"));
        let deadline = Instant::now() + wait;
        loop {
            let response = self.pool.send(&request).await?;
            if response.is_success() {
                return response.json();
            }
            let behind = response.status == 503 && response.problem_code().as_deref() == Some("projection_behind");
            if !behind || Instant::now() >= deadline {
                bail!(
                    "GET /v1/wallets/{wallet_id}?min_position={min_position}: status {}: {}",
                    response.status,
                    response.text()
                );
            }
        }
    }

    pub async fn history(&self, wallet_id: Uuid, limit: u32, cursor: Option<&str>) -> anyhow::Result<HistoryPage> {
        let response = self.pool.send(&history_request(wallet_id, limit, cursor)).await?;
        response.success(&format!("history of wallet {wallet_id}"))?.json().context("history page")
    }
}

pub fn history_request(wallet_id: Uuid, limit: u32, cursor: Option<&str>) -> Request {
    match cursor {
        Some(cursor) => Request::get(format!("/v1/wallets/{wallet_id}/history?limit={limit}&cursor={cursor}")),
        None => Request::get(format!("/v1/wallets/{wallet_id}/history?limit={limit}")),
    }
}
