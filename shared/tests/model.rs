//! Model test of the ledger: random command sequences through `dependencies`, `decide` and `World::apply`,
//! checked after every step against a plain model of balances and holds in integer units that shares no
//! arithmetic with the domain, on a clock that the scenario moves forward.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Duration, Utc};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tally_shared::asset::{self, Asset, AssetCode, DefineAsset, FeePolicy, SystemWallets};
use tally_shared::envelope::{Change, Event, StreamId};
use tally_shared::hold::{self, Expiry, Hold, HoldId, HoldStatus, HOLD_EXPIRES_IN_S_MAX};
use tally_shared::ledger::{decide, Command, DomainError, StatusCommand, World};
use tally_shared::money::Scale;
use tally_shared::transfer::{self, LegRole, Transfer, TransferEvent, TransferId, TransferKind};
use tally_shared::wallet::{self, Wallet, WalletEvent, WalletId, WalletKind, WalletStatus};
use uuid::Uuid;

/// Cases of the property; each runs up to `OPS_MAX` commands after its set-up.
const CASES: u32 = 384;
const OPS_MAX: usize = 60;

/// The largest magnitude a `Decimal` holds, in units of its last place: 2^96 - 1.
const UNITS_MAX: i128 = (1 << 96) - 1;

const CODES: [&str; 2] = ["GOLD", "GEM_2"];

// ---- The model's own arithmetic, on integer units of 10^-scale ---------------------------------------

fn pow10(exponent: u32) -> i128 {
    10i128.pow(exponent)
}

/// `value` in units of `10^-scale`, if it is a whole number of them that a `Decimal` can hold at `scale`.
fn units_of(value: Decimal, scale: u32) -> Option<i128> {
    let (mantissa, places) = (value.mantissa(), value.scale());
    let units = if places > scale {
        let factor = pow10(places - scale);
        if mantissa % factor != 0 {
            return None;
        }
        mantissa / factor
    } else {
        mantissa.checked_mul(pow10(scale - places))?
    };
    (units.abs() <= UNITS_MAX).then_some(units)
}

/// The units of a decimal that the domain wrote: it must be exactly at `scale`.
fn written_units(value: Decimal, scale: u32) -> Result<i128, TestCaseError> {
    prop_assert_eq!(value.scale(), scale, "{} is not written at scale {}", value, scale);
    Ok(value.mantissa())
}

/// `units` as the wire shows them: exactly `scale` decimal places.
fn format_units(units: i128, scale: u32) -> String {
    let places = scale as usize;
    let digits = format!("{:0>width$}", units.unsigned_abs(), width = places + 1);
    let (whole, fraction) = digits.split_at(digits.len() - places);
    let sign = if units < 0 { "-" } else { "" };
    if places == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// `numerator ÷ denominator` rounded half up, both non-negative.
fn divide_half_up(numerator: i128, denominator: i128) -> i128 {
    (2 * numerator + denominator) / (2 * denominator)
}

/// `a × b ÷ c` rounded half up, for non-negative values below 2^100, by doubling and adding modulo `c`
/// over the bits of `b`, so that no product wider than 128 bits is ever formed.
fn multiply_divide_half_up(a: i128, b: i128, c: i128) -> i128 {
    let (whole, part) = (a / c, a % c);
    // Invariant: quotient × c + remainder = part × (the bits of b read so far), with remainder < c.
    let (mut quotient, mut remainder) = (0i128, 0i128);
    for bit in (0..127).rev() {
        quotient *= 2;
        remainder *= 2;
        if remainder >= c {
            quotient += 1;
            remainder -= c;
        }
        if (b >> bit) & 1 == 1 {
            remainder += part;
            if remainder >= c {
                quotient += 1;
                remainder -= c;
            }
        }
    }
    let rounded_up = i128::from(2 * remainder >= c);
    whole * b + quotient + rounded_up
}

// ---- The model ----------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ModelFee {
    /// `percent` is `percent_units / 10^percent_places`.
    percent_units: i128,
    percent_places: u32,
    fixed: i128,
    min: Option<i128>,
    max: Option<i128>,
}

#[derive(Debug, Clone)]
struct ModelAsset {
    scale: u32,
    fee: Option<ModelFee>,
    treasury: WalletId,
    revenue: WalletId,
    fees: WalletId,
}

#[derive(Debug, Clone)]
struct ModelWallet {
    asset: AssetCode,
    scale: u32,
    kind: WalletKind,
    status: WalletStatus,
    balance: i128,
    /// `None`: unlimited (the treasury).
    limit: Option<i128>,
    held: i128,
    active_holds: u32,
}

#[derive(Debug, Clone)]
struct ModelHold {
    wallet: WalletId,
    scale: u32,
    amount: i128,
    captured: i128,
    released: i128,
    status: HoldStatus,
    expires_at: DateTime<Utc>,
    captures: Vec<TransferId>,
}

impl ModelHold {
    fn remaining(&self) -> i128 {
        self.amount - self.captured - self.released
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelLeg {
    from: WalletId,
    to: WalletId,
    units: i128,
    role: LegRole,
}

#[derive(Debug, Clone)]
struct ModelTransfer {
    kind: TransferKind,
    asset: AssetCode,
    scale: u32,
    amount: i128,
    fee: i128,
    legs: Vec<ModelLeg>,
    reverses: Option<TransferId>,
    reversed_amount: i128,
    reversed_fee: i128,
}

/// One side of one leg, as the model expects a wallet stream to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelPosting {
    wallet: WalletId,
    debit: bool,
    transfer: TransferId,
    kind: TransferKind,
    units: i128,
    balance_after: i128,
    counterparty: WalletId,
    leg: u16,
}

/// Why the model expects a command to be refused: the domain's error, reduced to what the model can know.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    Validation(String),
    InvalidAmount(String),
    OutOfRange,
    AssetNotFound(String),
    WalletNotFound(WalletId),
    TransferNotFound(TransferId),
    AssetExists(AssetCode),
    WalletExists(WalletId),
    AssetMismatch(AssetCode, AssetCode),
    SameWallet,
    InsufficientFunds { wallet: WalletId, available: String, requested: String },
    WalletFrozen(WalletId),
    WalletClosed(WalletId),
    WalletNotEmpty(WalletId, String),
    ReversalExceedsTransfer { transfer: TransferId, remaining: String, requested: String },
    HoldNotFound(HoldId),
    HoldNotActive(HoldId, HoldStatus),
    HoldExpired(HoldId),
    HoldExceeded { hold: HoldId, remaining: String, requested: String },
    WalletHasActiveHolds(WalletId, u32),
    Unexpected(String),
}

fn rejection(error: &DomainError) -> Rejection {
    match error {
        DomainError::Validation { field, .. } => Rejection::Validation(field.clone()),
        DomainError::InvalidAmount { field, .. } => Rejection::InvalidAmount(field.clone()),
        DomainError::AmountOutOfRange => Rejection::OutOfRange,
        DomainError::AssetNotFound { code } => Rejection::AssetNotFound(code.clone()),
        DomainError::WalletNotFound { wallet_id: Some(id) } => Rejection::WalletNotFound(*id),
        DomainError::TransferNotFound { transfer_id: Some(id) } => Rejection::TransferNotFound(*id),
        DomainError::AssetExists { code } => Rejection::AssetExists(code.clone()),
        DomainError::WalletExists { wallet_id } => Rejection::WalletExists(*wallet_id),
        DomainError::AssetMismatch { from_asset, to_asset } => {
            Rejection::AssetMismatch(from_asset.clone(), to_asset.clone())
        }
        DomainError::SameWallet => Rejection::SameWallet,
        DomainError::InsufficientFunds { wallet_id, available, requested } => Rejection::InsufficientFunds {
            wallet: *wallet_id,
            available: available.clone(),
            requested: requested.clone(),
        },
        DomainError::WalletFrozen { wallet_id } => Rejection::WalletFrozen(*wallet_id),
        DomainError::WalletClosed { wallet_id } => Rejection::WalletClosed(*wallet_id),
        DomainError::WalletNotEmpty { wallet_id, balance } => Rejection::WalletNotEmpty(*wallet_id, balance.clone()),
        DomainError::ReversalExceedsTransfer { transfer_id, remaining, requested } => {
            Rejection::ReversalExceedsTransfer {
                transfer: *transfer_id,
                remaining: remaining.clone(),
                requested: requested.clone(),
            }
        }
        DomainError::HoldNotFound { hold_id } => Rejection::HoldNotFound(*hold_id),
        DomainError::HoldNotActive { hold_id, status } => Rejection::HoldNotActive(*hold_id, *status),
        DomainError::HoldExpired { hold_id, .. } => Rejection::HoldExpired(*hold_id),
        DomainError::HoldExceeded { hold_id, remaining, requested } => {
            Rejection::HoldExceeded { hold: *hold_id, remaining: remaining.clone(), requested: requested.clone() }
        }
        DomainError::WalletHasActiveHolds { wallet_id, active_holds } => {
            Rejection::WalletHasActiveHolds(*wallet_id, *active_holds)
        }
        other => Rejection::Unexpected(format!("{other:?}")),
    }
}

