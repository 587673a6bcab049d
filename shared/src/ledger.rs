//! The ledger Decider: one [`Command`] decided against the [`World`] of the streams it touches,
//! giving the [`Change`]s to append (each an event on one stream), all or nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::asset::{self, Asset, AssetCode, AssetDefinition, DefineAsset};
use crate::envelope::{Change, Event, StreamId};
pub use crate::error::DomainError;
use crate::error::Rule;
use crate::hold::{self, Expiry, Hold, HoldCommand, HoldEvent, HoldId, HoldPlaced, PlacedHold, Release};
use crate::money::{exact_add, exact_sub, Amount};
use crate::transfer::{
    self, Leg, LegRole, Transfer, TransferCommand, TransferId, TransferKind, TransferRecorded, TransferReversed,
};
use crate::wallet::{self, OpenWallet, Wallet, WalletCommand, WalletId, WalletKind, WalletOpened};

/// What may happen to a wallet's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCommand {
    Freeze,
    Unfreeze,
    Close,
}

/// An imperative to the ledger. Ids of what it creates are chosen by the caller, so that [`decide`] stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    DefineAsset(DefineAsset),
    OpenWallet {
        wallet_id: WalletId,
        owner_id: String,
        asset: AssetCode,
        overdraft_limit: Option<Decimal>,
        metadata: serde_json::Value,
    },
    /// `topup`, `bonus`, `spend`, `withdrawal` or `cash_in` on one user wallet.
    Move {
        transfer_id: TransferId,
        kind: TransferKind,
        wallet_id: WalletId,
        amount: Decimal,
        reference: Option<String>,
        metadata: serde_json::Value,
    },
    Transfer {
        transfer_id: TransferId,
        from_wallet_id: WalletId,
        to_wallet_id: WalletId,
        amount: Decimal,
        fee: Option<Decimal>,
        reference: Option<String>,
        metadata: serde_json::Value,
    },
    Reverse {
        reversal_id: TransferId,
        transfer_id: TransferId,
        amount: Option<Decimal>,
        reason: Option<String>,
    },
    ChangeStatus {
        wallet_id: WalletId,
        change: StatusCommand,
        reason: Option<String>,
    },
    /// Reserves `amount` of a user wallet until `expiry`. `at` is the time the command is decided at.
    PlaceHold {
        hold_id: HoldId,
        wallet_id: WalletId,
        amount: Decimal,
        expiry: Expiry,
        reference: Option<String>,
        metadata: serde_json::Value,
        at: DateTime<Utc>,
    },
    /// Moves `amount` (default: what remains) of a hold to `to_wallet_id` (default: the asset's revenue, as a
    /// `spend`; a user wallet makes it a `transfer`); a final capture releases what remains after it.
    CaptureHold {
        hold_id: HoldId,
        transfer_id: TransferId,
        amount: Option<Decimal>,
        to_wallet_id: Option<WalletId>,
        is_final: bool,
        reference: Option<String>,
        metadata: serde_json::Value,
        at: DateTime<Utc>,
    },
    VoidHold {
        hold_id: HoldId,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    /// The expirer's: releases what remains of an active hold whose `expires_at` is at or before `at`.
    /// Decides nothing for a hold that is resolved or not due.
    ExpireHold {
        hold_id: HoldId,
        at: DateTime<Utc>,
    },
}

impl Command {
    /// The wallet a wallet-scoped command acts on (what `If-Match` refers to).
    pub fn subject_wallet(&self) -> Option<WalletId> {
        match self {
            Command::Move { wallet_id, .. } | Command::ChangeStatus { wallet_id, .. } => Some(*wallet_id),
            Command::Transfer { from_wallet_id, .. } => Some(*from_wallet_id),
            Command::OpenWallet { wallet_id, .. } | Command::PlaceHold { wallet_id, .. } => Some(*wallet_id),
            Command::DefineAsset(_)
            | Command::Reverse { .. }
            | Command::CaptureHold { .. }
            | Command::VoidHold { .. }
            | Command::ExpireHold { .. } => None,
        }
    }

