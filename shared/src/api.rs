//! The wire contract: request and response bodies, input limits, and the problem codes of SPEC §5.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::asset::SystemWallets;
use crate::error::{DomainError, Rule};
use crate::hold::HoldId;
use crate::money::WireDecimal;
use crate::transfer::TransferId;
use crate::wallet::WalletId;

/// Characters of an idempotency key at most (visible ASCII only).
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 255;
/// Characters of a transfer reference at most.
pub const REFERENCE_LENGTH_MAX: usize = 128;
/// Characters of a freeze, close or reversal reason at most.
pub const REASON_LENGTH_MAX: usize = 512;
/// Bytes of a command's `metadata` object at most, as compact JSON.
pub const METADATA_BYTES_MAX: usize = 4096;
/// Nesting of a `metadata` object at most (the object itself is depth 1).
pub const METADATA_DEPTH_MAX: usize = 8;
/// What an amount that must be above zero looks like on the wire, as the OpenAPI document states it (the
/// amount's scale is the asset's, checked by the domain). JSON numbers are accepted too.
pub const POSITIVE_AMOUNT_PATTERN: &str = r"^(0*[1-9][0-9]*(\.[0-9]+)?|0+\.[0-9]*[1-9][0-9]*)$";
/// What a fee, a limit or a policy's money looks like on the wire: zero or more.
pub const NON_NEGATIVE_AMOUNT_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?$";
/// What an idempotency key looks like: 1 to [`IDEMPOTENCY_KEY_LENGTH_MAX`] visible ASCII characters.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[!-~]{1,255}$";
/// What `If-Match` looks like: a wallet version, as an entity tag in quotes (`"3"`) or, leniently, bare (`3`),
/// of at most [`VERSION_DIGITS_MAX`] digits.
pub const IF_MATCH_PATTERN: &str = r#"^("[0-9]{1,18}"|[0-9]{1,18})$"#;
/// Digits of a version in `If-Match` at most: every version below 10^18 fits, and no stream will reach one.
pub const VERSION_DIGITS_MAX: usize = 18;