#[derive(Debug, Clone, Default)]
struct Model {
    assets: BTreeMap<AssetCode, ModelAsset>,
    wallets: BTreeMap<WalletId, ModelWallet>,
    owners: BTreeMap<(String, AssetCode), WalletId>,
    transfers: BTreeMap<TransferId, ModelTransfer>,
    holds: BTreeMap<HoldId, ModelHold>,
    /// In creation order, for the generator's picks.
    user_wallets: Vec<WalletId>,
    system_wallets: Vec<WalletId>,
    transfer_ids: Vec<TransferId>,
    hold_ids: Vec<HoldId>,
}

/// A non-negative amount of money at `scale` as the model reads it: negative, overscaled, or out of range is refused.
fn non_negative(value: Decimal, scale: u32) -> Option<i128> {
    units_of(value, scale).filter(|units| *units >= 0)
}

fn positive(value: Decimal, scale: u32) -> Option<i128> {
    units_of(value, scale).filter(|units| *units > 0)
}

impl Model {
    /// Applies `command` to the model, returning the postings it expects, or why the command is refused.
    /// On a refusal the model may be half changed: the caller keeps its previous copy.
    fn execute(&mut self, command: &Command) -> Result<Vec<ModelPosting>, Rejection> {
        match command {
            Command::DefineAsset(define) => self.define(define).map(|()| vec![]),
            Command::OpenWallet { wallet_id, owner_id, asset, overdraft_limit, .. } => {
                self.open(*wallet_id, owner_id, asset, *overdraft_limit).map(|()| vec![])
            }
            Command::Move { transfer_id, kind, wallet_id, amount, .. } => {
                self.movement(*transfer_id, *kind, *wallet_id, *amount)
            }
            Command::Transfer { transfer_id, from_wallet_id, to_wallet_id, amount, fee, .. } => {
                self.transfer(*transfer_id, *from_wallet_id, *to_wallet_id, *amount, *fee)
            }
            Command::Reverse { reversal_id, transfer_id, amount, .. } => {
                self.reverse(*reversal_id, *transfer_id, *amount)
            }
            Command::ChangeStatus { wallet_id, change, .. } => self.change_status(*wallet_id, *change).map(|()| vec![]),
            Command::PlaceHold { hold_id, wallet_id, amount, expiry, at, .. } => {
                self.place_hold(*hold_id, *wallet_id, *amount, *expiry, *at).map(|()| vec![])
            }
            Command::CaptureHold { hold_id, transfer_id, amount, to_wallet_id, is_final, at, .. } => {
                self.capture_hold(*hold_id, *transfer_id, *amount, *to_wallet_id, *is_final, *at)
            }
            Command::VoidHold { hold_id, at, .. } => self.release_hold(*hold_id, false, *at).map(|()| vec![]),
            Command::ExpireHold { hold_id, at } => self.release_hold(*hold_id, true, *at).map(|()| vec![]),
        }
    }

    fn place_hold(
        &mut self,
        hold_id: HoldId,
        wallet_id: WalletId,
        amount: Decimal,
        expiry: Expiry,
        at: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let wallet = self.user_wallet(wallet_id, "wallet_id")?.clone();
        let units = positive(amount, wallet.scale).ok_or_else(|| Rejection::InvalidAmount("amount".into()))?;
        let window = |field: &str| Rejection::Validation(field.into());
        let expires_at = match expiry {
            Expiry::In(seconds) if (1..=HOLD_EXPIRES_IN_S_MAX).contains(&seconds) => at + Duration::seconds(seconds),
            Expiry::In(_) => return Err(window("expires_in_s")),
            Expiry::At(expires_at)
                if expires_at > at && expires_at - at <= Duration::seconds(HOLD_EXPIRES_IN_S_MAX) =>
            {
                expires_at
            }
            Expiry::At(_) => return Err(window("expires_at")),
        };
        if self.holds.contains_key(&hold_id) {
            return Err(Rejection::Validation("hold_id".into()));
        }
        match wallet.status {
            WalletStatus::Active => {}
            WalletStatus::Frozen => return Err(Rejection::WalletFrozen(wallet_id)),
            WalletStatus::Closed => return Err(Rejection::WalletClosed(wallet_id)),
        }
        let limit = wallet.limit.unwrap();
        let available = wallet.balance - wallet.held;
        let after = available - units;
        if after.abs() > UNITS_MAX {
            return Err(Rejection::OutOfRange);
        }
        if after < -limit {
            let spendable = available + limit;
            if spendable.abs() > UNITS_MAX {
                return Err(Rejection::OutOfRange);
            }
            return Err(Rejection::InsufficientFunds {
                wallet: wallet_id,
                available: format_units(spendable, wallet.scale),
                requested: format_units(units, wallet.scale),
            });
        }
        if wallet.held + units > UNITS_MAX {
            return Err(Rejection::OutOfRange);
        }
        let wallet = self.wallets.get_mut(&wallet_id).unwrap();
        wallet.held += units;
        wallet.active_holds += 1;
        let hold = ModelHold {
            wallet: wallet_id,
            scale: wallet.scale,
            amount: units,
            captured: 0,
            released: 0,
            status: HoldStatus::Active,
            expires_at,
            captures: Vec::new(),
        };
        self.holds.insert(hold_id, hold);
        self.hold_ids.push(hold_id);
        Ok(())
    }

    /// The hold, if a capture or a void may act on it at `at`.
    fn open_hold(&self, hold_id: HoldId, at: DateTime<Utc>) -> Result<ModelHold, Rejection> {
        let hold = self.holds.get(&hold_id).ok_or(Rejection::HoldNotFound(hold_id))?;
        match hold.status {
            HoldStatus::Active if at < hold.expires_at => Ok(hold.clone()),
            HoldStatus::Active | HoldStatus::Expired => Err(Rejection::HoldExpired(hold_id)),
            status => Err(Rejection::HoldNotActive(hold_id, status)),
        }
    }

    fn capture_hold(
        &mut self,
        hold_id: HoldId,
        transfer_id: TransferId,
        amount: Option<Decimal>,
        to: Option<WalletId>,
        is_final: bool,
        at: DateTime<Utc>,
    ) -> Result<Vec<ModelPosting>, Rejection> {
        let hold = self.open_hold(hold_id, at)?;
        if hold.captures.len() >= hold::HOLD_CAPTURES_MAX {
            return Err(Rejection::Validation("hold_id".into()));
        }
        let remaining = hold.remaining();
        let requested = match amount {
            Some(amount) => positive(amount, hold.scale).ok_or_else(|| Rejection::InvalidAmount("amount".into()))?,
            None => remaining,
        };
        if requested > remaining || requested <= 0 {
            return Err(Rejection::HoldExceeded {
                hold: hold_id,
                remaining: format_units(remaining, hold.scale),
                requested: format_units(requested, hold.scale),
            });
        }
        let from = self.wallets[&hold.wallet].clone();
        let asset = self.assets[&from.asset].clone();
        let (kind, to) = match to {
            None => (TransferKind::Spend, asset.revenue),
            Some(to) if to == hold.wallet => return Err(Rejection::SameWallet),
            Some(to) => {
                let receiver = self.user_wallet(to, "to_wallet_id")?;
                if receiver.asset != from.asset {
                    return Err(Rejection::AssetMismatch(from.asset.clone(), receiver.asset.clone()));
                }
                (TransferKind::Transfer, to)
            }
        };
        let released = if is_final { remaining - requested } else { 0 };
        let wallet = self.wallets.get_mut(&hold.wallet).unwrap();
        wallet.held -= requested + released;
        if is_final {
            wallet.active_holds -= 1;
        }
        let record = ModelTransfer {
            kind,
            asset: from.asset.clone(),
            scale: hold.scale,
            amount: requested,
            fee: 0,
            legs: vec![ModelLeg { from: hold.wallet, to, units: requested, role: LegRole::Principal }],
            reverses: None,
            reversed_amount: 0,
            reversed_fee: 0,
        };
        let postings = self.record(transfer_id, record)?;
        let hold = self.holds.get_mut(&hold_id).unwrap();
        hold.captured += requested;
        hold.released += released;
        hold.captures.push(transfer_id);
        if is_final {
            hold.status = HoldStatus::Captured;
        }
        Ok(postings)
    }

