//! Stream ids, the stored event envelope, canonical JSON and the per-stream SHA-256 hash chain.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::asset::{AssetCode, AssetEvent};
use crate::hold::{HoldEvent, HoldId};
use crate::transfer::{TransferEvent, TransferId};
use crate::wallet::{WalletEvent, WalletId};

/// The hash a stream's first event chains to.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// One stream of the event store: `asset-{CODE}`, `wallet-{uuid}` or `transfer-{uuid}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    Asset(AssetCode),
    Wallet(WalletId),
    Transfer(TransferId),
    Hold(HoldId),
}

impl fmt::Display for StreamId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Asset(code) => write!(formatter, "asset-{code}"),
            StreamId::Wallet(id) => write!(formatter, "wallet-{id}"),
            StreamId::Transfer(id) => write!(formatter, "transfer-{id}"),
            StreamId::Hold(id) => write!(formatter, "hold-{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream id: {0:?} (expected asset-CODE, wallet-UUID or transfer-UUID)")]
pub struct InvalidStreamId(pub String);

impl FromStr for StreamId {
    type Err = InvalidStreamId;
    fn from_str(text: &str) -> Result<StreamId, InvalidStreamId> {
        let invalid = || InvalidStreamId(text.to_owned());
        let (prefix, rest) = text.split_once('-').ok_or_else(invalid)?;
        match prefix {
            "asset" => AssetCode::parse(rest).map(StreamId::Asset).map_err(|_| invalid()),
            "wallet" => Uuid::parse_str(rest).map(|id| StreamId::Wallet(WalletId(id))).map_err(|_| invalid()),
            "transfer" => Uuid::parse_str(rest).map(|id| StreamId::Transfer(TransferId(id))).map_err(|_| invalid()),
            "hold" => Uuid::parse_str(rest).map(|id| StreamId::Hold(HoldId(id))).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

/// Any event, of whichever stream kind.
/// Serializes adjacently tagged (`{"type", "data"}`); read back with [`Event::from_stored`], which knows the stream kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Event {
    Asset(AssetEvent),
    Wallet(WalletEvent),
    Transfer(TransferEvent),
    Hold(HoldEvent),
}

impl Event {
    /// The stored type name and data of this event.
    pub fn to_stored(&self) -> (String, serde_json::Value) {
        let tagged = serde_json::to_value(self).expect("events serialize to JSON");
        let serde_json::Value::Object(mut fields) = tagged else {
            unreachable!("events are adjacently tagged objects")
        };
        let Some(serde_json::Value::String(event_type)) = fields.remove("type") else {
            unreachable!("events carry a type")
        };
        (event_type, fields.remove("data").unwrap_or(serde_json::Value::Null))
    }

    /// Reads a stored event of `stream`. This is where an old event version would be upcast.
    pub fn from_stored(
        stream: &StreamId,
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<Event, serde_json::Error> {
        // Built by hand: `json!` would serialize `data` by reference, a deep copy of every event read.
        let mut fields = serde_json::Map::new();
        fields.insert("type".to_owned(), serde_json::Value::String(event_type.to_owned()));
        fields.insert("data".to_owned(), data);
        let tagged = serde_json::Value::Object(fields);
        Ok(match stream {
            StreamId::Asset(_) => Event::Asset(serde_json::from_value(tagged)?),
            StreamId::Wallet(_) => Event::Wallet(serde_json::from_value(tagged)?),
            StreamId::Transfer(_) => Event::Transfer(serde_json::from_value(tagged)?),
            StreamId::Hold(_) => Event::Hold(serde_json::from_value(tagged)?),
        })
    }

    /// Reads a stored event of `stream` from its data as JSON text: one JSON value, as a `jsonb` column gives it
    /// (anything else fails to parse). Cheaper than [`Event::from_stored`]: the data goes straight into its
    /// type, with no `Value` tree, and the tag comes first, so serde does not buffer the data to find it.
    pub fn from_stored_text(stream: &StreamId, event_type: &str, data: &str) -> Result<Event, serde_json::Error> {
        let tagged = format!(r#"{{"type":{},"data":{data}}}"#, serde_json::to_string(event_type)?);
        Ok(match stream {
            StreamId::Asset(_) => Event::Asset(serde_json::from_str(&tagged)?),
            StreamId::Wallet(_) => Event::Wallet(serde_json::from_str(&tagged)?),
            StreamId::Transfer(_) => Event::Transfer(serde_json::from_str(&tagged)?),
            StreamId::Hold(_) => Event::Hold(serde_json::from_str(&tagged)?),
        })
    }
}

/// An event decided for one stream, not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub stream: StreamId,
    pub event: Event,
}

/// What each event of one command records besides its data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The request id of the HTTP request that caused the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command (transfer or wallet operation) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An event as the store keeps it and auditors read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// Hex of the SHA-256 chaining this event to the previous one of its stream.
    pub hash: String,
}

/// The fields of an event that its hash covers, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    pub stream_id: &'a str,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub data: &'a serde_json::Value,
    pub metadata: &'a serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl HashedFields<'_> {
    /// The bytes the hash covers: canonical JSON of the event's fields (the global position is not
    /// covered, because the store assigns it at insert; the per-stream version is). Written field by field
    /// in key order, as `canonical_json` of the whole document would write it, without copying the data.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"data\":");
        write_canonical(self.data, &mut out);
        out.extend_from_slice(b",\"event_id\":\"");
        out.extend_from_slice(self.event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
        out.extend_from_slice(b"\",\"metadata\":");
        write_canonical(self.metadata, &mut out);
        out.extend_from_slice(b",\"recorded_at\":");
        write_string(&canonical_time(self.recorded_at), &mut out);
        out.extend_from_slice(b",\"stream_id\":");
        write_string(self.stream_id, &mut out);
        out.extend_from_slice(b",\"type\":");
        write_string(self.event_type, &mut out);
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.push(b'}');
        out
    }

    /// SHA-256 over the previous event's hash and this event's canonical bytes.
    pub fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }
}

/// A change made ready to store: its stream's next version and the hash chaining it to the previous event.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    pub stream_id: String,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: serde_json::Value,
    pub hash: [u8; 32],
}