/// Every stable problem code of the HTTP API, with its status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    MalformedJson,
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    Unauthenticated,
    Forbidden,
    AssetNotFound,
    WalletNotFound,
    TransferNotFound,
    NotFound,
    MethodNotAllowed,
    AssetExists,
    WalletExists,
    IdempotencyKeyInFlight,
    ConcurrencyConflict,
    VersionMismatch,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    InvalidAmount,
    AssetMismatch,
    SameWallet,
    InsufficientFunds,
    WalletFrozen,
    WalletClosed,
    WalletNotEmpty,
    ReversalExceedsTransfer,
    IdempotencyKeyReused,
    HoldNotFound,
    HoldNotActive,
    HoldExpired,
    HoldExceeded,
    WalletHasActiveHolds,
    RateLimited,
    Internal,
    Unavailable,
    Overloaded,
    Timeout,
    ProjectionBehind,
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 38] = [
        ProblemCode::MalformedJson,
        ProblemCode::IdempotencyKeyMissing,
        ProblemCode::IdempotencyKeyInvalid,
        ProblemCode::Unauthenticated,
        ProblemCode::Forbidden,
        ProblemCode::AssetNotFound,
        ProblemCode::WalletNotFound,
        ProblemCode::TransferNotFound,
        ProblemCode::NotFound,
        ProblemCode::MethodNotAllowed,
        ProblemCode::AssetExists,
        ProblemCode::WalletExists,
        ProblemCode::IdempotencyKeyInFlight,
        ProblemCode::ConcurrencyConflict,
        ProblemCode::VersionMismatch,
        ProblemCode::PayloadTooLarge,
        ProblemCode::UnsupportedMediaType,
        ProblemCode::ValidationFailed,
        ProblemCode::InvalidAmount,
        ProblemCode::AssetMismatch,
        ProblemCode::SameWallet,
        ProblemCode::InsufficientFunds,
        ProblemCode::WalletFrozen,
        ProblemCode::WalletClosed,
        ProblemCode::WalletNotEmpty,
        ProblemCode::ReversalExceedsTransfer,
        ProblemCode::IdempotencyKeyReused,
        ProblemCode::HoldNotFound,
        ProblemCode::HoldNotActive,
        ProblemCode::HoldExpired,
        ProblemCode::HoldExceeded,
        ProblemCode::WalletHasActiveHolds,
        ProblemCode::RateLimited,
        ProblemCode::Internal,
        ProblemCode::Unavailable,
        ProblemCode::Overloaded,
        ProblemCode::Timeout,
        ProblemCode::ProjectionBehind,
    ];

    /// `(status, code, title)`: the single place where a problem meets its HTTP status.
    pub fn describe(self) -> (u16, &'static str, &'static str) {
        match self {
            ProblemCode::MalformedJson => (400, "malformed_json", "Malformed JSON"),
            ProblemCode::IdempotencyKeyMissing => (400, "idempotency_key_missing", "Idempotency-Key header missing"),
            ProblemCode::IdempotencyKeyInvalid => (400, "idempotency_key_invalid", "Idempotency-Key header invalid"),
            ProblemCode::Unauthenticated => (401, "unauthenticated", "Unauthenticated"),
            ProblemCode::Forbidden => (403, "forbidden", "Forbidden"),
            ProblemCode::AssetNotFound => (404, "asset_not_found", "Asset not found"),
            ProblemCode::WalletNotFound => (404, "wallet_not_found", "Wallet not found"),
            ProblemCode::TransferNotFound => (404, "transfer_not_found", "Transfer not found"),
            ProblemCode::NotFound => (404, "not_found", "Not found"),
            ProblemCode::MethodNotAllowed => (405, "method_not_allowed", "Method not allowed"),
            ProblemCode::AssetExists => (409, "asset_exists", "Asset exists"),
            ProblemCode::WalletExists => (409, "wallet_exists", "Wallet exists"),
            ProblemCode::IdempotencyKeyInFlight => (409, "idempotency_key_in_flight", "Idempotency key in flight"),
            ProblemCode::ConcurrencyConflict => (409, "concurrency_conflict", "Concurrency conflict"),
            ProblemCode::VersionMismatch => (412, "version_mismatch", "Version mismatch"),
            ProblemCode::PayloadTooLarge => (413, "payload_too_large", "Payload too large"),
            ProblemCode::UnsupportedMediaType => (415, "unsupported_media_type", "Unsupported media type"),
            ProblemCode::ValidationFailed => (422, "validation_failed", "Validation failed"),
            ProblemCode::InvalidAmount => (422, "invalid_amount", "Invalid amount"),
            ProblemCode::AssetMismatch => (422, "asset_mismatch", "Asset mismatch"),
            ProblemCode::SameWallet => (422, "same_wallet", "Same wallet"),
            ProblemCode::InsufficientFunds => (422, "insufficient_funds", "Insufficient funds"),
            ProblemCode::WalletFrozen => (422, "wallet_frozen", "Wallet frozen"),
            ProblemCode::WalletClosed => (422, "wallet_closed", "Wallet closed"),
            ProblemCode::WalletNotEmpty => (422, "wallet_not_empty", "Wallet not empty"),
            ProblemCode::ReversalExceedsTransfer => (422, "reversal_exceeds_transfer", "Reversal exceeds transfer"),
            ProblemCode::IdempotencyKeyReused => (422, "idempotency_key_reused", "Idempotency key reused"),
            ProblemCode::HoldNotFound => (404, "hold_not_found", "Hold not found"),
            ProblemCode::HoldNotActive => (409, "hold_not_active", "Hold not active"),
            ProblemCode::HoldExpired => (409, "hold_expired", "Hold expired"),
            ProblemCode::HoldExceeded => (422, "hold_exceeded", "Hold exceeded"),
            ProblemCode::WalletHasActiveHolds => (422, "wallet_has_active_holds", "Wallet has active holds"),
            ProblemCode::RateLimited => (429, "rate_limited", "Rate limited"),
            ProblemCode::Internal => (500, "internal", "Internal error"),
            ProblemCode::Unavailable => (503, "unavailable", "Service unavailable"),
            ProblemCode::Overloaded => (503, "overloaded", "Service overloaded"),
            ProblemCode::Timeout => (503, "timeout", "Request timed out"),
            ProblemCode::ProjectionBehind => (503, "projection_behind", "Projection behind"),
        }
    }

    pub fn status(self) -> u16 {
        self.describe().0
    }

    pub fn code(self) -> &'static str {
        self.describe().1
    }
}