    /// A void (refused once expired) or an expiry (nothing, unless active and due).
    fn release_hold(&mut self, hold_id: HoldId, expiry: bool, at: DateTime<Utc>) -> Result<(), Rejection> {
        let hold = if expiry {
            let hold = self.holds.get(&hold_id).ok_or(Rejection::HoldNotFound(hold_id))?;
            if hold.status != HoldStatus::Active || at < hold.expires_at {
                return Ok(());
            }
            hold.clone()
        } else {
            self.open_hold(hold_id, at)?
        };
        let wallet = self.wallets.get_mut(&hold.wallet).unwrap();
        wallet.held -= hold.remaining();
        wallet.active_holds -= 1;
        let hold = self.holds.get_mut(&hold_id).unwrap();
        hold.released += hold.remaining();
        hold.status = if expiry { HoldStatus::Expired } else { HoldStatus::Voided };
        Ok(())
    }

    fn define(&mut self, define: &DefineAsset) -> Result<(), Rejection> {
        if self.assets.contains_key(&define.code) {
            return Err(Rejection::AssetExists(define.code.clone()));
        }
        let scale = define.scale.places();
        let fee = match &define.cash_in_fee {
            None => None,
            Some(policy) => {
                let (percent_units, percent_places) = (policy.percent.mantissa(), policy.percent.scale());
                if percent_units < 0 || percent_units > 100 * pow10(percent_places) {
                    return Err(Rejection::Validation("cash_in_fee.percent".into()));
                }
                let money = |field: &str, value: Decimal| {
                    non_negative(value, scale).ok_or_else(|| Rejection::Validation(format!("cash_in_fee.{field}")))
                };
                let fixed = money("fixed", policy.fixed)?;
                let min = policy.min.map(|min| money("min", min)).transpose()?;
                let max = policy.max.map(|max| money("max", max)).transpose()?;
                if let (Some(min), Some(max)) = (min, max) {
                    if min > max {
                        return Err(Rejection::Validation("cash_in_fee.min".into()));
                    }
                }
                Some(ModelFee { percent_units, percent_places, fixed, min, max })
            }
        };
        let SystemWallets { treasury, revenue, fees } = define.system_wallets;
        for (id, kind) in [(treasury, WalletKind::Treasury), (revenue, WalletKind::Revenue), (fees, WalletKind::Fees)] {
            if self.wallets.contains_key(&id) {
                return Err(Rejection::WalletExists(id));
            }
            let limit = (kind != WalletKind::Treasury).then_some(0);
            self.wallets.insert(
                id,
                ModelWallet {
                    asset: define.code.clone(),
                    scale,
                    kind,
                    status: WalletStatus::Active,
                    balance: 0,
                    limit,
                    held: 0,
                    active_holds: 0,
                },
            );
            self.system_wallets.push(id);
        }
        self.assets.insert(define.code.clone(), ModelAsset { scale, fee, treasury, revenue, fees });
        Ok(())
    }

    fn open(
        &mut self,
        wallet_id: WalletId,
        owner_id: &str,
        asset: &AssetCode,
        overdraft_limit: Option<Decimal>,
    ) -> Result<(), Rejection> {
        let length = owner_id.chars().count();
        if length == 0 || length > 128 {
            return Err(Rejection::Validation("owner_id".into()));
        }
        let Some(definition) = self.assets.get(asset) else {
            return Err(Rejection::AssetNotFound(asset.to_string()));
        };
        let scale = definition.scale;
        if let Some(existing) = self.owners.get(&(owner_id.to_owned(), asset.clone())) {
            return Err(Rejection::WalletExists(*existing));
        }
        let limit = match overdraft_limit {
            None => 0,
            Some(limit) => {
                non_negative(limit, scale).ok_or_else(|| Rejection::InvalidAmount("overdraft_limit".into()))?
            }
        };
        if self.wallets.contains_key(&wallet_id) {
            return Err(Rejection::WalletExists(wallet_id));
        }
        self.wallets.insert(
            wallet_id,
            ModelWallet {
                asset: asset.clone(),
                scale,
                kind: WalletKind::User,
                status: WalletStatus::Active,
                balance: 0,
                limit: Some(limit),
                held: 0,
                active_holds: 0,
            },
        );
        self.owners.insert((owner_id.to_owned(), asset.clone()), wallet_id);
        self.user_wallets.push(wallet_id);
        Ok(())
    }

    fn user_wallet(&self, wallet_id: WalletId, field: &str) -> Result<&ModelWallet, Rejection> {
        let wallet = self.wallets.get(&wallet_id).ok_or(Rejection::WalletNotFound(wallet_id))?;
        if wallet.kind != WalletKind::User {
            return Err(Rejection::Validation(field.into()));
        }
        Ok(wallet)
    }

    fn movement(
        &mut self,
        transfer_id: TransferId,
        kind: TransferKind,
        wallet_id: WalletId,
        amount: Decimal,
    ) -> Result<Vec<ModelPosting>, Rejection> {
        let wallet = self.user_wallet(wallet_id, "wallet_id")?;
        let code = wallet.asset.clone();
        let asset = self.assets[&code].clone();
        let amount = positive(amount, asset.scale).ok_or_else(|| Rejection::InvalidAmount("amount".into()))?;
        let principal = |from, to| ModelLeg { from, to, units: amount, role: LegRole::Principal };
        let mut fee = 0;
        let legs = match kind {
            TransferKind::Topup | TransferKind::Bonus => vec![principal(asset.treasury, wallet_id)],
            TransferKind::Spend => vec![principal(wallet_id, asset.revenue)],
            TransferKind::Withdrawal => vec![principal(wallet_id, asset.treasury)],
            TransferKind::CashIn => {
                if let Some(policy) = &asset.fee {
                    let proportional =
                        divide_half_up(amount * policy.percent_units, 100 * pow10(policy.percent_places));
                    fee = proportional + policy.fixed;
                    if let Some(min) = policy.min {
                        fee = fee.max(min);
                    }
                    if let Some(max) = policy.max {
                        fee = fee.min(max);
                    }
                    fee = fee.min(amount);
                }
                let mut legs = vec![principal(asset.treasury, wallet_id)];
                if fee > 0 {
                    legs.push(ModelLeg { from: wallet_id, to: asset.fees, units: fee, role: LegRole::Fee });
                }
                legs
            }
            TransferKind::Transfer | TransferKind::Reversal => return Err(Rejection::Validation("kind".into())),
        };
        let record = ModelTransfer {
            kind,
            asset: code,
            scale: asset.scale,
            amount,
            fee,
            legs,
            reverses: None,
            reversed_amount: 0,
            reversed_fee: 0,
        };
        self.record(transfer_id, record)
    }

    fn transfer(
        &mut self,
        transfer_id: TransferId,
        from: WalletId,
        to: WalletId,
        amount: Decimal,
        fee: Option<Decimal>,
    ) -> Result<Vec<ModelPosting>, Rejection> {
        if from == to {
            return Err(Rejection::SameWallet);
        }
        let sender = self.user_wallet(from, "from_wallet_id")?.clone();
        let receiver = self.user_wallet(to, "to_wallet_id")?;
        if sender.asset != receiver.asset {
            return Err(Rejection::AssetMismatch(sender.asset.clone(), receiver.asset.clone()));
        }
        let asset = self.assets[&sender.asset].clone();
        let amount = positive(amount, asset.scale).ok_or_else(|| Rejection::InvalidAmount("amount".into()))?;
        let fee = match fee {
            None => 0,
            Some(fee) => non_negative(fee, asset.scale).ok_or_else(|| Rejection::InvalidAmount("fee".into()))?,
        };
        let mut legs = vec![ModelLeg { from, to, units: amount, role: LegRole::Principal }];
        if fee > 0 {
            legs.push(ModelLeg { from, to: asset.fees, units: fee, role: LegRole::Fee });
        }
        let record = ModelTransfer {
            kind: TransferKind::Transfer,
            asset: sender.asset.clone(),
            scale: asset.scale,
            amount,
            fee,
            legs,
            reverses: None,
            reversed_amount: 0,
            reversed_fee: 0,
        };
        self.record(transfer_id, record)
    }

