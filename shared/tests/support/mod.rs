//! Builders of commands and events for the given/when/then tests of the ledger Decider.
#![allow(dead_code)]

use std::str::FromStr;

use rust_decimal::Decimal;
use tally_shared::asset::{AssetCode, AssetDefinition, AssetEvent, DefineAsset, FeePolicy, SystemWallets};
use tally_shared::envelope::{Change, Event, StreamId};
use tally_shared::ledger::{decide, Command, Dependency, DomainError, StatusCommand, World};
use tally_shared::money::Scale;
use tally_shared::transfer::{
    Leg, LegRole, Transfer, TransferEvent, TransferId, TransferKind, TransferRecorded, TransferReversed,
};
use tally_shared::wallet::{Posting, StatusChange, Wallet, WalletEvent, WalletId, WalletKind, WalletOpened};
use uuid::Uuid;

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

pub fn wallet(n: u128) -> WalletId {
    WalletId(Uuid::from_u128(n))
}

pub fn transfer(n: u128) -> TransferId {
    TransferId(Uuid::from_u128(n))
}

/// An asset of the tests, with the ids of its system wallets.
#[derive(Debug, Clone)]
pub struct TestAsset {
    pub code: AssetCode,
    pub scale: Scale,
    pub treasury: WalletId,
    pub revenue: WalletId,
    pub fees: WalletId,
}

pub fn test_asset(code: &str, places: u32, ids_from: u128) -> TestAsset {
    TestAsset {
        code: AssetCode::parse(code).unwrap(),
        scale: Scale::new(places).unwrap(),
        treasury: wallet(ids_from + 1),
        revenue: wallet(ids_from + 2),
        fees: wallet(ids_from + 3),
    }
}

/// Scale 2, like a currency.
pub fn gold() -> TestAsset {
    test_asset("GOLD", 2, 0x1000)
}

/// Scale 0, like game credits.
pub fn gem() -> TestAsset {
    test_asset("GEM", 0, 0x2000)
}

pub fn policy(percent: &str, fixed: &str, min: Option<&str>, max: Option<&str>) -> FeePolicy {
    FeePolicy { percent: dec(percent), fixed: dec(fixed), min: min.map(dec), max: max.map(dec) }
}

impl TestAsset {
    pub fn system_wallets(&self) -> SystemWallets {
        SystemWallets { treasury: self.treasury, revenue: self.revenue, fees: self.fees }
    }

    pub fn define(&self, cash_in_fee: Option<FeePolicy>) -> Command {
        Command::DefineAsset(DefineAsset {
            code: self.code.clone(),
            scale: self.scale,
            cash_in_fee,
            system_wallets: self.system_wallets(),
        })
    }

    /// The events of defining this asset; `cash_in_fee` as stored (already at the asset's scale).
    pub fn defined(&self, cash_in_fee: Option<FeePolicy>) -> Vec<Change> {
        let mut changes = vec![Change {
            stream: StreamId::Asset(self.code.clone()),
            event: Event::Asset(AssetEvent::AssetDefined(AssetDefinition {
                code: self.code.clone(),
                scale: self.scale,
                cash_in_fee,
                system_wallets: self.system_wallets(),
            })),
        }];
        let zero = self.zero();
        for (id, kind, limit) in [
            (self.treasury, WalletKind::Treasury, None),
            (self.revenue, WalletKind::Revenue, Some(zero)),
            (self.fees, WalletKind::Fees, Some(zero)),
        ] {
            changes.push(wallet_change(
                id,
                WalletEvent::WalletOpened(WalletOpened {
                    wallet_id: id,
                    owner_id: format!("system:{}", self.code),
                    asset: self.code.clone(),
                    scale: self.scale,
                    kind,
                    overdraft_limit: limit,
                    metadata: serde_json::Value::Null,
                }),
            ));
        }
        changes
    }

    pub fn zero(&self) -> Decimal {
        Decimal::new(0, self.scale.places())
    }

    pub fn open(&self, wallet_id: WalletId, owner_id: &str, overdraft_limit: Option<&str>) -> Command {
        Command::OpenWallet {
            wallet_id,
            owner_id: owner_id.to_owned(),
            asset: self.code.clone(),
            overdraft_limit: overdraft_limit.map(dec),
            metadata: serde_json::Value::Null,
        }
    }

    /// A user wallet opened with `overdraft_limit` written at the asset's scale.
    pub fn opened(&self, wallet_id: WalletId, owner_id: &str, overdraft_limit: &str) -> Change {
        wallet_change(
            wallet_id,
            WalletEvent::WalletOpened(WalletOpened {
                wallet_id,
                owner_id: owner_id.to_owned(),
                asset: self.code.clone(),
                scale: self.scale,
                kind: WalletKind::User,
                overdraft_limit: Some(dec(overdraft_limit)),
                metadata: serde_json::Value::Null,
            }),
        )
    }