impl Change {
    /// Seals this change as the event after `(previous_version, previous_hash)` of its stream. Every writer of
    /// the log goes through here, so what is hashed is what `verify` recomputes.
    pub fn seal(
        &self,
        previous_version: i64,
        previous_hash: &[u8; 32],
        event_id: Uuid,
        metadata: &serde_json::Value,
        recorded_at: DateTime<Utc>,
    ) -> SealedEvent {
        let (event_type, data) = self.event.to_stored();
        let stream_id = self.stream.to_string();
        let version = previous_version + 1;
        let hash = HashedFields {
            stream_id: &stream_id,
            version,
            event_id,
            event_type: &event_type,
            data: &data,
            metadata,
            recorded_at,
        }
        .chain_hash(previous_hash);
        SealedEvent { stream_id, version, event_id, event_type, data, hash }
    }
}

/// Timestamps are stored to the microsecond (Postgres' precision); hash and store the same instant.
pub fn truncate_to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).expect("a current time is in range")
}

pub fn canonical_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// JSON with object keys sorted, no white space, and numbers written the way Postgres' `jsonb` keeps them
/// (exponents expanded, no negative zero), so that what is read back from `jsonb` hashes the same.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("canonical JSON is written from strings")
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(fields) => {
            out.push(b'{');
            // serde_json keeps object keys sorted unless its `preserve_order` feature is on.
            if fields.keys().is_sorted() {
                write_fields(fields.iter(), out);
            } else {
                let mut sorted: Vec<(&String, &serde_json::Value)> = fields.iter().collect();
                sorted.sort_by_key(|(key, _)| *key);
                write_fields(sorted.into_iter(), out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        serde_json::Value::Number(number) => {
            let text = number.to_string();
            if is_normal_number(&text) {
                out.extend_from_slice(text.as_bytes());
            } else {
                out.extend_from_slice(normalize_number(&text).as_bytes());
            }
        }
        serde_json::Value::String(text) => write_string(text, out),
        serde_json::Value::Bool(true) => out.extend_from_slice(b"true"),
        serde_json::Value::Bool(false) => out.extend_from_slice(b"false"),
        serde_json::Value::Null => out.extend_from_slice(b"null"),
    }
}

fn write_fields<'a>(fields: impl Iterator<Item = (&'a String, &'a serde_json::Value)>, out: &mut Vec<u8>) {
    for (index, (key, value)) in fields.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_canonical(value, out);
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn write_string(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
}

/// Whether a number's text is already as [`normalize_number`] would write it: no exponent, no leading
/// zero before other digits, not a negative zero. Most numbers are, and are then written as they are.
fn is_normal_number(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if unsigned.is_empty() || unsigned.bytes().any(|byte| !(byte.is_ascii_digit() || byte == b'.')) {
        return false;
    }
    let whole = unsigned.split_once('.').map_or(unsigned, |(whole, _)| whole);
    let leading_zero = whole.len() > 1 && whole.starts_with('0');
    let negative_zero = text.starts_with('-') && unsigned.bytes().all(|byte| byte == b'0' || byte == b'.');
    !whole.is_empty() && !leading_zero && !negative_zero
}

/// A JSON number's text as Postgres `numeric` prints it: `1e2` → `100`, `1.5E-3` → `0.0015`, `-0.0` → `0.0`.
/// The scale of the result is `max(0, fraction digits − exponent)`, as `numeric` computes it.
pub fn normalize_number(text: &str) -> String {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().unwrap_or(0)),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    let point = whole.len() as i64 + exponent;
    let scale = (fraction.len() as i64 - exponent).max(0);
    let digit_at = |index: i64| -> char {
        if index < 0 || index >= digits.len() as i64 {
            '0'
        } else {
            char::from(digits[index as usize])
        }
    };
    let mut integer: String = (0..point.max(0)).map(digit_at).collect();
    let trimmed = integer.trim_start_matches('0');
    integer = if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() };
    let fractional: String = (point..point + scale).map(digit_at).collect();
    let is_zero = integer == "0" && fractional.bytes().all(|byte| byte == b'0');
    let mut normalized = String::new();
    if negative && !is_zero {
        normalized.push('-');
    }
    normalized.push_str(&integer);
    if scale > 0 {
        normalized.push('.');
        normalized.push_str(&fractional);
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text reader splices the data into a document: anything but exactly one JSON value must fail, never
    /// read as another event or another tag.
    #[test]
    fn stored_text_that_is_not_one_json_value_is_refused() {
        let stream: StreamId = "wallet-0190f5a4-7c1e-7b3a-9d2e-4f5a6b7c8d9e".parse().unwrap();
        let frozen = Event::from_stored_text(&stream, "WalletFrozen", r#"{"reason":"audit"}"#).unwrap();
        assert_eq!(
            frozen,
            Event::Wallet(crate::wallet::WalletEvent::WalletFrozen(crate::wallet::StatusChange {
                reason: Some("audit".to_owned())
            }))
        );
        for data in [r#"{}, "type": "WalletClosed""#, r#"{}}, {"type": "WalletClosed", "data": {}"#, "", "{"] {
            assert!(Event::from_stored_text(&stream, "WalletFrozen", data).is_err(), "{data}");
        }
    }

    #[test]
    fn stream_ids_round_trip() {
        for text in [
            "asset-GOLD",
            "wallet-0192f0c1-8a7e-7d00-8000-000000000001",
            "transfer-0192f0c1-8a7e-7d00-8000-000000000002",
        ] {
            assert_eq!(text.parse::<StreamId>().unwrap().to_string(), text);
        }
        for bad in ["asset-gold", "wallet-x", "thing-1", "wallet"] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_normalize_like_postgres_numeric() {
        let cases = [
            ("1e2", "100"),
            ("1.5E-3", "0.0015"),
            ("1.50e1", "15.0"),
            ("-0", "0"),
            ("-0.00", "0.00"),
            ("12.340", "12.340"),
            ("-7", "-7"),
            ("2E+3", "2000"),
            ("0.5e1", "5"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_number(input), expected, "{input}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_white_space() {
        let value: serde_json::Value = serde_json::from_str(r#"{ "b": [1, {"d": 2, "c": 1e1}], "a": "x" }"#).unwrap();
        assert_eq!(canonical_json(&value), r#"{"a":"x","b":[1,{"c":10,"d":2}]}"#);
    }

    #[test]
    fn a_changed_field_changes_the_hash() {
        let data = serde_json::json!({"amount": "1.00"});
        let metadata = serde_json::json!({});
        let fields = HashedFields {
            stream_id: "wallet-x",
            version: 1,
            event_id: Uuid::nil(),
            event_type: "WalletCredited",
            data: &data,
            metadata: &metadata,
            recorded_at: DateTime::from_timestamp_micros(1).unwrap(),
        };
        let honest = fields.chain_hash(&GENESIS_HASH);
        let tampered_data = serde_json::json!({"amount": "100.00"});
        assert_ne!(honest, HashedFields { data: &tampered_data, ..fields }.chain_hash(&GENESIS_HASH));
        assert_ne!(honest, fields.chain_hash(&[1; 32]));
    }

    /// The canonical form as first written: build the whole document, sort every object's keys, normalize
    /// every number. The faster writer must produce exactly these bytes, or stored hash chains break.
    fn reference_canonical(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Object(fields) => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort();
                let inner: Vec<String> = keys
                    .into_iter()
                    .map(|key| format!("{}:{}", serde_json::to_string(key).unwrap(), reference_canonical(&fields[key])))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            serde_json::Value::Array(items) => {
                format!("[{}]", items.iter().map(reference_canonical).collect::<Vec<_>>().join(","))
            }
            serde_json::Value::Number(number) => normalize_number(&number.to_string()),
            other => serde_json::to_string(other).unwrap(),
        }
    }

    fn json_number() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        (
            proptest::option::of(Just("-")),
            prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,20}"],
            proptest::option::of("[0-9]{1,6}"),
            proptest::option::of(("[eE]", proptest::option::of(prop_oneof![Just("+"), Just("-")]), "[0-9]{1,2}")),
        )
            .prop_map(|(sign, whole, fraction, exponent)| {
                let mut text = format!("{}{whole}", sign.unwrap_or(""));
                if let Some(fraction) = fraction {
                    text.push('.');
                    text.push_str(&fraction);
                }
                if let Some((mark, exponent_sign, digits)) = exponent {
                    text.push_str(&format!("{mark}{}{digits}", exponent_sign.unwrap_or("")));
                }
                text
            })
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<String>().prop_map(serde_json::Value::String),
            json_number().prop_map(|text| serde_json::from_str(&text).unwrap()),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    use proptest::prelude::any;

    proptest::proptest! {
        #[test]
        fn canonical_json_writes_what_the_reference_writes(value in json_value()) {
            proptest::prop_assert_eq!(canonical_json(&value), reference_canonical(&value));
        }

        #[test]
        fn hashed_fields_write_the_canonical_document(
            data in json_value(),
            metadata in json_value(),
            stream_id in any::<String>(),
            event_type in any::<String>(),
            version in 0..i64::MAX,
            micros in 0..4_102_444_800_000_000_i64,
            event_id in any::<u128>(),
        ) {
            let recorded_at = DateTime::from_timestamp_micros(micros).unwrap();
            let event_id = Uuid::from_u128(event_id);
            let fields = HashedFields {
                stream_id: &stream_id,
                version,
                event_id,
                event_type: &event_type,
                data: &data,
                metadata: &metadata,
                recorded_at,
            };
            let document = serde_json::json!({
                "stream_id": stream_id,
                "version": version,
                "event_id": event_id,
                "type": event_type,
                "data": data,
                "metadata": metadata,
                "recorded_at": canonical_time(recorded_at),
            });
            proptest::prop_assert_eq!(fields.canonical_bytes(), reference_canonical(&document).into_bytes());
        }
    }
}
