//! Transfers: the aggregate that records a movement's legs once and caps what its reversals may take back.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::asset::AssetDefinition;
use crate::error::{DomainError, Rule};
pub use crate::ids::TransferId;
use crate::ids::{AssetCode, HoldId, WalletId};
use crate::money::{from_units, mul_div_half_up, units_at, Scale};

/// What a transfer does, which fixes its legs (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// treasury → wallet
    Topup,
    /// treasury → wallet
    Bonus,
    /// wallet → revenue
    Spend,
    /// wallet → treasury
    Withdrawal,
    /// treasury → wallet (amount); wallet → fees (fee)
    CashIn,
    /// wallet → wallet (amount); sender → fees (optional fee)
    Transfer,
    /// the opposite of (part of) an earlier transfer
    Reversal,
}

impl TransferKind {
    pub const ALL: [TransferKind; 7] = [
        TransferKind::Topup,
        TransferKind::Bonus,
        TransferKind::Spend,
        TransferKind::Withdrawal,
        TransferKind::CashIn,
        TransferKind::Transfer,
        TransferKind::Reversal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Topup => "topup",
            TransferKind::Bonus => "bonus",
            TransferKind::Spend => "spend",
            TransferKind::Withdrawal => "withdrawal",
            TransferKind::CashIn => "cash_in",
            TransferKind::Transfer => "transfer",
            TransferKind::Reversal => "reversal",
        }
    }
}

/// Whether a leg moves the transfer's amount or its fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegRole {
    Principal,
    Fee,
}

/// One debit and one credit of the same amount, between two wallets of the same asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub from_wallet_id: WalletId,
    pub to_wallet_id: WalletId,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub role: LegRole,
}

/// Everything a transfer is, recorded once on its own stream (`transfer-{uuid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecorded {
    pub transfer_id: TransferId,
    pub kind: TransferKind,
    pub asset: AssetCode,
    pub scale: Scale,
    /// The principal moved.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The fee moved to the fees wallet (zero when none).
    #[serde(with = "rust_decimal::serde::str")]
    pub fee: Decimal,
    pub legs: Vec<Leg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// For a reversal: the transfer it takes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<TransferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a capture: the hold it draws on. Absent from every transfer that is not a capture, so that adding it
    /// changed no stored event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<HoldId>,
}

impl TransferRecorded {
    /// A new movement of `asset` (no reference, metadata or reversal yet).
    pub fn movement(
        transfer_id: TransferId,
        kind: TransferKind,
        asset: &AssetDefinition,
        amount: Decimal,
        fee: Decimal,
        legs: Vec<Leg>,
    ) -> TransferRecorded {
        TransferRecorded {
            transfer_id,
            kind,
            asset: asset.code.clone(),
            scale: asset.scale,
            amount,
            fee,
            legs,
            reference: None,
            metadata: serde_json::Value::Null,
            reverses: None,
            reason: None,
            hold_id: None,
        }
    }
}

/// A reversal took back part of this transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReversed {
    pub reversal_id: TransferId,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub fee: Decimal,
}

/// Events of a transfer stream (`transfer-{uuid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TransferEvent {
    TransferRecorded(TransferRecorded),
    TransferReversed(TransferReversed),
}

/// A transfer stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Transfer {
    #[default]
    Unrecorded,
    Recorded(RecordedTransfer),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedTransfer {
    pub transfer_id: TransferId,
    pub kind: TransferKind,
    pub asset: AssetCode,
    pub scale: Scale,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub fee: Decimal,
    pub legs: Vec<Leg>,
    pub reverses: Option<TransferId>,
    #[serde(with = "rust_decimal::serde::str")]
    pub reversed_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub reversed_fee: Decimal,
}

impl RecordedTransfer {
    pub fn remaining_amount(&self) -> Decimal {
        self.amount - self.reversed_amount
    }

