//! Opaque page cursors (a wallet's history, its holds): base64url of a small versioned payload that ends with a
//! checksum.
//!
//! A cursor names the wallet and the version below which the next page starts, so a page costs the same
//! at any depth (a keyset on `(wallet_id, version)`). The checksum makes an edited, truncated or invented
//! cursor fail loudly instead of silently paging somewhere else. It is not a secret: a cursor grants nothing
//! the caller could not ask for anyway, it only has to be what this service handed out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// First byte of every cursor: the layout below. A new layout gets a new number, and old cursors are refused.
const FORMAT_V1: u8 = 1;
/// Bytes of SHA-256 kept as the checksum.
const CHECKSUM_LENGTH: usize = 8;
/// format (1) + wallet id (16) + version (8) + checksum.
const CURSOR_LENGTH: usize = 1 + 16 + 8 + CHECKSUM_LENGTH;
/// Characters of an encoded cursor at most; anything longer is refused before decoding.
pub const CURSOR_TEXT_LENGTH_MAX: usize = 64;
/// Mixed into the checksum so that no other byte string of this length passes for a cursor by accident, and
/// a cursor of one kind of page is not taken for another's.
const HISTORY_DOMAIN: &[u8] = b"tally/query-service/history-cursor";
const HOLDS_DOMAIN: &[u8] = b"tally/query-service/holds-cursor";

/// Where the next page of a wallet's history starts: just below `before_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub wallet_id: Uuid,
    pub before_version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("is not a cursor this service issued")]
    Malformed,
    #[error("belongs to another wallet")]
    OtherWallet,
}

impl HistoryCursor {
    pub fn encode(&self) -> String {
        encode(HISTORY_DOMAIN, self.wallet_id, self.before_version)
    }

    /// Reads a cursor handed out for `wallet_id`'s history.
    pub fn decode(text: &str, wallet_id: Uuid) -> Result<HistoryCursor, CursorError> {
        let before_version = decode(HISTORY_DOMAIN, text, wallet_id)?;
        Ok(HistoryCursor { wallet_id, before_version })
    }
}

/// Where the next page of a wallet's holds starts: just below the position that placed the last one shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldsCursor {
    pub wallet_id: Uuid,
    pub before_position: i64,
}

impl HoldsCursor {
    pub fn encode(&self) -> String {
        encode(HOLDS_DOMAIN, self.wallet_id, self.before_position)
    }

    /// Reads a cursor handed out for `wallet_id`'s holds; a history cursor is not one.
    pub fn decode(text: &str, wallet_id: Uuid) -> Result<HoldsCursor, CursorError> {
        let before_position = decode(HOLDS_DOMAIN, text, wallet_id)?;
        Ok(HoldsCursor { wallet_id, before_position })
    }
}

fn encode(domain: &[u8], wallet_id: Uuid, before: i64) -> String {
    let mut bytes = Vec::with_capacity(CURSOR_LENGTH);
    bytes.push(FORMAT_V1);
    bytes.extend_from_slice(wallet_id.as_bytes());
    bytes.extend_from_slice(&before.to_be_bytes());
    let checksum = checksum(domain, &bytes);
    bytes.extend_from_slice(&checksum);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key below which the page starts, of a cursor of `domain` for `wallet_id`.
fn decode(domain: &[u8], text: &str, wallet_id: Uuid) -> Result<i64, CursorError> {
    if text.len() > CURSOR_TEXT_LENGTH_MAX {
        return Err(CursorError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| CursorError::Malformed)?;
    if bytes.len() != CURSOR_LENGTH || bytes[0] != FORMAT_V1 {
        return Err(CursorError::Malformed);
    }
    let (payload, stated) = bytes.split_at(CURSOR_LENGTH - CHECKSUM_LENGTH);
    if checksum(domain, payload) != stated {
        return Err(CursorError::Malformed);
    }
    let cursor_wallet = Uuid::from_slice(&payload[1..17]).map_err(|_| CursorError::Malformed)?;
    let before = i64::from_be_bytes(payload[17..25].try_into().map_err(|_| CursorError::Malformed)?);
    if before < 1 {
        return Err(CursorError::Malformed);
    }
    if cursor_wallet != wallet_id {
        return Err(CursorError::OtherWallet);
    }
    Ok(before)
}

fn checksum(domain: &[u8], payload: &[u8]) -> [u8; CHECKSUM_LENGTH] {
    let digest = Sha256::new().chain_update(domain).chain_update(payload).finalize();
    let mut checksum = [0; CHECKSUM_LENGTH];
    checksum.copy_from_slice(&digest[..CHECKSUM_LENGTH]);
    checksum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> HistoryCursor {
        HistoryCursor { wallet_id: Uuid::from_u128(0x0192_f0c1_8a7e_7d00_8000_0000_0000_0001), before_version: 4242 }
    }

    #[test]
    fn a_cursor_round_trips() {
        let cursor = cursor();
        assert_eq!(HistoryCursor::decode(&cursor.encode(), cursor.wallet_id), Ok(cursor));
        assert!(cursor.encode().len() <= CURSOR_TEXT_LENGTH_MAX);
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let cursor = cursor();
        let bytes = URL_SAFE_NO_PAD.decode(cursor.encode()).unwrap();
        for index in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[index] ^= 0x01;
            let text = URL_SAFE_NO_PAD.encode(&forged);
            assert!(HistoryCursor::decode(&text, cursor.wallet_id).is_err(), "byte {index}");
        }
    }

    #[test]
    fn garbage_and_other_wallets_are_refused() {
        let cursor = cursor();
        for garbage in ["", "abc", "!!!!", &"A".repeat(44), &"A".repeat(200), &cursor.encode()[..40]] {
            assert_eq!(HistoryCursor::decode(garbage, cursor.wallet_id), Err(CursorError::Malformed), "{garbage}");
        }
        assert_eq!(HistoryCursor::decode(&cursor.encode(), Uuid::nil()), Err(CursorError::OtherWallet));
        let below_one = HistoryCursor { before_version: 0, ..cursor };
        assert_eq!(HistoryCursor::decode(&below_one.encode(), cursor.wallet_id), Err(CursorError::Malformed));
    }

    #[test]
    fn a_history_cursor_is_no_holds_cursor_and_back() {
        let cursor = cursor();
        assert_eq!(HoldsCursor::decode(&cursor.encode(), cursor.wallet_id), Err(CursorError::Malformed));
        let holds = HoldsCursor { wallet_id: cursor.wallet_id, before_position: 7 };
        assert_eq!(HoldsCursor::decode(&holds.encode(), cursor.wallet_id), Ok(holds));
        assert_eq!(HistoryCursor::decode(&holds.encode(), cursor.wallet_id), Err(CursorError::Malformed));
    }
}
