//! The load: clients that each move one unit in and out of one hot wallet, pair after pair, until told to stop.
//! A pair is a top-up of the hot wallet, then, once it is acknowledged, a transfer of the same amount from it to
//! the sink wallet. A transfer is sent only after its own top-up is acknowledged, so the hot wallet can never lack
//! the funds, and at the end the sink holds exactly one unit per acknowledged transfer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;

/// Every this many acknowledged transfers, a client reads it back from the replica-backed query-service with
/// `min_position` (read-your-writes on a replica, SPEC §11).
const REPLICA_READ_EVERY: u64 = 5;
/// How long that read may wait for the replica; its own `min_position` wait is shorter.
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The amount of each command, in the asset's units (scale 2).
pub const UNIT: &str = "1.00";

/// The wallets and names of one drill run.
#[derive(Debug, Clone)]
pub struct Setup {
    pub tag: String,
    pub asset: String,
    pub hot: String,
    pub sink: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topup,
    Transfer,
}

/// An acknowledged command: what the client was told, and when.
#[derive(Debug, Clone)]
pub struct Ack {
    pub kind: Kind,
    pub reference: String,
    pub transfer_id: String,
    pub position: i64,
    pub first_sent: Instant,
    pub acknowledged: Instant,
    pub attempts: u32,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub acks: Vec<Ack>,
    /// Commands never answered within the deadline, or answered with a refusal: each a failed check.
    pub failures: Vec<String>,
    pub replica_reads: u64,
    /// Replica reads with `min_position` that did not show the write: each a failed check.
    pub replica_stale: Vec<String>,
    /// Replica reads that could not be made (the server was down, or its wait ran out); reported, not failed.
    pub replica_unavailable: u64,
}

pub struct Targets {
    pub client: Client,
    pub command_url: String,
    pub replica_query_url: Option<String>,
}

/// Runs one client until `stop` is set, finishing the pair it is in.
pub async fn run_client(
    index: usize,
    targets: Arc<Targets>,
    setup: Arc<Setup>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut pair: u64 = 0;
    while !*stop.borrow_and_update() {
        pair += 1;
        let base = format!("{}-{index}-{pair}", setup.tag);
        let topup = json!({ "amount": UNIT, "reference": format!("{base}-in") });
        let url = format!("{}/v1/wallets/{}/topup", targets.command_url, setup.hot);
        if !send(&targets.client, Kind::Topup, &url, &format!("{base}-in"), &topup, &mut log).await {
            break;
        }
        let transfer = json!({
            "from_wallet_id": setup.hot, "to_wallet_id": setup.sink, "amount": UNIT,
            "reference": format!("{base}-out"),
        });
        let url = format!("{}/v1/transfers", targets.command_url);
        if !send(&targets.client, Kind::Transfer, &url, &format!("{base}-out"), &transfer, &mut log).await {
            break;
        }
        if pair.is_multiple_of(REPLICA_READ_EVERY) {
            if let Some(replica) = &targets.replica_query_url {
                let ack = log.acks.last().expect("just acknowledged").clone();
                read_back(&targets.client, replica, &ack, &mut log).await;
            }
        }
    }
    log
}

/// Sends one command until it is answered; records the acknowledgement, or the failure (then `false`).
async fn send(client: &Client, kind: Kind, url: &str, reference: &str, body: &Value, log: &mut ClientLog) -> bool {
    let first_sent = Instant::now();
    let key = format!("drill-{reference}");
    match client.command(url, &key, body).await {
        Ok(answered) if answered.status == 201 || answered.status == 200 => {
            let transfer_id = answered.body["transfer_id"].as_str().unwrap_or_default().to_owned();
            let position = answered.body["position"].as_i64().unwrap_or_default();
            log.acks.push(Ack {
                kind,
                reference: reference.to_owned(),
                transfer_id,
                position,
                first_sent,
                acknowledged: Instant::now(),
                attempts: answered.attempts,
            });
            true
        }
        Ok(answered) => {
            log.failures.push(format!("{reference}: refused with {} {}", answered.status, answered.body));
            false
        }
        Err(error) => {
            log.failures.push(format!("{error:#}"));
            false
        }
    }
}

/// Reads an acknowledged transfer back from the replica-backed query-service with `min_position`: it must be there.
async fn read_back(client: &Client, replica: &str, ack: &Ack, log: &mut ClientLog) {
    log.replica_reads += 1;
    let url = format!("{replica}/v1/transfers/{}?min_position={}", ack.transfer_id, ack.position);
    match tokio::time::timeout(REPLICA_READ_TIMEOUT, client.get(&url)).await {
        Ok(Ok((200, body))) if body["transfer_id"] == ack.transfer_id.as_str() => {}
        Ok(Ok((503 | 504, _))) | Ok(Err(_)) | Err(_) => log.replica_unavailable += 1,
        Ok(Ok((status, body))) => log.replica_stale.push(format!("{}: {status} {body}", ack.reference)),
    }
}

/// Reads the hot wallet from `query_url` with `clients` clients for `over`: reads answered 200 per second.
pub async fn measure_reads(
    client: &Client,
    query_url: &str,
    setup: &Setup,
    clients: usize,
    over: Duration,
) -> anyhow::Result<Value> {
    let url = Arc::new(format!("{query_url}/v1/wallets/{}", setup.hot));
    let deadline = Instant::now() + over;
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let (mut ok, mut other) = (0_u64, 0_u64);
                while Instant::now() < deadline {
                    match client.get(&url).await {
                        Ok((200, _)) => ok += 1,
                        _ => other += 1,
                    }
                }
                (ok, other)
            })
        })
        .collect();
    let (mut ok, mut other) = (0, 0);
    for reader in readers {
        let (answered, failed) = reader.await?;
        ok += answered;
        other += failed;
    }
    let per_s = (ok as f64 / over.as_secs_f64() * 10.0).round() / 10.0;
    Ok(json!({ "name": "reads", "query_url": query_url, "clients": clients, "reads": ok, "reads_per_s": per_s,
               "not_ok": other, "failures": other, "failed": if other == 0 { vec![] } else { vec![format!("{other} reads not answered 200")] } }))
}
