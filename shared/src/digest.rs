//! The running log hash over the global log and the signed digests of it (SPEC §10, `docs/audit.md`).
//!
//! `L_0` is 32 zero bytes; after the event at position `p`, `L_p = SHA-256(L_prev ‖ the event's own hash)`, in
//! position order. A digest states `(position, L_position, recorded_at)` and an Ed25519 signature over
//! [`signed_message`] of them: an auditor who keeps one can later prove that no event at or before its
//! position was altered, removed, reordered or inserted, even by someone able to rewrite every stream's chain.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::envelope::canonical_time;

/// The log hash before the first event.
pub const LOG_GENESIS_HASH: [u8; 32] = [0; 32];

/// What a digest's signature covers begins with this, so that no other message of Tally's signs as a digest.
pub const SIGNED_MESSAGE_PREFIX: &str = "tally-digest-v1";

/// The log hash after an event whose own (stream-chained) hash is `event_hash`.
pub fn chain_log(previous: &[u8; 32], event_hash: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(event_hash);
    hasher.finalize().into()
}

/// The bytes a digest's Ed25519 signature covers: `tally-digest-v1|{position}|{log hash, lowercase hex}|{recorded_at,
/// RFC 3339 with microseconds and Z}` in ASCII.
pub fn signed_message(position: i64, log_hash: &[u8; 32], recorded_at: DateTime<Utc>) -> String {
    format!("{SIGNED_MESSAGE_PREFIX}|{position}|{}|{}", hex::encode(log_hash), canonical_time(recorded_at))
}

/// A digest as the API serves it, as NATS carries it, and as `tally-audit` reads it. Binary fields are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DigestView {
    /// The position of the last event the log hash covers.
    pub position: i64,
    /// `L_position`, 32 bytes.
    pub log_hash: String,
    pub recorded_at: DateTime<Utc>,
    /// The Ed25519 public key that verifies `signature`, 32 bytes.
    pub public_key: String,
    /// The Ed25519 signature of [`signed_message`], 64 bytes.
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_is_plain_ascii_of_the_three_fields() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T14:00:00.5Z").unwrap().with_timezone(&Utc);
        let message = signed_message(42, &[0xab; 32], at);
        assert_eq!(message, format!("tally-digest-v1|42|{}|2026-12-02T14:00:00.500000Z", "ab".repeat(32)));
    }

    #[test]
    fn the_log_hash_chains_event_hashes_in_order() {
        let one = chain_log(&LOG_GENESIS_HASH, &[1; 32]);
        let two = chain_log(&one, &[2; 32]);
        assert_ne!(two, chain_log(&chain_log(&LOG_GENESIS_HASH, &[2; 32]), &[1; 32]), "order matters");
        let mut input = [0u8; 64];
        input[32..].copy_from_slice(&[1; 32]);
        assert_eq!(one, <[u8; 32]>::from(Sha256::digest(input)));
    }
}
