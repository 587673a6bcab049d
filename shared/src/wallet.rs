//! Wallets: state, events and the wallet Decider (open, debit, credit, hold, settle a hold, freeze, unfreeze,
//! close).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Rule};
pub use crate::ids::WalletId;
use crate::ids::{AssetCode, HoldId, TransferId};
use crate::money::{exact_add, exact_sub, Amount, Scale};
use crate::transfer::TransferKind;

/// Length of an owner id at most, in characters.
pub const OWNER_ID_LENGTH_MAX: usize = 128;

/// Who a wallet belongs to: a user of the client application, or the asset itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletKind {
    User,
    Treasury,
    Revenue,
    Fees,
}

impl WalletKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletKind::User => "user",
            WalletKind::Treasury => "treasury",
            WalletKind::Revenue => "revenue",
            WalletKind::Fees => "fees",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    Active,
    /// No debits and no credits until unfrozen.
    Frozen,
    /// Terminal; only reached with a zero balance.
    Closed,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Active => "active",
            WalletStatus::Frozen => "frozen",
            WalletStatus::Closed => "closed",
        }
    }
}

/// A wallet stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Wallet {
    #[default]
    Unopened,
    Open(OpenWallet),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWallet {
    pub wallet_id: WalletId,
    pub owner_id: String,
    pub asset: AssetCode,
    pub scale: Scale,
    pub kind: WalletKind,
    pub status: WalletStatus,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: Decimal,
    /// How far below zero the balance may go; `None` is unlimited (the treasury).
    #[serde(with = "crate::money::optional_decimal")]
    pub overdraft_limit: Option<Decimal>,
    /// What the wallet's active holds still reserve. Absent from snapshots written before holds: zero.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub held: Decimal,
    #[serde(default)]
    pub active_holds: u32,
}

impl OpenWallet {
    /// `balance − held`: what is the wallet's own and not reserved. Never below minus the overdraft limit.
    pub fn available(&self) -> Decimal {
        self.balance - self.held
    }

    /// What a debit or a new hold may take at most: available plus the overdraft limit; `None` is unlimited
    /// (the treasury) or beyond what a decimal holds.
    pub fn spendable(&self) -> Option<Decimal> {
        self.overdraft_limit.and_then(|limit| exact_add(self.available(), limit))
    }

    /// Refuses leaving `available_after` (what would be available after a debit or a hold of `amount`) below
    /// minus the overdraft limit.
    fn ensure_covered(&self, available_after: Decimal, amount: Decimal) -> Result<(), DomainError> {
        let Some(limit) = self.overdraft_limit else { return Ok(()) };
        if available_after >= -limit {
            return Ok(());
        }
        let spendable = self.spendable().ok_or(DomainError::AmountOutOfRange)?;
        Err(DomainError::InsufficientFunds {
            wallet_id: self.wallet_id,
            available: self.scale.format(spendable),
            requested: self.scale.format(amount),
        })
    }

    fn ensure_movable(&self) -> Result<(), DomainError> {
        match self.status {
            WalletStatus::Active => Ok(()),
            WalletStatus::Frozen => Err(DomainError::WalletFrozen { wallet_id: self.wallet_id }),
            WalletStatus::Closed => Err(DomainError::WalletClosed { wallet_id: self.wallet_id }),
        }
    }
}

/// One side of a transfer leg, as a wallet stream records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub transfer_id: TransferId,
    pub kind: TransferKind,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub balance_after: Decimal,
    pub counterparty_wallet_id: WalletId,
    /// Index of the leg in its transfer, so that a transfer with two legs between the same wallets stays readable.
    pub leg: u16,
}

/// A hold placed on the wallet: `held` grows by `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPosting {
    pub hold_id: HoldId,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub held_after: Decimal,
}

