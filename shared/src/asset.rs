//! Assets: codes, cash-in fee policies, system wallets, and the asset Decider.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Rule};
use crate::ids::WalletId;
pub use crate::ids::{AssetCode, ASSET_CODE_LENGTH_MAX, ASSET_CODE_PATTERN};
use crate::money::{from_units, mul_div_half_up, units_at, AmountError, Scale};

/// The fee taken on a cash-in: `amount × percent / 100 + fixed`, clamped to `min..=max`,
/// rounded half up to the asset's scale, and never more than the amount itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeePolicy {
    #[serde(with = "rust_decimal::serde::str")]
    pub percent: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub fixed: Decimal,
    #[serde(default, with = "crate::money::optional_decimal", skip_serializing_if = "Option::is_none")]
    pub min: Option<Decimal>,
    #[serde(default, with = "crate::money::optional_decimal", skip_serializing_if = "Option::is_none")]
    pub max: Option<Decimal>,
}

impl FeePolicy {
    /// Checks a policy against its asset's scale and brings its money fields to that scale.
    pub fn parse(self, scale: Scale) -> Result<FeePolicy, DomainError> {
        let hundred = Decimal::ONE_HUNDRED;
        if self.percent < Decimal::ZERO || self.percent > hundred {
            return Err(DomainError::invalid("cash_in_fee.percent", Rule::Percent));
        }
        let money = |field: &'static str, value: Decimal| {
            crate::money::parse_non_negative(value, scale)
                .map_err(|error| DomainError::invalid(field, Rule::Money(error)))
        };
        let fixed = money("cash_in_fee.fixed", self.fixed)?;
        let min = self.min.map(|min| money("cash_in_fee.min", min)).transpose()?;
        let max = self.max.map(|max| money("cash_in_fee.max", max)).transpose()?;
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(DomainError::invalid("cash_in_fee.min", Rule::MinAboveMax));
            }
        }
        Ok(FeePolicy { percent: self.percent.normalize(), fixed, min, max })
    }

    /// The fee on `amount` (already at `scale`). Zero means no fee leg.
    /// Computed on whole units of the scale, so that nothing is rounded but the final half up.
    pub fn fee(&self, amount: Decimal, scale: Scale) -> Result<Decimal, AmountError> {
        let units = |value: Decimal| units_at(value, scale).ok_or(AmountError::OutOfRange);
        let amount_units = units(amount)?;
        let percent = self.percent.normalize();
        let percent_units = u128::try_from(percent.mantissa()).map_err(|_| AmountError::Negative)?;
        let per_hundred = 10u128.checked_pow(percent.scale() + 2).ok_or(AmountError::OutOfRange)?;
        let proportional = mul_div_half_up(amount_units, percent_units, per_hundred).ok_or(AmountError::OutOfRange)?;
        let mut fee = proportional.checked_add(units(self.fixed)?).ok_or(AmountError::OutOfRange)?;
        if let Some(min) = self.min {
            fee = fee.max(units(min)?);
        }
        if let Some(max) = self.max {
            fee = fee.min(units(max)?);
        }
        from_units(fee.min(amount_units), scale).ok_or(AmountError::OutOfRange)
    }
}

/// The three wallets an asset opens when it is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemWallets {
    /// The issuer: may go negative without limit; minus its balance is the outstanding supply.
    pub treasury: WalletId,
    /// Receives what users spend.
    pub revenue: WalletId,
    /// Receives fees.
    pub fees: WalletId,
}

/// An asset stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Asset {
    #[default]
    Undefined,
    Defined(AssetDefinition),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDefinition {
    pub code: AssetCode,
    pub scale: Scale,
    pub cash_in_fee: Option<FeePolicy>,
    pub system_wallets: SystemWallets,
}

/// Events of an asset stream (`asset-{CODE}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AssetEvent {
    AssetDefined(AssetDefinition),
}

/// Defines an asset. The system wallets' ids are chosen by the caller, so that `decide` stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineAsset {
    pub code: AssetCode,
    pub scale: Scale,
    pub cash_in_fee: Option<FeePolicy>,
    pub system_wallets: SystemWallets,
}

pub fn decide(asset: &Asset, command: &DefineAsset) -> Result<Vec<AssetEvent>, DomainError> {
    if let Asset::Defined(existing) = asset {
        return Err(DomainError::AssetExists { code: existing.code.clone() });
    }
    let SystemWallets { treasury, revenue, fees } = command.system_wallets;
    if treasury == revenue || treasury == fees || revenue == fees {
        // One stream cannot be opened as two wallets.
        return Err(DomainError::invalid("system_wallets", Rule::DistinctSystemWallets));
    }
    let cash_in_fee = command.cash_in_fee.clone().map(|policy| policy.parse(command.scale)).transpose()?;
    Ok(vec![AssetEvent::AssetDefined(AssetDefinition {
        code: command.code.clone(),
        scale: command.scale,
        cash_in_fee,
        system_wallets: command.system_wallets,
    })])
}

/// # Panics
/// On an event that cannot follow the state: the stream is corrupt.
pub fn evolve(asset: Asset, event: &AssetEvent) -> Asset {
    match (asset, event) {
        (Asset::Undefined, AssetEvent::AssetDefined(definition)) => Asset::Defined(definition.clone()),
        (Asset::Defined(definition), AssetEvent::AssetDefined(_)) => {
            panic!("corrupt stream asset-{}: defined twice", definition.code)
        }
    }
}