    /// This command decided at `at`, for the commands whose outcome depends on time (holds); `None` for the rest.
    /// The service stamps each with the time of the batch it is decided in, which is also its events'
    /// `recorded_at`.
    pub fn stamped(&self, time: DateTime<Utc>) -> Option<Command> {
        let mut command = self.clone();
        match &mut command {
            Command::PlaceHold { at, .. }
            | Command::CaptureHold { at, .. }
            | Command::VoidHold { at, .. }
            | Command::ExpireHold { at, .. } => *at = time,
            _ => return None,
        }
        Some(command)
    }
}

/// Something a command must know before it can be decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dependency {
    Stream(StreamId),
    /// The user wallet of `(owner_id, asset)`, if any.
    Owner(String, AssetCode),
}

/// The states of the streams commands are decided against. A stream absent from the world does not exist:
/// the caller loads every [`dependencies`] entry first, recording missing streams as their default state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct World {
    pub assets: HashMap<AssetCode, Asset>,
    pub wallets: HashMap<WalletId, Wallet>,
    pub transfers: HashMap<TransferId, Transfer>,
    pub holds: HashMap<HoldId, Hold>,
    /// User wallets by `(owner_id, asset)`; `None` means known to have none.
    pub owners: HashMap<(String, AssetCode), Option<WalletId>>,
}

impl World {
    pub fn knows(&self, dependency: &Dependency) -> bool {
        match dependency {
            Dependency::Stream(StreamId::Asset(code)) => self.assets.contains_key(code),
            Dependency::Stream(StreamId::Wallet(id)) => self.wallets.contains_key(id),
            Dependency::Stream(StreamId::Transfer(id)) => self.transfers.contains_key(id),
            Dependency::Stream(StreamId::Hold(id)) => self.holds.contains_key(id),
            Dependency::Owner(owner_id, asset) => self.owners.contains_key(&(owner_id.clone(), asset.clone())),
        }
    }

    fn wallet(&self, wallet_id: WalletId) -> Result<&OpenWallet, DomainError> {
        match self.wallets.get(&wallet_id) {
            Some(Wallet::Open(open)) => Ok(open),
            _ => Err(DomainError::WalletNotFound { wallet_id: Some(wallet_id) }),
        }
    }

    fn user_wallet(&self, wallet_id: WalletId, field: &str) -> Result<&OpenWallet, DomainError> {
        let open = self.wallet(wallet_id)?;
        if open.kind != WalletKind::User {
            return Err(DomainError::invalid(field, Rule::SystemWalletMove));
        }
        Ok(open)
    }

    fn asset(&self, code: &AssetCode) -> Result<&AssetDefinition, DomainError> {
        match self.assets.get(code) {
            Some(Asset::Defined(definition)) => Ok(definition),
            _ => Err(DomainError::AssetNotFound { code: code.to_string() }),
        }
    }

    fn transfer(&self, transfer_id: TransferId) -> Result<&transfer::RecordedTransfer, DomainError> {
        match self.transfers.get(&transfer_id) {
            Some(Transfer::Recorded(recorded)) => Ok(recorded),
            _ => Err(DomainError::TransferNotFound { transfer_id: Some(transfer_id) }),
        }
    }

    fn hold(&self, hold_id: HoldId) -> Result<&PlacedHold, DomainError> {
        match self.holds.get(&hold_id) {
            Some(Hold::Placed(placed)) => Ok(placed),
            _ => Err(DomainError::HoldNotFound { hold_id }),
        }
    }