/// Part or all of a hold no longer reserved: `captured` (debited by the capture's transfer, which follows)
/// plus `released` (back to available) leave `held`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldSettlement {
    pub hold_id: HoldId,
    #[serde(with = "rust_decimal::serde::str")]
    pub captured: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub released: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub held_after: Decimal,
    /// Whether the hold is resolved with this (it no longer counts as active).
    pub resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletOpened {
    pub wallet_id: WalletId,
    pub owner_id: String,
    pub asset: AssetCode,
    pub scale: Scale,
    pub kind: WalletKind,
    #[serde(with = "crate::money::optional_decimal")]
    pub overdraft_limit: Option<Decimal>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

/// Events of a wallet stream (`wallet-{uuid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WalletEvent {
    WalletOpened(WalletOpened),
    WalletDebited(Posting),
    WalletCredited(Posting),
    WalletFrozen(StatusChange),
    WalletUnfrozen(StatusChange),
    WalletClosed(StatusChange),
    WalletHoldPlaced(HoldPosting),
    WalletHoldSettled(HoldSettlement),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletCommand {
    Open(WalletOpened),
    Debit {
        transfer_id: TransferId,
        kind: TransferKind,
        amount: Amount,
        counterparty_wallet_id: WalletId,
        leg: u16,
    },
    Credit {
        transfer_id: TransferId,
        kind: TransferKind,
        amount: Amount,
        counterparty_wallet_id: WalletId,
        leg: u16,
    },
    /// Reserves `amount` for a new hold.
    Hold {
        hold_id: HoldId,
        amount: Amount,
    },
    /// Takes `captured + released` of a hold off `held`; frozen wallets too (voids and expiry still release).
    Settle {
        hold_id: HoldId,
        captured: Decimal,
        released: Decimal,
        resolved: bool,
    },
    Freeze {
        reason: Option<String>,
    },
    Unfreeze {
        reason: Option<String>,
    },
    Close {
        reason: Option<String>,
    },
}

pub fn decide(wallet: &Wallet, command: &WalletCommand) -> Result<Vec<WalletEvent>, DomainError> {
    let open = match (wallet, command) {
        (Wallet::Unopened, WalletCommand::Open(opened)) => return Ok(vec![WalletEvent::WalletOpened(opened.clone())]),
        (Wallet::Open(open), WalletCommand::Open(_)) => {
            return Err(DomainError::WalletExists { wallet_id: open.wallet_id })
        }
        (Wallet::Unopened, _) => return Err(DomainError::WalletNotFound { wallet_id: None }),
        (Wallet::Open(open), _) => open,
    };
    match command {
        WalletCommand::Open(_) => unreachable!("handled above"),
        WalletCommand::Debit { transfer_id, kind, amount, counterparty_wallet_id, leg } => {
            open.ensure_movable()?;
            let balance_after = exact_sub(open.balance, amount.value()).ok_or(DomainError::AmountOutOfRange)?;
            let available_after = exact_sub(balance_after, open.held).ok_or(DomainError::AmountOutOfRange)?;
            open.ensure_covered(available_after, amount.value())?;
            Ok(vec![WalletEvent::WalletDebited(Posting {
                transfer_id: *transfer_id,
                kind: *kind,
                amount: amount.value(),
                balance_after,
                counterparty_wallet_id: *counterparty_wallet_id,
                leg: *leg,
            })])
        }
        WalletCommand::Credit { transfer_id, kind, amount, counterparty_wallet_id, leg } => {
            open.ensure_movable()?;
            let balance_after = exact_add(open.balance, amount.value()).ok_or(DomainError::AmountOutOfRange)?;
            Ok(vec![WalletEvent::WalletCredited(Posting {
                transfer_id: *transfer_id,
                kind: *kind,
                amount: amount.value(),
                balance_after,
                counterparty_wallet_id: *counterparty_wallet_id,
                leg: *leg,
            })])
        }
        WalletCommand::Hold { hold_id, amount } => hold(open, *hold_id, *amount),
        WalletCommand::Settle { hold_id, captured, released, resolved } => {
            let held_after = exact_sub(open.held, *captured + *released).ok_or(DomainError::AmountOutOfRange)?;
            Ok(vec![WalletEvent::WalletHoldSettled(HoldSettlement {
                hold_id: *hold_id,
                captured: *captured,
                released: *released,
                held_after,
                resolved: *resolved,
            })])
        }
        WalletCommand::Freeze { .. } | WalletCommand::Unfreeze { .. } | WalletCommand::Close { .. } => {
            change_status(open, command)
        }
    }
}

/// Reserves `amount` for a new hold, if what is available (plus the limit) covers it. User wallets only.
fn hold(open: &OpenWallet, hold_id: HoldId, amount: Amount) -> Result<Vec<WalletEvent>, DomainError> {
    if open.kind != WalletKind::User {
        return Err(DomainError::invalid("wallet_id", Rule::SystemWalletMove));
    }
    open.ensure_movable()?;
    let available_after = exact_sub(open.available(), amount.value()).ok_or(DomainError::AmountOutOfRange)?;
    open.ensure_covered(available_after, amount.value())?;
    let held_after = exact_add(open.held, amount.value()).ok_or(DomainError::AmountOutOfRange)?;
    Ok(vec![WalletEvent::WalletHoldPlaced(HoldPosting { hold_id, amount: amount.value(), held_after })])
}

/// Freeze, unfreeze or close: user wallets only; closing needs no active hold and a zero balance.
fn change_status(open: &OpenWallet, command: &WalletCommand) -> Result<Vec<WalletEvent>, DomainError> {
    ensure_user_wallet(open)?;
    let closed = Err(DomainError::WalletClosed { wallet_id: open.wallet_id });
    match (command, open.status) {
        (WalletCommand::Freeze { reason }, WalletStatus::Active) => {
            Ok(vec![WalletEvent::WalletFrozen(StatusChange { reason: reason.clone() })])
        }
        (WalletCommand::Unfreeze { reason }, WalletStatus::Frozen) => {
            Ok(vec![WalletEvent::WalletUnfrozen(StatusChange { reason: reason.clone() })])
        }
        (WalletCommand::Freeze { .. }, WalletStatus::Frozen)
        | (WalletCommand::Unfreeze { .. }, WalletStatus::Active) => Ok(vec![]),
        (WalletCommand::Freeze { .. } | WalletCommand::Unfreeze { .. }, WalletStatus::Closed) => closed,
        (WalletCommand::Close { .. }, WalletStatus::Closed) => Ok(vec![]),
        (WalletCommand::Close { .. }, _) if open.active_holds > 0 => {
            Err(DomainError::WalletHasActiveHolds { wallet_id: open.wallet_id, active_holds: open.active_holds })
        }
        (WalletCommand::Close { .. }, _) if !open.balance.is_zero() => {
            Err(DomainError::WalletNotEmpty { wallet_id: open.wallet_id, balance: open.scale.format(open.balance) })
        }
        (WalletCommand::Close { reason }, _) => {
            Ok(vec![WalletEvent::WalletClosed(StatusChange { reason: reason.clone() })])
        }
        _ => unreachable!("called for status changes only"),
    }
}

/// System wallets carry the asset's own books; freezing or closing one would stop the asset.
fn ensure_user_wallet(open: &OpenWallet) -> Result<(), DomainError> {
    if open.kind != WalletKind::User {
        return Err(DomainError::invalid("wallet_id", Rule::SystemWalletStatus));
    }
    Ok(())
}

/// # Panics
/// On an event that cannot follow the state: the stream is corrupt.
pub fn evolve(wallet: Wallet, event: &WalletEvent) -> Wallet {
    match (wallet, event) {
        (Wallet::Unopened, WalletEvent::WalletOpened(opened)) => Wallet::Open(OpenWallet {
            wallet_id: opened.wallet_id,
            owner_id: opened.owner_id.clone(),
            asset: opened.asset.clone(),
            scale: opened.scale,
            kind: opened.kind,
            status: WalletStatus::Active,
            balance: zero_at(opened.scale),
            overdraft_limit: opened.overdraft_limit,
            held: zero_at(opened.scale),
            active_holds: 0,
        }),
        (Wallet::Open(open), WalletEvent::WalletOpened(_)) => {
            panic!("corrupt stream wallet-{}: opened twice", open.wallet_id)
        }
        (Wallet::Unopened, event) => panic!("corrupt wallet stream: {event:?} before WalletOpened"),
        (Wallet::Open(mut open), event) => {
            match event {
                WalletEvent::WalletOpened(_) => unreachable!("handled above"),
                WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting) => {
                    open.balance = posting.balance_after
                }
                WalletEvent::WalletFrozen(_) => open.status = WalletStatus::Frozen,
                WalletEvent::WalletUnfrozen(_) => open.status = WalletStatus::Active,
                WalletEvent::WalletClosed(_) => open.status = WalletStatus::Closed,
                WalletEvent::WalletHoldPlaced(posting) => {
                    open.held = posting.held_after;
                    open.active_holds += 1;
                }
                WalletEvent::WalletHoldSettled(settlement) => {
                    open.held = settlement.held_after;
                    if settlement.resolved {
                        open.active_holds = open.active_holds.saturating_sub(1);
                    }
                }
            }
            Wallet::Open(open)
        }
    }
}

/// Zero with the asset's decimal places, so that balances always print at the asset's scale.
pub fn zero_at(scale: Scale) -> Decimal {
    Decimal::new(0, scale.places())
}