    fn reverse(
        &mut self,
        reversal_id: TransferId,
        transfer_id: TransferId,
        amount: Option<Decimal>,
    ) -> Result<Vec<ModelPosting>, Rejection> {
        let original = self.transfers.get(&transfer_id).ok_or(Rejection::TransferNotFound(transfer_id))?.clone();
        let scale = original.scale;
        let amount = amount
            .map(|amount| positive(amount, scale).ok_or_else(|| Rejection::InvalidAmount("amount".into())))
            .transpose()?;
        if original.kind == TransferKind::Reversal {
            return Err(Rejection::Validation("transfer_id".into()));
        }
        let remaining = original.amount - original.reversed_amount;
        let requested = amount.unwrap_or(remaining);
        if requested > remaining || requested <= 0 {
            return Err(Rejection::ReversalExceedsTransfer {
                transfer: transfer_id,
                remaining: format_units(remaining, scale),
                requested: format_units(requested, scale),
            });
        }
        let fee_remaining = original.fee - original.reversed_fee;
        let fee = if requested == remaining {
            fee_remaining
        } else {
            multiply_divide_half_up(original.fee, requested, original.amount).min(fee_remaining)
        };
        let legs = original
            .legs
            .iter()
            .rev()
            .map(|leg| ModelLeg {
                from: leg.to,
                to: leg.from,
                units: if leg.role == LegRole::Fee { fee } else { requested },
                role: leg.role,
            })
            .filter(|leg| leg.units > 0)
            .collect();
        let record = ModelTransfer {
            kind: TransferKind::Reversal,
            asset: original.asset.clone(),
            scale,
            amount: requested,
            fee,
            legs,
            reverses: Some(transfer_id),
            reversed_amount: 0,
            reversed_fee: 0,
        };
        let postings = self.record(reversal_id, record)?;
        let original = self.transfers.get_mut(&transfer_id).unwrap();
        original.reversed_amount += requested;
        original.reversed_fee += fee;
        Ok(postings)
    }

    /// Records a transfer and moves its legs in order: each leg debits, then credits.
    fn record(&mut self, transfer_id: TransferId, record: ModelTransfer) -> Result<Vec<ModelPosting>, Rejection> {
        if self.transfers.contains_key(&transfer_id) {
            return Err(Rejection::Validation("transfer_id".into()));
        }
        let before = self.wallets.clone();
        let mut postings = Vec::new();
        for (index, leg) in record.legs.iter().enumerate() {
            let leg_index = u16::try_from(index).unwrap();
            for (wallet_id, debit, counterparty) in [(leg.from, true, leg.to), (leg.to, false, leg.from)] {
                let wallet = self.wallets.get_mut(&wallet_id).ok_or(Rejection::WalletNotFound(wallet_id))?;
                match wallet.status {
                    WalletStatus::Active => {}
                    WalletStatus::Frozen => return Err(Rejection::WalletFrozen(wallet_id)),
                    WalletStatus::Closed => return Err(Rejection::WalletClosed(wallet_id)),
                }
                let balance_after = if debit { wallet.balance - leg.units } else { wallet.balance + leg.units };
                if balance_after.abs() > UNITS_MAX {
                    return Err(Rejection::OutOfRange);
                }
                if let Some(limit) = wallet.limit {
                    let available_after = balance_after - wallet.held;
                    if debit && available_after.abs() > UNITS_MAX {
                        return Err(Rejection::OutOfRange);
                    }
                    if available_after < -limit {
                        return Err(insufficient_funds(&before[&wallet_id], wallet_id, &record.legs));
                    }
                }
                wallet.balance = balance_after;
                postings.push(ModelPosting {
                    wallet: wallet_id,
                    debit,
                    transfer: transfer_id,
                    kind: record.kind,
                    units: leg.units,
                    balance_after,
                    counterparty,
                    leg: leg_index,
                });
            }
        }
        self.transfers.insert(transfer_id, record);
        self.transfer_ids.push(transfer_id);
        Ok(postings)
    }

    fn change_status(&mut self, wallet_id: WalletId, change: StatusCommand) -> Result<(), Rejection> {
        let wallet = self.wallets.get_mut(&wallet_id).ok_or(Rejection::WalletNotFound(wallet_id))?;
        if wallet.kind != WalletKind::User {
            return Err(Rejection::Validation("wallet_id".into()));
        }
        wallet.status = match (change, wallet.status) {
            (_, WalletStatus::Closed) if change != StatusCommand::Close => {
                return Err(Rejection::WalletClosed(wallet_id))
            }
            (StatusCommand::Close, WalletStatus::Closed) => WalletStatus::Closed,
            (StatusCommand::Close, _) if wallet.active_holds > 0 => {
                return Err(Rejection::WalletHasActiveHolds(wallet_id, wallet.active_holds))
            }
            (StatusCommand::Close, _) if wallet.balance != 0 => {
                return Err(Rejection::WalletNotEmpty(wallet_id, format_units(wallet.balance, wallet.scale)))
            }
            (StatusCommand::Close, _) => WalletStatus::Closed,
            (StatusCommand::Freeze, _) => WalletStatus::Frozen,
            (StatusCommand::Unfreeze, _) => WalletStatus::Active,
        };
        Ok(())
    }
}

/// What the wallet had available before the transfer, and all the transfer would take from it.
fn insufficient_funds(before: &ModelWallet, wallet_id: WalletId, legs: &[ModelLeg]) -> Rejection {
    let mut taken = 0i128;
    for leg in legs {
        if leg.from == wallet_id {
            taken += leg.units;
        } else if leg.to == wallet_id {
            taken -= leg.units;
        }
        if taken.abs() > UNITS_MAX {
            return Rejection::OutOfRange;
        }
    }
    let available = before.balance - before.held + before.limit.unwrap();
    if available.abs() > UNITS_MAX {
        return Rejection::OutOfRange;
    }
    Rejection::InsufficientFunds {
        wallet: wallet_id,
        available: format_units(available, before.scale),
        requested: format_units(taken, before.scale),
    }
}

// ---- Generated operations --------------------------------------------------------------------------------

/// An amount, chosen without knowing the asset's scale or the wallet's balance; made a decimal when it is used.
#[derive(Debug, Clone)]
enum AmountGen {
    /// That many units of the last place.
    Units(u64),
    /// `numerator / denominator` of a reference (what a wallet has available, what a transfer has left).
    Share(u8, u8),
    /// Whole units, written at scale 0.
    Whole(u32),
    /// Up to the most units a decimal holds.
    Huge(u128),
    /// Whole units, likely beyond what a decimal holds at a high scale.
    WholeHuge(u64),
    Zero,
    Negative(u32),
    /// Units and one more, non-zero, decimal place.
    Overscaled(u32, u8),
    /// Units written with one more, zero, decimal place.
    TrailingZero(u32),
}

impl AmountGen {
    fn decimal(&self, scale: u32, reference: i128) -> Decimal {
        let at_scale = |units: i128| Decimal::from_i128_with_scale(units.clamp(-UNITS_MAX, UNITS_MAX), scale);
        match *self {
            AmountGen::Units(units) => at_scale(i128::from(units)),
            AmountGen::Share(numerator, denominator) => {
                at_scale(reference * i128::from(numerator) / i128::from(denominator))
            }
            AmountGen::Whole(whole) => Decimal::from(whole),
            AmountGen::Huge(units) => at_scale(i128::try_from(units).unwrap()),
            AmountGen::WholeHuge(whole) => Decimal::from(whole),
            AmountGen::Zero => at_scale(0),
            AmountGen::Negative(units) => at_scale(-i128::from(units) - 1),
            AmountGen::Overscaled(units, digit) => {
                Decimal::from_i128_with_scale(i128::from(units) * 10 + i128::from(digit), scale + 1)
            }
            AmountGen::TrailingZero(units) => Decimal::from_i128_with_scale(i128::from(units) * 10, scale + 1),
        }
    }
}

#[derive(Debug, Clone)]
enum MoneyGen {
    Units(u32),
    Negative,
    Overscaled,
}

impl MoneyGen {
    fn decimal(&self, scale: u32) -> Decimal {
        match *self {
            MoneyGen::Units(units) => Decimal::from_i128_with_scale(i128::from(units), scale),
            MoneyGen::Negative => Decimal::from_i128_with_scale(-1, scale),
            MoneyGen::Overscaled => Decimal::from_i128_with_scale(5, scale + 1),
        }
    }
}

#[derive(Debug, Clone)]
struct FeeGen {
    percent_units: u32,
    percent_places: u32,
    fixed: MoneyGen,
    min: Option<MoneyGen>,
    max: Option<MoneyGen>,
}

#[derive(Debug, Clone)]
enum Pick {
    User(usize),
    System(usize),
    Unknown,
}

/// The transfer a reversal takes back.
#[derive(Debug, Clone)]
enum TransferPick {
    /// One that is not a reversal and has something left to reverse.
    Open(usize),
    Any(usize),
    Unknown,
}

/// The receiver of a transfer: mostly another user wallet than the sender.
#[derive(Debug, Clone)]
enum Counterparty {
    OtherUser(usize),
    Any(Pick),
}

