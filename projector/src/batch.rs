//! Folds a batch of events into the rows to write, in memory, so that each read model is written with a
//! handful of bulk statements per batch instead of one statement per event. Pure: what the batch needs to
//! know from before it ([`Prior`]) is loaded by the caller first.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_shared::asset::AssetEvent;
use tally_shared::envelope::{Event, StreamId};
use tally_shared::hold::{HoldEvent, HoldStatus};
use tally_shared::money::Total;
use tally_shared::transfer::TransferEvent;
use tally_shared::wallet::{WalletEvent, WalletKind, WalletStatus};
use uuid::Uuid;

use crate::events::DecodedEvent;

/// Why a batch cannot be folded: the log contradicts itself (it never should; the projector stops and says so).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("position {position}: wallet {wallet_id} has an event but was never opened")]
    UnknownWallet { position: i64, wallet_id: Uuid },
    #[error("position {position}: posting of transfer {transfer_id}, which was never recorded")]
    UnknownTransfer { position: i64, transfer_id: Uuid },
    #[error("position {position}: hold {hold_id} has an event but was never placed")]
    UnknownHold { position: i64, hold_id: Uuid },
    #[error("position {position}: event {event_type} does not belong on stream {stream}")]
    WrongStream { position: i64, stream: String, event_type: &'static str },
    #[error("position {position}: a running total of the batch left the range of 128-bit units")]
    TotalOutOfRange { position: i64 },
}

/// `-value`, never the negative zero that `rust_decimal` can produce (Postgres would print it as `0`, Rust as `-0`).
pub fn negate(value: Decimal) -> Decimal {
    let mut negated = -value;
    if negated.is_zero() {
        negated.set_sign_positive(true);
    }
    negated
}

/// A wallet's balance and version right after a transfer, as the command answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceEntry {
    pub wallet_id: Uuid,
    pub balance: String,
    pub version: i64,
}

/// What a leg of `rm_transfers.legs` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegEntry {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: String,
}

/// A wallet the batch touches but did not open, as the read model had it before the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorWallet {
    pub asset: String,
    pub kind: String,
    pub status: String,
    pub balance: Decimal,
    pub held: Decimal,
}

/// A transfer the batch posts legs of but did not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorTransfer {
    pub reference: Option<String>,
    pub balances: Vec<BalanceEntry>,
}

/// What the batch needs from the read models before it can be folded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prior {
    pub wallets: HashMap<Uuid, PriorWallet>,
    pub transfers: HashMap<Uuid, PriorTransfer>,
    /// Holds the batch settles but did not place, as `rm_holds` has them.
    pub holds: HashMap<Uuid, HoldRow>,
}

/// Ids whose [`Prior`] the batch needs: wallets with events but not opened in the batch, transfers with
/// postings but not recorded in the batch (a command cut in two by the batch limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub wallet_ids: Vec<Uuid>,
    pub transfer_ids: Vec<Uuid>,
    pub hold_ids: Vec<Uuid>,
}

