//! Signed digests of the log hash (SPEC §10, `docs/audit.md`): every `DIGEST_INTERVAL_S`, when the log has
//! advanced since the last digest, the leader records `(position, log_hash, recorded_at)` of its checkpoint with an
//! Ed25519 signature, and publishes it on NATS (`{prefix}.digests`) for auditors who keep their own copy.
//!
//! The key is read from `DIGEST_SIGNING_KEY_FILE` and never stored in the database: whoever can rewrite the
//! database cannot sign a digest of a rewritten log. The `digests` primary key (the position) means two
//! projectors never record two digests of one position; the log hash being a function of the log, they could
//! not disagree on it anyway.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use ed25519_dalek::{Signer as _, SigningKey};
use sqlx::PgPool;
use tally_shared::digest::{signed_message, DigestView};
use tally_shared::envelope::truncate_to_micros;

use crate::PROJECTION_NAME;

/// The key that signs digests.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Signer(public key {})", hex::encode(self.key.verifying_key().as_bytes()))
    }
}

impl Signer {
    /// Reads a key file: the 32-byte Ed25519 secret as 64 hex digits (surrounding white space ignored).
    pub fn from_file(path: &Path) -> anyhow::Result<Signer> {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let secret: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .with_context(|| format!("{} does not hold 64 hex digits (a 32-byte Ed25519 secret)", path.display()))?;
        Ok(Signer { key: SigningKey::from_bytes(&secret) })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

/// Records a digest of the committed checkpoint if the log advanced since the last one; publishes it on `subject`.
/// Answers the digest recorded, if any.
pub async fn record_if_advanced(
    pool: &PgPool,
    signer: &Signer,
    nats: &async_nats::Client,
    subject: &str,
) -> anyhow::Result<Option<DigestView>> {
    let (position, log_hash, last): (i64, Vec<u8>, Option<i64>) = sqlx::query_as(
        "SELECT c.position, c.log_hash, (SELECT max(position) FROM digests)
         FROM projection_checkpoints c WHERE c.projection = $1",
    )
    .bind(PROJECTION_NAME)
    .fetch_one(pool)
    .await
    .context("read the checkpoint and the last digest")?;
    if position == 0 || last.is_some_and(|last| last >= position) {
        return Ok(None);
    }
    let log_hash: [u8; 32] = log_hash.try_into().map_err(|_| anyhow::anyhow!("the stored log hash is not 32 bytes"))?;
    let recorded_at = truncate_to_micros(Utc::now());
    let signature = signer.key.sign(signed_message(position, &log_hash, recorded_at).as_bytes());
    let public_key = signer.public_key();
    let inserted = sqlx::query(
        "INSERT INTO digests (position, log_hash, recorded_at, public_key, signature) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (position) DO NOTHING",
    )
    .bind(position)
    .bind(log_hash.as_slice())
    .bind(recorded_at)
    .bind(public_key.as_slice())
    .bind(signature.to_bytes().as_slice())
    .execute(pool)
    .await
    .context("record a digest")?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    let digest = DigestView {
        position,
        log_hash: hex::encode(log_hash),
        recorded_at,
        public_key: hex::encode(public_key),
        signature: hex::encode(signature.to_bytes()),
    };
    let payload = serde_json::to_vec(&digest).context("serialize a digest")?;
    if let Err(error) = nats.publish(subject.to_owned(), payload.into()).await {
        tracing::warn!(%error, position, "could not publish a digest; it is recorded and served all the same");
    }
    tracing::info!(position, log_hash = %digest.log_hash, "digest recorded");
    Ok(Some(digest))
}
