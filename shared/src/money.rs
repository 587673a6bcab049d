//! Exact money: [`Scale`], [`Amount`], parsing from the wire and formatting with the asset's scale.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize};

/// Decimal places an asset may have; 18 keeps `10^10` whole units representable at full precision.
pub const SCALE_MAX: u32 = 18;

/// Significant digits a wire amount may have; `rust_decimal` holds 28 exactly.
pub const DIGITS_MAX: usize = 28;

/// The number of decimal places of an asset, `0..=SCALE_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Scale(u32);

impl Scale {
    pub fn new(places: u32) -> Result<Scale, AmountError> {
        if places > SCALE_MAX {
            return Err(AmountError::ScaleOutOfRange { scale: places });
        }
        Ok(Scale(places))
    }

    pub fn places(self) -> u32 {
        self.0
    }

    /// `value` with exactly this many decimal places (trailing zeros added), or an error if that would lose digits.
    pub fn fit(self, value: Decimal) -> Result<Decimal, AmountError> {
        let normalized = value.normalize();
        if normalized.scale() > self.0 {
            return Err(AmountError::TooManyDecimals { scale: self.0 });
        }
        let mut fitted = normalized;
        fitted.rescale(self.0);
        // `rescale` stops short of the scale when the digits would not fit in 96 bits: the value
        // cannot be held at this scale, and taking it at a smaller one would later round balances.
        if fitted.scale() != self.0 || fitted != value {
            return Err(AmountError::OutOfRange);
        }
        Ok(fitted)
    }

    /// Rounds half up (away from zero on a tie) to this scale.
    pub fn round_half_up(self, value: Decimal) -> Decimal {
        let mut rounded = value.round_dp_with_strategy(self.0, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(self.0);
        rounded
    }

    /// `value` as the wire shows it: always exactly this many decimal places ("10.50").
    pub fn format(self, value: Decimal) -> String {
        self.round_half_up(value).to_string()
    }
}

impl TryFrom<u32> for Scale {
    type Error = AmountError;
    fn try_from(places: u32) -> Result<Scale, AmountError> {
        Scale::new(places)
    }
}

impl From<Scale> for u32 {
    fn from(scale: Scale) -> u32 {
        scale.0
    }
}

/// Why a wire amount was refused. Every variant answers `422 invalid_amount`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a plain decimal such as \"10.50\" (no exponent, sign, NaN or infinity)")]
    NotADecimal,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount has more decimal places than the asset's scale of {scale}")]
    TooManyDecimals { scale: u32 },
    #[error("amount is out of the representable range")]
    OutOfRange,
    #[error("scale {scale} is out of range 0..={SCALE_MAX}")]
    ScaleOutOfRange { scale: u32 },
}

/// Parses the text of a wire decimal exactly: `-?digits(.digits)?`, nothing else.
/// Exponents, `NaN`, `Infinity`, a leading `+` or `.`, and white space are refused, so that
/// what the client meant is never guessed.
pub fn parse_decimal(text: &str) -> Result<Decimal, AmountError> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return Err(AmountError::NotADecimal);
    }
    let significant = whole.trim_start_matches('0').len() + fraction.map_or(0, str::len);
    if significant > DIGITS_MAX {
        return Err(AmountError::OutOfRange);
    }
    Decimal::from_str(text).map_err(|_| AmountError::OutOfRange)
}

/// A decimal as a request carries it: a JSON string (`"10.50"`) or an exact JSON number (`10.50`).
/// Read through `serde_json`'s arbitrary precision, so a number never passes through `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct WireDecimal(pub Decimal);

impl From<WireDecimal> for String {
    fn from(value: WireDecimal) -> String {
        value.0.to_string()
    }
}

impl<'de> Deserialize<'de> for WireDecimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = decimal_text(deserializer)?;
        parse_decimal(&text).map(WireDecimal).map_err(serde::de::Error::custom)
    }
}

/// A decimal that Tally itself wrote (in a read model's JSON), read back with `Decimal`'s own exact parser: anything
/// a `Decimal` holds reads back, 29-digit balances included, which the wire's stricter grammar ([`WireDecimal`],
/// 28 digits) refuses from clients. A read never fails on what a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct StoredDecimal(pub Decimal);

impl From<StoredDecimal> for String {
    fn from(value: StoredDecimal) -> String {
        value.0.to_string()
    }
}