#[derive(Debug, Clone)]
enum Op {
    Define {
        code: usize,
        places: u32,
        fee: Option<FeeGen>,
    },
    Open {
        owner: usize,
        asset: usize,
        limit: Option<AmountGen>,
        reuse_id: Option<usize>,
    },
    Move {
        kind: usize,
        wallet: Pick,
        amount: AmountGen,
        reuse_id: Option<usize>,
    },
    Transfer {
        from: Pick,
        to: Counterparty,
        amount: AmountGen,
        fee: Option<AmountGen>,
    },
    Reverse {
        transfer: TransferPick,
        amount: Option<AmountGen>,
        reuse_id: Option<usize>,
    },
    /// `parts - 1` reversals of an equal part of the amount, then one of what remains: the fee's shares must add up.
    ReverseInParts {
        transfer: usize,
        parts: u8,
    },
    Status {
        wallet: Pick,
        change: usize,
    },
    PlaceHold {
        wallet: Pick,
        amount: AmountGen,
        expiry: ExpiryGen,
        reuse_id: Option<usize>,
    },
    Capture {
        hold: HoldPick,
        amount: Option<AmountGen>,
        to: Option<Counterparty>,
        is_final: bool,
    },
    Void {
        hold: HoldPick,
    },
    Expire {
        hold: HoldPick,
    },
    /// The clock moves forward this many seconds.
    Advance {
        seconds: i64,
    },
}

/// When a new hold expires: this many seconds from now, or at now plus this many seconds.
#[derive(Debug, Clone)]
enum ExpiryGen {
    In(i64),
    At(i64),
}

/// The hold a capture, a void or an expiry acts on.
#[derive(Debug, Clone)]
enum HoldPick {
    /// One that is still active.
    Active(usize),
    Any(usize),
    Unknown,
}

const OWNERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const KINDS: [TransferKind; 7] = [
    TransferKind::Topup,
    TransferKind::Bonus,
    TransferKind::Spend,
    TransferKind::Withdrawal,
    TransferKind::CashIn,
    TransferKind::Transfer,
    TransferKind::Reversal,
];

fn amount_strategy() -> impl Strategy<Value = AmountGen> {
    prop_oneof![
        8 => (1u64..=10_000).prop_map(AmountGen::Units),
        6 => (0u8..=9, 1u8..=8).prop_map(|(numerator, denominator)| AmountGen::Share(numerator, denominator)),
        3 => (1u32..=1_000).prop_map(AmountGen::Whole),
        2 => (0..=UNITS_MAX as u128).prop_map(AmountGen::Huge),
        1 => any::<u64>().prop_map(AmountGen::WholeHuge),
        1 => Just(AmountGen::Zero),
        1 => (0u32..=1_000).prop_map(AmountGen::Negative),
        1 => (0u32..=1_000, 1u8..=9).prop_map(|(units, digit)| AmountGen::Overscaled(units, digit)),
        1 => (1u32..=1_000).prop_map(AmountGen::TrailingZero),
    ]
}

/// Overdraft limits and transfer fees: often small or zero, sometimes anything.
fn small_or_any_strategy() -> impl Strategy<Value = AmountGen> {
    prop_oneof![4 => (0u64..=5_000).prop_map(AmountGen::Units), 1 => amount_strategy()]
}

fn money_strategy() -> impl Strategy<Value = MoneyGen> {
    prop_oneof![
        30 => (0u32..=300).prop_map(MoneyGen::Units),
        1 => Just(MoneyGen::Negative),
        1 => Just(MoneyGen::Overscaled),
    ]
}

fn fee_strategy() -> impl Strategy<Value = FeeGen> {
    (
        prop_oneof![16 => (0u32..=500, 0u32..=2), 1 => (0u32..=20_000, 0u32..=3)],
        money_strategy(),
        option::weighted(0.3, money_strategy()),
        option::weighted(0.3, money_strategy()),
    )
        .prop_map(|((percent_units, percent_places), fixed, min, max)| FeeGen {
            percent_units,
            percent_places,
            fixed,
            min,
            max,
        })
}

fn define_strategy(codes: Range<usize>) -> impl Strategy<Value = Op> {
    let places = prop_oneof![Just(0u32), Just(2), 0u32..=18, Just(18)];
    (codes, places, option::weighted(0.7, fee_strategy())).prop_map(|(code, places, fee)| Op::Define {
        code,
        places,
        fee,
    })
}

fn open_strategy(assets: Range<usize>) -> impl Strategy<Value = Op> {
    (
        prop_oneof![30 => 0..OWNERS.len(), 1 => Just(OWNERS.len()), 1 => Just(OWNERS.len() + 1)],
        assets,
        option::weighted(0.4, small_or_any_strategy()),
        option::weighted(0.05, any::<usize>()),
    )
        .prop_map(|(owner, asset, limit, reuse_id)| Op::Open { owner, asset, limit, reuse_id })
}