    /// Evolves the stream a change belongs to.
    pub fn apply(&mut self, change: &Change) {
        match (&change.stream, &change.event) {
            (StreamId::Asset(code), Event::Asset(event)) => {
                let state = self.assets.remove(code).unwrap_or_default();
                self.assets.insert(code.clone(), asset::evolve(state, event));
            }
            (StreamId::Wallet(id), Event::Wallet(event)) => {
                let state = self.wallets.remove(id).unwrap_or_default();
                if let wallet::WalletEvent::WalletOpened(opened) = event {
                    if opened.kind == WalletKind::User {
                        self.owners.insert((opened.owner_id.clone(), opened.asset.clone()), Some(opened.wallet_id));
                    }
                }
                self.wallets.insert(*id, wallet::evolve(state, event));
            }
            (StreamId::Transfer(id), Event::Transfer(event)) => {
                let state = self.transfers.remove(id).unwrap_or_default();
                self.transfers.insert(*id, transfer::evolve(state, event));
            }
            (StreamId::Hold(id), Event::Hold(event)) => {
                let state = self.holds.remove(id).unwrap_or_default();
                self.holds.insert(*id, hold::evolve(state, event));
            }
            (stream, event) => panic!("event {event:?} does not belong on stream {stream}"),
        }
    }
}

/// What `command` needs that `world` does not know yet. Call repeatedly, loading what it names,
/// until it names nothing: each answer can only be computed from what the previous one loaded
/// (a wallet names its asset, an asset its system wallets, a transfer its wallets).
pub fn dependencies(world: &World, command: &Command) -> Vec<Dependency> {
    let mut needed = Vec::new();
    let need_wallet_and_asset = |wallet_id: WalletId, needed: &mut Vec<Dependency>| {
        needed.push(Dependency::Stream(StreamId::Wallet(wallet_id)));
        if let Some(Wallet::Open(open)) = world.wallets.get(&wallet_id) {
            needed.push(Dependency::Stream(StreamId::Asset(open.asset.clone())));
            if let Some(Asset::Defined(definition)) = world.assets.get(&open.asset) {
                let system = definition.system_wallets;
                needed.extend(
                    [system.treasury, system.revenue, system.fees].map(|id| Dependency::Stream(StreamId::Wallet(id))),
                );
            }
        }
    };
    match command {
        Command::DefineAsset(define) => {
            needed.push(Dependency::Stream(StreamId::Asset(define.code.clone())));
            let system = define.system_wallets;
            needed.extend(
                [system.treasury, system.revenue, system.fees].map(|id| Dependency::Stream(StreamId::Wallet(id))),
            );
        }
        Command::OpenWallet { wallet_id, owner_id, asset, .. } => {
            needed.push(Dependency::Stream(StreamId::Wallet(*wallet_id)));
            needed.push(Dependency::Stream(StreamId::Asset(asset.clone())));
            needed.push(Dependency::Owner(owner_id.clone(), asset.clone()));
        }
        Command::Move { transfer_id, wallet_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Transfer(*transfer_id)));
            need_wallet_and_asset(*wallet_id, &mut needed);
        }
        Command::Transfer { transfer_id, from_wallet_id, to_wallet_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Transfer(*transfer_id)));
            need_wallet_and_asset(*from_wallet_id, &mut needed);
            needed.push(Dependency::Stream(StreamId::Wallet(*to_wallet_id)));
        }
        Command::Reverse { reversal_id, transfer_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Transfer(*reversal_id)));
            needed.push(Dependency::Stream(StreamId::Transfer(*transfer_id)));
            if let Some(Transfer::Recorded(recorded)) = world.transfers.get(transfer_id) {
                for leg in &recorded.legs {
                    needed.push(Dependency::Stream(StreamId::Wallet(leg.from_wallet_id)));
                    needed.push(Dependency::Stream(StreamId::Wallet(leg.to_wallet_id)));
                }
            }
        }
        Command::ChangeStatus { wallet_id, .. } => needed.push(Dependency::Stream(StreamId::Wallet(*wallet_id))),
        Command::PlaceHold { hold_id, wallet_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Hold(*hold_id)));
            needed.push(Dependency::Stream(StreamId::Wallet(*wallet_id)));
        }
        Command::CaptureHold { hold_id, transfer_id, to_wallet_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Hold(*hold_id)));
            needed.push(Dependency::Stream(StreamId::Transfer(*transfer_id)));
            if let Some(Hold::Placed(placed)) = world.holds.get(hold_id) {
                need_wallet_and_asset(placed.wallet_id, &mut needed);
            }
            needed.extend(to_wallet_id.map(|id| Dependency::Stream(StreamId::Wallet(id))));
        }
        Command::VoidHold { hold_id, .. } | Command::ExpireHold { hold_id, .. } => {
            needed.push(Dependency::Stream(StreamId::Hold(*hold_id)));
            if let Some(Hold::Placed(placed)) = world.holds.get(hold_id) {
                needed.push(Dependency::Stream(StreamId::Wallet(placed.wallet_id)));
            }
        }
    }
    // A wallet may appear in several legs: name each dependency once, in first-seen order.
    let mut named = HashSet::new();
    needed.retain(|dependency| !world.knows(dependency) && named.insert(dependency.clone()));
    needed
}