    /// What a reversal of `amount` takes back: its share of the fee and its legs, undone in reverse order,
    /// so that every wallet gets back what it gave before giving back what it got.
    /// The last reversal takes exactly what remains of the fee, so reversals always sum to the original.
    pub fn plan_reversal(&self, amount: Option<Decimal>) -> Result<(Decimal, Decimal, Vec<Leg>), DomainError> {
        if self.kind == TransferKind::Reversal {
            return Err(DomainError::invalid("transfer_id", Rule::ReversalOfReversal));
        }
        let remaining = self.remaining_amount();
        let requested = amount.unwrap_or(remaining);
        if requested > remaining || requested <= Decimal::ZERO {
            return Err(DomainError::ReversalExceedsTransfer {
                transfer_id: self.transfer_id,
                remaining: self.scale.format(remaining),
                requested: self.scale.format(requested),
            });
        }
        let fee = if requested == remaining {
            self.fee - self.reversed_fee
        } else {
            // fee × requested ÷ amount, on whole units so that only the final half up rounds.
            let units = |value: Decimal| units_at(value, self.scale).ok_or(DomainError::AmountOutOfRange);
            let share = mul_div_half_up(units(self.fee)?, units(requested)?, units(self.amount)?)
                .and_then(|share| from_units(share, self.scale))
                .ok_or(DomainError::AmountOutOfRange)?;
            share.min(self.fee - self.reversed_fee)
        };
        let legs = self
            .legs
            .iter()
            .rev()
            .map(|leg| Leg {
                from_wallet_id: leg.to_wallet_id,
                to_wallet_id: leg.from_wallet_id,
                amount: match leg.role {
                    LegRole::Principal => requested,
                    LegRole::Fee => fee,
                },
                role: leg.role,
            })
            .filter(|leg| !leg.amount.is_zero())
            .collect();
        Ok((requested, fee, legs))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferCommand {
    Record(TransferRecorded),
    /// Takes back `amount` and `fee`, as planned by [`RecordedTransfer::plan_reversal`].
    Reverse(TransferReversed),
}

pub fn decide(transfer: &Transfer, command: &TransferCommand) -> Result<Vec<TransferEvent>, DomainError> {
    match (transfer, command) {
        (Transfer::Unrecorded, TransferCommand::Record(recorded)) => {
            Ok(vec![TransferEvent::TransferRecorded(recorded.clone())])
        }
        (Transfer::Recorded(recorded), TransferCommand::Record(_)) => {
            Err(DomainError::invalid("transfer_id", Rule::TransferRecorded { transfer_id: recorded.transfer_id }))
        }
        (Transfer::Unrecorded, TransferCommand::Reverse(_)) => Err(DomainError::TransferNotFound { transfer_id: None }),
        (Transfer::Recorded(recorded), TransferCommand::Reverse(reversed)) => {
            if reversed.amount > recorded.remaining_amount() || reversed.fee > recorded.fee - recorded.reversed_fee {
                return Err(DomainError::ReversalExceedsTransfer {
                    transfer_id: recorded.transfer_id,
                    remaining: recorded.scale.format(recorded.remaining_amount()),
                    requested: recorded.scale.format(reversed.amount),
                });
            }
            Ok(vec![TransferEvent::TransferReversed(reversed.clone())])
        }
    }
}

/// # Panics
/// On an event that cannot follow the state: the stream is corrupt.
pub fn evolve(transfer: Transfer, event: &TransferEvent) -> Transfer {
    match (transfer, event) {
        (Transfer::Unrecorded, TransferEvent::TransferRecorded(recorded)) => Transfer::Recorded(RecordedTransfer {
            transfer_id: recorded.transfer_id,
            kind: recorded.kind,
            asset: recorded.asset.clone(),
            scale: recorded.scale,
            amount: recorded.amount,
            fee: recorded.fee,
            legs: recorded.legs.clone(),
            reverses: recorded.reverses,
            reversed_amount: crate::wallet::zero_at(recorded.scale),
            reversed_fee: crate::wallet::zero_at(recorded.scale),
        }),
        (Transfer::Recorded(mut recorded), TransferEvent::TransferReversed(reversed)) => {
            recorded.reversed_amount += reversed.amount;
            recorded.reversed_fee += reversed.fee;
            Transfer::Recorded(recorded)
        }
        (transfer, event) => panic!("corrupt transfer stream: {event:?} cannot follow {transfer:?}"),
    }
}