fn pick_strategy() -> impl Strategy<Value = Pick> {
    prop_oneof![
        16 => any::<usize>().prop_map(Pick::User),
        2 => any::<usize>().prop_map(Pick::System),
        1 => Just(Pick::Unknown),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let movement = (
        prop_oneof![30 => 0usize..5, 1 => 5usize..7],
        pick_strategy(),
        amount_strategy(),
        option::weighted(0.03, any::<usize>()),
    )
        .prop_map(|(kind, wallet, amount, reuse_id)| Op::Move { kind, wallet, amount, reuse_id });
    let transfer = (
        pick_strategy(),
        prop_oneof![
            12 => any::<usize>().prop_map(Counterparty::OtherUser),
            1 => pick_strategy().prop_map(Counterparty::Any),
        ],
        amount_strategy(),
        option::weighted(0.5, small_or_any_strategy()),
    )
        .prop_map(|(from, to, amount, fee)| Op::Transfer { from, to, amount, fee });
    let transfer_pick = prop_oneof![
        12 => any::<usize>().prop_map(TransferPick::Open),
        3 => any::<usize>().prop_map(TransferPick::Any),
        1 => Just(TransferPick::Unknown),
    ];
    let reverse = (transfer_pick, option::weighted(0.6, amount_strategy()), option::weighted(0.03, any::<usize>()))
        .prop_map(|(transfer, amount, reuse_id)| Op::Reverse { transfer, amount, reuse_id });
    let reverse_in_parts =
        (any::<usize>(), 2u8..=4).prop_map(|(transfer, parts)| Op::ReverseInParts { transfer, parts });
    let status = (pick_strategy(), 0usize..3).prop_map(|(wallet, change)| Op::Status { wallet, change });
    let expiry = prop_oneof![
        5 => (1i64..=600).prop_map(ExpiryGen::In),
        // Whole minutes, which the clock's whole-minute steps meet exactly: a capture at `expires_at`.
        3 => (1i64..=3).prop_map(|minutes| ExpiryGen::In(60 * minutes)),
        1 => prop_oneof![Just(0i64), Just(-5), Just(HOLD_EXPIRES_IN_S_MAX), Just(HOLD_EXPIRES_IN_S_MAX + 1)]
            .prop_map(ExpiryGen::In),
        2 => prop_oneof![-10i64..=600, Just(HOLD_EXPIRES_IN_S_MAX), Just(HOLD_EXPIRES_IN_S_MAX + 1)]
            .prop_map(ExpiryGen::At),
    ];
    let place_hold = (pick_strategy(), amount_strategy(), expiry, option::weighted(0.03, any::<usize>()))
        .prop_map(|(wallet, amount, expiry, reuse_id)| Op::PlaceHold { wallet, amount, expiry, reuse_id });
    let hold_pick = || {
        prop_oneof![
            10 => any::<usize>().prop_map(HoldPick::Active),
            3 => any::<usize>().prop_map(HoldPick::Any),
            1 => Just(HoldPick::Unknown),
        ]
    };
    let capture = (
        hold_pick(),
        option::weighted(0.6, amount_strategy()),
        option::weighted(
            0.3,
            prop_oneof![
                8 => any::<usize>().prop_map(Counterparty::OtherUser),
                1 => pick_strategy().prop_map(Counterparty::Any),
            ],
        ),
        any::<bool>(),
    )
        .prop_map(|(hold, amount, to, is_final)| Op::Capture { hold, amount, to, is_final });
    let void = hold_pick().prop_map(|hold| Op::Void { hold });
    let expire = hold_pick().prop_map(|hold| Op::Expire { hold });
    let advance = prop_oneof![1i64..=120, 300i64..=700, Just(60i64)].prop_map(|seconds| Op::Advance { seconds });
    prop_oneof![
        8 => place_hold,
        6 => capture,
        2 => void,
        3 => expire,
        3 => advance,
        12 => movement,
        8 => transfer,
        5 => reverse,
        2 => reverse_in_parts,
        2 => status,
        1 => open_strategy(0..CODES.len()),
        1 => define_strategy(0..CODES.len()),
    ]
}

/// 1–2 assets, a few wallets on them, then anything.
fn scenario_strategy() -> impl Strategy<Value = Vec<Op>> {
    (1..=CODES.len())
        .prop_flat_map(|assets| {
            let definitions: Vec<BoxedStrategy<Op>> =
                (0..assets).map(|code| define_strategy(code..code + 1).boxed()).collect();
            (definitions, vec(open_strategy(0..assets), 3..=8), vec(op_strategy(), 1..=OPS_MAX))
        })
        .prop_map(|(assets, wallets, ops)| [assets, wallets, ops].concat())
}

// ---- Running a scenario ------------------------------------------------------------------------------------

/// The event store (all appended changes), the world it folds to, and the model beside them.
#[derive(Default)]
struct Run {
    store: World,
    log: Vec<Change>,
    model: Model,
    ids_issued: u128,
    /// The time commands are decided at.
    now: DateTime<Utc>,
}

impl Run {
    fn fresh_id(&mut self) -> Uuid {
        self.ids_issued += 1;
        Uuid::from_u128(0x7a11_0000_0000 + self.ids_issued)
    }

    fn pick(&mut self, pick: &Pick) -> WalletId {
        let chosen = match pick {
            Pick::User(index) if !self.model.user_wallets.is_empty() => {
                Some(self.model.user_wallets[index % self.model.user_wallets.len()])
            }
            Pick::System(index) if !self.model.system_wallets.is_empty() => {
                Some(self.model.system_wallets[index % self.model.system_wallets.len()])
            }
            _ => None,
        };
        chosen.unwrap_or_else(|| WalletId(self.fresh_id()))
    }

    fn existing_wallet(&mut self, index: usize) -> WalletId {
        let all: Vec<WalletId> = self.model.wallets.keys().copied().collect();
        if all.is_empty() {
            WalletId(self.fresh_id())
        } else {
            all[index % all.len()]
        }
    }

    fn open_transfer(&mut self, index: usize) -> TransferId {
        let open: Vec<TransferId> = self
            .model
            .transfer_ids
            .iter()
            .copied()
            .filter(|id| {
                let transfer = &self.model.transfers[id];
                transfer.kind != TransferKind::Reversal && transfer.reversed_amount < transfer.amount
            })
            .collect();
        if open.is_empty() {
            self.existing_transfer(index)
        } else {
            open[index % open.len()]
        }
    }

    fn existing_transfer(&mut self, index: usize) -> TransferId {
        if self.model.transfer_ids.is_empty() {
            TransferId(self.fresh_id())
        } else {
            self.model.transfer_ids[index % self.model.transfer_ids.len()]
        }
    }

    fn pick_hold(&mut self, pick: &HoldPick) -> HoldId {
        let model = &self.model;
        let active: Vec<HoldId> =
            model.hold_ids.iter().copied().filter(|id| model.holds[id].status == HoldStatus::Active).collect();
        let chosen = match pick {
            HoldPick::Active(index) if !active.is_empty() => Some(active[index % active.len()]),
            HoldPick::Active(index) | HoldPick::Any(index) if !model.hold_ids.is_empty() => {
                Some(model.hold_ids[index % model.hold_ids.len()])
            }
            _ => None,
        };
        chosen.unwrap_or_else(|| HoldId(self.fresh_id()))
    }

    fn receiver(&mut self, from_wallet_id: WalletId, to: &Counterparty) -> WalletId {
        match to {
            Counterparty::OtherUser(offset) => {
                let users = &self.model.user_wallets;
                match users.iter().position(|id| *id == from_wallet_id) {
                    Some(at) if users.len() > 1 => users[(at + 1 + offset % (users.len() - 1)) % users.len()],
                    _ => self.pick(&Pick::User(*offset)),
                }
            }
            Counterparty::Any(pick) => self.pick(pick),
        }
    }

    fn scale_of(&self, wallet_id: WalletId) -> u32 {
        self.model.wallets.get(&wallet_id).map_or(2, |wallet| wallet.scale)
    }

    fn available(&self, wallet_id: WalletId) -> i128 {
        self.model
            .wallets
            .get(&wallet_id)
            .map_or(1_000, |wallet| wallet.balance - wallet.held + wallet.limit.unwrap_or(1_000))
    }

    fn commands(&mut self, op: &Op) -> Vec<Command> {
        if let Op::Advance { seconds } = op {
            self.now += Duration::seconds(*seconds);
            return vec![];
        }
        let Op::ReverseInParts { transfer, parts } = op else { return vec![self.command(op)] };
        let transfer_id = self.open_transfer(*transfer);
        let (scale, part) = self
            .model
            .transfers
            .get(&transfer_id)
            .map_or((2, 0), |original| (original.scale, original.amount / i128::from(*parts)));
        let mut commands: Vec<Command> = (1..*parts)
            .filter(|_| part > 0)
            .map(|_| Command::Reverse {
                reversal_id: TransferId(self.fresh_id()),
                transfer_id,
                amount: Some(Decimal::from_i128_with_scale(part, scale)),
                reason: None,
            })
            .collect();
        commands.push(Command::Reverse {
            reversal_id: TransferId(self.fresh_id()),
            transfer_id,
            amount: None,
            reason: None,
        });
        commands
    }

    fn command(&mut self, op: &Op) -> Command {
        match op {
            Op::Define { code, places, fee } => {
                let scale = Scale::new(*places).unwrap();
                let system_wallets = SystemWallets {
                    treasury: WalletId(self.fresh_id()),
                    revenue: WalletId(self.fresh_id()),
                    fees: WalletId(self.fresh_id()),
                };
                let cash_in_fee = fee.as_ref().map(|fee| FeePolicy {
                    percent: Decimal::new(i64::from(fee.percent_units), fee.percent_places),
                    fixed: fee.fixed.decimal(*places),
                    min: fee.min.as_ref().map(|min| min.decimal(*places)),
                    max: fee.max.as_ref().map(|max| max.decimal(*places)),
                });
                Command::DefineAsset(DefineAsset {
                    code: AssetCode::parse(CODES[*code]).unwrap(),
                    scale,
                    cash_in_fee,
                    system_wallets,
                })
            }
            Op::Open { owner, asset, limit, reuse_id } => {
                let code = AssetCode::parse(CODES[*asset]).unwrap();
                let scale = self.model.assets.get(&code).map_or(2, |asset| asset.scale);
                let owner_id = match OWNERS.get(*owner) {
                    Some(owner) => (*owner).to_owned(),
                    None if *owner == OWNERS.len() => String::new(),
                    None => "o".repeat(129),
                };
                let wallet_id = match reuse_id {
                    Some(index) => self.existing_wallet(*index),
                    None => WalletId(self.fresh_id()),
                };
                Command::OpenWallet {
                    wallet_id,
                    owner_id,
                    asset: code,
                    overdraft_limit: limit.as_ref().map(|limit| limit.decimal(scale, 1_000)),
                    metadata: serde_json::Value::Null,
                }
            }
            Op::Move { kind, wallet, amount, reuse_id } => {
                let wallet_id = self.pick(wallet);
                let kind = KINDS[*kind];
                let reference = match kind {
                    TransferKind::Spend | TransferKind::Withdrawal => self.available(wallet_id),
                    _ => 1_000 * pow10(self.scale_of(wallet_id)),
                };
                let transfer_id = match reuse_id {
                    Some(index) => self.existing_transfer(*index),
                    None => TransferId(self.fresh_id()),
                };
                Command::Move {
                    transfer_id,
                    kind,
                    wallet_id,
                    amount: amount.decimal(self.scale_of(wallet_id), reference),
                    reference: None,
                    metadata: serde_json::Value::Null,
                }
            }
            Op::Transfer { from, to, amount, fee } => {
                let from_wallet_id = self.pick(from);
                let to_wallet_id = self.receiver(from_wallet_id, to);
                let scale = self.scale_of(from_wallet_id);
                let available = self.available(from_wallet_id);
                Command::Transfer {
                    transfer_id: TransferId(self.fresh_id()),
                    from_wallet_id,
                    to_wallet_id,
                    amount: amount.decimal(scale, available),
                    fee: fee.as_ref().map(|fee| fee.decimal(scale, available / 10)),
                    reference: None,
                    metadata: serde_json::Value::Null,
                }
            }
            Op::Reverse { transfer, amount, reuse_id } => {
                let transfer_id = match transfer {
                    TransferPick::Open(index) => self.open_transfer(*index),
                    TransferPick::Any(index) => self.existing_transfer(*index),
                    TransferPick::Unknown => TransferId(self.fresh_id()),
                };
                let (scale, remaining) = self
                    .model
                    .transfers
                    .get(&transfer_id)
                    .map_or((2, 1_000), |original| (original.scale, original.amount - original.reversed_amount));
                let reversal_id = match reuse_id {
                    Some(index) => self.existing_transfer(*index),
                    None => TransferId(self.fresh_id()),
                };
                Command::Reverse {
                    reversal_id,
                    transfer_id,
                    amount: amount.as_ref().map(|amount| amount.decimal(scale, remaining)),
                    reason: None,
                }
            }
            Op::ReverseInParts { .. } => unreachable!("expanded by commands()"),
            Op::Advance { .. } => unreachable!("handled by commands()"),
            Op::PlaceHold { wallet, amount, expiry, reuse_id } => {
                let wallet_id = self.pick(wallet);
                let hold_id = match reuse_id {
                    Some(index) => self.pick_hold(&HoldPick::Any(*index)),
                    None => HoldId(self.fresh_id()),
                };
                let expiry = match expiry {
                    ExpiryGen::In(seconds) => Expiry::In(*seconds),
                    ExpiryGen::At(seconds) => Expiry::At(self.now + Duration::seconds(*seconds)),
                };
                Command::PlaceHold {
                    hold_id,
                    wallet_id,
                    amount: amount.decimal(self.scale_of(wallet_id), self.available(wallet_id)),
                    expiry,
                    reference: None,
                    metadata: serde_json::Value::Null,
                    at: self.now,
                }
            }
            Op::Capture { hold, amount, to, is_final } => {
                let hold_id = self.pick_hold(hold);
                let (wallet_id, scale, remaining) = self
                    .model
                    .holds
                    .get(&hold_id)
                    .map_or((WalletId(Uuid::nil()), 2, 1_000), |hold| (hold.wallet, hold.scale, hold.remaining()));
                Command::CaptureHold {
                    hold_id,
                    transfer_id: TransferId(self.fresh_id()),
                    amount: amount.as_ref().map(|amount| amount.decimal(scale, remaining)),
                    to_wallet_id: to.as_ref().map(|to| self.receiver(wallet_id, to)),
                    is_final: *is_final,
                    reference: None,
                    metadata: serde_json::Value::Null,
                    at: self.now,
                }
            }
            Op::Void { hold } => Command::VoidHold { hold_id: self.pick_hold(hold), reason: None, at: self.now },
            Op::Expire { hold } => Command::ExpireHold { hold_id: self.pick_hold(hold), at: self.now },
            Op::Status { wallet, change } => Command::ChangeStatus {
                wallet_id: self.pick(wallet),
                change: [StatusCommand::Freeze, StatusCommand::Unfreeze, StatusCommand::Close][*change],
                reason: None,
            },
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        for command in self.commands(op) {
            self.execute(&command)?;
        }
        Ok(())
    }

    /// Decides one command as command-service would, checks it against the model, and appends what it decided.
    fn execute(&mut self, command: &Command) -> Result<(), TestCaseError> {
        let loaded = support::load_for(&self.store, command);
        let decided = decide(&loaded, command);
        prop_assert_eq!(&decided, &decide(&self.store, command), "what dependencies() loaded decides differently");
        let mut model = self.model.clone();
        let predicted = model.execute(command);
        match (decided, predicted) {
            (Ok(changes), Ok(postings)) => {
                self.check_changes(command, &changes, &postings, &model)?;
                for change in &changes {
                    let change = round_trip(change)?;
                    self.store.apply(&change);
                    self.log.push(change);
                }
                self.model = model;
            }
            (Err(error), Err(expected)) => prop_assert_eq!(rejection(&error), expected, "{:?}", command),
            (decided, predicted) => {
                prop_assert!(false, "{:?}\ndecided:   {:?}\npredicted: {:?}", command, decided, predicted)
            }
        }
        self.check_against_model()
    }

    /// The transfer record, the reversal mark and every posting are what the model expects, at the asset's scale.
    fn check_changes(
        &self,
        command: &Command,
        changes: &[Change],
        postings: &[ModelPosting],
        model: &Model,
    ) -> Result<(), TestCaseError> {
        let mut written = Vec::new();
        for change in changes {
            match (&change.stream, &change.event) {
                (
                    StreamId::Wallet(id),
                    Event::Wallet(WalletEvent::WalletDebited(posting) | WalletEvent::WalletCredited(posting)),
                ) => {
                    let scale = model.wallets[id].scale;
                    written.push(ModelPosting {
                        wallet: *id,
                        debit: matches!(change.event, Event::Wallet(WalletEvent::WalletDebited(_))),
                        transfer: posting.transfer_id,
                        kind: posting.kind,
                        units: written_units(posting.amount, scale)?,
                        balance_after: written_units(posting.balance_after, scale)?,
                        counterparty: posting.counterparty_wallet_id,
                        leg: posting.leg,
                    });
                }
                (StreamId::Transfer(id), Event::Transfer(TransferEvent::TransferRecorded(recorded))) => {
                    prop_assert_eq!(*id, recorded.transfer_id);
                    let expected = &model.transfers[id];
                    let scale = expected.scale;
                    prop_assert_eq!(recorded.kind, expected.kind);
                    prop_assert_eq!(&recorded.asset, &expected.asset);
                    prop_assert_eq!(recorded.scale.places(), scale);
                    prop_assert_eq!(written_units(recorded.amount, scale)?, expected.amount);
                    prop_assert_eq!(written_units(recorded.fee, scale)?, expected.fee);
                    prop_assert_eq!(recorded.reverses, expected.reverses);
                    let mut legs = Vec::new();
                    for leg in &recorded.legs {
                        let units = written_units(leg.amount, scale)?;
                        legs.push(ModelLeg { from: leg.from_wallet_id, to: leg.to_wallet_id, units, role: leg.role });
                    }
                    prop_assert_eq!(&legs, &expected.legs);
                }
                (StreamId::Transfer(id), Event::Transfer(TransferEvent::TransferReversed(reversed))) => {
                    let Command::Reverse { reversal_id, transfer_id, .. } = command else {
                        return Err(TestCaseError::fail(format!("{command:?} marked {id} reversed")));
                    };
                    prop_assert_eq!(id, transfer_id);
                    prop_assert_eq!(reversed.reversal_id, *reversal_id);
                    let reversal = &model.transfers[reversal_id];
                    prop_assert_eq!(written_units(reversed.amount, reversal.scale)?, reversal.amount);
                    prop_assert_eq!(written_units(reversed.fee, reversal.scale)?, reversal.fee);
                }
                _ => {}
            }
        }
        prop_assert_eq!(&written, &postings.to_vec(), "postings of {:?}", command);
        Ok(())
    }

    /// The domain's world equals the model, and the ledger's invariants hold on the domain's own numbers.
    fn check_against_model(&self) -> Result<(), TestCaseError> {
        let model = &self.model;
        let mut sums: BTreeMap<AssetCode, i128> = BTreeMap::new();
        prop_assert_eq!(self.store.wallets.len(), model.wallets.len());
        for (id, state) in &self.store.wallets {
            let Wallet::Open(open) = state else { return Err(TestCaseError::fail(format!("{id} unopened"))) };
            let expected = &model.wallets[id];
            let balance = written_units(open.balance, expected.scale)?;
            prop_assert_eq!(balance, expected.balance, "balance of {}", id);
            prop_assert_eq!(open.status, expected.status, "status of {}", id);
            prop_assert_eq!(open.kind, expected.kind);
            prop_assert_eq!(&open.asset, &expected.asset);
            prop_assert_eq!(open.scale.places(), expected.scale);
            let limit = open.overdraft_limit.map(|limit| written_units(limit, expected.scale)).transpose()?;
            prop_assert_eq!(limit, expected.limit);
            let held = written_units(open.held, expected.scale)?;
            prop_assert_eq!(held, expected.held, "held of {}", id);
            prop_assert_eq!(open.active_holds, expected.active_holds, "active holds of {}", id);
            match limit {
                Some(limit) => {
                    prop_assert!(balance - held >= -limit, "{} has {} available, below -{}", id, balance - held, limit)
                }
                None => prop_assert_eq!(open.kind, WalletKind::Treasury),
            }
            *sums.entry(open.asset.clone()).or_default() += balance;
        }
        for (code, sum) in &sums {
            prop_assert_eq!(*sum, 0, "the wallets of {} sum to {}", code, sum);
        }
        prop_assert_eq!(self.store.transfers.len(), model.transfers.len());
        for (id, expected) in &model.transfers {
            let Some(Transfer::Recorded(recorded)) = self.store.transfers.get(id) else {
                return Err(TestCaseError::fail(format!("transfer {id} not recorded")));
            };
            prop_assert_eq!(written_units(recorded.reversed_amount, expected.scale)?, expected.reversed_amount);
            prop_assert_eq!(written_units(recorded.reversed_fee, expected.scale)?, expected.reversed_fee);
            prop_assert!(expected.reversed_amount <= expected.amount && expected.reversed_fee <= expected.fee);
        }
        self.check_holds()?;
        let owners: BTreeMap<(String, AssetCode), WalletId> =
            self.store.owners.iter().map(|(key, id)| (key.clone(), id.unwrap())).collect();
        prop_assert_eq!(&owners, &model.owners);
        prop_assert_eq!(self.store.assets.len(), model.assets.len());
        for (code, expected) in &model.assets {
            let Some(Asset::Defined(definition)) = self.store.assets.get(code) else {
                return Err(TestCaseError::fail(format!("asset {code} not defined")));
            };
            prop_assert_eq!(definition.scale.places(), expected.scale);
            let system = definition.system_wallets;
            prop_assert_eq!(
                (system.treasury, system.revenue, system.fees),
                (expected.treasury, expected.revenue, expected.fees)
            );
            match (&definition.cash_in_fee, &expected.fee) {
                (None, None) => {}
                (Some(policy), Some(fee)) => {
                    let percent = Decimal::from_i128_with_scale(fee.percent_units, fee.percent_places);
                    prop_assert_eq!(policy.percent, percent);
                    prop_assert_eq!(written_units(policy.fixed, expected.scale)?, fee.fixed);
                    let min = policy.min.map(|min| written_units(min, expected.scale)).transpose()?;
                    let max = policy.max.map(|max| written_units(max, expected.scale)).transpose()?;
                    prop_assert_eq!((min, max), (fee.min, fee.max));
                }
                (stored, expected) => prop_assert!(false, "fee policy {:?}, expected {:?}", stored, expected),
            }
        }
        Ok(())
    }

    /// Every hold is as the model has it; on the domain's own numbers, each wallet's `held` is what its active
    /// holds have left, and a resolved hold's captures and release add up to its amount.
    fn check_holds(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.store.holds.len(), self.model.holds.len());
        let mut remaining_of: BTreeMap<WalletId, (i128, u32)> = BTreeMap::new();
        for (id, expected) in &self.model.holds {
            let Some(Hold::Placed(placed)) = self.store.holds.get(id) else {
                return Err(TestCaseError::fail(format!("hold {id} not placed")));
            };
            let scale = expected.scale;
            let (amount, captured, released) = (
                written_units(placed.amount, scale)?,
                written_units(placed.captured, scale)?,
                written_units(placed.released, scale)?,
            );
            prop_assert_eq!((amount, captured, released), (expected.amount, expected.captured, expected.released));
            prop_assert_eq!(placed.status, expected.status, "status of hold {}", id);
            prop_assert_eq!(placed.expires_at, expected.expires_at);
            prop_assert_eq!(&placed.captures, &expected.captures);
            prop_assert!(captured <= amount && captured + released <= amount, "hold {} over-settled", id);
            if placed.status == HoldStatus::Active {
                prop_assert!(placed.resolved_at.is_none());
                let entry = remaining_of.entry(placed.wallet_id).or_default();
                entry.0 += amount - captured - released;
                entry.1 += 1;
            } else {
                prop_assert_eq!(captured + released, amount, "resolved hold {} leaves something held", id);
                prop_assert!(placed.resolved_at.is_some());
            }
        }
        for (id, state) in &self.store.wallets {
            let Wallet::Open(open) = state else { continue };
            let (remaining, active) = remaining_of.get(id).copied().unwrap_or_default();
            prop_assert_eq!(open.held, Decimal::from_i128_with_scale(remaining, open.scale.places()), "held of {}", id);
            prop_assert_eq!(open.active_holds, active);
        }
        Ok(())
    }

    /// Every stream folded from scratch with its own `evolve`, and the whole log through `World::apply`,
    /// rebuild the same world; every state survives its JSON snapshot.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let mut streams: BTreeMap<StreamId, Vec<&Event>> = BTreeMap::new();
        for change in &self.log {
            streams.entry(change.stream.clone()).or_default().push(&change.event);
        }
        let mut folded = World::default();
        for (stream, events) in &streams {
            match stream {
                StreamId::Asset(code) => {
                    let state = events.iter().fold(Asset::default(), |state, event| match event {
                        Event::Asset(event) => asset::evolve(state, event),
                        other => panic!("{other:?} on {stream}"),
                    });
                    folded.assets.insert(code.clone(), state);
                }
                StreamId::Wallet(id) => {
                    let state = events.iter().fold(Wallet::default(), |state, event| match event {
                        Event::Wallet(event) => wallet::evolve(state, event),
                        other => panic!("{other:?} on {stream}"),
                    });
                    folded.wallets.insert(*id, state);
                }
                StreamId::Transfer(id) => {
                    let state = events.iter().fold(Transfer::default(), |state, event| match event {
                        Event::Transfer(event) => transfer::evolve(state, event),
                        other => panic!("{other:?} on {stream}"),
                    });
                    folded.transfers.insert(*id, state);
                }
                StreamId::Hold(id) => {
                    let state = events.iter().fold(Hold::default(), |state, event| match event {
                        Event::Hold(event) => hold::evolve(state, event),
                        other => panic!("{other:?} on {stream}"),
                    });
                    folded.holds.insert(*id, state);
                }
            }
        }
        prop_assert_eq!(&folded.assets, &self.store.assets);
        prop_assert_eq!(&folded.wallets, &self.store.wallets);
        prop_assert_eq!(&folded.transfers, &self.store.transfers);
        prop_assert_eq!(&folded.holds, &self.store.holds);

        let mut replayed = World::default();
        for change in &self.log {
            replayed.apply(change);
        }
        prop_assert_eq!(&replayed, &self.store);

        for (code, state) in &self.store.assets {
            prop_assert_eq!(snapshot(state)?, snapshot(&replayed.assets[code])?);
        }
        for (id, state) in &self.store.wallets {
            prop_assert_eq!(snapshot(state)?, snapshot(&replayed.wallets[id])?);
        }
        for (id, state) in &self.store.transfers {
            prop_assert_eq!(snapshot(state)?, snapshot(&replayed.transfers[id])?);
        }
        for (id, state) in &self.store.holds {
            prop_assert_eq!(snapshot(state)?, snapshot(&replayed.holds[id])?);
        }
        Ok(())
    }
}