/// Decides `command` against `world`: the changes to append, in order, or why not.
pub fn decide(world: &World, command: &Command) -> Result<Vec<Change>, DomainError> {
    match command {
        Command::DefineAsset(define) => define_asset(world, define),
        Command::OpenWallet { wallet_id, owner_id, asset, overdraft_limit, metadata } => {
            open_wallet(world, *wallet_id, owner_id, asset, *overdraft_limit, metadata)
        }
        Command::Move { transfer_id, kind, wallet_id, amount, reference, metadata } => {
            let recorded = movement(world, *transfer_id, *kind, *wallet_id, *amount)?;
            record(world, TransferRecorded { reference: reference.clone(), metadata: metadata.clone(), ..recorded })
        }
        Command::Transfer { transfer_id, from_wallet_id, to_wallet_id, amount, fee, reference, metadata } => {
            let recorded = transfer_between(world, *transfer_id, *from_wallet_id, *to_wallet_id, *amount, *fee)?;
            record(world, TransferRecorded { reference: reference.clone(), metadata: metadata.clone(), ..recorded })
        }
        Command::Reverse { reversal_id, transfer_id, amount, reason } => {
            reverse(world, *reversal_id, *transfer_id, *amount, reason)
        }
        Command::ChangeStatus { wallet_id, change, reason } => change_status(world, *wallet_id, *change, reason),
        Command::PlaceHold { .. } => place_hold(world, command),
        Command::CaptureHold { .. } => capture_hold(world, command),
        Command::VoidHold { hold_id, reason, at } => {
            release_hold(world, *hold_id, Release::Void { reason: reason.clone() }, *at)
        }
        Command::ExpireHold { hold_id, at } => release_hold(world, *hold_id, Release::Expire, *at),
    }
}

/// The transfer of a `topup`, `bonus`, `spend`, `withdrawal` or `cash_in` on one user wallet.
fn movement(
    world: &World,
    transfer_id: TransferId,
    kind: TransferKind,
    wallet_id: WalletId,
    amount: Decimal,
) -> Result<TransferRecorded, DomainError> {
    let wallet = world.user_wallet(wallet_id, "wallet_id")?;
    let asset = world.asset(&wallet.asset)?;
    let amount = Amount::parse(amount, asset.scale).map_err(DomainError::invalid_amount("amount"))?;
    let system = asset.system_wallets;
    let principal =
        |from, to| Leg { from_wallet_id: from, to_wallet_id: to, amount: amount.value(), role: LegRole::Principal };
    let mut fee = wallet::zero_at(asset.scale);
    let legs = match kind {
        TransferKind::Topup | TransferKind::Bonus => vec![principal(system.treasury, wallet_id)],
        TransferKind::Spend => vec![principal(wallet_id, system.revenue)],
        TransferKind::Withdrawal => vec![principal(wallet_id, system.treasury)],
        TransferKind::CashIn => {
            let mut legs = vec![principal(system.treasury, wallet_id)];
            if let Some(policy) = &asset.cash_in_fee {
                fee = policy.fee(amount.value(), asset.scale).map_err(DomainError::invalid_amount("amount"))?;
            }
            if !fee.is_zero() {
                legs.push(Leg {
                    from_wallet_id: wallet_id,
                    to_wallet_id: system.fees,
                    amount: fee,
                    role: LegRole::Fee,
                });
            }
            legs
        }
        TransferKind::Transfer | TransferKind::Reversal => {
            return Err(DomainError::invalid("kind", Rule::KindHasOwnCommand))
        }
    };
    Ok(TransferRecorded::movement(transfer_id, kind, asset, amount.value(), fee, legs))
}

