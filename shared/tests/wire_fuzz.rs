//! Property-based fuzzing of the wire parsers (issue #19): the amount grammar and canonical JSON, on inputs
//! proptest generates and shrinks. `PROPTEST_CASES` sets how many cases each property runs (256 here by
//! default; `scripts/fuzz` runs many more).
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;
use tally_shared::envelope::canonical_json;
use tally_shared::money::{parse_decimal, Scale};

/// Texts close to decimals: digits, signs, points, exponents, white space and letters of NaN and Infinity.
fn decimal_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[-+.0-9eE nNaIfy]{0,14}").unwrap()
}

/// What the grammar says, written without the parser's code: `-?digits(.digits)?`.
fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let mut parts = unsigned.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let digits = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
    digits(whole) && parts.next().is_none_or(digits)
}

proptest! {
    #[test]
    fn the_amount_parser_accepts_exactly_plain_decimals(text in decimal_like()) {
        let parsed = parse_decimal(&text);
        prop_assert_eq!(parsed.is_ok(), is_plain_decimal(&text), "{:?} → {:?}", text, parsed);
        if let Ok(value) = parsed {
            prop_assert_eq!(value, Decimal::from_str_exact(&text).unwrap(), "{:?}", text);
        }
    }

    #[test]
    fn an_amount_formatted_at_its_scale_parses_back_to_itself(mantissa in any::<i64>(), places in 0u32..=18) {
        let scale = Scale::new(places).unwrap();
        let value = Decimal::new(mantissa, places);
        let text = scale.format(value);
        prop_assert_eq!(parse_decimal(&text).unwrap(), value, "{}", text);
        prop_assert_eq!(text.split('.').nth(1).map_or(0, str::len), places as usize, "{}", text);
    }

    #[test]
    fn canonical_json_is_a_fixed_point_and_keeps_the_value(value in json_value()) {
        let canonical = canonical_json(&value);
        let reparsed: serde_json::Value = serde_json::from_str(&canonical).unwrap();
        prop_assert_eq!(canonical_json(&reparsed), canonical);
    }
}

/// JSON numbers as clients write them, exponents and leading zeros of fractions included.
pub fn json_number() -> impl Strategy<Value = serde_json::Value> {
    proptest::string::string_regex("-?(0|[1-9][0-9]{0,18})(\\.[0-9]{1,12})?([eE][-+]?[0-9]{1,2})?")
        .unwrap()
        .prop_map(|text| serde_json::Value::from_str(&text).unwrap())
}

/// Any JSON value without NUL characters (Postgres' `jsonb` refuses them, and so does the extractor).
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let text = || proptest::string::string_regex("[^\\x00]{0,12}").unwrap();
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        json_number(),
        text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}