/// A change as it comes back from the store: type and JSON text, read back on its stream id both ways, with
/// `from_stored` (a JSON value) and `from_stored_text` (the text, as the projector reads it).
fn round_trip(change: &Change) -> Result<Change, TestCaseError> {
    let stream: StreamId =
        change.stream.to_string().parse().map_err(|error| TestCaseError::fail(format!("{error}")))?;
    prop_assert_eq!(&stream, &change.stream);
    let (event_type, data) = change.event.to_stored();
    let text = serde_json::to_string(&data).unwrap();
    let event = Event::from_stored(&stream, &event_type, serde_json::from_str(&text).unwrap())
        .map_err(|error| TestCaseError::fail(format!("{event_type} {text}: {error}")))?;
    prop_assert_eq!(&event, &change.event);
    let from_text = Event::from_stored_text(&stream, &event_type, &text)
        .map_err(|error| TestCaseError::fail(format!("{event_type} {text} as text: {error}")))?;
    prop_assert_eq!(&from_text, &change.event);
    let (type_again, data_again) = event.to_stored();
    prop_assert_eq!(type_again, event_type);
    prop_assert_eq!(serde_json::to_string(&data_again).unwrap(), text, "the stored JSON changed on a round trip");
    Ok(Change { stream, event })
}

/// A state's JSON snapshot, checked to read back as the same state and the same text.
fn snapshot<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(state: &T) -> Result<String, TestCaseError> {
    let text = serde_json::to_string(state).unwrap();
    let back: T = serde_json::from_str(&text).map_err(|error| TestCaseError::fail(format!("{text}: {error}")))?;
    prop_assert_eq!(&back, state);
    prop_assert_eq!(serde_json::to_string(&back).unwrap(), text.clone());
    Ok(text)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, max_shrink_iters: 4_096, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_the_books_as_the_model_does(ops in scenario_strategy()) {
        let mut run = Run::default();
        for op in &ops {
            run.step(op)?;
        }
        run.check_replay()?;
    }
}

#[test]
fn the_models_multiply_divide_rounds_half_up_exactly() {
    assert_eq!(multiply_divide_half_up(1, 1, 3), 0);
    assert_eq!(multiply_divide_half_up(1, 3, 2), 2);
    assert_eq!(multiply_divide_half_up(160, 40, 10_000), 1);
    assert_eq!(multiply_divide_half_up(100, 100, 100), 100);
    // (2^95 + 1) × (2^95 - 1) ÷ 2^96 = 2^94 - 2^-96: rounds to 2^94.
    let big = 1i128 << 95;
    assert_eq!(multiply_divide_half_up(big + 1, big - 1, big * 2), 1 << 94);
    // 3 × (2^95 + 1) ÷ (2^96) = 1.5 + 3 × 2^-96: rounds up to 2.
    assert_eq!(multiply_divide_half_up(3, big + 1, big * 2), 2);
    assert_eq!(format_units(-5, 2), "-0.05");
    assert_eq!(format_units(1234, 0), "1234");
    assert_eq!(format_units(0, 18), "0.000000000000000000");
}