/// The transfer of `amount` (and an optional fee to the fees wallet) between two user wallets of one asset.
fn transfer_between(
    world: &World,
    transfer_id: TransferId,
    from_wallet_id: WalletId,
    to_wallet_id: WalletId,
    amount: Decimal,
    fee: Option<Decimal>,
) -> Result<TransferRecorded, DomainError> {
    if from_wallet_id == to_wallet_id {
        return Err(DomainError::SameWallet);
    }
    let from = world.user_wallet(from_wallet_id, "from_wallet_id")?;
    let to = world.user_wallet(to_wallet_id, "to_wallet_id")?;
    if from.asset != to.asset {
        return Err(DomainError::AssetMismatch { from_asset: from.asset.clone(), to_asset: to.asset.clone() });
    }
    let asset = world.asset(&from.asset)?;
    let amount = Amount::parse(amount, asset.scale).map_err(DomainError::invalid_amount("amount"))?;
    let mut legs = vec![Leg { from_wallet_id, to_wallet_id, amount: amount.value(), role: LegRole::Principal }];
    let fee = match fee {
        Some(fee) => crate::money::parse_non_negative(fee, asset.scale).map_err(DomainError::invalid_amount("fee"))?,
        None => wallet::zero_at(asset.scale),
    };
    if !fee.is_zero() {
        legs.push(Leg { from_wallet_id, to_wallet_id: asset.system_wallets.fees, amount: fee, role: LegRole::Fee });
    }
    Ok(TransferRecorded::movement(transfer_id, TransferKind::Transfer, asset, amount.value(), fee, legs))
}

fn reverse(
    world: &World,
    reversal_id: TransferId,
    transfer_id: TransferId,
    amount: Option<Decimal>,
    reason: &Option<String>,
) -> Result<Vec<Change>, DomainError> {
    let original = world.transfer(transfer_id)?;
    let amount = amount
        .map(|amount| Amount::parse(amount, original.scale).map_err(DomainError::invalid_amount("amount")))
        .transpose()?
        .map(Amount::value);
    let (amount, fee, legs) = original.plan_reversal(amount)?;
    let reversed = TransferReversed { reversal_id, amount, fee };
    let state = world.transfers.get(&transfer_id).cloned().unwrap_or_default();
    let mut changes: Vec<Change> = transfer::decide(&state, &TransferCommand::Reverse(reversed))?
        .into_iter()
        .map(|event| Change { stream: StreamId::Transfer(transfer_id), event: Event::Transfer(event) })
        .collect();
    let recorded = TransferRecorded {
        transfer_id: reversal_id,
        kind: TransferKind::Reversal,
        asset: original.asset.clone(),
        scale: original.scale,
        amount,
        fee,
        legs,
        reference: None,
        metadata: serde_json::Value::Null,
        reverses: Some(transfer_id),
        reason: reason.clone(),
        hold_id: None,
    };
    let mut recorded_changes = record(world, recorded)?;
    // The reversal's own record comes first, then the mark on the original, then the legs.
    let legs = recorded_changes.split_off(1);
    recorded_changes.append(&mut changes);
    recorded_changes.extend(legs);
    Ok(recorded_changes)
}

fn change_status(
    world: &World,
    wallet_id: WalletId,
    change: StatusCommand,
    reason: &Option<String>,
) -> Result<Vec<Change>, DomainError> {
    let state = world.wallets.get(&wallet_id).cloned().unwrap_or_default();
    if matches!(state, Wallet::Unopened) {
        return Err(DomainError::WalletNotFound { wallet_id: Some(wallet_id) });
    }
    let reason = reason.clone();
    let command = match change {
        StatusCommand::Freeze => WalletCommand::Freeze { reason },
        StatusCommand::Unfreeze => WalletCommand::Unfreeze { reason },
        StatusCommand::Close => WalletCommand::Close { reason },
    };
    Ok(wallet_changes(wallet_id, wallet::decide(&state, &command)?))
}

