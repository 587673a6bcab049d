//! The bytes and hashes of `docs/audit.md`, written from the document.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// One line of an export: an event as `GET /v1/events` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportedEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// Lowercase hex of the 32-byte chained hash.
    pub hash: String,
}

/// A digest as `GET /v1/digests` serves it.
#[derive(Debug, Clone, Deserialize)]
pub struct Digest {
    pub position: i64,
    pub log_hash: String,
    pub recorded_at: DateTime<Utc>,
    pub public_key: String,
    pub signature: String,
}

/// `{"data":…,"event_id":…,"metadata":…,"recorded_at":…,"stream_id":…,"type":…,"version":…}`: keys sorted,
/// no white space, `recorded_at` with exactly six fractional digits and `Z`.
pub fn canonical_bytes(event: &ExportedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"data\":");
    write_value(&event.data, &mut out);
    out.extend_from_slice(b",\"event_id\":");
    write_string(&event.event_id.to_ascii_lowercase(), &mut out);
    out.extend_from_slice(b",\"metadata\":");
    write_value(&event.metadata, &mut out);
    out.extend_from_slice(b",\"recorded_at\":");
    write_string(&event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true), &mut out);
    out.extend_from_slice(b",\"stream_id\":");
    write_string(&event.stream_id, &mut out);
    out.extend_from_slice(b",\"type\":");
    write_string(&event.event_type, &mut out);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(event.version.to_string().as_bytes());
    out.push(b'}');
    out
}

/// `SHA-256(previous ‖ canonical bytes)`: the event's hash, chained to its stream's previous one (32 zero bytes
/// for a stream's first event).
pub fn chained_hash(previous: &[u8; 32], event: &ExportedEvent) -> [u8; 32] {
    Sha256::new().chain_update(previous).chain_update(canonical_bytes(event)).finalize().into()
}

/// `L_p = SHA-256(L_prev ‖ the event's hash)`, from `L_0` = 32 zero bytes.
pub fn next_log_hash(previous: &[u8; 32], event_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update(previous).chain_update(event_hash).finalize().into()
}

/// What a digest's signature covers: `tally-digest-v1|position|log hash hex|recorded_at`.
pub fn digest_message(position: i64, log_hash_hex: &str, recorded_at: DateTime<Utc>) -> String {
    format!(
        "tally-digest-v1|{position}|{}|{}",
        log_hash_hex.to_ascii_lowercase(),
        recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

/// A JSON value with object keys in byte order and no white space. Numbers are written as the export carries
/// them (Postgres has already written them without exponents).
fn write_value(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(&fields[key], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        serde_json::Value::String(text) => write_string(text, out),
        serde_json::Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        serde_json::Value::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
        serde_json::Value::Null => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: `"` and `\` escaped, `\b \f \n \r \t`, other characters below U+0020 as `\u00xx` (lowercase
/// hex); everything else as it is, in UTF-8.
fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for character in text.chars() {
        match character {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            control if (control as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", control as u32).as_bytes())
            }
            other => {
                let mut buffer = [0; 4];
                out.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_the_document_says() {
        let mut out = Vec::new();
        write_string("a\"b\\c\u{1}\n\u{7f}é", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\u0001\\n\u{7f}é\"");
    }

    #[test]
    fn keys_sort_and_white_space_goes() {
        let value: serde_json::Value = serde_json::from_str(r#"{"b": [1, {"d": 2, "c": 10}], "a": "x"}"#).unwrap();
        let mut out = Vec::new();
        write_value(&value, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"x","b":[1,{"c":10,"d":2}]}"#);
    }
}