pub fn needs(events: &[DecodedEvent]) -> Needs {
    let mut opened = std::collections::HashSet::new();
    let mut recorded = std::collections::HashSet::new();
    let mut wallet_ids = std::collections::BTreeSet::new();
    let mut transfer_ids = std::collections::BTreeSet::new();
    let mut placed = std::collections::HashSet::new();
    let mut hold_ids = std::collections::BTreeSet::new();
    for event in events {
        match (&event.stream, &event.event) {
            (StreamId::Wallet(id), Event::Wallet(WalletEvent::WalletOpened(_))) => {
                opened.insert(id.0);
            }
            (StreamId::Wallet(id), Event::Wallet(wallet_event)) => {
                if !opened.contains(&id.0) {
                    wallet_ids.insert(id.0);
                }
                if let WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting) = wallet_event {
                    if !recorded.contains(&posting.transfer_id.0) {
                        transfer_ids.insert(posting.transfer_id.0);
                    }
                }
            }
            (StreamId::Transfer(id), Event::Transfer(TransferEvent::TransferRecorded(_))) => {
                recorded.insert(id.0);
            }
            (StreamId::Hold(id), Event::Hold(HoldEvent::HoldPlaced(_))) => {
                placed.insert(id.0);
            }
            (StreamId::Hold(id), Event::Hold(_)) if !placed.contains(&id.0) => {
                hold_ids.insert(id.0);
            }
            _ => {}
        }
    }
    Needs {
        wallet_ids: wallet_ids.into_iter().collect(),
        transfer_ids: transfer_ids.into_iter().collect(),
        hold_ids: hold_ids.into_iter().collect(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssetRow {
    pub code: String,
    pub scale: i32,
    pub cash_in_fee: Option<serde_json::Value>,
    pub treasury_wallet_id: Uuid,
    pub revenue_wallet_id: Uuid,
    pub fees_wallet_id: Uuid,
    pub supply: Decimal,
    /// A sum over every user wallet: beyond `Decimal`'s range where the wallets' balances are not.
    pub user_balance_total: Total,
    /// What the user wallets' active holds reserve.
    pub held_total: Total,
    pub active_hold_count: i64,
    pub wallet_count: i64,
    pub defined_at: DateTime<Utc>,
    pub position: i64,
}

/// Changes to the totals of an asset defined before the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetTotalsUpdate {
    pub code: String,
    /// Minus the treasury's last balance, if the treasury moved.
    pub supply: Option<Decimal>,
    pub user_balance_delta: Total,
    pub held_delta: Total,
    pub active_hold_delta: i64,
    pub wallet_count_delta: i64,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalletRow {
    pub wallet_id: Uuid,
    pub owner_id: String,
    pub asset: String,
    pub kind: String,
    pub status: String,
    pub balance: Decimal,
    pub held: Decimal,
    pub overdraft_limit: Option<Decimal>,
    pub version: i64,
    pub position: i64,
    pub metadata: Option<serde_json::Value>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The new state of a wallet opened before the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletUpdate {
    pub wallet_id: Uuid,
    pub status: String,
    pub balance: Decimal,
    pub held: Decimal,
    pub version: i64,
    pub position: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub wallet_id: Uuid,
    pub version: i64,
    pub position: i64,
    pub transfer_id: Uuid,
    pub kind: &'static str,
    pub direction: &'static str,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub counterparty_wallet_id: Uuid,
    pub reference: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransferRow {
    pub transfer_id: Uuid,
    pub kind: &'static str,
    pub asset: String,
    pub amount: Decimal,
    pub fee: Decimal,
    pub legs: Vec<LegEntry>,
    pub balances: Vec<BalanceEntry>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub reverses: Option<Uuid>,
    pub reason: Option<String>,
    pub hold_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
    pub reversed_amount: Decimal,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

/// The balances and position of a transfer recorded before the batch, whose legs the batch posts.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferUpdate {
    pub transfer_id: Uuid,
    pub balances: Vec<BalanceEntry>,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReversalRow {
    pub transfer_id: Uuid,
    pub reversal_id: Uuid,
    pub amount: Decimal,
    pub fee: Decimal,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

/// A hold as `rm_holds` shows it: placed, or as its last event in the batch left it.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldRow {
    pub hold_id: Uuid,
    pub wallet_id: Uuid,
    pub asset: String,
    pub amount: Decimal,
    pub captured: Decimal,
    pub released: Decimal,
    pub status: &'static str,
    pub expires_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub captures: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub placed_position: i64,
    pub position: i64,
}

/// Principal moved and transfers counted, per asset and kind, in this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeDelta {
    pub asset: String,
    pub kind: &'static str,
    pub volume: Total,
    pub transfer_count: i64,
}

/// Every row a batch writes. Vectors are in a deterministic order, so that a rebuild writes the same bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    pub new_assets: Vec<AssetRow>,
    pub asset_updates: Vec<AssetTotalsUpdate>,
    pub new_wallets: Vec<WalletRow>,
    pub wallet_updates: Vec<WalletUpdate>,
    pub history: Vec<HistoryRow>,
    pub new_transfers: Vec<TransferRow>,
    pub transfer_updates: Vec<TransferUpdate>,
    /// Amount newly reversed of transfers recorded before the batch.
    pub reversed_deltas: Vec<(Uuid, Decimal)>,
    pub reversals: Vec<ReversalRow>,
    pub volumes: Vec<VolumeDelta>,
    /// Every hold the batch placed or settled, as it left it (written whole: inserted or replaced).
    pub holds: Vec<HoldRow>,
    /// Position of the batch's last event: the checkpoint after it.
    pub last_position: i64,
}

#[derive(Debug, Default)]
struct AssetTotals {
    supply: Option<Decimal>,
    user_balance_delta: Total,
    held_delta: Total,
    active_hold_delta: i64,
    wallet_count_delta: i64,
    position: i64,
}

struct WalletState {
    row: WalletRow,
    is_new: bool,
}

#[derive(Default)]
struct Fold {
    new_assets: BTreeMap<String, AssetRow>,
    totals: BTreeMap<String, AssetTotals>,
    wallets: BTreeMap<Uuid, WalletState>,
    history: Vec<HistoryRow>,
    new_transfers: BTreeMap<Uuid, TransferRow>,
    transfer_updates: BTreeMap<Uuid, TransferUpdate>,
    reversed_deltas: BTreeMap<Uuid, Decimal>,
    reversals: Vec<ReversalRow>,
    volumes: BTreeMap<(String, &'static str), (Total, i64)>,
    holds: BTreeMap<Uuid, HoldRow>,
}

fn status_str(status: WalletStatus) -> String {
    status.as_str().to_owned()
}

fn null_to_none(value: &serde_json::Value) -> Option<serde_json::Value> {
    (!value.is_null()).then(|| value.clone())
}

/// Sets `wallet_id`'s entry in `balances`, keeping the order in which the transfer first touched each wallet.
fn set_balance(balances: &mut Vec<BalanceEntry>, entry: BalanceEntry) {
    match balances.iter_mut().find(|existing| existing.wallet_id == entry.wallet_id) {
        Some(existing) => *existing = entry,
        None => balances.push(entry),
    }
}

/// Folds `events` (in position order) over what the read models held before them.
pub fn fold(events: &[DecodedEvent], prior: &Prior) -> Result<Writes, FoldError> {
    let mut fold = Fold::default();
    for event in events {
        fold.apply(event, prior)?;
    }
    fold.finish(events.last().map_or(0, |event| event.position))
}

impl Fold {
    fn apply(&mut self, event: &DecodedEvent, prior: &Prior) -> Result<(), FoldError> {
        let position = event.position;
        match (&event.stream, &event.event) {
            (StreamId::Asset(_), Event::Asset(AssetEvent::AssetDefined(definition))) => {
                let zero = tally_shared::wallet::zero_at(definition.scale);
                let system = definition.system_wallets;
                self.new_assets.insert(
                    definition.code.to_string(),
                    AssetRow {
                        code: definition.code.to_string(),
                        scale: i32::try_from(definition.scale.places()).expect("a scale is at most 28"),
                        cash_in_fee: definition
                            .cash_in_fee
                            .as_ref()
                            .map(|policy| serde_json::to_value(policy).expect("fee policies serialize")),
                        treasury_wallet_id: system.treasury.0,
                        revenue_wallet_id: system.revenue.0,
                        fees_wallet_id: system.fees.0,
                        supply: zero,
                        user_balance_total: Total::from(zero),
                        held_total: Total::from(zero),
                        active_hold_count: 0,
                        wallet_count: 0,
                        defined_at: event.recorded_at,
                        position,
                    },
                );
            }
            (StreamId::Wallet(wallet_id), Event::Wallet(WalletEvent::WalletOpened(opened))) => {
                let row = WalletRow {
                    wallet_id: wallet_id.0,
                    owner_id: opened.owner_id.clone(),
                    asset: opened.asset.to_string(),
                    kind: opened.kind.as_str().to_owned(),
                    status: status_str(WalletStatus::Active),
                    balance: tally_shared::wallet::zero_at(opened.scale),
                    held: tally_shared::wallet::zero_at(opened.scale),
                    overdraft_limit: opened.overdraft_limit,
                    version: event.version,
                    position,
                    metadata: null_to_none(&opened.metadata),
                    opened_at: event.recorded_at,
                    updated_at: event.recorded_at,
                };
                if opened.kind == WalletKind::User {
                    let totals = self.totals.entry(row.asset.clone()).or_default();
                    totals.wallet_count_delta += 1;
                    totals.position = position;
                }
                self.wallets.insert(wallet_id.0, WalletState { row, is_new: true });
            }
            (StreamId::Wallet(wallet_id), Event::Wallet(wallet_event)) => {
                let state = wallet_state(&mut self.wallets, wallet_id.0, position, event.recorded_at, prior)?;
                state.row.version = event.version;
                state.row.position = position;
                state.row.updated_at = event.recorded_at;
                let (posting, direction) = match wallet_event {
                    WalletEvent::WalletDebited(posting) => (posting, "debit"),
                    WalletEvent::WalletCredited(posting) => (posting, "credit"),
                    WalletEvent::WalletFrozen(_) | WalletEvent::WalletUnfrozen(_) | WalletEvent::WalletClosed(_) => {
                        let status = match wallet_event {
                            WalletEvent::WalletFrozen(_) => WalletStatus::Frozen,
                            WalletEvent::WalletClosed(_) => WalletStatus::Closed,
                            _ => WalletStatus::Active,
                        };
                        state.row.status = status_str(status);
                        return Ok(());
                    }
                    WalletEvent::WalletHoldPlaced(_) | WalletEvent::WalletHoldSettled(_) => {
                        // Holds are placed on user wallets only: what they hold is the asset's held total.
                        let (held_after, active_delta) = match wallet_event {
                            WalletEvent::WalletHoldPlaced(placed) => (placed.held_after, 1),
                            WalletEvent::WalletHoldSettled(settled) => {
                                (settled.held_after, -i64::from(settled.resolved))
                            }
                            _ => unreachable!("matched above"),
                        };
                        let held_before = std::mem::replace(&mut state.row.held, held_after);
                        let totals = self.totals.entry(state.row.asset.clone()).or_default();
                        let out_of_range = |_| FoldError::TotalOutOfRange { position };
                        totals.held_delta.add(held_after).map_err(out_of_range)?;
                        totals.held_delta.sub(held_before).map_err(out_of_range)?;
                        totals.active_hold_delta += active_delta;
                        totals.position = position;
                        return Ok(());
                    }
                    WalletEvent::WalletOpened(_) => unreachable!("matched above"),
                };
                let balance_before = std::mem::replace(&mut state.row.balance, posting.balance_after);
                if state.row.kind == WalletKind::User.as_str() {
                    let totals = self.totals.entry(state.row.asset.clone()).or_default();
                    let out_of_range = |_| FoldError::TotalOutOfRange { position };
                    totals.user_balance_delta.add(posting.balance_after).map_err(out_of_range)?;
                    totals.user_balance_delta.sub(balance_before).map_err(out_of_range)?;
                    totals.position = position;
                } else if state.row.kind == WalletKind::Treasury.as_str() {
                    let totals = self.totals.entry(state.row.asset.clone()).or_default();
                    totals.supply = Some(negate(posting.balance_after));
                    totals.position = position;
                }
                let transfer_id = posting.transfer_id.0;
                let entry = BalanceEntry {
                    wallet_id: wallet_id.0,
                    balance: posting.balance_after.to_string(),
                    version: event.version,
                };
                let reference = if let Some(transfer) = self.new_transfers.get_mut(&transfer_id) {
                    set_balance(&mut transfer.balances, entry);
                    transfer.position = position;
                    transfer.reference.clone()
                } else {
                    let known = prior
                        .transfers
                        .get(&transfer_id)
                        .ok_or(FoldError::UnknownTransfer { position, transfer_id })?;
                    let update = self.transfer_updates.entry(transfer_id).or_insert_with(|| TransferUpdate {
                        transfer_id,
                        balances: known.balances.clone(),
                        position,
                    });
                    set_balance(&mut update.balances, entry);
                    update.position = position;
                    known.reference.clone()
                };
                self.history.push(HistoryRow {
                    wallet_id: wallet_id.0,
                    version: event.version,
                    position,
                    transfer_id,
                    kind: posting.kind.as_str(),
                    direction,
                    amount: posting.amount,
                    balance_after: posting.balance_after,
                    counterparty_wallet_id: posting.counterparty_wallet_id.0,
                    reference,
                    recorded_at: event.recorded_at,
                });
            }
            (StreamId::Transfer(transfer_id), Event::Transfer(TransferEvent::TransferRecorded(recorded))) => {
                let volume = self.volumes.entry((recorded.asset.to_string(), recorded.kind.as_str())).or_default();
                volume.0.add(recorded.amount).map_err(|_| FoldError::TotalOutOfRange { position })?;
                volume.1 += 1;
                self.new_transfers.insert(
                    transfer_id.0,
                    TransferRow {
                        transfer_id: transfer_id.0,
                        kind: recorded.kind.as_str(),
                        asset: recorded.asset.to_string(),
                        amount: recorded.amount,
                        fee: recorded.fee,
                        legs: recorded
                            .legs
                            .iter()
                            .map(|leg| LegEntry {
                                from_wallet_id: leg.from_wallet_id.0,
                                to_wallet_id: leg.to_wallet_id.0,
                                amount: leg.amount.to_string(),
                            })
                            .collect(),
                        balances: Vec::new(),
                        reference: recorded.reference.clone(),
                        metadata: null_to_none(&recorded.metadata),
                        reverses: recorded.reverses.map(|id| id.0),
                        reason: recorded.reason.clone(),
                        hold_id: recorded.hold_id.map(|id| id.0),
                        idempotency_key: event.idempotency_key.clone(),
                        reversed_amount: tally_shared::wallet::zero_at(recorded.scale),
                        position,
                        recorded_at: event.recorded_at,
                    },
                );
            }
            (StreamId::Transfer(transfer_id), Event::Transfer(TransferEvent::TransferReversed(reversed))) => {
                self.reversals.push(ReversalRow {
                    transfer_id: transfer_id.0,
                    reversal_id: reversed.reversal_id.0,
                    amount: reversed.amount,
                    fee: reversed.fee,
                    position,
                    recorded_at: event.recorded_at,
                });
                match self.new_transfers.get_mut(&transfer_id.0) {
                    Some(transfer) => transfer.reversed_amount += reversed.amount,
                    None => *self.reversed_deltas.entry(transfer_id.0).or_default() += reversed.amount,
                }
            }
            (StreamId::Hold(hold_id), Event::Hold(HoldEvent::HoldPlaced(placed))) => {
                let zero = tally_shared::wallet::zero_at(placed.scale);
                let row = HoldRow {
                    hold_id: hold_id.0,
                    wallet_id: placed.wallet_id.0,
                    asset: placed.asset.to_string(),
                    amount: placed.amount,
                    captured: zero,
                    released: zero,
                    status: HoldStatus::Active.as_str(),
                    expires_at: placed.expires_at,
                    reference: placed.reference.clone(),
                    metadata: null_to_none(&placed.metadata),
                    captures: Vec::new(),
                    created_at: placed.placed_at,
                    resolved_at: None,
                    version: event.version,
                    placed_position: position,
                    position,
                };
                self.holds.insert(hold_id.0, row);
            }
            (StreamId::Hold(hold_id), Event::Hold(hold_event)) => {
                let row = match self.holds.entry(hold_id.0) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        let known = prior
                            .holds
                            .get(&hold_id.0)
                            .ok_or(FoldError::UnknownHold { position, hold_id: hold_id.0 })?;
                        entry.insert(known.clone())
                    }
                };
                settle(row, hold_event);
                row.version = event.version;
                row.position = position;
            }
            (stream, event) => {
                let event_type = match event {
                    Event::Asset(_) => "an asset event",
                    Event::Wallet(_) => "a wallet event",
                    Event::Transfer(_) => "a transfer event",
                    Event::Hold(_) => "a hold event",
                };
                return Err(FoldError::WrongStream { position, stream: stream.to_string(), event_type });
            }
        }
        Ok(())
    }

    fn finish(self, last_position: i64) -> Result<Writes, FoldError> {
        let mut writes = Writes { last_position, ..Writes::default() };
        let mut new_assets = self.new_assets;
        for (code, totals) in self.totals {
            match new_assets.get_mut(&code) {
                Some(asset) => {
                    if let Some(supply) = totals.supply {
                        asset.supply = supply;
                    }
                    asset
                        .user_balance_total
                        .add_total(totals.user_balance_delta)
                        .map_err(|_| FoldError::TotalOutOfRange { position: totals.position })?;
                    asset
                        .held_total
                        .add_total(totals.held_delta)
                        .map_err(|_| FoldError::TotalOutOfRange { position: totals.position })?;
                    asset.active_hold_count += totals.active_hold_delta;
                    asset.wallet_count += totals.wallet_count_delta;
                    asset.position = asset.position.max(totals.position);
                }
                None => writes.asset_updates.push(AssetTotalsUpdate {
                    code,
                    supply: totals.supply,
                    user_balance_delta: totals.user_balance_delta,
                    held_delta: totals.held_delta,
                    active_hold_delta: totals.active_hold_delta,
                    wallet_count_delta: totals.wallet_count_delta,
                    position: totals.position,
                }),
            }
        }
        writes.new_assets = new_assets.into_values().collect();
        for state in self.wallets.into_values() {
            if state.is_new {
                writes.new_wallets.push(state.row);
            } else {
                let row = state.row;
                writes.wallet_updates.push(WalletUpdate {
                    wallet_id: row.wallet_id,
                    status: row.status,
                    balance: row.balance,
                    held: row.held,
                    version: row.version,
                    position: row.position,
                    updated_at: row.updated_at,
                });
            }
        }
        writes.history = self.history;
        writes.new_transfers = self.new_transfers.into_values().collect();
        writes.transfer_updates = self.transfer_updates.into_values().collect();
        writes.reversed_deltas = self.reversed_deltas.into_iter().collect();
        writes.reversals = self.reversals;
        writes.volumes = self
            .volumes
            .into_iter()
            .map(|((asset, kind), (volume, transfer_count))| VolumeDelta { asset, kind, volume, transfer_count })
            .collect();
        writes.holds = self.holds.into_values().collect();
        Ok(writes)
    }
}

/// A capture, a void or an expiry, on the hold's row: copied from the event, the sums kept.
fn settle(row: &mut HoldRow, event: &HoldEvent) {
    match event {
        HoldEvent::HoldPlaced(_) => unreachable!("placed holds get a row of their own"),
        HoldEvent::HoldCaptured(captured) => {
            row.captured += captured.amount;
            row.released += captured.released;
            row.captures.push(captured.transfer_id.0);
            if captured.is_final {
                row.status = HoldStatus::Captured.as_str();
                row.resolved_at = Some(captured.captured_at);
            }
        }
        HoldEvent::HoldVoided(released) | HoldEvent::HoldExpired(released) => {
            row.released += released.released;
            let status =
                if matches!(event, HoldEvent::HoldVoided(_)) { HoldStatus::Voided } else { HoldStatus::Expired };
            row.status = status.as_str();
            row.resolved_at = Some(released.released_at);
        }
    }
}

/// The state of a wallet the batch touches, from the batch itself or from before it.
fn wallet_state<'a>(
    wallets: &'a mut BTreeMap<Uuid, WalletState>,
    wallet_id: Uuid,
    position: i64,
    recorded_at: DateTime<Utc>,
    prior: &Prior,
) -> Result<&'a mut WalletState, FoldError> {
    match wallets.entry(wallet_id) {
        std::collections::btree_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
        std::collections::btree_map::Entry::Vacant(entry) => {
            let known = prior.wallets.get(&wallet_id).ok_or(FoldError::UnknownWallet { position, wallet_id })?;
            // Only the columns an update writes matter for a wallet opened before the batch.
            let row = WalletRow {
                wallet_id,
                owner_id: String::new(),
                asset: known.asset.clone(),
                kind: known.kind.clone(),
                status: known.status.clone(),
                balance: known.balance,
                held: known.held,
                overdraft_limit: None,
                version: 0,
                position,
                metadata: None,
                opened_at: recorded_at,
                updated_at: recorded_at,
            };
            Ok(entry.insert(WalletState { row, is_new: false }))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use tally_shared::asset::{AssetCode, DefineAsset, SystemWallets};
    use tally_shared::envelope::Change;
    use tally_shared::ledger::{decide, Command, World};
    use tally_shared::money::Scale;
    use tally_shared::transfer::{TransferId, TransferKind};
    use tally_shared::wallet::WalletId;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// Decides `commands` in order and numbers their events from position 1, as the store would.
    fn events_of(commands: &[Command]) -> Vec<DecodedEvent> {
        let mut world = World::default();
        let mut versions: HashMap<String, i64> = HashMap::new();
        let mut events = Vec::new();
        for command in commands {
            for Change { stream, event } in decide(&world, command).unwrap() {
                world.apply(&Change { stream: stream.clone(), event: event.clone() });
                let version = versions.entry(stream.to_string()).or_default();
                *version += 1;
                events.push(DecodedEvent {
                    position: events.len() as i64 + 1,
                    stream,
                    version: *version,
                    event,
                    idempotency_key: Some("key".to_owned()),
                    recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                    hash: [0; 32],
                });
            }
        }
        events
    }

    fn gold_and_a_topup() -> Vec<Command> {
        let system = SystemWallets { treasury: WalletId(id(1)), revenue: WalletId(id(2)), fees: WalletId(id(3)) };
        vec![
            Command::DefineAsset(DefineAsset {
                code: AssetCode::parse("GOLD").unwrap(),
                scale: Scale::new(2).unwrap(),
                cash_in_fee: None,
                system_wallets: system,
            }),
            Command::OpenWallet {
                wallet_id: WalletId(id(10)),
                owner_id: "alice".to_owned(),
                asset: AssetCode::parse("GOLD").unwrap(),
                overdraft_limit: None,
                metadata: serde_json::Value::Null,
            },
            Command::Move {
                transfer_id: TransferId(id(100)),
                kind: TransferKind::Topup,
                wallet_id: WalletId(id(10)),
                amount: Decimal::from_str("5.5").unwrap(),
                reference: Some("order-1".to_owned()),
                metadata: serde_json::Value::Null,
            },
        ]
    }

    #[test]
    fn negate_never_gives_negative_zero() {
        assert_eq!(negate(Decimal::from_str("0.00").unwrap()).to_string(), "0.00");
        assert_eq!(negate(Decimal::from_str("-3.10").unwrap()).to_string(), "3.10");
    }

    #[test]
    fn a_whole_topup_folds_into_rows_with_the_asset_scale() {
        let events = events_of(&gold_and_a_topup());

        let writes = fold(&events, &Prior::default()).unwrap();

        assert_eq!(writes.last_position, events.len() as i64);
        let asset = &writes.new_assets[0];
        assert_eq!((asset.supply.to_string(), asset.user_balance_total.to_string()), ("5.50".into(), "5.50".into()));
        assert_eq!(asset.wallet_count, 1);
        let transfer = &writes.new_transfers[0];
        assert_eq!(transfer.idempotency_key.as_deref(), Some("key"));
        assert_eq!(transfer.position, events.len() as i64, "the position of the command's last event");
        let balances: Vec<(Uuid, &str)> =
            transfer.balances.iter().map(|entry| (entry.wallet_id, entry.balance.as_str())).collect();
        assert_eq!(balances, [(id(1), "-5.50"), (id(10), "5.50")], "in the order the transfer touched them");
        assert_eq!(writes.history.len(), 2);
        assert!(writes.history.iter().all(|row| row.reference.as_deref() == Some("order-1")));
        let volumes: Vec<(&str, &str, String, i64)> = writes
            .volumes
            .iter()
            .map(|delta| (delta.asset.as_str(), delta.kind, delta.volume.to_string(), delta.transfer_count))
            .collect();
        assert_eq!(volumes, [("GOLD", "topup", "5.50".to_owned(), 1)]);
    }

    #[test]
    fn a_command_cut_by_the_batch_limit_continues_from_what_is_known() {
        let events = events_of(&gold_and_a_topup());
        let (first, second) = events.split_at(events.len() - 1);
        let whole = fold(&events, &Prior::default()).unwrap();
        let prior = Prior {
            wallets: HashMap::from([(
                id(10),
                PriorWallet {
                    asset: "GOLD".into(),
                    kind: "user".into(),
                    status: "active".into(),
                    balance: Decimal::from_str("0.00").unwrap(),
                    held: Decimal::from_str("0.00").unwrap(),
                },
            )]),
            transfers: HashMap::from([(
                id(100),
                PriorTransfer {
                    reference: Some("order-1".into()),
                    balances: fold(first, &Prior::default()).unwrap().new_transfers[0].balances.clone(),
                },
            )]),
            holds: HashMap::new(),
        };
        assert_eq!(needs(second), Needs { wallet_ids: vec![id(10)], transfer_ids: vec![id(100)], hold_ids: vec![] });

        let rest = fold(second, &prior).unwrap();

        assert_eq!(rest.history, whole.history[1..]);
        assert_eq!(rest.transfer_updates[0].balances, whole.new_transfers[0].balances);
        assert_eq!(rest.asset_updates[0].user_balance_delta.to_string(), "5.50");
        assert_eq!(rest.wallet_updates[0].balance.to_string(), "5.50");
    }

    #[test]
    fn a_posting_of_an_unknown_transfer_stops_the_fold() {
        let events = events_of(&gold_and_a_topup());
        let last = &events[events.len() - 1..];
        let prior = Prior {
            wallets: HashMap::from([(
                id(10),
                PriorWallet {
                    asset: "GOLD".into(),
                    kind: "user".into(),
                    status: "active".into(),
                    balance: Decimal::ZERO,
                    held: Decimal::ZERO,
                },
            )]),
            transfers: HashMap::new(),
            holds: HashMap::new(),
        };

        let error = fold(last, &prior).unwrap_err();

        assert_eq!(error, FoldError::UnknownTransfer { position: events.len() as i64, transfer_id: id(100) });
    }
}