/// A new hold: its own stream's first event, and the wallet's `held` grown by its amount, if what is
/// available (plus the overdraft limit) covers it.
fn place_hold(world: &World, command: &Command) -> Result<Vec<Change>, DomainError> {
    let Command::PlaceHold { hold_id, wallet_id, amount, expiry, reference, metadata, at } = command else {
        unreachable!("called for PlaceHold")
    };
    let wallet = world.user_wallet(*wallet_id, "wallet_id")?;
    let amount = Amount::parse(*amount, wallet.scale).map_err(DomainError::invalid_amount("amount"))?;
    let expires_at = expiry.resolve(*at)?;
    let placed = HoldPlaced {
        hold_id: *hold_id,
        wallet_id: *wallet_id,
        asset: wallet.asset.clone(),
        scale: wallet.scale,
        amount: amount.value(),
        expires_at,
        reference: reference.clone(),
        metadata: metadata.clone(),
        placed_at: *at,
    };
    let state = world.holds.get(hold_id).cloned().unwrap_or_default();
    let mut changes = hold_changes(*hold_id, hold::decide(&state, *hold_id, &HoldCommand::Place(placed))?);
    let reserve = WalletCommand::Hold { hold_id: *hold_id, amount };
    changes.extend(wallet_changes(*wallet_id, wallet::decide(&world.wallets[wallet_id], &reserve)?));
    Ok(changes)
}

/// A capture: the transfer's record, the hold's capture, the wallet's `held` less what it captures (and, if
/// final, releases), then the transfer's leg. The leg's debit draws on what the settlement just freed, so a
/// capture never depends on what else is available.
fn capture_hold(world: &World, command: &Command) -> Result<Vec<Change>, DomainError> {
    let Command::CaptureHold { hold_id, transfer_id, amount, to_wallet_id, is_final, reference, metadata, at } =
        command
    else {
        unreachable!("called for CaptureHold")
    };
    let placed = world.hold(*hold_id)?;
    let capture = HoldCommand::Capture { transfer_id: *transfer_id, amount: *amount, is_final: *is_final, at: *at };
    let events = hold::decide(&world.holds[hold_id], *hold_id, &capture)?;
    let Some(HoldEvent::HoldCaptured(captured)) = events.first() else { unreachable!("a capture captures") };
    let (captured_amount, released) = (captured.amount, captured.released);
    let from = world.user_wallet(placed.wallet_id, "hold_id")?;
    let asset = world.asset(&from.asset)?;
    let (kind, to) = match to_wallet_id {
        None => (TransferKind::Spend, asset.system_wallets.revenue),
        Some(to_wallet_id) if *to_wallet_id == placed.wallet_id => return Err(DomainError::SameWallet),
        Some(to_wallet_id) => {
            let to = world.user_wallet(*to_wallet_id, "to_wallet_id")?;
            if to.asset != from.asset {
                return Err(DomainError::AssetMismatch { from_asset: from.asset.clone(), to_asset: to.asset.clone() });
            }
            (TransferKind::Transfer, *to_wallet_id)
        }
    };
    let settle = WalletCommand::Settle { hold_id: *hold_id, captured: captured_amount, released, resolved: *is_final };
    let settled = wallet_changes(placed.wallet_id, wallet::decide(&world.wallets[&placed.wallet_id], &settle)?);
    let after_settling = settled.iter().fold(world.wallets[&placed.wallet_id].clone(), |state, change| {
        let Event::Wallet(event) = &change.event else { unreachable!("settlements are wallet events") };
        wallet::evolve(state, event)
    });
    let touched = HashMap::from([(placed.wallet_id, after_settling)]);
    let leg =
        Leg { from_wallet_id: placed.wallet_id, to_wallet_id: to, amount: captured_amount, role: LegRole::Principal };
    let fee = wallet::zero_at(asset.scale);
    let recorded = TransferRecorded {
        reference: reference.clone(),
        metadata: metadata.clone(),
        hold_id: Some(*hold_id),
        ..TransferRecorded::movement(*transfer_id, kind, asset, captured_amount, fee, vec![leg])
    };
    let mut changes = record_from(world, recorded, touched)?;
    // The transfer's record first (projections meet the transfer before its postings), then the hold's
    // capture and the settlement, then the leg.
    let legs = changes.split_off(1);
    changes.extend(hold_changes(*hold_id, events));
    changes.extend(settled);
    changes.extend(legs);
    Ok(changes)
}