impl<'de> Deserialize<'de> for StoredDecimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = decimal_text(deserializer)?;
        Decimal::from_str_exact(&text).map(StoredDecimal).map_err(serde::de::Error::custom)
    }
}

/// A whole number as JSON Schema's `integer` reads it: `8` and `8.0` alike, never `8.5`, a string or a
/// negative number. For fields such as an asset's scale.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let text = number.to_string();
    let whole = match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|digit| digit == b'0') => whole,
        Some(_) => return Err(serde::de::Error::custom(format!("invalid value: {text}, expected a whole number"))),
        None => text.as_str(),
    };
    whole
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("invalid value: {text}, expected a whole number from 0")))
}

/// [`whole_number`] for an optional field (with `#[serde(default)]`): `null` or absent is `None`.
pub fn optional_whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u32);
    Ok(Option::<Whole>::deserialize(deserializer)?.map(|whole| whole.0))
}

/// The text of a decimal in JSON: a string's own text, or an exact number's (never through `f64`).
fn decimal_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        _ => Err(serde::de::Error::custom("expected a decimal as a string or a number")),
    }
}

/// A strictly positive amount with at most its asset's decimal places, held at exactly that scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    pub fn parse(value: Decimal, scale: Scale) -> Result<Amount, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        scale.fit(value).map(Amount)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// `a + b` exactly, or `None`. Past 96 bits, `rust_decimal` drops decimal places instead of failing;
/// money must never round, so a sum that lost a place is refused.
pub(crate) fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_add(b).filter(|sum| sum.scale() >= a.scale().max(b.scale()))
}

/// `a - b` exactly, or `None` (see [`exact_add`]).
pub(crate) fn exact_sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_sub(b).filter(|difference| difference.scale() >= a.scale().max(b.scale()))
}

/// How many `10^-scale` units a non-negative `value` is, if it can be held exactly at `scale`.
pub(crate) fn units_at(value: Decimal, scale: Scale) -> Option<u128> {
    u128::try_from(scale.fit(value).ok()?.mantissa()).ok()
}

/// The decimal of `units` units of `10^-scale`, if it is representable.
pub(crate) fn from_units(units: u128, scale: Scale) -> Option<Decimal> {
    Decimal::try_from_i128_with_scale(i128::try_from(units).ok()?, scale.places()).ok()
}

/// `a × b ÷ c` rounded half up, exactly; `None` if `c` is zero or the quotient exceeds `u128`.
/// A `Decimal` product keeps 28 digits, so `a × b` would be rounded once before the rounding
/// that is asked for, and a fee could come out one unit off; 256 bits hold the product exactly.
pub(crate) fn mul_div_half_up(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let half = |value: u128| (value >> 64, value & u128::from(u64::MAX));
    let ((a_high, a_low), (b_high, b_low)) = (half(a), half(b));
    let (middle, middle_carry) = (a_high * b_low).overflowing_add(a_low * b_high);
    let (low, low_carry) = (a_low * b_low).overflowing_add(middle << 64);
    let high = a_high * b_high + (middle >> 64) + (u128::from(middle_carry) << 64) + u128::from(low_carry);
    // Long division one bit at a time, from the most significant bit of the 256-bit product.
    let (mut quotient, mut remainder) = (0u128, 0u128);
    for bit in (0..256u32).rev() {
        let next = if bit >= 128 { (high >> (bit - 128)) & 1 } else { (low >> bit) & 1 };
        let carry = remainder >> 127;
        remainder = (remainder << 1) | next;
        if quotient >> 127 != 0 {
            return None;
        }
        quotient <<= 1;
        if carry != 0 || remainder >= c {
            remainder = remainder.wrapping_sub(c);
            quotient |= 1;
        }
    }
    if remainder >= c - remainder {
        quotient = quotient.checked_add(1)?;
    }
    Some(quotient)
}

/// A limit or fee that may be zero but never negative, at exactly the asset's scale.
pub fn parse_non_negative(value: Decimal, scale: Scale) -> Result<Decimal, AmountError> {
    if value < Decimal::ZERO {
        return Err(AmountError::Negative);
    }
    scale.fit(value)
}