/// An RFC 9457 problem document with Tally's stable `code` and any extra members (`available`, `wallet_id`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[cfg_attr(feature = "openapi", schema(value_type = ProblemCode))]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Problem {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Problem {
        let (status, code_text, title) = code.describe();
        Problem {
            problem_type: format!("/problems/{}", code_text.replace('_', "-")),
            title: title.to_owned(),
            status,
            code: code_text.to_owned(),
            detail: Some(detail.into()),
            extra: BTreeMap::new(),
        }
    }

    /// RFC 9457's own members: an extra member of one of these names would shadow it.
    pub const RESERVED_MEMBERS: [&'static str; 5] = ["type", "title", "status", "code", "detail"];

    /// Adds an extension member; never one of [`Problem::RESERVED_MEMBERS`] (a debug build panics).
    pub fn with(mut self, member: &str, value: impl Serialize) -> Problem {
        debug_assert!(!Problem::RESERVED_MEMBERS.contains(&member), "problem member {member:?} is reserved");
        self.extra.insert(member.to_owned(), serde_json::to_value(value).expect("problem members serialize"));
        self
    }
}

impl From<&DomainError> for Problem {
    fn from(error: &DomainError) -> Problem {
        let detail = error.to_string();
        match error {
            DomainError::Validation { field, .. } => {
                Problem::new(ProblemCode::ValidationFailed, detail).with("field", field)
            }
            DomainError::InvalidAmount { field, .. } => {
                Problem::new(ProblemCode::InvalidAmount, detail).with("field", field)
            }
            DomainError::AmountOutOfRange => Problem::new(ProblemCode::InvalidAmount, detail),
            DomainError::AssetNotFound { code } => Problem::new(ProblemCode::AssetNotFound, detail).with("asset", code),
            DomainError::WalletNotFound { wallet_id } => match wallet_id {
                Some(id) => {
                    Problem::new(ProblemCode::WalletNotFound, format!("wallet {id} not found")).with("wallet_id", id)
                }
                None => Problem::new(ProblemCode::WalletNotFound, detail),
            },
            DomainError::TransferNotFound { transfer_id } => match transfer_id {
                Some(id) => Problem::new(ProblemCode::TransferNotFound, format!("transfer {id} not found"))
                    .with("transfer_id", id),
                None => Problem::new(ProblemCode::TransferNotFound, detail),
            },
            DomainError::AssetExists { code } => Problem::new(ProblemCode::AssetExists, detail).with("asset", code),
            DomainError::WalletExists { wallet_id } => {
                Problem::new(ProblemCode::WalletExists, detail).with("wallet_id", wallet_id)
            }
            DomainError::AssetMismatch { from_asset, to_asset } => Problem::new(ProblemCode::AssetMismatch, detail)
                .with("from_asset", from_asset)
                .with("to_asset", to_asset),
            DomainError::SameWallet => Problem::new(ProblemCode::SameWallet, detail),
            DomainError::InsufficientFunds { wallet_id, available, requested } => {
                Problem::new(ProblemCode::InsufficientFunds, detail)
                    .with("wallet_id", wallet_id)
                    .with("available", available)
                    .with("requested", requested)
            }
            DomainError::WalletFrozen { wallet_id } => {
                Problem::new(ProblemCode::WalletFrozen, detail).with("wallet_id", wallet_id)
            }
            DomainError::WalletClosed { wallet_id } => {
                Problem::new(ProblemCode::WalletClosed, detail).with("wallet_id", wallet_id)
            }
            DomainError::WalletNotEmpty { wallet_id, balance } => {
                Problem::new(ProblemCode::WalletNotEmpty, detail).with("wallet_id", wallet_id).with("balance", balance)
            }
            DomainError::ReversalExceedsTransfer { transfer_id, remaining, requested } => {
                Problem::new(ProblemCode::ReversalExceedsTransfer, detail)
                    .with("transfer_id", transfer_id)
                    .with("remaining", remaining)
                    .with("requested", requested)
            }
            DomainError::HoldNotFound { hold_id } => {
                Problem::new(ProblemCode::HoldNotFound, format!("hold {hold_id} not found")).with("hold_id", hold_id)
            }
            DomainError::HoldNotActive { hold_id, status } => {
                Problem::new(ProblemCode::HoldNotActive, detail).with("hold_id", hold_id).with("hold_status", status)
            }
            DomainError::HoldExpired { hold_id, expires_at } => {
                Problem::new(ProblemCode::HoldExpired, detail).with("hold_id", hold_id).with("expires_at", expires_at)
            }
            DomainError::HoldExceeded { hold_id, remaining, requested } => {
                Problem::new(ProblemCode::HoldExceeded, detail)
                    .with("hold_id", hold_id)
                    .with("remaining", remaining)
                    .with("requested", requested)
            }
            DomainError::WalletHasActiveHolds { wallet_id, active_holds } => {
                Problem::new(ProblemCode::WalletHasActiveHolds, detail)
                    .with("wallet_id", wallet_id)
                    .with("active_holds", active_holds)
            }
        }
    }
}

