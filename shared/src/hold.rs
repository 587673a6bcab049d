//! Holds: a reservation of part of one wallet's balance, later captured (all or part, once or several times),
//! voided, or expired (SPEC §8). A hold is a stream of its own (`hold-{uuid}`); the wallet it reserves on
//! records what it holds (`held`) with [`crate::wallet::WalletEvent::WalletHoldPlaced`] and
//! [`crate::wallet::WalletEvent::WalletHoldSettled`], so that every debit of the wallet is decided against
//! `balance − held`.
//!
//! Time is an input: every command carries the instant it is decided at, and a hold is expired for every
//! command at or after its `expires_at`, whether or not its expiry has been recorded yet.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Rule};
pub use crate::ids::HoldId;
use crate::ids::{AssetCode, TransferId, WalletId};
use crate::money::{Amount, Scale};

/// How long a hold lasts when the command names no expiry, in seconds.
pub const HOLD_EXPIRES_IN_S_DEFAULT: i64 = 3_600;
/// How far ahead a hold may expire at most, in seconds: 30 days.
pub const HOLD_EXPIRES_IN_S_MAX: i64 = 30 * 24 * 3_600;
/// Captures of one hold at most: each is a transfer the hold's state lists.
pub const HOLD_CAPTURES_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    /// Resolved by a final capture: what was not captured was released.
    Captured,
    /// Resolved by a void: what remained was released.
    Voided,
    /// Resolved by the expirer: what remained was released.
    Expired,
}