/// Serde for `Option<Decimal>` as an optional string. Unlike `rust_decimal::serde::str_option`, it reads
/// `null` inside internally tagged enums (stream snapshots), where serde buffers it as a unit.
pub mod optional_decimal {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(decimal) => serializer.serialize_str(&decimal.to_string()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| Decimal::from_str(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// An exact running sum of amounts, for the totals a read model keeps (volumes, balance totals), where
/// `Decimal` would overflow: its 2^127 units against `Decimal`'s 2^96 let at least 2^31 of the largest
/// amounts add up before [`Total::add`] refuses, and then it refuses rather than panics. The sum is kept at
/// the largest scale added so far; its text ([`fmt::Display`]) is exact, for a `numeric` column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Total {
    units: i128,
    scale: u32,
}

impl Total {
    /// Adds `value`; `Err` (and the total unchanged) if the sum would leave `i128`'s range.
    pub fn add(&mut self, value: Decimal) -> Result<(), AmountError> {
        let (mut units, mut scale) = (self.units, self.scale);
        let mut mantissa = value.mantissa();
        let power = |places: u32| 10i128.checked_pow(places).ok_or(AmountError::OutOfRange);
        if value.scale() > scale {
            units = units.checked_mul(power(value.scale() - scale)?).ok_or(AmountError::OutOfRange)?;
            scale = value.scale();
        } else {
            mantissa = mantissa.checked_mul(power(scale - value.scale())?).ok_or(AmountError::OutOfRange)?;
        }
        self.units = units.checked_add(mantissa).ok_or(AmountError::OutOfRange)?;
        self.scale = scale;
        Ok(())
    }

    /// Adds `other`'s sum.
    pub fn add_total(&mut self, other: Total) -> Result<(), AmountError> {
        let mut sum = *self;
        let mut rest = other;
        // Bring both to the larger scale, then add the units.
        while sum.scale < rest.scale {
            sum.units = sum.units.checked_mul(10).ok_or(AmountError::OutOfRange)?;
            sum.scale += 1;
        }
        while rest.scale < sum.scale {
            rest.units = rest.units.checked_mul(10).ok_or(AmountError::OutOfRange)?;
            rest.scale += 1;
        }
        sum.units = sum.units.checked_add(rest.units).ok_or(AmountError::OutOfRange)?;
        *self = sum;
        Ok(())
    }

    /// Subtracts `value`.
    pub fn sub(&mut self, value: Decimal) -> Result<(), AmountError> {
        self.add(-value)
    }
}

impl From<Decimal> for Total {
    /// Any `Decimal` is a total: its 96-bit mantissa at its own scale.
    fn from(value: Decimal) -> Total {
        Total { units: value.mantissa(), scale: value.scale() }
    }
}

impl fmt::Display for Total {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.units.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded =
            if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale - digits.len() + 1)) } else { digits };
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        let sign = if self.units < 0 { "-" } else { "" };
        if fraction.is_empty() {
            write!(formatter, "{sign}{whole}")
        } else {
            write!(formatter, "{sign}{whole}.{fraction}")
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_total_adds_past_decimals_range_exactly_and_prints_every_digit() {
        let largest = Decimal::MAX;
        let mut total = Total::default();
        for _ in 0..21 {
            total.add(largest).unwrap();
        }
        let expected = (largest.mantissa() * 21).to_string();
        assert_eq!(total.to_string(), expected);
        assert!(largest.checked_mul(Decimal::from(21)).is_none(), "Decimal itself overflows here");
    }

    #[test]
    fn a_total_keeps_the_largest_scale_and_its_sign() {
        let mut total = Total::default();
        total.add(Decimal::from_str("1.50").unwrap()).unwrap();
        total.sub(Decimal::from_str("2.005").unwrap()).unwrap();
        assert_eq!(total.to_string(), "-0.505");
        let mut zero = Total::default();
        zero.add(Decimal::from_str("0.00").unwrap()).unwrap();
        assert_eq!(zero.to_string(), "0.00");
        let mut other = Total::default();
        other.add(Decimal::from_str("10").unwrap()).unwrap();
        zero.add_total(other).unwrap();
        assert_eq!(zero.to_string(), "10.00");
    }

    #[test]
    fn a_total_refuses_rather_than_overflows_i128() {
        let mut total = Total { units: i128::MAX - 1, scale: 0 };
        assert_eq!(total.add(Decimal::from(2)), Err(AmountError::OutOfRange));
        assert_eq!(total, Total { units: i128::MAX - 1, scale: 0 }, "unchanged");
    }

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn parse_decimal_accepts_plain_decimals_only() {
        assert_eq!(parse_decimal("10.50"), Ok(dec("10.50")));
        assert_eq!(parse_decimal("-3"), Ok(dec("-3")));
        for refused in ["", "1e3", "1E3", "NaN", "Infinity", "+1", ".5", "5.", "1 ", " 1", "0x10", "1.2.3", "--1", "١"]
        {
            assert_eq!(parse_decimal(refused), Err(AmountError::NotADecimal), "{refused:?}");
        }
        assert_eq!(parse_decimal(&"9".repeat(29)), Err(AmountError::OutOfRange));
    }

    #[test]
    fn amounts_are_positive_and_fit_the_scale() {
        let two = Scale::new(2).unwrap();
        assert_eq!(Amount::parse(dec("10.5"), two).unwrap().value().to_string(), "10.50");
        assert_eq!(Amount::parse(dec("0"), two), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse(dec("-1"), two), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse(dec("1.005"), two), Err(AmountError::TooManyDecimals { scale: 2 }));
        assert_eq!(Amount::parse(dec("1.000"), two).unwrap().value().to_string(), "1.00");
    }

    #[test]
    fn format_always_shows_the_scale() {
        assert_eq!(Scale::new(2).unwrap().format(dec("5")), "5.00");
        assert_eq!(Scale::new(0).unwrap().format(dec("7")), "7");
        assert_eq!(Scale::new(2).unwrap().round_half_up(dec("1.005")).to_string(), "1.01");
        assert_eq!(Scale::new(2).unwrap().round_half_up(dec("-1.005")).to_string(), "-1.01");
    }

    #[test]
    fn mul_div_half_up_is_exact_beyond_128_bits() {
        assert_eq!(mul_div_half_up(1, 1, 2), Some(1));
        assert_eq!(mul_div_half_up(1, 1, 3), Some(0));
        assert_eq!(mul_div_half_up(2, 1, 3), Some(1));
        assert_eq!(mul_div_half_up(7, 0, 3), Some(0));
        assert_eq!(mul_div_half_up(7, 5, 0), None);
        // (2^96 - 1)^2 / (2^96 - 1) needs a 192-bit product.
        let max = (1u128 << 96) - 1;
        assert_eq!(mul_div_half_up(max, max, max), Some(max));
        // (2^100 + 1) × 2^27 / 2^28 = 2^99 + 0.5: rounds up.
        assert_eq!(mul_div_half_up((1 << 100) + 1, 1 << 27, 1 << 28), Some((1 << 99) + 1));
        assert_eq!(mul_div_half_up(u128::MAX, u128::MAX, 1), None);
        assert_eq!(mul_div_half_up(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
    }

    #[test]
    fn exact_sums_refuse_to_drop_decimal_places() {
        assert_eq!(exact_add(dec("1.50"), dec("2.25")), Some(dec("3.75")));
        assert_eq!(exact_sub(dec("1.50"), dec("2.25")).unwrap().to_string(), "-0.75");
        // Decimal would answer 1000000000000000000000000000.0, a hundredth short of the truth.
        let half = dec("500000000000000000000000000.01");
        assert_eq!(half.checked_add(half).unwrap().scale(), 1);
        assert_eq!(exact_add(half, half), None);
        assert_eq!(exact_sub(-half, half), None);
    }

    #[test]
    fn fit_refuses_what_the_scale_cannot_hold() {
        let eighteen = Scale::new(18).unwrap();
        assert_eq!(eighteen.fit(dec("10000000000")).unwrap().scale(), 18);
        assert_eq!(eighteen.fit(dec("100000000000")), Err(AmountError::OutOfRange));
    }

    #[test]
    fn wire_decimal_reads_strings_and_exact_numbers() {
        let from_number: WireDecimal = serde_json::from_str("10.10").unwrap();
        assert_eq!(from_number.0.to_string(), "10.10");
        let from_string: WireDecimal = serde_json::from_str("\"0.000000000000000001\"").unwrap();
        assert_eq!(from_string.0, dec("0.000000000000000001"));
        assert!(serde_json::from_str::<WireDecimal>("1e2").is_err());
        assert!(serde_json::from_str::<WireDecimal>("true").is_err());
        assert!(serde_json::from_str::<WireDecimal>("\"NaN\"").is_err());
    }
}
