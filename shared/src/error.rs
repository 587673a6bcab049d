//! Why a command was refused: [`DomainError`], one variant per stable problem code, carrying data, never prose.

use chrono::{DateTime, Utc};

use crate::hold::HoldStatus;
use crate::ids::{AssetCode, HoldId, TransferId, WalletId};
use crate::money::AmountError;

/// Why a command was refused. Each variant maps to one stable problem code (see [`crate::api::ProblemCode`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {rule}")]
    Validation { field: String, rule: Rule },
    #[error("{field}: {reason}")]
    InvalidAmount { field: String, reason: AmountError },
    #[error("the result would be out of the representable range")]
    AmountOutOfRange,
    #[error("asset {code} does not exist")]
    AssetNotFound { code: String },
    #[error("wallet not found")]
    WalletNotFound { wallet_id: Option<WalletId> },
    #[error("transfer not found")]
    TransferNotFound { transfer_id: Option<TransferId> },
    #[error("asset {code} already exists")]
    AssetExists { code: AssetCode },
    #[error("a wallet already exists: {wallet_id}")]
    WalletExists { wallet_id: WalletId },
    #[error("wallets hold different assets: {from_asset} and {to_asset}")]
    AssetMismatch { from_asset: AssetCode, to_asset: AssetCode },
    #[error("a transfer needs two different wallets")]
    SameWallet,
    #[error("wallet {wallet_id} has {available} available, {requested} requested")]
    InsufficientFunds { wallet_id: WalletId, available: String, requested: String },
    #[error("wallet {wallet_id} is frozen")]
    WalletFrozen { wallet_id: WalletId },
    #[error("wallet {wallet_id} is closed")]
    WalletClosed { wallet_id: WalletId },
    #[error("wallet {wallet_id} still holds {balance}")]
    WalletNotEmpty { wallet_id: WalletId, balance: String },
    #[error("transfer {transfer_id} has {remaining} left to reverse, {requested} requested")]
    ReversalExceedsTransfer { transfer_id: TransferId, remaining: String, requested: String },
    #[error("hold not found")]
    HoldNotFound { hold_id: HoldId },
    #[error("hold {hold_id} is {} already", status.as_str())]
    HoldNotActive { hold_id: HoldId, status: HoldStatus },
    /// At or after `expires_at`, whether or not the expiry has been recorded yet: the command's time decides.
    #[error("hold {hold_id} expired at {expires_at}")]
    HoldExpired { hold_id: HoldId, expires_at: DateTime<Utc> },
    #[error("hold {hold_id} has {remaining} left to capture, {requested} requested")]
    HoldExceeded { hold_id: HoldId, remaining: String, requested: String },
    #[error("wallet {wallet_id} has {active_holds} active holds")]
    WalletHasActiveHolds { wallet_id: WalletId, active_holds: u32 },
}

impl DomainError {
    /// `field` breaks `rule`: `422 validation_failed` naming the field.
    pub fn invalid(field: &str, rule: Rule) -> DomainError {
        DomainError::Validation { field: field.to_owned(), rule }
    }

    pub(crate) fn invalid_amount(field: &str) -> impl Fn(AmountError) -> DomainError + '_ {
        move |reason| DomainError::InvalidAmount { field: field.to_owned(), reason }
    }
}

/// A rule of the input or of the ledger that has no problem code of its own: each answers
/// `422 validation_failed` with the field, and its text is the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("must match {pattern}")]
    Pattern { pattern: &'static str },
    #[error("must have 1 to {length_max} characters")]
    Length { length_max: usize },
    #[error("must not contain control characters")]
    NoControlCharacters,
    #[error("must not contain NUL characters")]
    NoNulCharacters,
    #[error("must be a JSON object")]
    JsonObject,
    #[error("must nest at most {depth_max} levels")]
    DepthMax { depth_max: usize },
    #[error("must be at most {bytes_max} bytes")]
    BytesMax { bytes_max: usize },
    #[error("must be between 0 and 100")]
    Percent,
    #[error("{0}")]
    Money(AmountError),
    #[error("must not exceed max")]
    MinAboveMax,
    #[error("must be three different wallets")]
    DistinctSystemWallets,
    #[error("system wallets cannot be frozen, unfrozen or closed")]
    SystemWalletStatus,
    #[error("system wallets move money only as legs of other kinds")]
    SystemWalletMove,
    #[error("transfers and reversals have commands of their own")]
    KindHasOwnCommand,
    #[error("a reversal cannot itself be reversed")]
    ReversalOfReversal,
    #[error("transfer {transfer_id} is already recorded")]
    TransferRecorded { transfer_id: TransferId },
    #[error("hold {hold_id} is already placed")]
    HoldPlaced { hold_id: HoldId },
    #[error("give expires_in_s or expires_at, not both")]
    ExpiryTwice,
    #[error("must be in the future and at most {seconds_max} s ahead")]
    ExpiryWindow { seconds_max: i64 },
    #[error("a hold takes at most {captures_max} captures")]
    CapturesMax { captures_max: usize },
}