/// The schemas of amounts in requests: an exact decimal as a string (with the grammar's pattern) or an exact JSON
/// number, as `WireDecimal` reads them.
#[cfg(feature = "openapi")]
pub mod amount_schemas {
    use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

    use super::{NON_NEGATIVE_AMOUNT_PATTERN, POSITIVE_AMOUNT_PATTERN};

    fn decimal(pattern: &str, example: &str, positive: bool, nullable: bool) -> Object {
        let mut types = vec![Type::String, Type::Number];
        if nullable {
            types.push(Type::Null);
        }
        let builder = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter(types))
            .pattern(Some(pattern))
            .examples([example])
            .description(Some(
                "An exact decimal: a string such as \"10.50\", or a JSON number written without an exponent",
            ));
        if positive { builder.exclusive_minimum(Some(0)) } else { builder.minimum(Some(0)) }.build()
    }

    pub fn positive() -> Object {
        decimal(POSITIVE_AMOUNT_PATTERN, "10.50", true, false)
    }

    pub fn positive_or_absent() -> Object {
        decimal(POSITIVE_AMOUNT_PATTERN, "0.50", true, true)
    }

    pub fn non_negative() -> Object {
        decimal(NON_NEGATIVE_AMOUNT_PATTERN, "0.10", false, false)
    }

    /// A percentage, 0 to 100.
    pub fn percent() -> Object {
        let mut percent = decimal(r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$", "1.5", false, false);
        percent.maximum = Some(100.into());
        percent
    }

    pub fn non_negative_or_absent() -> Object {
        decimal(NON_NEGATIVE_AMOUNT_PATTERN, "0.50", false, true)
    }
}

// ---- Requests ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeePolicyInput {
    /// 0 to 100.
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::percent))]
    pub percent: WireDecimal,
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::non_negative))]
    pub fixed: WireDecimal,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::non_negative_or_absent))]
    pub min: Option<WireDecimal>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::non_negative_or_absent))]
    pub max: Option<WireDecimal>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DefineAssetRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Z][A-Z0-9_]{0,15}$", example = "GOLD"))]
    pub code: String,
    /// Decimal places of the asset's amounts. A JSON integer; `8.0` is the integer 8, as JSON Schema reads it.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 18))]
    #[serde(deserialize_with = "crate::money::whole_number")]
    pub scale: u32,
    #[serde(default)]
    pub cash_in_fee: Option<FeePolicyInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenWalletRequest {
    /// The client's id of the owner: 1 to 128 characters, no control characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub owner_id: String,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Z][A-Z0-9_]{0,15}$", example = "GOLD"))]
    pub asset: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::non_negative_or_absent))]
    pub overdraft_limit: Option<WireDecimal>,
    /// A JSON object of the client's, at most 4 KiB and 8 levels deep; kept with the events.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// Body of `topup`, `bonus`, `spend`, `withdrawal` and `cash-in`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveRequest {
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::positive))]
    pub amount: WireDecimal,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reference: Option<String>,
    /// A JSON object of the client's, at most 4 KiB and 8 levels deep; kept with the events.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferRequest {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::positive))]
    pub amount: WireDecimal,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::non_negative_or_absent))]
    pub fee: Option<WireDecimal>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reference: Option<String>,
    /// A JSON object of the client's, at most 4 KiB and 8 levels deep; kept with the events.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReversalRequest {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::positive_or_absent))]
    pub amount: Option<WireDecimal>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reason: Option<String>,
}

/// Body of `freeze`, `unfreeze` and `close` (may be empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusRequest {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 512, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reason: Option<String>,
}