    /// The record of a transfer of this asset (not a reversal).
    pub fn recorded(
        &self,
        transfer_id: TransferId,
        kind: TransferKind,
        amount: &str,
        fee: &str,
        legs: Vec<Leg>,
    ) -> Change {
        recorded(TransferRecorded {
            transfer_id,
            kind,
            asset: self.code.clone(),
            scale: self.scale,
            amount: dec(amount),
            fee: dec(fee),
            legs,
            reference: None,
            metadata: serde_json::Value::Null,
            reverses: None,
            reason: None,
            hold_id: None,
        })
    }

    /// The record of a reversal of `original`.
    pub fn reversal_recorded(
        &self,
        reversal_id: TransferId,
        original: TransferId,
        amount: &str,
        fee: &str,
        legs: Vec<Leg>,
    ) -> Change {
        recorded(TransferRecorded {
            transfer_id: reversal_id,
            kind: TransferKind::Reversal,
            asset: self.code.clone(),
            scale: self.scale,
            amount: dec(amount),
            fee: dec(fee),
            legs,
            reference: None,
            metadata: serde_json::Value::Null,
            reverses: Some(original),
            reason: None,
            hold_id: None,
        })
    }

    /// A complete top-up: its record, the treasury's debit and the wallet's credit.
    pub fn topped_up(
        &self,
        transfer_id: TransferId,
        wallet_id: WalletId,
        amount: &str,
        treasury_after: &str,
        wallet_after: &str,
    ) -> Vec<Change> {
        let kind = TransferKind::Topup;
        vec![
            self.recorded(
                transfer_id,
                kind,
                amount,
                &self.format("0"),
                vec![principal(self.treasury, wallet_id, amount)],
            ),
            debited(self.treasury, transfer_id, kind, amount, treasury_after, wallet_id, 0),
            credited(wallet_id, transfer_id, kind, amount, wallet_after, self.treasury, 0),
        ]
    }

    fn format(&self, value: &str) -> String {
        self.scale.format(dec(value))
    }
}

pub fn recorded(recorded: TransferRecorded) -> Change {
    Change {
        stream: StreamId::Transfer(recorded.transfer_id),
        event: Event::Transfer(TransferEvent::TransferRecorded(recorded)),
    }
}

pub fn reversed(original: TransferId, reversal_id: TransferId, amount: &str, fee: &str) -> Change {
    Change {
        stream: StreamId::Transfer(original),
        event: Event::Transfer(TransferEvent::TransferReversed(TransferReversed {
            reversal_id,
            amount: dec(amount),
            fee: dec(fee),
        })),
    }
}

pub fn principal(from: WalletId, to: WalletId, amount: &str) -> Leg {
    Leg { from_wallet_id: from, to_wallet_id: to, amount: dec(amount), role: LegRole::Principal }
}

pub fn fee_leg(from: WalletId, to: WalletId, amount: &str) -> Leg {
    Leg { from_wallet_id: from, to_wallet_id: to, amount: dec(amount), role: LegRole::Fee }
}

pub fn wallet_change(wallet_id: WalletId, event: WalletEvent) -> Change {
    Change { stream: StreamId::Wallet(wallet_id), event: Event::Wallet(event) }
}

fn posting(
    transfer_id: TransferId,
    kind: TransferKind,
    amount: &str,
    balance_after: &str,
    counterparty: WalletId,
    leg: u16,
) -> Posting {
    Posting {
        transfer_id,
        kind,
        amount: dec(amount),
        balance_after: dec(balance_after),
        counterparty_wallet_id: counterparty,
        leg,
    }
}

pub fn debited(
    wallet_id: WalletId,
    transfer_id: TransferId,
    kind: TransferKind,
    amount: &str,
    balance_after: &str,
    counterparty: WalletId,
    leg: u16,
) -> Change {
    wallet_change(
        wallet_id,
        WalletEvent::WalletDebited(posting(transfer_id, kind, amount, balance_after, counterparty, leg)),
    )
}

pub fn credited(
    wallet_id: WalletId,
    transfer_id: TransferId,
    kind: TransferKind,
    amount: &str,
    balance_after: &str,
    counterparty: WalletId,
    leg: u16,
) -> Change {
    wallet_change(
        wallet_id,
        WalletEvent::WalletCredited(posting(transfer_id, kind, amount, balance_after, counterparty, leg)),
    )
}

pub fn frozen(wallet_id: WalletId) -> Change {
    wallet_change(wallet_id, WalletEvent::WalletFrozen(StatusChange { reason: None }))
}

pub fn unfrozen(wallet_id: WalletId) -> Change {
    wallet_change(wallet_id, WalletEvent::WalletUnfrozen(StatusChange { reason: None }))
}

pub fn closed(wallet_id: WalletId) -> Change {
    wallet_change(wallet_id, WalletEvent::WalletClosed(StatusChange { reason: None }))
}