impl HoldStatus {
    pub const ALL: [HoldStatus; 4] =
        [HoldStatus::Active, HoldStatus::Captured, HoldStatus::Voided, HoldStatus::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Voided => "voided",
            HoldStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<HoldStatus> {
        HoldStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// When a new hold expires, as the command names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// This many seconds after the command's time.
    In(i64),
    At(DateTime<Utc>),
}

impl Expiry {
    /// The instant a hold placed at `at` expires: strictly after `at`, and at most [`HOLD_EXPIRES_IN_S_MAX`] later.
    pub fn resolve(self, at: DateTime<Utc>) -> Result<DateTime<Utc>, DomainError> {
        let (field, expires_at) = match self {
            Expiry::In(seconds) => {
                let expires_at =
                    (1..=HOLD_EXPIRES_IN_S_MAX).contains(&seconds).then(|| at + Duration::seconds(seconds));
                ("expires_in_s", expires_at)
            }
            Expiry::At(expires_at) => ("expires_at", Some(expires_at)),
        };
        match expires_at {
            Some(expires_at) if expires_at > at && expires_at <= at + Duration::seconds(HOLD_EXPIRES_IN_S_MAX) => {
                Ok(expires_at)
            }
            _ => Err(DomainError::invalid(field, Rule::ExpiryWindow { seconds_max: HOLD_EXPIRES_IN_S_MAX })),
        }
    }
}

/// A hold stream's state. Unplaced only while a command is decided: not worth a box on every placed one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Hold {
    #[default]
    Unplaced,
    Placed(PlacedHold),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedHold {
    pub hold_id: HoldId,
    pub wallet_id: WalletId,
    pub asset: AssetCode,
    pub scale: Scale,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub captured: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub released: Decimal,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// The transfers that captured from it, in order.
    pub captures: Vec<TransferId>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
}

impl PlacedHold {
    /// What is still reserved: the amount less what was captured and what was released.
    pub fn remaining(&self) -> Decimal {
        self.amount - self.captured - self.released
    }

    /// Refuses a capture or a void of a hold that is resolved, or at or after its `expires_at`.
    fn ensure_open_at(&self, at: DateTime<Utc>) -> Result<(), DomainError> {
        match self.status {
            HoldStatus::Active if at >= self.expires_at => {
                Err(DomainError::HoldExpired { hold_id: self.hold_id, expires_at: self.expires_at })
            }
            HoldStatus::Active => Ok(()),
            HoldStatus::Expired => Err(DomainError::HoldExpired { hold_id: self.hold_id, expires_at: self.expires_at }),
            status => Err(DomainError::HoldNotActive { hold_id: self.hold_id, status }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPlaced {
    pub hold_id: HoldId,
    pub wallet_id: WalletId,
    pub asset: AssetCode,
    pub scale: Scale,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    pub placed_at: DateTime<Utc>,
}

/// A capture: the transfer that took `amount` from the hold and, for a final one, what it released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldCaptured {
    pub transfer_id: TransferId,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// What remained after this capture and was released (zero unless final).
    #[serde(with = "rust_decimal::serde::str")]
    pub released: Decimal,
    /// Whether this capture resolved the hold.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub captured_at: DateTime<Utc>,
}

/// What remained of a hold, released by a void or by its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleased {
    #[serde(with = "rust_decimal::serde::str")]
    pub released: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub released_at: DateTime<Utc>,
}

/// Events of a hold stream (`hold-{uuid}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum HoldEvent {
    HoldPlaced(HoldPlaced),
    HoldCaptured(HoldCaptured),
    HoldVoided(HoldReleased),
    HoldExpired(HoldReleased),
}

impl HoldEvent {
    /// What the event takes off the wallet's `held`: `(captured, released)`, and whether it resolves the hold.
    pub fn settles(&self) -> Option<(Decimal, Decimal, bool)> {
        match self {
            HoldEvent::HoldPlaced(_) => None,
            HoldEvent::HoldCaptured(captured) => Some((captured.amount, captured.released, captured.is_final)),
            HoldEvent::HoldVoided(released) | HoldEvent::HoldExpired(released) => {
                Some((Decimal::ZERO, released.released, true))
            }
        }
    }
}

/// Why what remains of a hold is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Void { reason: Option<String> },
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldCommand {
    Place(HoldPlaced),
    /// Captures `amount` (default: what remains) into `transfer_id` at `at`.
    Capture {
        transfer_id: TransferId,
        amount: Option<Decimal>,
        is_final: bool,
        at: DateTime<Utc>,
    },
    Release {
        release: Release,
        at: DateTime<Utc>,
    },
}

/// Decides a command on one hold. An expiry of a hold that is resolved, or not due yet, decides nothing: the
/// expirer may find a hold that a capture or a void resolved a moment before.
pub fn decide(hold: &Hold, hold_id: HoldId, command: &HoldCommand) -> Result<Vec<HoldEvent>, DomainError> {
    let placed = match (hold, command) {
        (Hold::Unplaced, HoldCommand::Place(placed)) => return Ok(vec![HoldEvent::HoldPlaced(placed.clone())]),
        (Hold::Placed(_), HoldCommand::Place(_)) => {
            return Err(DomainError::invalid("hold_id", Rule::HoldPlaced { hold_id }))
        }
        (Hold::Unplaced, _) => return Err(DomainError::HoldNotFound { hold_id }),
        (Hold::Placed(placed), _) => placed,
    };
    match command {
        HoldCommand::Place(_) => unreachable!("handled above"),
        HoldCommand::Capture { transfer_id, amount, is_final, at } => {
            placed.ensure_open_at(*at)?;
            if placed.captures.len() >= HOLD_CAPTURES_MAX {
                return Err(DomainError::invalid("hold_id", Rule::CapturesMax { captures_max: HOLD_CAPTURES_MAX }));
            }
            let remaining = placed.remaining();
            let requested = match amount {
                Some(amount) => {
                    Amount::parse(*amount, placed.scale).map_err(DomainError::invalid_amount("amount"))?.value()
                }
                None => remaining,
            };
            if requested > remaining || requested <= Decimal::ZERO {
                return Err(DomainError::HoldExceeded {
                    hold_id,
                    remaining: placed.scale.format(remaining),
                    requested: placed.scale.format(requested),
                });
            }
            let released = if *is_final { remaining - requested } else { crate::wallet::zero_at(placed.scale) };
            Ok(vec![HoldEvent::HoldCaptured(HoldCaptured {
                transfer_id: *transfer_id,
                amount: requested,
                released,
                is_final: *is_final,
                captured_at: *at,
            })])
        }
        HoldCommand::Release { release: Release::Void { reason }, at } => {
            placed.ensure_open_at(*at)?;
            let released = HoldReleased { released: placed.remaining(), reason: reason.clone(), released_at: *at };
            Ok(vec![HoldEvent::HoldVoided(released)])
        }
        HoldCommand::Release { release: Release::Expire, at } => {
            if placed.status != HoldStatus::Active || *at < placed.expires_at {
                return Ok(vec![]);
            }
            Ok(vec![HoldEvent::HoldExpired(HoldReleased {
                released: placed.remaining(),
                reason: None,
                released_at: *at,
            })])
        }
    }
}

/// # Panics
/// On an event that cannot follow the state: the stream is corrupt.
pub fn evolve(hold: Hold, event: &HoldEvent) -> Hold {
    match (hold, event) {
        (Hold::Unplaced, HoldEvent::HoldPlaced(placed)) => Hold::Placed(PlacedHold {
            hold_id: placed.hold_id,
            wallet_id: placed.wallet_id,
            asset: placed.asset.clone(),
            scale: placed.scale,
            amount: placed.amount,
            captured: crate::wallet::zero_at(placed.scale),
            released: crate::wallet::zero_at(placed.scale),
            status: HoldStatus::Active,
            expires_at: placed.expires_at,
            reference: placed.reference.clone(),
            metadata: placed.metadata.clone(),
            captures: Vec::new(),
            created_at: placed.placed_at,
            resolved_at: None,
        }),
        (Hold::Placed(mut hold), event) if hold.status == HoldStatus::Active => {
            match event {
                HoldEvent::HoldPlaced(_) => panic!("corrupt stream hold-{}: placed twice", hold.hold_id),
                HoldEvent::HoldCaptured(captured) => {
                    hold.captured += captured.amount;
                    hold.released += captured.released;
                    hold.captures.push(captured.transfer_id);
                    if captured.is_final {
                        hold.status = HoldStatus::Captured;
                        hold.resolved_at = Some(captured.captured_at);
                    }
                }
                HoldEvent::HoldVoided(released) | HoldEvent::HoldExpired(released) => {
                    hold.released += released.released;
                    hold.status = if matches!(event, HoldEvent::HoldVoided(_)) {
                        HoldStatus::Voided
                    } else {
                        HoldStatus::Expired
                    };
                    hold.resolved_at = Some(released.released_at);
                }
            }
            Hold::Placed(hold)
        }
        (hold, event) => panic!("corrupt hold stream: {event:?} cannot follow {hold:?}"),
    }
}