/// Body of `POST /v1/wallets/{id}/holds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlaceHoldRequest {
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::positive))]
    pub amount: WireDecimal,
    /// Seconds from now, 1 to 2,592,000 (30 days); default 3,600. Not with `expires_at`.
    #[serde(default, deserialize_with = "crate::money::optional_whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000, value_type = Option<u32>))]
    pub expires_in_s: Option<u32>,
    /// RFC 3339, in the future and at most 30 days ahead. Not with `expires_in_s`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reference: Option<String>,
    /// A JSON object of the client's, at most 4 KiB and 8 levels deep; kept with the events.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// Body of `POST /v1/holds/{id}/capture` (may be empty).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureHoldRequest {
    /// Default: what remains of the hold.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = amount_schemas::positive_or_absent))]
    pub amount: Option<WireDecimal>,
    /// Default: the asset's revenue wallet (a `spend`); a user wallet of the same asset makes it a `transfer`.
    #[serde(default)]
    pub to_wallet_id: Option<Uuid>,
    /// Default `true`: release what remains after this capture.
    #[serde(default, rename = "final")]
    pub is_final: Option<bool>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"))]
    pub reference: Option<String>,
    /// A JSON object of the client's, at most 4 KiB and 8 levels deep; kept with the events.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

// ---- Input checks ------------------------------------------------------------------------------

/// `1..=IDEMPOTENCY_KEY_LENGTH_MAX` visible ASCII characters.
pub fn is_valid_idempotency_key(key: &str) -> bool {
    (1..=IDEMPOTENCY_KEY_LENGTH_MAX).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic())
}

/// A client string of `1..=length_max` characters with no control characters (Postgres refuses NUL).
pub fn check_text(field: &str, text: &str, length_max: usize) -> Result<(), DomainError> {
    let length = text.chars().count();
    if length == 0 || length > length_max {
        return Err(DomainError::invalid(field, Rule::Length { length_max }));
    }
    if text.chars().any(char::is_control) {
        return Err(DomainError::invalid(field, Rule::NoControlCharacters));
    }
    Ok(())
}

/// `metadata` is an object of at most `METADATA_BYTES_MAX` bytes and `METADATA_DEPTH_MAX` levels, without NUL characters.
pub fn check_metadata(metadata: &Option<serde_json::Value>) -> Result<serde_json::Value, DomainError> {
    let Some(value) = metadata else { return Ok(serde_json::Value::Null) };
    if !value.is_object() {
        return Err(DomainError::invalid("metadata", Rule::JsonObject));
    }
    if depth(value) > METADATA_DEPTH_MAX {
        return Err(DomainError::invalid("metadata", Rule::DepthMax { depth_max: METADATA_DEPTH_MAX }));
    }
    let text = serde_json::to_string(value).expect("values serialize");
    if text.len() > METADATA_BYTES_MAX {
        return Err(DomainError::invalid("metadata", Rule::BytesMax { bytes_max: METADATA_BYTES_MAX }));
    }
    if text.contains("\\u0000") {
        return Err(DomainError::invalid("metadata", Rule::NoNulCharacters));
    }
    Ok(value.clone())
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

// ---- Responses ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeePolicyView {
    pub percent: String,
    pub fixed: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

/// `POST /v1/assets` answers this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssetDefinedView {
    pub code: String,
    pub scale: u32,
    pub cash_in_fee: Option<FeePolicyView>,
    #[cfg_attr(feature = "openapi", schema(value_type = SystemWalletsView))]
    pub system_wallets: SystemWallets,
    pub position: i64,
}

/// An asset with its totals, as query-service shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssetView {
    pub code: String,
    pub scale: u32,
    pub cash_in_fee: Option<FeePolicyView>,
    #[cfg_attr(feature = "openapi", schema(value_type = SystemWalletsView))]
    pub system_wallets: SystemWallets,
    /// Minus the treasury's balance.
    pub supply: String,
    pub user_balance_total: String,
    /// The sum of the balances of every wallet of the asset, system wallets included: `0` whenever the read
    /// models stand between two commands (SPEC §2's zero sum), which is what dashboards show as the ledger whole.
    pub balance_sum: String,
    /// What the asset's active holds reserve.
    pub held_total: String,
    pub active_hold_count: i64,
    pub wallet_count: i64,
    /// Principal moved per transfer kind.
    pub volume_by_kind: BTreeMap<String, String>,
}

