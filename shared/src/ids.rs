//! The ids of the ledger's aggregates: wallets, transfers, holds and assets (whose id is their code).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, Rule};

/// Length of an asset code at most, by [`ASSET_CODE_PATTERN`].
pub const ASSET_CODE_LENGTH_MAX: usize = 16;
/// What an asset code looks like.
pub const ASSET_CODE_PATTERN: &str = "^[A-Z][A-Z0-9_]{0,15}$";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WalletId(pub Uuid);

impl fmt::Display for WalletId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferId(pub Uuid);

impl fmt::Display for TransferId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HoldId(pub Uuid);

impl fmt::Display for HoldId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// An asset's code, such as `GOLD` or `NGN`: [`ASSET_CODE_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetCode(String);

impl AssetCode {
    pub fn parse(text: &str) -> Result<AssetCode, DomainError> {
        let mut bytes = text.bytes();
        let valid = text.len() <= ASSET_CODE_LENGTH_MAX
            && bytes.next().is_some_and(|first| first.is_ascii_uppercase())
            && bytes.all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_');
        if !valid {
            return Err(DomainError::invalid("code", Rule::Pattern { pattern: ASSET_CODE_PATTERN }));
        }
        Ok(AssetCode(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AssetCode {
    type Error = DomainError;
    fn try_from(text: String) -> Result<AssetCode, DomainError> {
        AssetCode::parse(&text)
    }
}

impl From<AssetCode> for String {
    fn from(code: AssetCode) -> String {
        code.0
    }
}

impl fmt::Display for AssetCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}