// ---- Commands ----------------------------------------------------------------------------------

pub fn movement(kind: TransferKind, transfer_id: TransferId, wallet_id: WalletId, amount: &str) -> Command {
    Command::Move {
        transfer_id,
        kind,
        wallet_id,
        amount: dec(amount),
        reference: None,
        metadata: serde_json::Value::Null,
    }
}

pub fn transfer_between(
    transfer_id: TransferId,
    from: WalletId,
    to: WalletId,
    amount: &str,
    fee: Option<&str>,
) -> Command {
    Command::Transfer {
        transfer_id,
        from_wallet_id: from,
        to_wallet_id: to,
        amount: dec(amount),
        fee: fee.map(dec),
        reference: None,
        metadata: serde_json::Value::Null,
    }
}

pub fn reverse(reversal_id: TransferId, transfer_id: TransferId, amount: Option<&str>) -> Command {
    Command::Reverse { reversal_id, transfer_id, amount: amount.map(dec), reason: None }
}

pub fn change_status(wallet_id: WalletId, change: StatusCommand) -> Command {
    Command::ChangeStatus { wallet_id, change, reason: None }
}

// ---- Loading -----------------------------------------------------------------------------------

/// Copies one dependency from `store` into `world`, as the event store would load it:
/// a stream that does not exist is loaded as its default state, an owner without a wallet as `None`.
pub fn load(store: &World, world: &mut World, dependency: &Dependency) {
    match dependency {
        Dependency::Stream(StreamId::Asset(code)) => {
            world.assets.insert(code.clone(), store.assets.get(code).cloned().unwrap_or_default());
        }
        Dependency::Stream(StreamId::Wallet(id)) => {
            world.wallets.insert(*id, store.wallets.get(id).cloned().unwrap_or(Wallet::Unopened));
        }
        Dependency::Stream(StreamId::Transfer(id)) => {
            world.transfers.insert(*id, store.transfers.get(id).cloned().unwrap_or(Transfer::Unrecorded));
        }
        Dependency::Stream(StreamId::Hold(id)) => {
            world.holds.insert(*id, store.holds.get(id).cloned().unwrap_or_default());
        }
        Dependency::Owner(owner_id, asset) => {
            let key = (owner_id.clone(), asset.clone());
            world.owners.insert(key.clone(), store.owners.get(&key).cloned().flatten());
        }
    }
}

/// Rounds of `dependencies` a command may need at most: itself, a wallet's asset, the asset's system wallets.
pub const LOAD_ROUNDS_MAX: usize = 4;

/// Builds the world `command` is decided against from `store`, round by round, as command-service does.
pub fn load_for(store: &World, command: &Command) -> World {
    let mut world = World::default();
    for _ in 0..LOAD_ROUNDS_MAX {
        let needed = tally_shared::ledger::dependencies(&world, command);
        if needed.is_empty() {
            return world;
        }
        for dependency in &needed {
            load(store, &mut world, dependency);
        }
    }
    assert!(
        tally_shared::ledger::dependencies(&world, command).is_empty(),
        "dependencies of {command:?} still not satisfied after {LOAD_ROUNDS_MAX} rounds"
    );
    world
}

/// Each change as the store keeps it: stream id, type and JSON text (which shows every decimal's scale).
pub fn stored(changes: &[Change]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .map(|change| {
            let (event_type, data) = change.event.to_stored();
            (change.stream.to_string(), event_type, serde_json::to_string(&data).unwrap())
        })
        .collect()
}

// ---- Given/when/then ---------------------------------------------------------------------------

/// The world `given` folds to.
pub fn world_of(given: &[Change]) -> World {
    let mut world = World::default();
    for change in given {
        world.apply(change);
    }
    world
}

/// Decides `when` against the world of `given`, both as it is (absent streams do not exist) and as
/// command-service would load it through `dependencies`, and compares with `then`, decimals' scales included.
#[track_caller]
pub fn check(given: &[Change], when: Command, then: Result<Vec<Change>, DomainError>) {
    let mut store = world_of(given);
    let loaded = load_for(&store, &when);
    let decided = decide(&store, &when);
    assert_eq!(decided, then);
    assert_eq!(decide(&loaded, &when), decided, "deciding against what dependencies() loaded differs");
    if let (Ok(decided), Ok(expected)) = (&decided, &then) {
        assert_eq!(stored(decided), stored(expected));
        for change in decided {
            store.apply(change);
        }
    }
}

/// The changes of `commands`, each decided against the world the previous ones made.
pub fn history(given: &[Change], commands: &[Command]) -> Vec<Change> {
    let mut changes = given.to_vec();
    for command in commands {
        let decided = decide(&world_of(&changes), command).unwrap_or_else(|error| panic!("{command:?}: {error}"));
        changes.extend(decided);
    }
    changes
}