/// A void or an expiry: what remains of the hold back to the wallet's available.
fn release_hold(
    world: &World,
    hold_id: HoldId,
    release: Release,
    at: DateTime<Utc>,
) -> Result<Vec<Change>, DomainError> {
    let placed = world.hold(hold_id)?;
    let events = hold::decide(&world.holds[&hold_id], hold_id, &HoldCommand::Release { release, at })?;
    let Some((captured, released, resolved)) = events.first().and_then(HoldEvent::settles) else {
        return Ok(Vec::new());
    };
    let settle = WalletCommand::Settle { hold_id, captured, released, resolved };
    let wallet = world.wallets.get(&placed.wallet_id).cloned().unwrap_or_default();
    let mut changes = hold_changes(hold_id, events);
    changes.extend(wallet_changes(placed.wallet_id, wallet::decide(&wallet, &settle)?));
    Ok(changes)
}

fn define_asset(world: &World, define: &DefineAsset) -> Result<Vec<Change>, DomainError> {
    let state = world.assets.get(&define.code).cloned().unwrap_or_default();
    let events = asset::decide(&state, define)?;
    let mut changes: Vec<Change> = events
        .into_iter()
        .map(|event| Change { stream: StreamId::Asset(define.code.clone()), event: Event::Asset(event) })
        .collect();
    let system = define.system_wallets;
    for (wallet_id, kind) in [
        (system.treasury, WalletKind::Treasury),
        (system.revenue, WalletKind::Revenue),
        (system.fees, WalletKind::Fees),
    ] {
        let opened = WalletOpened {
            wallet_id,
            owner_id: format!("system:{}", define.code),
            asset: define.code.clone(),
            scale: define.scale,
            kind,
            overdraft_limit: (kind != WalletKind::Treasury).then(|| wallet::zero_at(define.scale)),
            metadata: serde_json::Value::Null,
        };
        let state = world.wallets.get(&wallet_id).cloned().unwrap_or_default();
        changes.extend(wallet_changes(wallet_id, wallet::decide(&state, &WalletCommand::Open(opened))?));
    }
    Ok(changes)
}

fn open_wallet(
    world: &World,
    wallet_id: WalletId,
    owner_id: &str,
    asset: &AssetCode,
    overdraft_limit: Option<Decimal>,
    metadata: &serde_json::Value,
) -> Result<Vec<Change>, DomainError> {
    crate::api::check_text("owner_id", owner_id, wallet::OWNER_ID_LENGTH_MAX)?;
    let definition = world.asset(asset)?;
    if let Some(Some(existing)) = world.owners.get(&(owner_id.to_owned(), asset.clone())) {
        return Err(DomainError::WalletExists { wallet_id: *existing });
    }
    let overdraft_limit = match overdraft_limit {
        Some(limit) => crate::money::parse_non_negative(limit, definition.scale)
            .map_err(DomainError::invalid_amount("overdraft_limit"))?,
        None => wallet::zero_at(definition.scale),
    };
    let opened = WalletOpened {
        wallet_id,
        owner_id: owner_id.to_owned(),
        asset: asset.clone(),
        scale: definition.scale,
        kind: WalletKind::User,
        overdraft_limit: Some(overdraft_limit),
        metadata: metadata.clone(),
    };
    let state = world.wallets.get(&wallet_id).cloned().unwrap_or_default();
    Ok(wallet_changes(wallet_id, wallet::decide(&state, &WalletCommand::Open(opened))?))
}