/// A wallet as query-service shows it; `position` is set on command answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalletView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub wallet_id: WalletId,
    pub owner_id: String,
    pub asset: String,
    pub kind: String,
    pub status: String,
    pub balance: String,
    /// What the wallet's active holds reserve.
    pub held: String,
    /// `balance − held`.
    pub available: String,
    /// `null` for the treasury, whose overdraft is unlimited.
    pub overdraft_limit: Option<String>,
    pub version: i64,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LegView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub from_wallet_id: WalletId,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub to_wallet_id: WalletId,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BalanceView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub wallet_id: WalletId,
    pub balance: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReversalView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub transfer_id: TransferId,
    pub amount: String,
    pub fee: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

/// A transfer as a money command answers it; query-service adds `reversals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransferView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub transfer_id: TransferId,
    pub kind: String,
    pub asset: String,
    pub amount: String,
    pub fee: String,
    pub legs: Vec<LegView>,
    pub balances: Vec<BalanceView>,
    pub reference: Option<String>,
    pub metadata: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub reverses: Option<TransferId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a capture: the hold it drew on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub hold_id: Option<HoldId>,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversals: Option<Vec<ReversalView>>,
    /// For a capture's answer: the hold after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Box<HoldView>>,
}

/// The held wallet as a hold's answer shows it, after the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldWalletView {
    pub balance: String,
    pub held: String,
    pub available: String,
    pub version: i64,
}

/// A hold, as every answer shows it (SPEC §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldView {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub hold_id: HoldId,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub wallet_id: WalletId,
    pub asset: String,
    pub amount: String,
    pub captured: String,
    pub released: String,
    pub remaining: String,
    /// `active`, `captured`, `voided` or `expired`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub reference: Option<String>,
    pub metadata: serde_json::Value,
    /// The transfers that captured from it, in order.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<uuid::Uuid>))]
    pub captures: Vec<TransferId>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub wallet: HoldWalletView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// `GET /v1/wallets/{id}/history` item: one leg as one wallet saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntryView {
    pub position: i64,
    pub version: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub transfer_id: TransferId,
    pub kind: String,
    pub direction: String,
    pub amount: String,
    pub balance_after: String,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub counterparty_wallet_id: WalletId,
    pub reference: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// A page of items with the cursor of the next page, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ---- OpenAPI schemas (feature `openapi`) -------------------------------------------------------

/// `code` of a problem: one of [`ProblemCode::ALL`], as its stable name.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ProblemCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ProblemCode::ALL.iter().map(|code| code.code())))
            .description(Some("Stable, machine-readable problem code"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ProblemCode {}

/// The schema of [`SystemWallets`] on the wire: the ids of an asset's three system wallets.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SystemWalletsView {
    pub treasury: Uuid,
    pub revenue: Uuid,
    pub fees: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_a_type_uri() {
        let mut names: Vec<&str> = ProblemCode::ALL.iter().map(|code| code.code()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ProblemCode::ALL.len());
        let problem = Problem::new(ProblemCode::InsufficientFunds, "x");
        assert_eq!(problem.problem_type, "/problems/insufficient-funds");
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn a_hold_problem_keeps_the_http_status_and_names_the_holds_own() {
        let hold_id = HoldId(Uuid::nil());
        let problem = Problem::from(&DomainError::HoldNotActive { hold_id, status: crate::hold::HoldStatus::Captured });
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!((json["status"].clone(), json["hold_status"].clone()), (serde_json::json!(409), "captured".into()));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<MoveRequest>(r#"{"amount":"1","amont":"2"}"#).unwrap_err();
        assert!(error.to_string().contains("amont"), "{error}");
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(is_valid_idempotency_key("order-42:retry"));
        assert!(!is_valid_idempotency_key(""));
        assert!(!is_valid_idempotency_key("has space"));
        assert!(!is_valid_idempotency_key("ключ"));
        assert!(!is_valid_idempotency_key(&"k".repeat(256)));
    }

    #[test]
    fn metadata_is_a_bounded_object() {
        assert!(check_metadata(&Some(serde_json::json!([1]))).is_err());
        assert!(check_metadata(&Some(serde_json::json!({"a": "x".repeat(5000)}))).is_err());
        assert!(check_metadata(&Some(serde_json::json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}))).is_err());
        assert!(check_metadata(&Some(serde_json::json!({"a": "\u{0000}"}))).is_err());
        assert_eq!(check_metadata(&Some(serde_json::json!({"order": 42}))).unwrap(), serde_json::json!({"order": 42}));
    }
}