/// Records a transfer on its own stream, then applies its legs in order, each a debit and a credit,
/// so that every intermediate balance respects its wallet's limit.
fn record(world: &World, recorded: TransferRecorded) -> Result<Vec<Change>, DomainError> {
    record_from(world, recorded, HashMap::new())
}

/// [`record`], with the wallets in `touched` as the command has left them already.
fn record_from(
    world: &World,
    recorded: TransferRecorded,
    mut touched: HashMap<WalletId, Wallet>,
) -> Result<Vec<Change>, DomainError> {
    let transfer_id = recorded.transfer_id;
    let state = world.transfers.get(&transfer_id).cloned().unwrap_or_default();
    let legs = recorded.legs.clone();
    let kind = recorded.kind;
    let recorded_hold = recorded.hold_id;
    let mut changes: Vec<Change> = transfer::decide(&state, &TransferCommand::Record(recorded))?
        .into_iter()
        .map(|event| Change { stream: StreamId::Transfer(transfer_id), event: Event::Transfer(event) })
        .collect();
    for (index, leg) in legs.iter().enumerate() {
        let leg_index = u16::try_from(index).expect("a transfer has a handful of legs");
        let amount = Amount::parse(leg.amount, world.wallet(leg.from_wallet_id)?.scale)
            .map_err(DomainError::invalid_amount("amount"))?;
        let debit = WalletCommand::Debit {
            transfer_id,
            kind,
            amount,
            counterparty_wallet_id: leg.to_wallet_id,
            leg: leg_index,
        };
        let credit = WalletCommand::Credit {
            transfer_id,
            kind,
            amount,
            counterparty_wallet_id: leg.from_wallet_id,
            leg: leg_index,
        };
        for (wallet_id, command) in [(leg.from_wallet_id, debit), (leg.to_wallet_id, credit)] {
            world.wallet(wallet_id)?;
            let state = touched.remove(&wallet_id).unwrap_or_else(|| world.wallets[&wallet_id].clone());
            let events = match wallet::decide(&state, &command) {
                Err(DomainError::InsufficientFunds { wallet_id, .. }) if recorded_hold.is_none() => {
                    return Err(insufficient_funds(world, wallet_id, &legs))
                }
                decided => decided?,
            };
            let next = events.iter().fold(state, wallet::evolve);
            touched.insert(wallet_id, next);
            changes.extend(wallet_changes(wallet_id, events));
        }
    }
    Ok(changes)
}

/// A transfer may take from one wallet in several legs (an amount and its fee) and give to it in others
/// (a reversal returns a fee before it takes back an amount). The refusal names what the wallet had
/// available before the transfer and all that the transfer would take from it, not the one leg that crossed
/// the limit: "2.00 available, 3.00 requested" for a transfer of 8.00 with a fee of 3.00 from 10.00 misleads.
fn insufficient_funds(world: &World, wallet_id: WalletId, legs: &[Leg]) -> DomainError {
    let open = match world.wallet(wallet_id) {
        Ok(open) => open,
        Err(error) => return error,
    };
    let taken = legs.iter().try_fold(wallet::zero_at(open.scale), |taken, leg| {
        if leg.from_wallet_id == wallet_id {
            exact_add(taken, leg.amount)
        } else if leg.to_wallet_id == wallet_id {
            exact_sub(taken, leg.amount)
        } else {
            Some(taken)
        }
    });
    let available = open.spendable();
    match (available, taken) {
        (Some(available), Some(taken)) => DomainError::InsufficientFunds {
            wallet_id,
            available: open.scale.format(available),
            requested: open.scale.format(taken),
        },
        _ => DomainError::AmountOutOfRange,
    }
}

fn hold_changes(hold_id: HoldId, events: Vec<HoldEvent>) -> Vec<Change> {
    events.into_iter().map(|event| Change { stream: StreamId::Hold(hold_id), event: Event::Hold(event) }).collect()
}

fn wallet_changes(wallet_id: WalletId, events: Vec<wallet::WalletEvent>) -> Vec<Change> {
    events
        .into_iter()
        .map(|event| Change { stream: StreamId::Wallet(wallet_id), event: Event::Wallet(event) })
        .collect()
}
